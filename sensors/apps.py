"""Shelf sensors: the Django app configuration."""
from django.apps import AppConfig


class SensorsConfig(AppConfig):
    """The shelf sensors app."""

    name = "sensors"
    default_auto_field = "django.db.models.BigAutoField"
