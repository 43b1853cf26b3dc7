"""Sensors tables: shelf events (one writer, ``sensors``), the shelf controllers that send samples, their problem
counters, and load-cell health. Raw samples never reach the database (``sensors/storage.py`` keeps them as files).
"""
from __future__ import annotations

from django.db import models

from store.layout.models import Bin, Store

from .health import STATUSES
from .ingest import REASONS


class ShelfEvent(models.Model):
    """A weight change on one or more adjacent bins of a shelf, explained as product × quantity hypotheses.

    ``delta_g`` is the settled weight after minus the settled weight before, grams (negative: a pick).
    ``hypotheses`` is the ranked explanation, best first: ``[{"barcode", "quantity", "likelihood"}]`` where
    ``quantity`` is signed units taken from the shelf (positive: picked; negative: put back).
    ``kind``: ``shopper`` (a pick or put-back by a shopper: fusion gives it to a visit), ``restock`` (a weight
    increase while the bin was in restock mode: a stock-ledger restock, never a shopper's return),
    ``disturbance`` (more bins than any real pick: never explained as one product; fusion cuts it into two
    shoppers' takes or sends it to review).
    ``misplaced``: a put-back of a product that does not face these bins (a restock task was raised).
    ``weak``: a light loss that passed only the weak gate (``sensors.weight.ShelfEvent.weak``).
    ``parts``: each change the event merged (a bin touched twice has two), by bin then time: what fusion cuts
    two takes side by side or one after the other with (``sensors.weight.BinChange``).
    """

    class Kind(models.TextChoices):
        SHOPPER = "shopper"
        RESTOCK = "restock"
        DISTURBANCE = "disturbance"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shelf_events")
    session = models.CharField(max_length=100, help_text="live, or the recording replayed")
    bin = models.ForeignKey(Bin, on_delete=models.PROTECT, related_name="shelf_events", help_text="main bin")
    bin_codes = models.JSONField(help_text="all bins in the event")
    t_start = models.DateTimeField()
    t_end = models.DateTimeField()
    delta_g = models.FloatField()
    noise_sd_g = models.FloatField(default=0.0)
    hypotheses = models.JSONField(default=list)
    parts = models.JSONField(default=list, blank=True,
                             help_text="per change of a merged event: [{bin, t_start, t_end (s since epoch UTC), "
                                       "delta_g, noise_sd_g}]; empty for an event of one change")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.SHOPPER)
    misplaced = models.BooleanField(default=False)
    weak = models.BooleanField(default=False, help_text="a loss that passed only the weak gate, kept because it "
                                                        "fits a facing unit; a take only if a hand reached in")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["t_start", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "bin", "t_start"], name="shelf_event_unique")
        ]

    def __str__(self) -> str:
        return f"{self.bin.code} {self.delta_g:+.0f} g at {self.t_start:%H:%M:%S}"

    @property
    def for_fusion(self) -> bool:
        """True when fusion should look at this event: a shopper's (``kind == shopper``), or a ``disturbance``
        — more plates than one item spans moved together, with a net weight change (a lean nets out and is no
        event): two shoppers side by side, which fusion cuts apart by plate, or else sends to people. A restock
        is nobody's cart."""
        return self.kind in (self.Kind.SHOPPER, self.Kind.DISTURBANCE)


class ShelfController(models.Model):
    """A shelf controller: one clock, one sample grid, the load cells of ``bin_codes`` in column order.

    It authenticates with an API key, of which only the SHA-256 is stored (``api_key_hash``). ``clock_offset_s``
    is added to its sample times to put them on the store's UTC clock. ``rate_hz`` is its sample rate; payloads
    with another rate are refused."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shelf_controllers")
    name = models.SlugField(max_length=64, help_text="also the MQTT topic level: walkout/<store>/shelf/<name>/weights")
    api_key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 hex of the API key")
    bin_codes = models.JSONField(help_text="bin codes in the column order of the controller's samples")
    rate_hz = models.FloatField(default=60.0)
    clock_offset_s = models.FloatField(default=0.0, help_text="added to the controller's times, seconds")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    messages = models.BigIntegerField(default=0, help_text="messages accepted")
    samples = models.BigIntegerField(default=0, help_text="sample rows fed to the detector")
    emulated = models.BooleanField(default=False, help_text=(
        "registered by manage.py emulate_store for its own playback, never a real device: the emulator uses and "
        "re-keys only devices so marked, never one a manager registered"))

    class Meta:
        ordering = ["store", "name"]
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="shelf_controller_unique_name")]

    def __str__(self) -> str:
        return f"{self.store.code}:{self.name}"


class ControllerProblem(models.Model):
    """Counter of one kind of bad input from one controller (``reason`` from ``sensors.ingest.REASONS``), with the
    last message and when it happened; ``samples_lost`` sums the sample rows lost for that reason."""

    controller = models.ForeignKey(ShelfController, on_delete=models.CASCADE, related_name="problems")
    reason = models.CharField(max_length=20, choices=[(r, r) for r in REASONS])
    count = models.BigIntegerField(default=0)
    samples_lost = models.BigIntegerField(default=0)
    last_message = models.CharField(max_length=300, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["controller", "reason"]
        constraints = [models.UniqueConstraint(fields=["controller", "reason"], name="controller_problem_unique")]

    def __str__(self) -> str:
        return f"{self.controller}: {self.reason} × {self.count}"


class SensorHealth(models.Model):
    """The current health of one bin's load cell (``sensors.health``): ``status`` with its ``evidence`` (a line a
    manager can act on), ``noise_g`` the measured sample noise, ``since`` when the status began."""

    bin = models.OneToOneField(Bin, on_delete=models.CASCADE, related_name="health")
    controller = models.ForeignKey(ShelfController, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="health")
    status = models.CharField(max_length=12, choices=[(s, s) for s in STATUSES], default="unknown")
    evidence = models.CharField(max_length=200, blank=True)
    noise_g = models.FloatField(null=True, blank=True)
    since = models.DateTimeField()
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["bin__code"]
        verbose_name_plural = "sensor health"

    def __str__(self) -> str:
        return f"{self.bin.code}: {self.status}"
