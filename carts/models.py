"""Cart ledger (append-only CartEvent), the cached Cart head, and the review queue."""
from __future__ import annotations

from django.db import models

from sensors.models import ShelfEvent
from store.gates.models import Visit
from store.inventory.models import Product


class Cart(models.Model):
    """Cache beside the ledger: the sequence number of the latest snapshot pushed for a visit."""

    visit = models.OneToOneField(Visit, on_delete=models.CASCADE, related_name="cart")
    seq = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class CartEvent(models.Model):
    """+n or −n units of a product in a visit's cart. Never updated or deleted; corrections are new events."""

    class Source(models.TextChoices):
        FUSION = "fusion"
        REVIEW = "review"
        MANAGER = "manager"

    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="cart_events")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.IntegerField(help_text="signed units: + taken, − put back")
    shelf_event = models.ForeignKey(ShelfEvent, on_delete=models.PROTECT, null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.FUSION)
    confidence = models.FloatField()
    evidence = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class ReviewItem(models.Model):
    """A shelf event that fusion could not attribute with confidence: a person decides."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        DISMISSED = "dismissed"

    shelf_event = models.OneToOneField(ShelfEvent, on_delete=models.PROTECT, related_name="review")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    reason = models.CharField(max_length=200)
    candidates = models.JSONField(default=list, help_text="[{visit, track_id, distance_m, score}] best first")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolution = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["status", "-created_at"]
