"""Celery tasks of the carts app. A task loads by id/path, calls one service, and is safe to run twice."""
from __future__ import annotations

import logging

from celery import shared_task

from store.gates.models import Visit

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def replay_recording_task(path: str, session: str, speed: float | None = None) -> dict:
    """Replay the recording at ``path`` in ``session`` (``carts.replay.replay_recording``), paced at ``speed``,
    with its clock shifted to now (a live demo).

    Idempotent: a session that already has visits is not replayed again (a redelivered message is a no-op).
    Returns ``{"session", "visits", "receipts"}``. Raises ``store.recording.RecordingError`` for a bad recording.
    """
    from store.recording import read_recording

    from .replay import demo_shopper_ensure, replay_recording

    if Visit.objects.filter(session=session).exists():
        log.info("session %s was already replayed; skipped", session)
        return {"session": session, "visits": 0, "receipts": 0, "skipped": True}
    result = replay_recording(read_recording(path), session=session, speed=speed,
                              shopper_factory=demo_shopper_ensure, as_of_now=True)
    return {"session": result.session, "visits": len(result.visits), "receipts": result.stats.receipts}
