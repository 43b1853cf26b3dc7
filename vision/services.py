"""Vision services: compact per-track summaries in the database (the per-frame data stays out of it)."""
from __future__ import annotations

from datetime import datetime

from store.layout.models import Store

from .models import ShopperTrack


def shopper_track_record(*, store: Store, session: str, track_id: str, first_seen: datetime, last_seen: datetime,
                         observations: int) -> ShopperTrack:
    """Create or extend the summary row of one shopper track (first/last sighting, observation count)."""
    track, created = ShopperTrack.objects.get_or_create(
        store=store, session=session, track_id=track_id,
        defaults={"first_seen": first_seen, "last_seen": last_seen, "observations": observations},
    )
    if not created:
        track.first_seen = min(track.first_seen, first_seen)
        track.last_seen = max(track.last_seen, last_seen)
        track.observations += observations
        track.save(update_fields=["first_seen", "last_seen", "observations"])
    return track
