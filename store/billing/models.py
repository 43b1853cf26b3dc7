"""Billing: receipts, the payment-attempt ledger, and received webhook events. Money in integer minor units."""
from __future__ import annotations

from django.db import models

from store.gates.models import Visit
from store.inventory.models import Product


class Receipt(models.Model):
    """The bill of one visit, derived from its cart events at exit. Never edited once captured."""

    visit = models.OneToOneField(Visit, on_delete=models.PROTECT, related_name="receipt")
    currency = models.CharField(max_length=3)
    total_minor = models.PositiveIntegerField()
    issued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"receipt {self.pk} for visit {self.visit_id}"


class ReceiptLine(models.Model):
    """One product on a receipt; prices copied from the catalogue at billing time."""

    receipt = models.ForeignKey(Receipt, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    barcode = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price_minor = models.PositiveIntegerField()
    line_total_minor = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]


class PaymentAttempt(models.Model):
    """Append-only ledger of every call to the payment provider, with its idempotency key and result."""

    class Kind(models.TextChoices):
        AUTHORISE = "authorise"
        CAPTURE = "capture"
        CANCEL = "cancel"
        CHARGE = "charge"
        REFUND = "refund"

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REQUIRES_ACTION = "requires_action"

    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="payment_attempts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    provider = models.CharField(max_length=16)
    amount_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    idempotency_key = models.CharField(max_length=128, unique=True)
    provider_ref = models.CharField(max_length=128, blank=True, help_text="e.g. PaymentIntent or Refund id")
    status = models.CharField(max_length=20, choices=Status.choices)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class WebhookEvent(models.Model):
    """A payment provider's webhook event, stored once (``event_id`` unique) in the transaction of its effect."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=128, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
