"""Live manager dashboard over WebSockets: ``ws/dashboard/`` (route in ``carts.routing``).

Managers only (``is_staff`` and active): anyone else, anonymous users included, is closed before the handshake
completes (HTTP 403 to the browser). The consumer joins ``store.dashboard_events.DASHBOARD_GROUP`` and forwards
each ``dashboard.update`` group message to the page as ``{"type": "update", "reason", "store"}``; the page then
re-fetches its sections. On connect it sends one ``update`` (reason ``connected``), so a page that was offline
catches up. Client → server: ``{"type": "ping"}`` is answered ``{"type": "pong"}``; anything else ``error``.
"""
from __future__ import annotations

import json

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from store.dashboard_events import DASHBOARD_GROUP


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Forwards dashboard update notices to a manager's open dashboard."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            await self.close()
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        self.groups.append(DASHBOARD_GROUP)  # the base class leaves it on disconnect
        await self.accept()
        await self.send_json({"type": "update", "reason": "connected", "store": None})

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        try:
            content = json.loads(text_data) if text_data else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            content = None
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "error": "send {\"type\": \"ping\"} or nothing"})

    async def dashboard_update(self, event: dict) -> None:
        """Group message ``{"type": "dashboard.update", "reason", "store"}`` → the page."""
        await self.send_json({"type": "update", "reason": event.get("reason", ""), "store": event.get("store")})
