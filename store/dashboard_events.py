"""Tell open manager dashboards that something they show has changed, so they refresh their sections.

One Channels group, :data:`DASHBOARD_GROUP`, joined by ``carts.dashboard_consumers.DashboardConsumer`` (staff
only). The message is ``{"type": "dashboard.update", "reason": str, "store": store id or None}`` — plain JSON, no
data: the page fetches the fresh sections itself, so a dropped message (groups drop beyond their capacity) only
delays a refresh until the next one.
"""
from __future__ import annotations

from channels.layers import get_channel_layer
from django.db import transaction

from .pushes import send_groups

#: Channels group of every open dashboard (``^[a-zA-Z0-9._-]+$``, < 100 chars).
DASHBOARD_GROUP = "dashboard"


def dashboard_message(*, reason: str, store_id: int | None = None) -> dict:
    """The group message :func:`dashboard_notify` sends (``reason``: a short word such as ``cart`` or ``stock``)."""
    return {"type": "dashboard.update", "reason": str(reason)[:50],
            "store": int(store_id) if store_id is not None else None}


def dashboard_notify(*, reason: str, store_id: int | None = None) -> None:
    """After the current transaction commits (at once outside one), send :func:`dashboard_message` to
    :data:`DASHBOARD_GROUP`. Best effort: no channel layer, or a layer error, is logged and ignored (the
    database is the truth; dashboards also refresh on reconnect)."""
    message = dashboard_message(reason=reason, store_id=store_id)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        send_groups(layer, [(0, DASHBOARD_GROUP, message)])  # best effort; the store worker's from its sender thread

    transaction.on_commit(send)
