"""Gates: the Django app configuration."""
from django.apps import AppConfig


class GatesConfig(AppConfig):
    """The gates app."""

    name = "store.gates"
    label = "gates"
    default_auto_field = "django.db.models.BigAutoField"
