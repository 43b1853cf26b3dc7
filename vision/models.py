"""Shopper tracks as stored: a compact summary per track (the per-frame data stays out of the database)."""
from __future__ import annotations

from django.db import models

from store.layout.models import Store


class ShopperTrack(models.Model):
    """One person's track across all cameras in one session (live, or a recording replayed)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shopper_tracks")
    session = models.CharField(max_length=100)
    track_id = models.CharField(max_length=64)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    observations = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["first_seen"]
        constraints = [
            models.UniqueConstraint(fields=["store", "session", "track_id"], name="shopper_track_unique")
        ]

    def __str__(self) -> str:
        return f"track {self.track_id} ({self.session})"
