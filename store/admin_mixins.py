"""Admin permission mixins shared by every app: rows that only the services write.

Mix in before ``admin.ModelAdmin`` (or an inline): ``class ReceiptAdmin(ReadOnlyMixin, admin.ModelAdmin)``."""
from __future__ import annotations

from django.http import HttpRequest


class WrittenByServicesMixin:
    """Rows that the services append and keep up to date (counters, problems, health): never added or changed by
    hand; a manager may delete one to clear it."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyMixin(WrittenByServicesMixin):
    """A ledger row (cart events, receipts, payment attempts, shelf events): viewable, never added, changed or
    deleted by hand; corrections are new rows written by a service (a refund, a review decision)."""

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
