"""Celery tasks of the sensors app. A task calls one service and is safe to run twice."""
from __future__ import annotations

import logging

from celery import shared_task

from .live import raw_store

log = logging.getLogger(__name__)


@shared_task
def raw_samples_prune() -> int:
    """Delete raw-sample files older than ``WALKOUT["RAW_RETENTION_H"]`` hours (``sensors.storage``). Idempotent;
    schedule it hourly with Celery beat. Returns the number of files deleted."""
    return raw_store().prune()
