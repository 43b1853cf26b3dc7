"""Billing admin: receipts with their lines; the payment ledger and webhook events, read-only (append-only)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from store.admin_mixins import ReadOnlyMixin
from store.billing.models import PaymentAttempt, Receipt, ReceiptLine, WebhookEvent
from .senses import senses_words


class ReceiptLineInline(ReadOnlyMixin, admin.TabularInline):


    """A receipt's lines (product, quantity, price in minor units, senses): read-only."""
    model = ReceiptLine
    fields = ("product", "barcode", "name", "quantity", "unit_price_minor", "line_total_minor", "seen_by")
    readonly_fields = fields

    @admin.display(description="seen by")
    def seen_by(self, obj: ReceiptLine) -> str:
        return senses_words(obj.senses)
    extra = 0
    can_delete = False


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """A receipt is never edited once issued: corrections are refunds (``receipt_refund_line``)."""

    list_display = ("id", "visit", "total_minor", "currency", "issued_at")
    list_filter = ("currency", "issued_at", "visit__store")
    search_fields = ("=id", "=visit__id", "visit__shopper__email", "lines__barcode", "lines__name")
    date_hierarchy = "issued_at"
    readonly_fields = ("visit", "currency", "total_minor", "issued_at")
    inlines = [ReceiptLineInline]
    list_select_related = ("visit",)


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Stripe PaymentIntent attempts (authorisation hold, capture, refund): read-only."""
    list_display = ("id", "created_at", "visit", "kind", "status", "amount_minor", "currency", "provider",
                    "provider_ref", "error_code")
    list_filter = ("kind", "status", "provider", "currency", "created_at")
    search_fields = ("=visit__id", "idempotency_key", "provider_ref", "intent_ref", "error_code", "error")
    date_hierarchy = "created_at"
    list_select_related = ("visit",)

    def get_readonly_fields(self, request: HttpRequest, obj: PaymentAttempt | None = None) -> list[str]:
        return [f.name for f in PaymentAttempt._meta.fields]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Stripe webhook events received, verified and de-duplicated by event id: read-only."""
    list_display = ("event_id", "type", "provider", "visit", "outcome", "received_at")
    list_filter = ("provider", "type", "received_at")
    search_fields = ("event_id", "object_ref", "=visit__id", "outcome")
    date_hierarchy = "received_at"

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEvent | None = None) -> list[str]:
        return [f.name for f in WebhookEvent._meta.fields]
