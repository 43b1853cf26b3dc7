"""Vision: the Django app configuration."""
from django.apps import AppConfig


class VisionConfig(AppConfig):
    """The vision app."""

    name = "vision"
    default_auto_field = "django.db.models.BigAutoField"
