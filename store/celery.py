"""The Celery application. In the embedded profile tasks run in-process (``task_always_eager``)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")

app = Celery("walkout")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def task_send(task, *, args: tuple | list = (), kwargs: dict | None = None, **options):
    """Queue ``task`` with ``args``/``kwargs`` on the broker (``task.apply_async(**options)``: countdown, retry
    policy…), or, where tasks run eagerly in this process (``task_always_eager``: the embedded profile, which has no
    broker), run it here now with ``task.apply``. Celery's own eager ``apply_async`` still takes a connection from
    the broker pool only to pick a serializer; with no broker configured kombu then warns "No hostname was
    supplied" on every run. The arguments go through the task serializer either way, so what could not be queued
    fails here too. Returns the ``AsyncResult`` (an ``EagerResult`` when run here). Raises what ``apply_async``
    raises (the broker is down) or, eagerly with ``task_eager_propagates``, what the task raised."""
    from kombu import serialization

    kwargs = dict(kwargs or {})
    if not task.app.conf.task_always_eager:
        return task.apply_async(args=args, kwargs=kwargs, **options)
    content_type, encoding, data = serialization.dumps((list(args), kwargs), task.app.conf.task_serializer)
    args, kwargs = serialization.loads(data, content_type, encoding)
    return task.apply(args=args, kwargs=kwargs)
