"""Admin for shopper tracks: read-only (one writer, ``vision``)."""
from __future__ import annotations

from django.contrib import admin

from .models import ShopperTrack


@admin.register(ShopperTrack)
class ShopperTrackAdmin(admin.ModelAdmin):
    list_display = ("track_id", "store", "session", "first_seen", "last_seen", "observations")
    list_filter = ("store", "session")
    search_fields = ("track_id",)
    list_select_related = ("store",)
    date_hierarchy = "first_seen"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
