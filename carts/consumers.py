"""Live cart over WebSockets: thin consumers that check who is asking, join a group and forward snapshots.

Routes (``carts.routing``):

``ws/visits/<visit_id>/cart/`` — :class:`CartConsumer`. Only the visit's shopper or a manager (``is_staff``); anyone
else, and anonymous users, are closed before the handshake completes (HTTP 403 to the browser).

``ws/shopper/`` — :class:`ShopperConsumer`. Any logged-in user, for their own visits only (the waiting page notices a
visit starting).

Server → client messages (plain JSON, money in integer minor units):

* ``{"type": "snapshot", "visit", "seq", "state", "currency", "lines": [...], "under_review", "total_minor",
  "receipt"}`` — a full cart snapshot (contract in ``carts.services.ledger``), on connect, on every change, and in
  answer to ``resync``. ``seq`` grows with each change; a client that sees a gap sends ``resync``.
* ``{"type": "waiting"}`` — ``ws/shopper/`` only: the shopper has no live visit now.
* ``{"type": "error", "error": str}`` — the client's message was not understood; the socket stays open.

Client → server: ``{"type": "resync"}`` (answered with a fresh snapshot, or ``waiting``). Anything else: ``error``.
"""
from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from store.gates.models import Visit

from . import selectors
from .services.ledger import cart_group, cart_snapshot, shopper_group

log = logging.getLogger(__name__)


def _cart_snapshot_of(visit_id: int) -> dict | None:
    """A fresh snapshot of ``visit_id`` (no access check: callers did it), or None if it vanished."""
    visit = Visit.objects.select_related("store").filter(pk=visit_id).first()
    return cart_snapshot(visit=visit) if visit else None


def _current_snapshot_for(user) -> dict | None:
    """A snapshot of the user's live visit (``selectors.visit_current_for``), or None when there is none."""
    visit = selectors.visit_current_for(user=user)
    return cart_snapshot(visit=visit) if visit else None


class _JsonConsumer(AsyncJsonWebsocketConsumer):
    """JSON consumer that answers malformed frames with an ``error`` message instead of crashing."""

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if not text_data:
            await self.send_json({"type": "error", "error": "send JSON text frames"})
            return
        try:
            content = await self.decode_json(text_data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            await self.send_json({"type": "error", "error": "not JSON"})
            return
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "send a JSON object with a 'type'"})
            return
        await self.receive_json(content, **kwargs)

    async def _join(self, group: str) -> None:
        """Join ``group``; ``self.groups`` makes the base class leave it on disconnect."""
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)


class CartConsumer(_JsonConsumer):
    """One visit's live cart, for its shopper or a manager."""

    visit_id: int

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.visit_id = int(self.scope["url_route"]["kwargs"]["visit_id"])
        visit = await database_sync_to_async(selectors.visit_for_viewer)(user=user, visit_id=self.visit_id)
        if visit is None:
            log.info("cart socket refused: visit %s for user %s", self.visit_id, getattr(user, "pk", None))
            await self.close()
            return
        # Join first, then send the snapshot: a change landing in between arrives as a group message with a seq
        # at least as high, so nothing is missed.
        await self._join(cart_group(self.visit_id))
        await self.accept()
        await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(_cart_snapshot_of)(self.visit_id)
        if snapshot is None:
            await self.close(code=4404)
            return
        await self.send_json({"type": "snapshot", **snapshot})

    async def receive_json(self, content, **kwargs) -> None:
        if content.get("type") == "resync":
            await self._send_snapshot()
        else:
            await self.send_json({"type": "error", "error": f"unknown message type {content.get('type')!r}"})

    async def cart_snapshot(self, event: dict) -> None:
        """Group message ``{"type": "cart.snapshot", "snapshot": {...}}`` → the client."""
        snapshot = event.get("snapshot") or {}
        if snapshot.get("visit") == self.visit_id:
            await self.send_json({"type": "snapshot", **snapshot})


class ShopperConsumer(_JsonConsumer):
    """The logged-in shopper's own group: snapshots of any of their visits, so a waiting page sees a visit start."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close()
            return
        self.user = user
        await self._join(shopper_group(user.pk))
        await self.accept()
        await self._send_current()

    async def _send_current(self) -> None:
        snapshot = await database_sync_to_async(_current_snapshot_for)(self.user)
        await self.send_json({"type": "snapshot", **snapshot} if snapshot else {"type": "waiting"})

    async def receive_json(self, content, **kwargs) -> None:
        if content.get("type") == "resync":
            await self._send_current()
        else:
            await self.send_json({"type": "error", "error": f"unknown message type {content.get('type')!r}"})

    async def cart_snapshot(self, event: dict) -> None:
        """Group message ``{"type": "cart.snapshot", "snapshot": {...}}`` → the client (the group is the user's)."""
        await self.send_json({"type": "snapshot", **(event.get("snapshot") or {})})
