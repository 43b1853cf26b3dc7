"""Billing: the Django app configuration."""
from django.apps import AppConfig


class BillingConfig(AppConfig):
    """The billing app."""

    name = "store.billing"
    label = "billing"
    default_auto_field = "django.db.models.BigAutoField"
