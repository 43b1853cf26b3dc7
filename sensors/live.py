"""The live shelf path (Django shell): authenticated controller messages → :mod:`sensors.ingest` (validation,
ordering, clock repair) → raw-sample files (:mod:`sensors.storage`) → the SAME
:meth:`carts.pipeline.StorePipeline.on_samples` a replay uses → shelf events; plus load-cell health and the
per-controller problem counters.

One :class:`ShelfIngestor` owns the detector state of its stores, so exactly one process must feed a store: the
MQTT worker (``manage.py ingest_mqtt``, :mod:`sensors.mqtt`) in production; in the embedded profile the HTTP
endpoint (``sensors/api.py``) feeds the process-wide instance of :func:`http_ingestor`. In production the HTTP
endpoint forwards to the broker, so the worker stays the only feeder.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from store.layout.models import Bin, Store

from .health import HealthConfig, PlateHealthMonitor
from .ingest import ControllerStream, IngestConfig, IngestProblem, IngestResult
from .models import ShelfController
from .services import controller_problems_record, sensor_health_record
from .storage import RawSampleStore

log = logging.getLogger(__name__)

#: Defaults of the settings this module reads from ``settings.WALKOUT`` (see :func:`walkout_setting`).
DEFAULTS = {
    "RAW_SAMPLES_DIR": "var/raw",       # raw-sample files, relative to BASE_DIR unless absolute
    "RAW_RETENTION_H": 48.0,            # hours raw samples are kept
    "SENSORS_SESSION": "live",          # ShelfEvent.session of live events
    "HEALTH_EVERY_S": 10.0,             # seconds of samples between two health checks of a controller
}


def walkout_setting(name: str) -> Any:
    """``settings.WALKOUT[name]``, or the default of :data:`DEFAULTS`."""
    return getattr(settings, "WALKOUT", {}).get(name, DEFAULTS[name])


def raw_store() -> RawSampleStore:
    """The raw-sample store configured by ``WALKOUT["RAW_SAMPLES_DIR"]`` and ``["RAW_RETENTION_H"]``."""
    root = Path(walkout_setting("RAW_SAMPLES_DIR"))
    if not root.is_absolute():
        root = Path(settings.BASE_DIR) / root
    return RawSampleStore(root, retention_h=float(walkout_setting("RAW_RETENTION_H")))


@dataclass(frozen=True)
class IngestOutcome:
    """What one message did: ``blocks`` and ``samples`` (rows) fed to the detector, the ``problems`` found,
    ``events`` shelf events stored meanwhile."""

    blocks: int
    samples: int
    problems: tuple[IngestProblem, ...]
    events: int

    @property
    def rejected(self) -> bool:
        """True when nothing of the message was used and it had a problem (a rejected message)."""
        return self.blocks == 0 and any(not p.repaired for p in self.problems)


@dataclass
class _ControllerState:
    controller: ShelfController
    stream: ControllerStream
    health: PlateHealthMonitor
    next_health_t: float = -math.inf
    fed_t: float = -math.inf
    fed_wall: float = 0.0
    messages: int = 0
    samples: int = 0


@dataclass
class IngestorStats:
    """Totals of one ingestor: messages handled, blocks and samples fed, problems by reason, shelf events stored."""

    messages: int = 0
    blocks: int = 0
    samples: int = 0
    events: int = 0
    problems: dict[str, int] = field(default_factory=dict)


class ShelfIngestor:
    """Feeds authenticated controller messages to one :class:`carts.pipeline.StorePipeline` per store.

    ``session``: the ``ShelfEvent.session`` of what it stores (default ``WALKOUT["SENSORS_SESSION"]``);
    ``raw``: where raw samples go (default :func:`raw_store`; None keeps nothing); ``ingest``/``health``: knobs of
    the pure cores; ``advance``: after each message, move the pipeline's clock to the oldest latest-sample time of
    the store's controllers that reported in the last ``stale_s`` seconds (so fusion runs when every live source
    has passed an event). Not thread-safe: one thread calls :meth:`handle`, :meth:`poll` and :meth:`close`.
    """

    def __init__(self, *, session: str | None = None, raw: RawSampleStore | None | str = "default",
                 ingest: IngestConfig = IngestConfig(), health: HealthConfig = HealthConfig(),
                 advance: bool = True, stale_s: float = 5.0) -> None:
        self.session = session or str(walkout_setting("SENSORS_SESSION"))
        self.raw = raw_store() if raw == "default" else raw
        self.ingest_config = ingest
        self.health_config = health
        self.advance = advance
        self.stale_s = stale_s
        self.stats = IngestorStats()
        self._pipelines: dict[int, Any] = {}
        self._states: dict[int, _ControllerState] = {}
        self._counter_flush_wall = 0.0
        self._last_prune_wall = 0.0

    # ------------------------------------------------------------------------------------------------ public
    def pipeline(self, store: Store):
        """The store's pipeline (created on first use; ``carts.pipeline.StorePipeline``)."""
        pipe = self._pipelines.get(store.pk)
        if pipe is None:
            from carts.pipeline import StorePipeline  # carts imports sensors: import at use, not at module load

            pipe = self._pipelines[store.pk] = StorePipeline(store=store, session=self.session)
        return pipe

    def handle(self, *, controller: ShelfController, payload: bytes | str | Mapping[str, Any],
               received_at: float | None = None) -> IngestOutcome:
        """Validate and feed one message of an AUTHENTICATED ``controller`` (the caller checked its key).

        ``payload`` is the message body (or its parsed JSON object); ``received_at`` s UTC (default now). Bad
        input never raises: it is a problem in the outcome, logged and counted for the controller."""
        received_at = time.time() if received_at is None else received_at
        state = self._state(controller)
        events0 = self.stats.events
        result = state.stream.accept_raw(payload, received_at)
        self.stats.messages += 1
        state.messages += 1
        blocks, samples = self._apply(state, result)
        self._maybe_flush_counters()
        return IngestOutcome(blocks, samples, result.problems, self.stats.events - events0)

    def refuse(self, *, controller: ShelfController | None, message: str) -> None:
        """Log and count a refused message (bad credentials); ``controller`` when the claimed one is known."""
        self.stats.problems["unauthenticated"] = self.stats.problems.get("unauthenticated", 0) + 1
        if controller is None:
            log.warning("%s", message)
            return
        controller_problems_record(controller=controller, problems=[IngestProblem(
            controller.name, "unauthenticated", f"controller {controller.name}: {message}")])

    def poll(self, now: float | None = None) -> None:
        """Housekeeping, call about once a second: release messages held for a missing one, flush counters,
        prune old raw files (hourly)."""
        now = time.time() if now is None else now
        for state in list(self._states.values()):
            self._apply(state, state.stream.poll(now))
        self._maybe_flush_counters(force=True)
        if self.raw is not None and time.monotonic() - self._last_prune_wall > 3600.0:
            self._last_prune_wall = time.monotonic()
            self.raw.prune(now=now)

    def close(self, *, finish: bool = False) -> None:
        """Stop: release held messages, write buffered raw samples and counters. ``finish=True`` also ends the
        pipelines' streams (flush the detectors, settle everything: for a bounded run such as a test or a bench,
        never for a worker restart, which must not bill open visits)."""
        for state in list(self._states.values()):
            self._apply(state, state.stream.flush())
        if self.raw is not None:
            self.raw.flush()
        self._maybe_flush_counters(force=True)
        if finish:
            for pipe in self._pipelines.values():
                before = pipe.stats.shelf_events
                pipe.finish()
                self.stats.events += pipe.stats.shelf_events - before

    def health(self, controller: ShelfController):
        """The current :class:`sensors.health.HealthReport` of ``controller``'s bins (None before any message)."""
        state = self._states.get(controller.pk)
        return None if state is None else state.health.report()

    # ------------------------------------------------------------------------------------------------ inside
    def _state(self, controller: ShelfController) -> _ControllerState:
        state = self._states.get(controller.pk)
        if state is None or state.controller.bin_codes != controller.bin_codes \
                or state.controller.rate_hz != controller.rate_hz:
            codes = list(controller.bin_codes)
            caps = dict(Bin.objects.filter(store=controller.store_id, code__in=codes).values_list("code", "capacity_g"))
            capacity = np.array([float(caps.get(c, 20000.0)) for c in codes])
            state = self._states[controller.pk] = _ControllerState(
                controller=controller,
                stream=ControllerStream(controller.name, len(codes), float(controller.rate_hz), self.ingest_config),
                health=PlateHealthMonitor(len(codes), capacity, self.health_config))
        else:
            state.controller = controller  # a fresh row: clock offset and counters' target stay current
        return state

    def _apply(self, state: _ControllerState, result: IngestResult) -> tuple[int, int]:
        controller = state.controller
        for p in result.problems:
            self.stats.problems[p.reason] = self.stats.problems.get(p.reason, 0) + 1
        controller_problems_record(controller=controller, problems=result.problems)
        if not result.blocks:
            return 0, 0
        store = controller.store
        pipe = self.pipeline(store)
        codes = tuple(controller.bin_codes)
        samples = 0
        for block in result.blocks:
            t = block.t + float(controller.clock_offset_s)
            if self.raw is not None:
                try:
                    self.raw.append(store=store.code, controller=controller.name, bin_codes=codes, t=t,
                                    grams=block.grams, rate_hz=block.rate_hz)
                except (OSError, ValueError) as exc:  # a full disk must not stop detection
                    self.stats.problems["raw_write"] = self.stats.problems.get("raw_write", 0) + 1
                    log.error("controller %s: raw samples of seq %d not kept: %s", controller, block.seq, exc)
            before = pipe.stats.shelf_events
            pipe.on_samples(bin_codes=codes, t=t, grams=block.grams, rate_hz=block.rate_hz)
            self.stats.events += pipe.stats.shelf_events - before
            state.health.update(t, block.grams)
            state.fed_t = float(t[-1])
            state.fed_wall = time.monotonic()
            samples += len(block)
        state.samples += samples
        self.stats.blocks += len(result.blocks)
        self.stats.samples += samples
        if state.fed_t >= state.next_health_t:
            if math.isfinite(state.next_health_t):
                sensor_health_record(controller=controller, report=state.health.report())
            state.next_health_t = state.fed_t + float(walkout_setting("HEALTH_EVERY_S"))
        if self.advance:
            now_wall = time.monotonic()
            live = [s.fed_t for s in self._states.values()
                    if s.controller.store_id == store.pk and now_wall - s.fed_wall <= self.stale_s]
            before = pipe.stats.shelf_events
            pipe.advance(min(live))
            self.stats.events += pipe.stats.shelf_events - before
        return len(result.blocks), samples

    def _maybe_flush_counters(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._counter_flush_wall < 1.0:
            return
        self._counter_flush_wall = now
        dirty = [s for s in self._states.values() if s.messages or s.samples]
        if not dirty:
            return
        with transaction.atomic():  # one commit for all controllers
            for state in dirty:
                ShelfController.objects.filter(pk=state.controller.pk).update(
                    messages=F("messages") + state.messages, samples=F("samples") + state.samples,
                    last_seen_at=timezone.now())
                state.messages = state.samples = 0


_http_lock = threading.Lock()
_http_ingestor: ShelfIngestor | None = None


def http_ingestor() -> tuple[ShelfIngestor, threading.Lock]:
    """The process-wide ingestor the HTTP endpoint feeds in the embedded profile, and the lock to hold while
    using it (requests may come from several threads)."""
    global _http_ingestor
    with _http_lock:
        if _http_ingestor is None:
            _http_ingestor = ShelfIngestor()
        return _http_ingestor, _http_lock


def http_ingestor_reset() -> None:
    """Forget the process-wide ingestor (tests; a new database)."""
    global _http_ingestor
    with _http_lock:
        _http_ingestor = None
