"""Layout admin: stores with their zones, gondolas with their shelves, shelves and bins (geometry in metres)."""
from __future__ import annotations

from django.contrib import admin

from .models import Bin, Gondola, Shelf, Store, Zone


class ZoneInline(admin.TabularInline):


    """The zones of a store (entry, exit, aisle) in store metres."""
    model = Zone
    fields = ("kind", "name", "polygon")
    extra = 0


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    """Stores: code, name, address, time zone, currency, and whether shoppers are offered it (``listed``: off for
    the throwaway stores emulate_store, replays and benchmarks create)."""
    list_display = ("code", "name", "listed", "currency", "capacity")
    list_filter = ("listed", "currency")
    search_fields = ("code", "name")
    inlines = (ZoneInline,)


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    """Floor zones (entry, exit, …) as polygons in store metres."""
    list_display = ("name", "kind", "store")
    list_filter = ("store", "kind")
    search_fields = ("name", "store__code", "store__name")


class ShelfInline(admin.TabularInline):


    """The shelves of a gondola, bottom to top."""
    model = Shelf
    fields = ("number", "z")
    extra = 0


@admin.register(Gondola)
class GondolaAdmin(admin.ModelAdmin):
    """Gondolas: free-standing shelf units, positioned in store metres."""
    list_display = ("number", "store", "x", "y", "yaw_rad", "width_m", "depth_m", "height_m")
    list_filter = ("store",)
    search_fields = ("=number", "store__code")
    list_select_related = ("store",)
    inlines = (ShelfInline,)


@admin.register(Shelf)
class ShelfAdmin(admin.ModelAdmin):
    """Shelves of a gondola, with their bins (plates on load cells)."""
    list_display = ("__str__", "gondola", "number", "z")
    list_filter = ("gondola__store", "gondola")
    list_select_related = ("gondola",)
    search_fields = ("=gondola__number", "=number", "bins__code")


@admin.register(Bin)
class BinAdmin(admin.ModelAdmin):
    """Bins/plates: one load cell each, with its position and the shelf controller channel that reads it."""
    list_display = ("code", "store", "shelf", "number", "x", "y", "z", "width_m", "depth_m", "capacity_g",
                    "restock_mode")
    list_filter = ("store", "restock_mode", "shelf__gondola")
    search_fields = ("code", "facings__product__barcode", "facings__product__name")
    list_select_related = ("store", "shelf__gondola")
    list_editable = ("restock_mode",)  # the manager's per-bin toggle: weight gains are restocks, not returns
    autocomplete_fields = ("shelf",)

