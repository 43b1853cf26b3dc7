"""The Celery application. In the embedded profile tasks run in-process (``task_always_eager``)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")

app = Celery("walkout")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
