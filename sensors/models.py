"""Sensors tables: shelf events (one writer, ``sensors``), the shelf controllers that send samples, their problem
counters, load-cell health, and RFID readers, antennas, item tags, tag events and reader problem counters. Raw samples never reach the database (``sensors/storage.py`` keeps them as files).
"""
from __future__ import annotations

from django.db import models

from store.layout.models import Bin, Store

from .health import STATUSES
from .ingest import REASONS
from .rfid import REASONS as RFID_REASONS


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


# --------------------------------------------------------------------------------------------------------- RFID
class RfidReader(models.Model):
    """An RFID reader of a store: registered like a shelf controller (API key, only its SHA-256 stored), with its
    antennas (:class:`RfidAntenna`). It publishes reads on ``walkout/<store>/rfid/<name>/reads`` or POSTs them to
    ``/sensors/api/reads/`` (payload: :mod:`sensors.rfid`). ``clock_offset_s`` is added to its read times."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="rfid_readers")
    name = models.SlugField(max_length=64, help_text="also the MQTT topic level: walkout/<store>/rfid/<name>/reads")
    api_key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 hex of the API key")
    clock_offset_s = models.FloatField(default=0.0, help_text="added to the reader's times, seconds")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    messages = models.BigIntegerField(default=0, help_text="messages accepted")
    reads = models.BigIntegerField(default=0, help_text="tag reads accepted")

    class Meta:
        ordering = ["store", "name"]
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="rfid_reader_unique_name")]

    def __str__(self) -> str:
        return f"{self.store.code}:{self.name}"


class RfidAntenna(models.Model):
    """One antenna port of a reader: a ``shelf`` antenna reads the tags of one bin (``bin``); an ``exit`` antenna
    reads what passes an exit lane (``lane``)."""

    class Kind(models.TextChoices):
        SHELF = "shelf", "shelf / bin"
        EXIT = "exit", "exit lane"

    reader = models.ForeignKey(RfidReader, on_delete=models.CASCADE, related_name="antennas")
    port = models.PositiveSmallIntegerField(help_text="the reader's antenna port number")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    bin = models.ForeignKey(Bin, on_delete=models.PROTECT, null=True, blank=True, related_name="rfid_antennas",
                            help_text="shelf antennas: the bin whose tags it reads")
    lane = models.CharField(max_length=64, blank=True, help_text="exit antennas: the lane's name")

    class Meta:
        ordering = ["reader", "port"]
        constraints = [models.UniqueConstraint(fields=["reader", "port"], name="rfid_antenna_unique_port")]

    def __str__(self) -> str:
        return f"{self.reader} #{self.port} ({self.bin.code if self.bin_id else self.lane})"

    @property
    def where(self) -> str:
        """The bin code (shelf) or lane name (exit)."""
        return self.bin.code if self.kind == self.Kind.SHELF and self.bin_id else self.lane


class RfidTag(models.Model):
    """An item tag seen in a store: its SGTIN (``gtin`` GTIN-14 and ``serial``), the catalogue product with that GTIN
    (None: not in the catalogue), where and when it was last read, and — once a shopper left with it — the visit
    that paid for it (``sold_visit``; ``charged`` True when the tag put the item on the receipt, False when it
    confirmed a unit already charged by weight). A sold serial is never charged again."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="rfid_tags")
    gtin = models.CharField(max_length=14)
    serial = models.CharField(max_length=20)
    epc = models.CharField(max_length=24, help_text="the 96-bit EPC last read, hex")
    product = models.ForeignKey("inventory.Product", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="rfid_tags")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_where = models.CharField(max_length=64, blank=True, help_text="bin code or exit lane of the last read")
    sold_visit = models.ForeignKey("gates.Visit", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="rfid_tags")
    sold_at = models.DateTimeField(null=True, blank=True)
    charged = models.BooleanField(default=False)

    class Meta:
        ordering = ["store", "gtin", "serial"]
        constraints = [models.UniqueConstraint(fields=["store", "gtin", "serial"], name="rfid_tag_unique_serial")]

    def __str__(self) -> str:
        return f"{self.gtin}.{self.serial}"


class TagEvent(models.Model):
    """A tag event (``sensors.rfid.TagEvent``): ``take`` (stopped being read on its shelf), ``return`` (read on a
    shelf again), ``exit`` (first read of a pass at an exit lane). Written by ``sensors`` at ingestion."""

    class Kind(models.TextChoices):
        TAKE = "take"
        RETURN = "return"
        EXIT = "exit"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="tag_events")
    tag = models.ForeignKey(RfidTag, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    t = models.DateTimeField()
    where = models.CharField(max_length=64, help_text="bin code (shelf) or lane name (exit)")
    rssi_dbm = models.FloatField()
    on_shelf = models.BooleanField(default=False, help_text="exit reads: the tag was being read on a shelf then "
                                                            "(a stray read, not leaving)")
    reader = models.ForeignKey(RfidReader, on_delete=models.SET_NULL, null=True, related_name="tag_events")

    class Meta:
        ordering = ["t", "id"]
        constraints = [models.UniqueConstraint(fields=["tag", "kind", "t"], name="tag_event_unique")]

    def __str__(self) -> str:
        return f"{self.tag} {self.kind} at {self.where}"


class ReaderProblem(models.Model):
    """Counter of one kind of bad input from one reader (``reason`` from ``sensors.rfid.REASONS``): how many
    messages or reads, ``reads_lost`` the reads rejected for it, the last message and when."""

    reader = models.ForeignKey(RfidReader, on_delete=models.CASCADE, related_name="problems")
    reason = models.CharField(max_length=20, choices=[(r, r) for r in RFID_REASONS])
    count = models.BigIntegerField(default=0)
    reads_lost = models.BigIntegerField(default=0)
    last_message = models.CharField(max_length=300, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["reader", "reason"]
        constraints = [models.UniqueConstraint(fields=["reader", "reason"], name="reader_problem_unique")]

    def __str__(self) -> str:
        return f"{self.reader}: {self.reason} × {self.count}"
