from django.apps import AppConfig


class VisionConfig(AppConfig):
    name = "vision"
    default_auto_field = "django.db.models.BigAutoField"
