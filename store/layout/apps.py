from django.apps import AppConfig


class LayoutConfig(AppConfig):
    name = "store.layout"
    label = "layout"
    default_auto_field = "django.db.models.BigAutoField"
