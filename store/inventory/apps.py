"""Inventory: the Django app configuration."""
from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """The inventory app."""

    name = "store.inventory"
    label = "inventory"
    default_auto_field = "django.db.models.BigAutoField"
