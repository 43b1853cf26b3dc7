"""Carts: the Django app configuration."""
from django.apps import AppConfig


class CartsConfig(AppConfig):
    """The carts app."""

    name = "carts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # lazy: the modules wired here import models, which Django's app registry allows only once apps are ready
        from sensors import live
        from store.gates import signals

        from . import runtime_publish

        signals.visit_admitted.connect(runtime_publish.on_visit_admitted, dispatch_uid="carts.runtime_publish.admitted")
        signals.visit_exit_scanned.connect(runtime_publish.on_visit_exit_scanned,
                                           dispatch_uid="carts.runtime_publish.exit_scanned")
        live.set_default_sink_factory(runtime_publish.default_shelf_sink)
        from sensors import rfid_live

        rfid_live.set_default_tag_sink_factory(runtime_publish.default_tag_sink)
        from vision import hooks

        from . import gate_hooks

        gate_hooks.register()

        from .clip_requests import review_clip_requests

        hooks.set_store_hooks(publish_observations=runtime_publish.publish_observations,
                              store_loop_enabled=runtime_publish.store_loop_enabled,
                              review_clip_requests=review_clip_requests, publish_frames=runtime_publish.publish_frames)
