"""What the apps above the gates do for them, registered when Django starts (``carts.apps.CartsConfig.ready``).

The gates run the visit state machine; checking a visit out (cart → receipt → capture), pushing its cart to the
shopper's phone, and knowing whether a shopper is still active (cart events, the live store map) belong to
``carts`` and ``vision``, which import the gates. Injected callbacks keep the imports one way (the layers
contract in ``pyproject.toml``); what the gates announce goes out as signals (``store.gates.signals``).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

_checkout: Callable[..., Any] | None = None
_cart_push: Callable[..., None] | None = None
_activity: Callable[..., list[datetime]] | None = None
_track_seen: Callable[..., bool] | None = None


def set_visit_hooks(*, checkout: Callable[..., Any], cart_push: Callable[..., None],
                    activity: Callable[..., list[datetime]], track_seen: Callable[..., bool]) -> None:
    """Register the callbacks (idempotent): ``checkout(visit=, at=)`` → the receipt or None (billed, under review
    or payment failed: ``carts.services.checkout.visit_checkout``); ``cart_push(visit=)``: the cart snapshot to the
    shopper's app; ``activity(visit=)``: wall-clock times (aware UTC) of the visit's cart activity;
    ``track_seen(visit=)``: its bound track is on the store's live map now."""
    global _checkout, _cart_push, _activity, _track_seen
    _checkout, _cart_push, _activity, _track_seen = checkout, cart_push, activity, track_seen


def _missing(what: str) -> RuntimeError:
    return RuntimeError(f"no {what} registered: the carts app registers it when Django starts "
                        "(is 'carts' in INSTALLED_APPS?)")


def visit_checkout(*, visit, at: datetime | None = None):
    """Check ``visit`` out (the registered ``checkout``). Raises ``RuntimeError`` when nothing is registered."""
    if _checkout is None:
        raise _missing("checkout")
    return _checkout(visit=visit, at=at)


def cart_push(*, visit) -> None:
    """Push ``visit``'s cart to the shopper's app (the registered ``cart_push``). ``RuntimeError`` when missing."""
    if _cart_push is None:
        raise _missing("cart push")
    _cart_push(visit=visit)


def activity_times(*, visit) -> list[datetime]:
    """Wall-clock times of ``visit``'s cart activity (empty when nothing is registered)."""
    return list(_activity(visit=visit)) if _activity is not None else []


def track_seen(*, visit) -> bool:
    """Whether ``visit``'s bound track is on the live store map now (False when nothing is registered)."""
    return bool(_track_seen is not None and _track_seen(visit=visit))
