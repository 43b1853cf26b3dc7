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

        from . import runtime

        signals.visit_admitted.connect(runtime.on_visit_admitted, dispatch_uid="carts.runtime.admitted")
        signals.visit_exit_scanned.connect(runtime.on_visit_exit_scanned, dispatch_uid="carts.runtime.exit_scanned")
        live.set_default_sink_factory(runtime.default_shelf_sink)
        from sensors import rfid_live

        rfid_live.set_default_tag_sink_factory(runtime.default_tag_sink)
        from vision import hooks

        from . import gate_hooks

        gate_hooks.register()

        from .clip_requests import review_clip_requests

        hooks.set_store_hooks(publish_observations=runtime.publish_observations,
                              store_loop_enabled=runtime.store_loop_enabled, review_clip_requests=review_clip_requests,
                              publish_frames=runtime.publish_frames)
