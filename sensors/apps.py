from django.apps import AppConfig


class SensorsConfig(AppConfig):
    name = "sensors"
    default_auto_field = "django.db.models.BigAutoField"
