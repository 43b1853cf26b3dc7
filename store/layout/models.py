"""Store layout: Store, Zone, Gondola, Shelf, Bin. All geometry is in metres in store coordinates.

Store coordinates: a right-handed frame fixed to the store floor, x and y on the floor, z up, origin where the
store's own survey puts it (for an imported AutoCheckout store, its world frame). A bin (weight plate) is a box
on a shelf: centre ``(x, y, z)`` of its top face, ``width_m`` along the shelf, ``depth_m`` into the shelf, and
``yaw_rad`` the rotation of the shelf's long axis about z from store +x.
"""
from __future__ import annotations

from django.db import models


class Store(models.Model):
    """One physical store."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="usd", help_text="ISO 4217, lower case (Stripe's form)")
    capacity = models.PositiveIntegerField(default=50, help_text="most shoppers inside at once")
    timezone = models.CharField(max_length=64, blank=True, default="",
                                help_text="IANA time zone of the store (e.g. America/Los_Angeles): receipts, pages "
                                          "and e-mails show its local time; empty: the site's TIME_ZONE")
    address = models.CharField(max_length=300, blank=True, default="", help_text="street address, on receipts")
    listed = models.BooleanField(default=True, help_text=(
        "offered to shoppers on the entry-pass page; off for the throwaway stores that emulate_store, replays and "
        "the benchmarks create (a new store of theirs is created unlisted; make demo lists its own), or for a "
        "store not open to the public"))

    def __str__(self) -> str:
        return self.name


class Zone(models.Model):
    """A floor area: the entry zone (gate), the exit zone, or a named floor area. Polygon in metres.

    An entry zone is where the cameras first see a shopper the gate has just let in: the store loop binds a gate
    scan only to a track first seen inside it (``carts.loop.StoreLoop._bind``). An entry zone named like a gate
    (``store.gates.models.Gate.name``) is that gate's own; a gate without one uses every entry zone of the store.
    A store without entry zones binds a scan to the track first seen nearest it in time, wherever."""

    class Kind(models.TextChoices):
        ENTRY = "entry"
        EXIT = "exit"
        FLOOR = "floor"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="zones")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=64)
    polygon = models.JSONField(help_text="[[x, y], ...] metres, store coordinates, at least 3 points")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="zone_unique_name")]

    def __str__(self) -> str:
        return f"{self.store.code}:{self.name} ({self.kind})"


class Gondola(models.Model):
    """A shelving unit. Origin and yaw place it in the store; sizes in metres."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="gondolas")
    number = models.PositiveIntegerField()
    x = models.FloatField(help_text="origin x, metres")
    y = models.FloatField(help_text="origin y, metres")
    yaw_rad = models.FloatField(default=0.0)
    width_m = models.FloatField()
    depth_m = models.FloatField()
    height_m = models.FloatField()

    class Meta:
        ordering = ["store", "number"]
        constraints = [models.UniqueConstraint(fields=["store", "number"], name="gondola_unique_number")]

    def __str__(self) -> str:
        return f"gondola {self.number}"


class Shelf(models.Model):
    """One shelf of a gondola; ``z`` is the height of its surface above the floor, metres."""

    gondola = models.ForeignKey(Gondola, on_delete=models.CASCADE, related_name="shelves")
    number = models.PositiveIntegerField()
    z = models.FloatField()

    class Meta:
        ordering = ["gondola", "number"]
        verbose_name_plural = "shelves"
        constraints = [models.UniqueConstraint(fields=["gondola", "number"], name="shelf_unique_number")]

    def __str__(self) -> str:
        return f"{self.gondola.number}-{self.number}"


class Bin(models.Model):
    """A bin (weight plate) on a shelf, standing on one load cell.

    ``code`` is ``"<gondola>-<shelf>-<plate>"`` and unique in the store; it is the key used in recordings.
    """

    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE, related_name="bins")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="bins")
    number = models.PositiveIntegerField()
    code = models.CharField(max_length=32)
    x = models.FloatField(help_text="centre of the top face, metres")
    y = models.FloatField(help_text="centre of the top face, metres")
    z = models.FloatField(help_text="height of the top face, metres")
    width_m = models.FloatField(help_text="along the shelf")
    depth_m = models.FloatField(help_text="into the shelf")
    yaw_rad = models.FloatField(default=0.0)
    capacity_g = models.FloatField(default=20000.0, help_text="load cell range, grams")
    restock_mode = models.BooleanField(
        default=False, help_text="manager toggle: weight increases on this bin are restocks (stock ledger), not "
                                 "shoppers' returns (see store.inventory.services.restock_mode_bins)")

    class Meta:
        ordering = ["store", "code"]
        constraints = [
            models.UniqueConstraint(fields=["store", "code"], name="bin_unique_code"),
            models.UniqueConstraint(fields=["shelf", "number"], name="bin_unique_number"),
        ]

    def __str__(self) -> str:
        return self.code
