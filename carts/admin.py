"""Admin for the cart ledger and the review queue. The ledger is append-only, so CartEvent and Cart are read-only
here; review items are decided through ``carts.services.review.review_resolve`` (the dashboard, or the action below)."""
from __future__ import annotations

from django.contrib import admin, messages

from store.admin_mixins import ReadOnlyMixin

from .models import Cart, CartEvent, Dispute, ReceiptEmail, ReviewItem
from store.billing.senses import senses_words
from .services.review import review_resolve
from .services.review_queue import ReviewError


@admin.register(CartEvent)
class CartEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Cart events (takes and put-backs as decided): read-only; written by the store loop and reviews."""
    list_display = ("id", "created_at", "visit", "product", "quantity", "source", "confidence", "seen_by",
                    "shelf_event")
    list_filter = ("source", "visit__store", "visit__state", "created_at")
    search_fields = ("=visit__id", "product__barcode", "product__name", "shelf_event__bin__code")
    list_select_related = ("visit", "product", "shelf_event__bin")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    @admin.display(description="seen by")
    def seen_by(self, obj: CartEvent) -> str:
        return senses_words(obj.senses)


@admin.register(Cart)
class CartAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Carts per visit: read-only; the ledger of cart events is the source of truth."""
    list_display = ("visit", "seq", "updated_at")
    list_filter = ("visit__store", "visit__state")
    search_fields = ("=visit__id", "visit__shopper__username")
    list_select_related = ("visit",)


@admin.register(ReceiptEmail)
class ReceiptEmailAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Which receipts were mailed, and why one was not (written by ``carts.emails.receipt_email_send`` only)."""

    list_display = ("receipt", "claimed_at", "sent_at", "error")
    list_filter = (("sent_at", admin.EmptyFieldListFilter),)
    search_fields = ("=receipt__id", "error")
    list_select_related = ("receipt",)


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    """The review queue: events fusion could not decide with confidence, for a manager to decide."""
    list_display = ("id", "created_at", "status", "reason", "shelf_event", "resolved_by", "resolved_at")
    list_filter = ("status", "shelf_event__store", "created_at")
    search_fields = ("reason", "shelf_event__bin__code", "resolved_by")
    list_select_related = ("shelf_event__bin",)
    readonly_fields = ("shelf_event", "status", "reason", "candidates", "created_at", "resolved_at", "resolved_by",
                       "resolution", "follows")
    exclude = ("visits_named",)  # the review queue's index of candidates and resolution, kept by ReviewItem.save
    actions = ("dismiss",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Dismiss: nobody took it (no cart event)", permissions=["change"])
    def dismiss(self, request, queryset) -> None:
        done = 0
        for item in queryset.filter(status=ReviewItem.Status.OPEN):
            try:
                review_resolve(item=item, visit_id=None, barcode=None, quantity=0, by=request.user.get_username())
                done += 1
            except ReviewError as exc:
                self.message_user(request, f"review {item.pk}: {exc}", messages.ERROR)
        skipped = queryset.exclude(status=ReviewItem.Status.OPEN).count()
        self.message_user(request, f"{done} review item(s) dismissed" + (
            f"; {skipped} skipped (only open items can be dismissed: a waiting put-back follows the decision on its "
            f"pick)" if skipped else ""), messages.SUCCESS)


@admin.register(Dispute)
class DisputeAdmin(admin.ModelAdmin):
    """Disputes are decided on ``/visits/disputes/`` (``carts.services.disputes.dispute_decide`` refunds through
    billing); the admin shows them read-only so no decision skips that service."""

    list_display = ("id", "receipt_line", "opened_by", "kind", "quantity", "status", "created_at", "decided_by")
    list_filter = ("status", "kind")
    search_fields = ("receipt_line__barcode", "receipt_line__name", "opened_by__username", "note")
    readonly_fields = [f.name for f in Dispute._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
