"""Accounts admin: shopper profiles. The card fields are the provider's references, set only by the add-card flow."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import ShopperProfile


@admin.register(ShopperProfile)
class ShopperProfileAdmin(admin.ModelAdmin):
    """Shoppers' profiles: payment method on file and contact details."""
    list_display = ("user", "provider", "card_brand", "card_last4", "created_at")
    list_filter = ("provider", "card_brand")
    search_fields = ("user__email", "user__username", "customer_ref", "payment_method_ref")
    readonly_fields = ("user", "provider", "customer_ref", "payment_method_ref", "card_brand", "card_last4",
                       "created_at")
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
