"""The review queue as the camera workers see it: which shelf events to keep camera clips of.

Registered with ``vision.hooks`` at start-up (``carts.apps``); the camera worker asks every ``clip_poll_s``.
"""
from __future__ import annotations

from django.utils import timezone

from vision.clips import ClipRequest

from .models import ReviewItem


def review_clip_requests(*, store_id: int, since=None) -> tuple[list[ClipRequest], object]:
    """The review items of store ``store_id`` created after ``since`` (a ``(created_at, id)`` cursor; None: from
    now on, nothing returned) as :class:`ClipRequest` (candidates labelled "Shopper A", "B"… in the order the console
    uses), and the new cursor. Reads the database (the camera worker's one read of it besides its own row)."""
    if since is None:
        return [], (timezone.now(), 0)
    created, last_id = since
    items = list(ReviewItem.objects.filter(shelf_event__store_id=store_id, created_at__gte=created)
                 .exclude(created_at=created, id__lte=last_id).select_related("shelf_event__bin")
                 .order_by("created_at", "id")[:100])
    out = []
    for item in items:
        ev = item.shelf_event
        labels = {}
        for k, c in enumerate(c for c in item.candidates or [] if isinstance(c, dict) and c.get("track_id")):
            labels[str(c["track_id"])] = f"Shopper {chr(ord('A') + k)}" if k < 26 else f"Shopper {k + 1}"
        out.append(ClipRequest(review=item.pk, t0=ev.t_start.timestamp(), t1=ev.t_end.timestamp(),
                               bin_code=ev.bin.code, bin_xyz=(ev.bin.x, ev.bin.y, ev.bin.z), labels=labels))
    cursor = (items[-1].created_at, items[-1].pk) if items else since
    return out, cursor
