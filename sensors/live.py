"""The live shelf path (Django shell): authenticated controller messages → :mod:`sensors.ingest` (validation,
ordering, clock repair) → raw-sample files (:mod:`sensors.storage`) → a :class:`ShelfSink` (registered by the
``carts`` app: the store loop's shelf stream, or ``carts.pipeline.PipelineSink``) → shelf events;
plus load-cell health and the per-controller problem counters.

One :class:`ShelfIngestor` owns the detector state of its stores, so exactly one process must feed a store: the
MQTT worker (``manage.py ingest_mqtt``, :mod:`sensors.mqtt`) in production; in the embedded profile the HTTP
endpoint (``sensors/api.py``) feeds the process-wide instance of :func:`http_ingestor`. In production the HTTP
endpoint forwards to the broker, so the worker stays the only feeder.

Per message the ingestor only validates, buffers and feeds the sink; with ``batch_s > 0`` (the MQTT worker) the
database writes (message/sample counters, problem counters, load-cell health) happen once per ``batch_s`` of wall
time in one transaction, and the sink's clock advances once per batch of messages
(:meth:`ShelfIngestor.advance_due`). What a ``kill -9`` of such a worker loses: the counters and problem counts of
the last ``batch_s``, the raw samples of the current minute of each controller (:class:`sensors.storage.
RawSampleStore` writes a file when a minute ends), and the detectors' open window (changes not yet settled).
Messages are acknowledged to the broker only once fed (:mod:`sensors.mqtt`), so none is lost in transit.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from store.layout.models import Bin, Store

from .health import HealthConfig, PlateHealthMonitor
from .ingest import IngestConfig, IngestProblem, IngestResult
from .ingest_stream import ControllerStream
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
    return RawSampleStore(root, retention_h=float(walkout_setting("RAW_RETENTION_H")), background=True)


@runtime_checkable
class ShelfSink(Protocol):
    """Where the ingestor sends repaired sample blocks: the seam between ingestion and the store's processing.

    One sink serves every store of an ingestor; it is called from one thread, in time order per controller.

    - ``on_samples(*, store, bin_codes, t, grams, rate_hz) -> int``: one block of one controller: ``store`` the
      ``Store`` row, ``bin_codes`` the controller's bins (its columns, in order), ``t`` (n,) float64 s UTC on the
      server timeline (clock offset applied, strictly increasing per controller), ``grams`` (n, B) float64 grams
      (NaN = missing), ``rate_hz`` the sample rate. Returns the shelf events it stored meanwhile (may be 0).
    - ``advance(*, store, now) -> int``: every live controller of ``store`` has been fed up to ``now`` (s UTC):
      emit what is complete. Returns the shelf events stored meanwhile.
    - ``finish(*, store) -> int``: end of a bounded stream (a test, a bench; never a worker restart): flush and
      settle everything. Returns the shelf events stored meanwhile.

    Errors of the sink propagate to the caller (the MQTT worker survives them, counts them and goes on).
    """

    def on_samples(self, *, store: Store, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray,
                   rate_hz: float) -> int: ...

    def advance(self, *, store: Store, now: float) -> int: ...

    def finish(self, *, store: Store) -> int: ...


_sink_factory: Callable[[str], ShelfSink] | None = None


def set_default_sink_factory(factory: Callable[[str], ShelfSink] | None) -> None:
    """Let another app choose where ingestors send their blocks by default (``carts`` registers its factory at
    start-up: the store loop's shelf stream, or detection and fusion in the ingesting process when the loop is off;
    ``factory(session)`` returns a :class:`ShelfSink`). An injected callback, so that sensors never imports the
    apps above it."""
    global _sink_factory
    _sink_factory = factory


def default_sink(*, session: str) -> ShelfSink:
    """The registered factory's sink for ``session``. Raises ``RuntimeError`` when no app registered one (the
    ``carts`` app does when Django starts)."""
    if _sink_factory is None:
        raise RuntimeError("no shelf sink registered: the carts app registers the store's at start-up "
                           "(is 'carts' in INSTALLED_APPS?)")
    return _sink_factory(session)


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
    problems: list[IngestProblem] = field(default_factory=list)   # not yet written (batch mode)
    health_due: bool = False
    health_wall: float = -math.inf                                   # monotonic time of the last health write


@dataclass
class IngestorStats:
    """Totals of one ingestor: messages handled, blocks and samples fed, problems by reason, shelf events stored,
    refused messages of no known controller (``unknown``)."""

    messages: int = 0
    blocks: int = 0
    samples: int = 0
    events: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    unknown: int = 0


class ShelfIngestor:
    """Feeds authenticated controller messages to a :class:`ShelfSink` (default :func:`default_sink`).

    ``session``: the ``ShelfEvent.session`` of what it stores (default ``WALKOUT["SENSORS_SESSION"]``);
    ``raw``: where raw samples go (default :func:`raw_store`; None keeps nothing); ``ingest``/``health``: knobs of
    the pure cores; ``advance``: move the sink's clock to the oldest latest-sample time of the store's controllers
    that reported in the last ``stale_s`` seconds (so fusion runs when every live source has passed an event);
    ``sink``: a :class:`ShelfSink`; ``batch_s``: 0 (default; the HTTP endpoint) writes problem counters and health
    as they come and advances after each message; > 0 (the MQTT worker) writes counters, problems and health once
    per ``batch_s`` seconds of wall time in one transaction, and advances the sink in :meth:`advance_due` (the
    worker calls it when it has drained the messages waiting). Raises ``ValueError`` for a negative ``batch_s``.
    Not thread-safe: one thread calls every method.
    """

    def __init__(self, *, session: str | None = None, raw: RawSampleStore | None | str = "default",
                 ingest: IngestConfig = IngestConfig(), health: HealthConfig = HealthConfig(),
                 advance: bool = True, stale_s: float = 5.0, sink: ShelfSink | None = None,
                 batch_s: float = 0.0) -> None:
        if not (isinstance(batch_s, (int, float)) and math.isfinite(batch_s) and batch_s >= 0):
            raise ValueError(f"batch_s must be a number of seconds ≥ 0, got {batch_s!r}")
        self.session = session or str(walkout_setting("SENSORS_SESSION"))
        self.raw = raw_store() if raw == "default" else raw
        self.ingest_config = ingest
        self.health_config = health
        self.advance = advance
        self.stale_s = stale_s
        self.sink: ShelfSink = default_sink(session=self.session) if sink is None else sink
        self.batch_s = float(batch_s)
        self.stats = IngestorStats()
        self._states: dict[int, _ControllerState] = {}
        self._stores: dict[int, Store] = {}
        self._due: set[int] = set()                    # stores fed since their sink was last advanced
        self._counter_flush_wall = 0.0
        self._last_prune_wall = 0.0
        self._health_every_s = float(walkout_setting("HEALTH_EVERY_S"))

    # ------------------------------------------------------------------------------------------------ public
    def pipeline(self, store: Store):
        """The store's pipeline when the sink runs detection and fusion in this process (a sink with a
        ``pipeline(store)`` method, ``carts.pipeline.PipelineSink``). Raises ``TypeError`` for another sink."""
        get = getattr(self.sink, "pipeline", None)
        if get is None:
            raise TypeError(f"the sink is a {type(self.sink).__name__}, which runs no pipeline in this process")
        return get(store)

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
        if not self.batch_s:
            self.advance_due()
        self._maybe_flush_counters()
        return IngestOutcome(blocks, samples, result.problems, self.stats.events - events0)

    def advance_due(self) -> int:
        """Advance the sink of every store fed since the last call to the oldest latest-sample time of its live
        controllers (see ``advance``). Returns the shelf events stored meanwhile."""
        if not self._due:
            return 0
        due, self._due = self._due, set()
        events = 0
        if self.advance:
            now_wall = time.monotonic()
            for store_id in sorted(due):
                live = [s.fed_t for s in self._states.values()
                        if s.controller.store_id == store_id and now_wall - s.fed_wall <= self.stale_s]
                if live:
                    events += self.sink.advance(store=self._stores[store_id], now=min(live))
        self.stats.events += events
        return events

    def refuse(self, *, controller: ShelfController | None, message: str) -> None:
        """Log and count a refused message (bad credentials, unknown controller, unreadable topic): for
        ``controller`` when the claimed one is known, else under "unknown" (``stats.unknown``)."""
        self.stats.problems["unauthenticated"] = self.stats.problems.get("unauthenticated", 0) + 1
        if controller is None:
            self.stats.unknown += 1
            log.warning("%s", message)
            return
        self._record(self._state(controller), [IngestProblem(
            controller.name, "unauthenticated", f"controller {controller.name}: {message}")])
        self._maybe_flush_counters()

    def poll(self, now: float | None = None) -> None:
        """Housekeeping, call about once a second: release messages held for a missing one, advance, write
        counters, problems and health, prune old raw files (hourly)."""
        now = time.time() if now is None else now
        for state in list(self._states.values()):
            self._apply(state, state.stream.poll(now))
        self.advance_due()
        self._raw_failures()
        self._maybe_flush_counters(force=True)
        if self.raw is not None and time.monotonic() - self._last_prune_wall > 3600.0:
            self._last_prune_wall = time.monotonic()
            self.raw.prune(now=now)

    def close(self, *, finish: bool = False) -> None:
        """Stop: release held messages, write buffered raw samples, counters, problems and health. ``finish=True``
        also ends the sink's streams (flush the detectors, settle everything: for a bounded run such as a test or a
        bench, never for a worker restart, which must not bill open visits)."""
        for state in list(self._states.values()):
            self._apply(state, state.stream.flush())
        self.advance_due()
        if self.raw is not None:
            self.raw.flush()
            self._raw_failures()
        self._maybe_flush_counters(force=True, final=True)
        if finish:
            for store in list(self._stores.values()):
                self.stats.events += self.sink.finish(store=store)

    def _raw_failures(self) -> None:
        """Count the raw files the store's background writer could not write (``raw_write``, as a failed append)."""
        failed = self.raw.take_failures() if self.raw is not None else 0
        if failed:
            self.stats.problems["raw_write"] = self.stats.problems.get("raw_write", 0) + failed

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
            pending = state.problems if state is not None else []
            state = self._states[controller.pk] = _ControllerState(
                controller=controller,
                stream=ControllerStream(controller.name, len(codes), float(controller.rate_hz), self.ingest_config),
                health=PlateHealthMonitor(len(codes), capacity, self.health_config), problems=pending)
        else:
            state.controller = controller  # a fresh row: clock offset and counters' target stay current
        return state

    def _record(self, state: _ControllerState, problems) -> None:
        """Count ``problems`` for the state's controller: now (``batch_s`` 0) or at the next flush."""
        if not problems:
            return
        if self.batch_s:
            state.problems.extend(problems)
        else:
            controller_problems_record(controller=state.controller, problems=problems)

    def _apply(self, state: _ControllerState, result: IngestResult) -> tuple[int, int]:
        controller = state.controller
        for p in result.problems:
            self.stats.problems[p.reason] = self.stats.problems.get(p.reason, 0) + 1
        self._record(state, result.problems)
        if not result.blocks:
            return 0, 0
        store = controller.store
        self._stores[store.pk] = store
        codes = tuple(controller.bin_codes)
        offset = float(controller.clock_offset_s)
        samples = 0
        for block in result.blocks:
            t = block.t + offset
            if self.raw is not None:
                try:
                    self.raw.append(store=store.code, controller=controller.name, bin_codes=codes, t=t,
                                    grams=block.grams, rate_hz=block.rate_hz)
                except (OSError, ValueError) as exc:  # a full disk must not stop detection
                    self.stats.problems["raw_write"] = self.stats.problems.get("raw_write", 0) + 1
                    log.error("controller %s: raw samples of seq %d not kept: %s", controller, block.seq, exc)
            self.stats.events += self.sink.on_samples(store=store, bin_codes=codes, t=t, grams=block.grams,
                                                      rate_hz=block.rate_hz)
            state.health.update(t, block.grams)
            state.fed_t = float(t[-1])
            state.fed_wall = time.monotonic()
            samples += len(block)
        state.samples += samples
        self.stats.blocks += len(result.blocks)
        self.stats.samples += samples
        if state.fed_t >= state.next_health_t:
            if math.isfinite(state.next_health_t):
                state.health_due = True
                if not self.batch_s:
                    self._write_health(state)
            state.next_health_t = state.fed_t + self._health_every_s
        self._due.add(store.pk)
        return len(result.blocks), samples

    def _write_health(self, state: _ControllerState) -> None:
        """Write the controller's health report. A database error (a locked SQLite, a lost connection) never costs
        the message that made it due: the report stays due for the next flush, counted as ``health_write``."""
        try:
            with transaction.atomic():  # a savepoint inside the counters' transaction
                sensor_health_record(controller=state.controller, report=state.health.report())
        except DatabaseError as exc:
            state.health_due = True
            self.stats.problems["health_write"] = self.stats.problems.get("health_write", 0) + 1
            log.warning("controller %s: health not written, retried at the next flush: %s", state.controller, exc)
            return
        state.health_due = False

    def _maybe_flush_counters(self, force: bool = False, final: bool = False) -> None:
        """Write message/sample counters, buffered problems and due health reports, in one transaction: at most
        every ``batch_s`` (every second when ``batch_s`` is 0) unless ``force``. In batch mode a controller's health
        is written at most once per ``HEALTH_EVERY_S`` of wall time, and whatever is due at ``final``."""
        now = time.monotonic()
        if not force and now - self._counter_flush_wall < max(self.batch_s, 1.0):
            return
        self._counter_flush_wall = now
        dirty = [s for s in self._states.values() if s.messages or s.samples or s.problems or (
            s.health_due and (final or not self.batch_s or now - s.health_wall >= self._health_every_s))]
        if not dirty:
            return
        with transaction.atomic():  # one commit for all controllers
            for state in dirty:
                if state.messages or state.samples:
                    ShelfController.objects.filter(pk=state.controller.pk).update(
                        messages=F("messages") + state.messages, samples=F("samples") + state.samples,
                        last_seen_at=timezone.now())
                    state.messages = state.samples = 0
                if state.problems:
                    problems, state.problems = state.problems, []
                    controller_problems_record(controller=state.controller, problems=problems)
                if state.health_due and (final or not self.batch_s or now - state.health_wall >= self._health_every_s):
                    state.health_wall = now   # a burst (a backlog) writes health once per HEALTH_EVERY_S of wall time
                    self._write_health(state)


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
