"""The Celery worker processes' database connections (``store.celery``): kept between the tasks a broker delivers
(checked first, as Django checks before a request), never touched under an eager task, whose caller's transaction
owns the connection (the embedded profile runs checkouts inside the store loop's step)."""
from __future__ import annotations

import pytest
from django.db import connections, transaction

from store import celery as walkout_celery


connection = connections["default"]


class _Task:
    def __init__(self, eager: bool) -> None:
        self.request = type("Request", (), {"is_eager": eager})()


@pytest.mark.django_db(transaction=True)
def test_an_eager_task_leaves_its_callers_transaction_and_connection_alone():
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        walkout_celery._task_db_connections(task=_Task(eager=True))
        assert connection.connection is raw and connection.in_atomic_block


@pytest.mark.django_db(transaction=True)
def test_a_delivered_task_drops_an_unusable_connection_and_keeps_a_good_one(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", walkout_celery.WORKER_DB_CONN_MAX_AGE_S)
    connection.close()
    connection.ensure_connection()
    raw = connection.connection
    walkout_celery._task_db_connections(task=_Task(eager=False))
    assert connection.connection is raw  # young and healthy: kept for the next task
    connection.errors_occurred = True  # a query failed (the database restarted, say) and the link is gone
    monkeypatch.setattr(type(connection), "is_usable", lambda self: False)
    walkout_celery._task_db_connections(task=_Task(eager=False))
    assert connection.connection is None  # the next task connects afresh
    monkeypatch.undo()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_worker_keeps_its_connections_for_a_minute_and_checks_them_first(monkeypatch):
    from django.conf import settings

    db = settings.DATABASES["default"]
    monkeypatch.setitem(db, "CONN_MAX_AGE", 0)  # restored after the test, as every other setting
    monkeypatch.setitem(db, "CONN_HEALTH_CHECKS", False)
    walkout_celery._worker_db_connections()
    assert db["CONN_MAX_AGE"] == walkout_celery.WORKER_DB_CONN_MAX_AGE_S == 60 and db["CONN_HEALTH_CHECKS"] is True
