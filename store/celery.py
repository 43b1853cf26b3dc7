"""The Celery application. In the embedded profile tasks run in-process (``task_always_eager``)."""
import os

from celery import Celery, signals

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


# ---------------------------------------------------------------------------------------- worker processes
#: Seconds a Celery worker process keeps its database connection from one task to the next (Django's
#: ``CONN_MAX_AGE`` in the worker processes only: the web processes keep the settings' 0). Without it Celery's Django
#: fixup closes the connection after every task, and at a 200-shopper exodus a checkout spent 9 % of its time
#: connecting (PostgreSQL starts a backend per connection; docs/store-worker-load.md, eighteenth pass). Before each
#: task the connection is dropped when it is older than this or unusable (``CONN_HEALTH_CHECKS``: a database
#: restarted since is noticed by a ``SELECT 1``, not by the task's first query failing).
WORKER_DB_CONN_MAX_AGE_S = 60


@signals.worker_init.connect
def _worker_db_connections(**_) -> None:
    """Keep database connections between tasks in this worker and its pool's processes (forked after this)."""
    from django.conf import settings

    for db in settings.DATABASES.values():
        db["CONN_MAX_AGE"] = WORKER_DB_CONN_MAX_AGE_S
        db["CONN_HEALTH_CHECKS"] = True


@signals.task_prerun.connect
def _task_db_connections(task=None, **_) -> None:
    """Before a task a broker delivered: close this process's database connections that are too old or unusable, as
    Django does before each request (``close_old_connections``). Never for an eager task: it runs inside its caller's
    transaction (the embedded profile), whose connection must stay."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_process_init.connect
def _pool_process_pushes(**_) -> None:
    """A prefork pool process sends its cart and dashboard pushes from a thread of its own (``store.pushes``): a
    checkout's receipt push waited on the channel layer's round trips for a fifth of the task's time, holding the
    process from the next checkout at an exodus (docs/store-worker-load.md, eighteenth pass)."""
    from store.pushes import pushes_in_background

    pushes_in_background(True)


@signals.worker_process_shutdown.connect
def _pool_process_pushes_drain(**_) -> None:
    """What the pool process handed to its sender is sent before it exits (up to ``store.pushes.PUSH_TIMEOUT_S``)."""
    from store.pushes import pushes_in_background

    pushes_in_background(False)
