"""Store layout: the Django app configuration."""
from django.apps import AppConfig


class LayoutConfig(AppConfig):
    """The store layout app."""

    name = "store.layout"
    label = "layout"
    default_auto_field = "django.db.models.BigAutoField"
