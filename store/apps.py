"""The project itself as a Django app: loads the Celery application in every Django process."""
from django.apps import AppConfig


class WalkoutConfig(AppConfig):
    """The project as an app: nothing but the Celery application to load."""

    name = "store"
    label = "walkout"
    verbose_name = "Walkout"

    def ready(self) -> None:
        # ``@shared_task`` binds to the current Celery app when a task is sent: the project's app must exist in every
        # Django process (web, store worker, commands), with the CELERY_* settings (Celery's Django guide puts this
        # import in the project's __init__; here it waits for Django so that importing ``store`` stays inert).
        from . import celery  # noqa: F401
