"""Inventory admin: products (with the bins they face), facings (the planogram) and the read-only stock ledger."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import Facing, Product, StockMovement


class FacingInline(admin.TabularInline):
    """The bins a product faces; edit the planogram from the product page."""

    model = Facing
    fields = ("bin",)
    autocomplete_fields = ("bin",)
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "barcode", "store", "price", "unit_weight_g", "unit_weight_sd_g", "low_stock_threshold")
    list_filter = ("store",)
    search_fields = ("barcode", "name")
    list_select_related = ("store",)
    inlines = (FacingInline,)


@admin.register(Facing)
class FacingAdmin(admin.ModelAdmin):
    list_display = ("product", "bin", "store")
    list_filter = ("bin__store", "bin__shelf__gondola")
    search_fields = ("product__barcode", "product__name", "bin__code")
    autocomplete_fields = ("bin", "product")
    list_select_related = ("product", "bin__store")

    @admin.display(ordering="bin__store__name")
    def store(self, obj: Facing):
        return obj.bin.store


@admin.register(StockMovement)
class StockMovementAdmin(admin.ModelAdmin):
    """The stock ledger is append-only: rows are written by the services, and only viewed here."""

    list_display = ("created_at", "product", "bin", "kind", "quantity", "reference")
    list_filter = ("kind", "product__store")
    search_fields = ("product__barcode", "product__name", "reference")
    date_hierarchy = "created_at"
    list_select_related = ("product", "bin")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
