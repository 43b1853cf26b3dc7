"""Admin for shelf events: read-only (one writer, ``sensors``)."""
from __future__ import annotations

from django.contrib import admin

from .models import ShelfEvent


@admin.register(ShelfEvent)
class ShelfEventAdmin(admin.ModelAdmin):
    list_display = ("id", "t_start", "t_end", "store", "session", "bin", "delta_g", "noise_sd_g")
    list_filter = ("store", "session")
    search_fields = ("bin__code",)
    list_select_related = ("store", "bin")
    date_hierarchy = "t_start"
    ordering = ("-t_start", "-id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
