"""Celery tasks of the carts app. A task loads by id/path, calls one service, and is safe to run twice: it records
its completion explicitly (``ReplayRun.finished_at``) and redoes an interrupted run idempotently."""
from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from store.accounts.demo import demo_shopper_ensure
from store.gates.models import Visit
from store.recording import read_recording
from vision.clips import clip_store

from .emails import receipt_email_task  # noqa: F401  (the receipt e-mail task: registered with the worker here)
from .models import ReplayRun
from .services.review import review_holds_release

log = logging.getLogger(__name__)


@shared_task(acks_late=True, time_limit=getattr(settings, "REPLAY_TASK_LIMIT_S", 240.0))
def replay_recording_task(path: str, session: str, speed: float | None = None,
                          bind_visits: list[int] | None = None) -> dict:
    """Replay the recording at ``path`` in ``session`` (``carts.offline.replay.replay_recording``), paced at ``speed``,
    with its clock shifted to now (a live demo). ``bind_visits``: the visit ids of the people inside whom the
    recording's first shoppers are (``carts.live.replay_cast``); the other shoppers play as demo accounts.

    Completion is recorded in :class:`~carts.models.ReplayRun`: a session whose run finished is skipped (a
    redelivered message is a no-op); a run that started but never finished (its worker died) is redone with the
    same clock shift, which finds what the first attempt wrote instead of writing it twice, and finishes the rest.
    Returns ``{"session", "visits", "receipts"}`` (``"skipped": True`` for a finished session). Raises
    ``store.recording.RecordingError`` for a bad recording, ``ValueError`` when the paced replay would outlast
    ``settings.REPLAY_TASK_LIMIT_S`` (the broker would deliver it again while it runs).
    """
    # lazy: the offline tooling loads only when a manager starts a replay (tests/test_runtime_no_offline.py)
    from .offline.replay import replay_recording, session_clock_offset

    run = ReplayRun.objects.filter(session=session).first()
    if run is not None and run.finished_at is not None:
        log.info("session %s: replay finished at %s; this delivery is skipped", session, run.finished_at)
        return {**run.result, "skipped": True}
    recording = read_recording(path)
    limit = float(getattr(settings, "REPLAY_TASK_LIMIT_S", 240.0))
    if speed and (recording.t_end - recording.t_start) / speed > 0.9 * limit:
        raise ValueError(f"a replay of {recording.t_end - recording.t_start:.0f} s at {speed:g}× would outlast the "
                         f"task's limit of {limit:.0f} s; replay it with manage.py replay instead")
    if run is None:
        # a session replayed before completion records existed: keep the shift its stored times used
        offset = (session_clock_offset(session=session, recording=recording)
                  if Visit.objects.filter(session=session).exists() else time.time() - recording.t_start)
        run, _ = ReplayRun.objects.get_or_create(session=session, defaults={
            "path": path, "speed": speed, "clock_offset_s": offset, "started_at": timezone.now()})
    ReplayRun.objects.filter(pk=run.pk).update(attempts=F("attempts") + 1)
    if run.attempts:
        log.warning("session %s: redoing a replay interrupted after attempt %d", session, run.attempts)
    result = replay_recording(recording, session=session, speed=speed, shopper_factory=demo_shopper_ensure,
                              clock_offset_s=run.clock_offset_s, bind_visits=bind_visits)
    out = {"session": result.session, "visits": len(result.visits), "receipts": result.stats.receipts}
    ReplayRun.objects.filter(pk=run.pk).update(finished_at=timezone.now(), result=out)
    return out


@shared_task(acks_late=True)
def review_holds_release_task() -> int:
    """Make final the review decisions whose undo window has passed and bill the visits they kept waiting
    (``carts.services.review.review_holds_release``). Idempotent; queued by each held decision and run by beat."""
    return len(review_holds_release())


@shared_task(acks_late=True)
def review_clips_prune_task() -> int:
    """Delete review clips older than ``WALKOUT["REVIEW_CLIP_RETENTION_H"]`` hours (``vision.clips``). Idempotent;
    run by beat (``manage.py prune_review_clips`` does the same by hand)."""
    return clip_store().prune()
