"""Shopper accounts: the Django user plus the payment method on file."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class ShopperProfile(models.Model):
    """A shopper's payment method on file, as the payment provider knows it (never card numbers)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shopper")
    provider = models.CharField(max_length=16, blank=True, help_text="dummy or stripe")
    customer_ref = models.CharField(max_length=100, blank=True, help_text="e.g. Stripe Customer id")
    payment_method_ref = models.CharField(max_length=100, blank=True, help_text="e.g. Stripe PaymentMethod id")
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def has_payment_method(self) -> bool:
        return bool(self.payment_method_ref)

    def __str__(self) -> str:
        return f"shopper {self.user}"
