"""A store's local time zone (``Store.timezone``), for what people read: receipts, pages, e-mails. Storage stays UTC."""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings


def store_zone(store) -> ZoneInfo:
    """The store's ``ZoneInfo``: ``store.timezone`` when set and known, else ``settings.TIME_ZONE``, else UTC."""
    for name in (getattr(store, "timezone", "") or "", settings.TIME_ZONE, "UTC"):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")
