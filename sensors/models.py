"""Shelf events as stored: one writer, ``sensors``. Raw samples never reach the database."""
from __future__ import annotations

from django.db import models

from store.layout.models import Bin, Store


class ShelfEvent(models.Model):
    """A weight change on one or more adjacent bins of a shelf, explained as product × quantity hypotheses.

    ``delta_g`` is the settled weight after minus the settled weight before, grams (negative: a pick).
    ``hypotheses`` is the ranked explanation, best first: ``[{"barcode", "quantity", "likelihood"}]`` where
    ``quantity`` is signed units taken from the shelf (positive: picked; negative: put back).
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shelf_events")
    session = models.CharField(max_length=100, help_text="live, or the recording replayed")
    bin = models.ForeignKey(Bin, on_delete=models.PROTECT, related_name="shelf_events", help_text="main bin")
    bin_codes = models.JSONField(help_text="all bins in the event")
    t_start = models.DateTimeField()
    t_end = models.DateTimeField()
    delta_g = models.FloatField()
    noise_sd_g = models.FloatField(default=0.0)
    hypotheses = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["t_start", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "bin", "t_start"], name="shelf_event_unique")
        ]

    def __str__(self) -> str:
        return f"{self.bin.code} {self.delta_g:+.0f} g at {self.t_start:%H:%M:%S}"
