"""What carts does for the gates (``store.gates.hooks``): check a visit out, push its cart, and say whether the
shopper is still active. Registered by ``carts.apps.CartsConfig.ready``."""
from __future__ import annotations

from datetime import datetime

from store.gates import hooks
from store.gates.models import Visit
from vision.services import store_map_positions

from .models import Cart, CartEvent
from .services.checkout import visit_checkout
from .services.ledger import cart_publish


def visit_activity(*, visit: Visit) -> list[datetime]:
    """Wall-clock times (aware UTC) of ``visit``'s last cart event and its cart's last push (entry, every cart
    change, review decisions); empty when it has neither."""
    return [t for t in (
        CartEvent.objects.filter(visit=visit).order_by("-created_at").values_list("created_at", flat=True).first(),
        Cart.objects.filter(visit=visit).values_list("updated_at", flat=True).first(),
    ) if t is not None]


def visit_track_seen(*, visit: Visit) -> bool:
    """``visit``'s bound track is on its store's live map now (``vision.services.store_map_positions``: a camera
    worker or the store's tracker saw it within the map's few seconds): the shopper is still in the store."""
    if not visit.track_id:
        return False
    ids = {p["id"] for p in store_map_positions(store_code=visit.store.code)}
    return visit.track_id in ids or any(visit.track_id.endswith(f":{sid}") for sid in ids)


def register() -> None:
    """Give the gates carts' checkout, cart push and activity (idempotent)."""
    hooks.set_visit_hooks(checkout=visit_checkout, cart_push=cart_publish, activity=visit_activity,
                          track_seen=visit_track_seen)
