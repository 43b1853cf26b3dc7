"""Vision: the Django app configuration."""
from django.apps import AppConfig


class VisionConfig(AppConfig):
    """The vision app."""

    name = "vision"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # lazy: the tasks import models, which Django's app registry allows only once apps are ready
        from store.inventory import signals

        from .tasks import on_product_photos_changed

        signals.product_photos_changed.connect(on_product_photos_changed, dispatch_uid="vision.gallery_rebuild")
