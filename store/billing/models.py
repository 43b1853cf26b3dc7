"""Billing: receipts, the payment-attempt ledger, and received webhook events. Money in integer minor units."""
from __future__ import annotations

from django.db import models

from store.gates.models import Visit
from store.inventory.models import Product


class Receipt(models.Model):
    """The bill of one visit, derived from its cart events at exit. Never edited once captured."""

    visit = models.OneToOneField(Visit, on_delete=models.PROTECT, related_name="receipt")
    currency = models.CharField(max_length=3)
    total_minor = models.PositiveIntegerField(help_text="what the shopper pays: the lines plus tax_minor")
    tax_minor = models.PositiveIntegerField(default=0, help_text="sum of the receipt's tax lines (ReceiptTax)")
    issued_at = models.DateTimeField()
    card_brand = models.CharField(max_length=20, blank=True, default="", help_text="the card charged, as issued")
    card_last4 = models.CharField(max_length=4, blank=True, default="")

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
    tax_category = models.CharField(max_length=60, blank=True, default="", help_text="as billed; empty: not taxed")
    tax_rate_percent = models.DecimalField(max_digits=6, decimal_places=3, default=0, help_text="as billed")
    senses = models.JSONField(
        null=True, blank=True, default=None,
        help_text="the senses that supported the line at billing (carts.senses: weight, hand, image, tag, staff); "
                  "empty: unknown (issued before senses were recorded)")

    class Meta:
        ordering = ["id"]


class ReceiptTax(models.Model):
    """One tax line of a receipt: the lines billed at ``rate_percent`` (``taxable_minor``, their total) and the tax
    on them (``tax_minor``), rounded once per rate (``store.billing.services.tax_lines`` states the rule)."""

    receipt = models.ForeignKey(Receipt, on_delete=models.CASCADE, related_name="taxes")
    label = models.CharField(max_length=200, help_text="the tax categories billed at this rate")
    rate_percent = models.DecimalField(max_digits=6, decimal_places=3)
    taxable_minor = models.PositiveIntegerField()
    tax_minor = models.PositiveIntegerField()

    class Meta:
        ordering = ["rate_percent", "id"]


class PaymentAttempt(models.Model):
    """Append-only ledger of every call to the payment provider, with its idempotency key and result.

    One row per definitive provider answer (success, decline, requires_action); a call whose outcome is unknown
    (network error, provider 5xx) writes no row, so that its retry reuses the same idempotency key. Webhook events
    that reveal a change made outside Walkout (a hold expired, a refund from the Stripe Dashboard) append a row
    keyed ``webhook:<event id>``. ``amount_minor`` is in minor currency units: the amount held (authorise),
    captured (capture), charged (charge), released (cancel) or refunded (refund).
    """

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
    intent_ref = models.CharField(
        max_length=128, blank=True, db_index=True, help_text="the PaymentIntent this attempt concerns (pi_…)"
    )
    status = models.CharField(max_length=20, choices=Status.choices)
    provider_status = models.CharField(max_length=40, blank=True, help_text="the provider's own status word")
    error_code = models.CharField(max_length=64, blank=True, help_text="e.g. card_declined, authentication_required")
    error = models.CharField(max_length=300, blank=True)
    receipt_line = models.ForeignKey(
        "ReceiptLine", on_delete=models.PROTECT, null=True, blank=True, related_name="refund_attempts",
        help_text="refunds only: the line refunded",
    )
    quantity = models.PositiveIntegerField(null=True, blank=True, help_text="refunds only: units refunded")
    reason = models.CharField(max_length=300, blank=True, help_text="refunds: why; webhook rows: what happened")
    webhook_event = models.ForeignKey(
        "WebhookEvent", on_delete=models.PROTECT, null=True, blank=True, related_name="payment_attempts",
        help_text="set when the row records what a provider's webhook event revealed",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_minor} {self.currency} {self.status} ({self.idempotency_key})"


class WebhookEvent(models.Model):
    """A payment provider's webhook event, stored once (``event_id`` unique) in the transaction of its effect."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=128, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    object_ref = models.CharField(max_length=128, blank=True, db_index=True, help_text="e.g. pi_… or ch_…")
    visit = models.ForeignKey(
        Visit, on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_events",
        help_text="the visit whose payment the event concerns, when known",
    )
    outcome = models.CharField(max_length=300, blank=True, help_text="what the event changed, or why nothing")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id}"


# --- The dummy payment provider's own records (store/billing/provider_dummy.py) -------------------------------
# The embedded profile's provider keeps its state here, as a payment provider would on its side: customers, saved
# cards (brand and last four digits only), PaymentIntents with an honest state machine, refunds, and the
# idempotency keys it has answered (replayed like Stripe's). References are ``dummy_<kind>_<pk>``.


class DummyCustomer(models.Model):
    """The dummy provider's customer (as Stripe's Customer, ``cus_…``): embedded profile only."""

    email = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def ref(self) -> str:
        return f"dummy_cus_{self.pk}"


class DummyPaymentMethod(models.Model):
    """The dummy provider's saved card: brand and last four digits only, never the number."""

    class Behaviour(models.TextChoices):
        OK = "ok", "payments succeed"
        DECLINE = "decline", "payments are declined"
        AUTHENTICATION_REQUIRED = "authentication_required", "off-session payments need authentication"

    customer = models.ForeignKey(DummyCustomer, on_delete=models.CASCADE, related_name="payment_methods")
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    behaviour = models.CharField(max_length=32, choices=Behaviour.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def ref(self) -> str:
        return f"dummy_pm_{self.pk}"


class DummyPaymentIntent(models.Model):
    """Statuses as Stripe's: requires_payment_method (declined), requires_capture, succeeded, canceled."""

    customer = models.ForeignKey(DummyCustomer, on_delete=models.PROTECT, related_name="payment_intents")
    payment_method = models.ForeignKey(DummyPaymentMethod, on_delete=models.PROTECT, related_name="payment_intents")
    amount_minor = models.PositiveIntegerField()
    amount_received_minor = models.PositiveIntegerField(default=0)
    amount_refunded_minor = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3)
    capture_method = models.CharField(max_length=16)
    status = models.CharField(max_length=32)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def ref(self) -> str:
        return f"dummy_pi_{self.pk}"


class DummyRefund(models.Model):
    """The dummy provider's refund of a captured PaymentIntent; ``amount_minor`` in minor units."""

    payment_intent = models.ForeignKey(DummyPaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.PositiveIntegerField()
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def ref(self) -> str:
        return f"dummy_re_{self.pk}"


class DummyIdempotencyKey(models.Model):
    """A request the dummy provider answered: the same key with the same request replays the same answer."""

    key = models.CharField(max_length=160, unique=True)
    operation = models.CharField(max_length=32)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 hex of the canonical request")
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
