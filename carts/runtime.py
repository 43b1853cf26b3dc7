"""The live store runtime: the store worker that runs the store loop on the records of its streams, and how
producers reach it.

Producers publish time-stamped **records** (``carts.records``: ``shelf`` blocks from ``ingest_mqtt`` or the HTTP
controller API, ``obs`` from the camera workers and the tracker adapter, ``gate`` scans from the gate API, ``tag``
events from RFID readers, ``cam`` frames from ``run_camera --join``) on one stream per store and kind. The **store
worker** (:class:`StoreWorker`, ``manage.py run_store STORE``) is the one consumer per store: it feeds the records to
a :class:`carts.loop.StoreLoop` writing to the database (:class:`carts.pipeline.DatabaseSink`), joins its cameras'
``cam`` records into shoppers (``carts.camera_join``: one source, ``CAMERAS_JOINED``), advances the loop to the
slowest live source (a source silent for ``source_down_s`` is declared down, alerted as ``<kind>:<name>``, and no
longer waited for), checkpoints the loop's state with the stream offsets every ``checkpoint_every_s``, and only then
acknowledges what it read.

Transport (``carts.bus``): Redis Streams in the production profile, with a lease key that keeps one active worker
per store (a second one stands by and takes over when the lease lapses); in process in the embedded profile, where
the worker runs as a thread of the process that publishes or is stepped by its caller. How producers reach the
worker — :func:`carts.runtime_publish.publish`, the ingestors' bus sinks, the gate signal handlers and the embedded
profile's local workers (:func:`carts.runtime_publish.local_worker`) — is :mod:`carts.runtime_publish`.

Crash safety: a worker killed at any moment restarts from its last checkpoint and re-reads every record after
its offsets; every output is idempotent (``carts.pipeline.DatabaseSink``), so nothing is lost and nothing is done
twice. DESIGN.md "Running a store live".
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from sensors.services import planogram_for
from store.gates.models import Visit
from store.layout.models import Store, Zone
from store.pushes import pushes_in_background
from vision.hand_crops import HandCropStore
from vision.tasks import product_gallery_refresh

from .bus import bus, stream_id_key
from .camera_join import CAMERAS_JOINED, CameraJoin
from .models import StoreAlert
from .records import RecordError, decode_obs, decode_shelf, decode_tag
from .services.ledger import cart_publish_batch

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- store worker
@dataclass
class WorkerStats:
    """Counters of one worker run."""

    records: dict[str, int] = field(default_factory=dict)
    bad_records: int = 0
    checkpoints: int = 0
    checkpoint_bytes: int = 0  # size of the latest checkpoint, without the observation chunks it refers to
    restored: bool = False
    orphan_chunks: int = 0  # checkpoint chunks found at start that its checkpoint did not refer to (deleted)
    #: ``obs`` records refused from a camera publishing its own tracks (``run_camera --no-join``) while the worker
    #: joins the store's cameras (``carts.camera_join.CameraJoin.refuses``)
    unjoined_records: int = 0


def _lag_words(seconds: float, late: str, early: str) -> str:
    """``seconds`` of lag in words for a log line: ``"2.31 s behind"`` (``late``) for a lag ≥ 0, ``"5.74 s ahead
    of"`` (``early``) for a negative one (the clock measured runs ahead), so that no line says "-5.74 s behind"."""
    return f"{seconds:.2f} s {late}" if not seconds < 0 else f"{-seconds:.2f} s {early}"


class StoreWorker:
    """Runs the store loop of one store on the records of ``bus`` (module docstring).

    ``store_code``: the store; ``session``: ``ShelfEvent.session`` of what it stores (default
    ``settings.WALKOUT["SENSORS_SESSION"]``, "live"); ``checkpoint_every_s``: wall seconds between checkpoints;
    ``source_down_s``: wall seconds of silence after which a source is down; ``lease_s``: the lease's time to live
    (a standby takes over at most this long after the active worker died); ``bill_wait_s``: wall seconds billing
    waits for a silent shelf controller (:meth:`shelf_horizon`). Raises ``Store.DoesNotExist``."""

    #: records one step reads at most (the bus's ``count``; per kind on Redis): the default of ``Bus.read``, as
    #: before; a read that fills it may have left records of a source behind the others' (``step``)
    READ_COUNT = 500
    #: records one step reads at least while it adapts its count (:meth:`step`)
    READ_COUNT_MIN = 10
    #: wall seconds a step aims at while records wait in the streams: a step applies what it read, then decides,
    #: bills and pushes carts, so a step of 500 shelf blocks (12 s of a 200-shopper store's, 4–16 s of wall time at
    #: its peak) held every decision and checkout of those seconds until its end. A full read that took longer than
    #: this shrinks the next read's count in proportion (not below :attr:`READ_COUNT_MIN`); a step under half of it
    #: doubles the count again (up to :attr:`READ_COUNT`). The first full read (after a start or a quiet spell) is
    #: still :attr:`READ_COUNT`; its advance goes in slices (:attr:`ADVANCE_SLICE_S`). What is decided does not
    #: depend on the count (every record is applied in stream order; a decision reads nothing past its horizon)
    STEP_TARGET_S = 0.5
    #: store seconds the loop advances at a time within a step (``StorePipeline.advance``'s ``slice_s``): a
    #: watermark that jumps (a source that held it came, a backlog read) is followed in slices, the carts changed
    #: so far pushed every ``PUSH_EVERY_S`` wall seconds and each checkout queued with its slice (at 200 shoppers a
    #: 16 s advance held the first decisions' pushes and the exodus's checkouts until its end)
    ADVANCE_SLICE_S = 0.5
    #: wall seconds between cart pushes within a sliced advance (a push comes after the slice that passes it)
    PUSH_EVERY_S = 0.25
    #: wall seconds: a step longer than this is logged (INFO) with where its time went — reading, applying, advancing,
    #: the worker's own CPU against the wall (the rest is waiting: the database, Redis, the broker, other processes)
    SLOW_STEP_S = 1.0
    #: share of the wall time checkpoints may take: the next comes ``checkpoint_every_s`` after the last, or later,
    #: when the last took more than this share of that (a 200-shopper store's 29 MB state pickled every 2 s was 7 % of
    #: the worker's wall time at its exodus, py-spy: docs/store-worker-load.md, fifteenth pass). A restart re-reads
    #: the records since the last checkpoint, so this bounds what a crash costs in time, not what it loses.
    CHECKPOINT_SHARE = 0.03

    def __init__(self, store_code: str, *, bus_: Any = None, session: str | None = None,
                 checkpoint_every_s: float = 2.0, source_down_s: float = 5.0, lease_s: float = 5.0,
                 owner: str | None = None, bill_wait_s: float = 60.0) -> None:
        self.store = Store.objects.get(code=store_code)
        self.bus = bus_ if bus_ is not None else bus()
        self.session = session or settings.WALKOUT.get("SENSORS_SESSION", "live")
        self.checkpoint_every_s = checkpoint_every_s
        self.source_down_s = source_down_s
        self.lease_s = lease_s
        self.bill_wait_s = bill_wait_s
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.stats = WorkerStats()
        self.pipeline = None
        self.offsets: dict[str, str] = {}
        self.sources: dict[str, list[float]] = {}  # source → [latest t, wall time it came]
        self.down: set[str] = set()
        self._last_checkpoint = 0.0
        self._checkpoint_took = 0.0  # wall seconds the last checkpoint took
        self._chunks: set[str] = set()  # keys of the observation chunks the saved checkpoint refers to
        #: monotonic s of the latest read of the streams: a source's silence is measured up to the last time this
        #: worker looked, so a long step of its own (a first JIT compile, a slow database) is not a source's silence
        self._read_at: float | None = None
        #: records the next step reads at most (per kind on Redis): :attr:`READ_COUNT`, smaller after long full steps
        self.read_count = self.READ_COUNT
        #: Stepped by the caller that publishes the devices' records, on the caller's thread
        #: (:func:`carts.runtime_publish.register_local`: the emulator, ``bench_store``), not by :meth:`run`: the
        #: devices cannot send while this worker steps, so the wall time of its own steps is not their silence
        #: (:meth:`step`). A worker of its own thread or process (``run_store``) leaves it False: there the devices
        #: go on sending while it steps, and a source that sent nothing meanwhile was silent.
        self.driven = False
        #: the join of the store's cameras' ``cam`` records (``carts.camera_join``)
        self.cameras = CameraJoin(self.store)

    @property
    def join(self):
        """The cameras' ``vision.shoppers.ShopperStream`` (:attr:`CameraJoin.stream`), or None while no camera sends
        frames."""
        return self.cameras.stream

    # -------------------------------------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        """Build the loop, from the checkpoint when there is one, and rewind the streams to its offsets."""
        # lazy: the store loop's core (fusion, identity, numba: ~0.7 s, 230 modules) loads only in a process that
        # runs a loop, not in every web or Celery process that imports this module to publish
        from .loop import LoopConfig, StoreLoop
        from .pipeline import StorePipeline, bin_geometry_for

        data = self.bus.load_checkpoint(self.store.code)
        loop = None
        if data:
            try:
                state = pickle.loads(data)  # noqa: S301 — written by this worker into our own Redis
                loop = StoreLoop.restore(state["loop"], sink=None, planogram=planogram_for(store=self.store),
                                         bins=bin_geometry_for(store=self.store),
                                         chunks=(self.bus, self.store.code) if state.get("chunked") else None)
                self._chunks = set(loop.__dict__.pop("restored_chunks", ()))
                self.offsets = dict(state["offsets"])
                self.sources = {k: [v, time.monotonic()] for k, v in state["sources"].items()}
                join = state.get("join")
                self.cameras = CameraJoin(self.store, stream=join, since=time.monotonic() if join is not None else None)
                self.stats.restored = True
                log.info("store %s: resumed from the checkpoint at %s", self.store.code, self.offsets)
            except Exception as exc:  # a checkpoint of older code: start afresh (outputs are idempotent)
                log.error("store %s: checkpoint unreadable (%s); starting afresh", self.store.code, exc)
                loop = None
                self.cameras = CameraJoin(self.store)
        self.pipeline = StorePipeline(store=self.store, session=self.session, loop=loop, queue_checkouts=True)
        if settings.WALKOUT.get("PRODUCT_IMAGES", True):  # the product in the taking hand (carts.product_images)
            from .product_images import HandImageEvidence  # lazy, as the loop above

            # a joined shopper's crops are filed under its cameras' own track keys
            self.pipeline.sink.images = HandImageEvidence(HandCropStore(self.store.code), self.pipeline.loop.bins,
                                                          tracks=lambda track: self.cameras.camera_tracks(track))
            product_gallery_refresh(self.store.code)  # a gallery of an older embedder is rebuilt, never mis-scored
        if loop is None:
            self.pipeline.loop.config = LoopConfig(
                review_confidence=settings.WALKOUT["REVIEW_CONFIDENCE"], settle_s=settings.WALKOUT["EXIT_SETTLE_S"],
                infer_exits=True)
            self.offsets = {}
        self._zones()
        sink = self.pipeline.sink
        for track, visit_id in self.pipeline.loop.visit_of.items():
            visit = Visit.objects.filter(pk=visit_id).first()
            if visit is not None:
                sink.visits[track] = visit
        sink.down = self.down
        self._drop_orphan_chunks()
        self.bus.rewind(self.store.code, self.offsets)

    def _drop_orphan_chunks(self) -> None:
        """Delete the chunks of this store that the checkpoint it resumed from does not refer to: a worker killed
        between saving a checkpoint's new chunks and the checkpoint itself, or between the checkpoint and deleting
        the chunks it stopped using, left them behind. Only the lease holder runs this, so no other worker is
        writing chunks meanwhile."""
        orphans = self.bus.chunk_keys(self.store.code) - self._chunks
        if orphans:
            self.bus.drop_chunks(self.store.code, orphans)
            log.info("store %s: %d checkpoint chunk(s) no checkpoint refers to deleted", self.store.code, len(orphans))
        self.stats.orphan_chunks = len(orphans)

    def _zones(self) -> None:
        loop = self.pipeline.loop
        entry = list(Zone.objects.filter(store=self.store, kind=Zone.Kind.ENTRY).order_by("name"))
        loop.entry_zones = [np.asarray(z.polygon, dtype=float) for z in entry]
        loop.gate_zones = {z.name: np.asarray(z.polygon, dtype=float) for z in entry}  # a gate's zone: its name
        loop.exit_zones = [np.asarray(z.polygon, dtype=float) for z in
                           Zone.objects.filter(store=self.store, kind=Zone.Kind.EXIT)]

    def _join_step(self) -> None:
        """Stop waiting for the cameras silent for ``source_down_s`` (a camera never heard of since the join began
        is alerted here; the others by :meth:`watermark`), write what the join now can to the loop, and move its
        clock (:data:`CAMERAS_JOINED`: how far the joined observations go) when a camera sent something."""
        obs, never_heard, t_written = self.cameras.step(wall=self._looked(), sources=self.sources,
                                                        down_s=self.source_down_s)
        for source, silent_s in never_heard:
            if source not in self.down:
                self.down.add(source)
                self._alert_down(source, silent_s)
        if len(obs):
            self.pipeline.loop.on_observations(obs)
        if t_written is not None:
            self._seen(CAMERAS_JOINED, t_written)

    def checkpoint(self) -> None:
        """Save the loop's state with the offsets it has applied, then acknowledge those records."""
        if self.pipeline is None:
            return
        loop = self.pipeline.loop
        t_begin = time.monotonic()
        # the observation windows' chunks go to the bus by key, each once: the checkpoint itself stays small
        data = pickle.dumps({"loop": loop.snapshot(chunks=(self.bus, self.store.code, self._chunks)),
                             "offsets": self.offsets, "sources": {k: v[0] for k, v in self.sources.items()},
                             "join": self.cameras.stream, "chunked": True}, protocol=pickle.HIGHEST_PROTOCOL)
        self.bus.save_checkpoint(self.store.code, data)
        loop.drop_gone_chunks(self.bus, self.store.code)
        self.stats.checkpoint_bytes = len(data)
        if self.offsets:
            self.bus.ack(self.store.code, self.offsets)
        self.stats.checkpoints += 1
        self._last_checkpoint = time.monotonic()
        self._checkpoint_took = self._last_checkpoint - t_begin
        if self._last_checkpoint - t_begin > self.SLOW_STEP_S:
            log.info("store %s: slow checkpoint, %.2f s wall (%d bytes)", self.store.code,
                     self._last_checkpoint - t_begin, len(data))

    def checkpoint_due_s(self) -> float:
        """Wall seconds from the last checkpoint to the next: ``checkpoint_every_s``, or the last one's duration over
        :attr:`CHECKPOINT_SHARE` where that is longer."""
        return max(self.checkpoint_every_s, self._checkpoint_took / self.CHECKPOINT_SHARE)

    def run(self, *, max_seconds: float | None = None, idle_exit_s: float | None = None,
            standby_poll_s: float = 0.5, background_pushes: bool = False) -> WorkerStats:
        """Wait for the lease (standing by while another worker holds it), then run until :attr:`stop` is set,
        ``max_seconds`` pass, or ``idle_exit_s`` without a record (after the first). Checkpoints on the way out;
        never bills open visits early (no ``finish``). ``background_pushes``: while it runs, this process's cart
        and dashboard pushes are sent by a thread of their own (``store.pushes``; the snapshots are still read on
        the step): ``run_store``'s, a process of its own on Redis's channel layer, not the embedded profile's worker
        thread, whose in-memory layer lives on the server's event loop."""
        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        while not self.bus.lease(self.store.code, self.owner, self.lease_s):
            if self.stop.wait(standby_poll_s) or (t_end is not None and time.monotonic() >= t_end):
                return self.stats
        log.info("store %s: worker %s is active", self.store.code, self.owner)
        self._start()
        if background_pushes:
            pushes_in_background(True)  # the step hands its cart pushes to a thread and goes on (store.pushes)
        last_record = None
        lost = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(lost,), name=f"lease-{self.store.code}", daemon=True)
        renewer.start()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if t_end is not None and now >= t_end:
                    break
                if lost.is_set():
                    log.error("store %s: lease lost to another worker; stopping", self.store.code)
                    return self.stats  # no checkpoint: the new owner's state wins
                n = self.step()
                if n:
                    last_record = time.monotonic()
                elif idle_exit_s is not None and last_record is not None and \
                        time.monotonic() - last_record >= idle_exit_s:
                    break
                if time.monotonic() - self._last_checkpoint >= self.checkpoint_due_s() and not lost.is_set():
                    self.checkpoint()
                    close_old_connections()
            if not lost.is_set():
                self.checkpoint()
        finally:
            if background_pushes:
                pushes_in_background(False)  # what was handed over is sent first
            self.stop.set()
            renewer.join(self.lease_s)
            self.bus.release(self.store.code, self.owner)
        return self.stats

    def _renew(self, lost: threading.Event) -> None:
        """Renew the lease every third of its time to live from a thread of its own, so that a long step (a busy
        store) never lets it lapse while this worker is alive; set ``lost`` when another worker holds it."""
        while not self.stop.wait(self.lease_s / 3):
            try:
                if not self.bus.lease(self.store.code, self.owner, self.lease_s):
                    lost.set()
                    return
            except Exception as exc:  # Redis away: keep trying; the lease lapses if it stays away
                log.warning("store %s: lease renewal failed (%s)", self.store.code, exc)

    # ------------------------------------------------------------------------------------------------- step
    def step(self, *, block_ms: int = 100) -> int:
        """Read and apply what is there, advance the loop to the watermark. Returns the records read."""
        if self.pipeline is None:
            self._start()
        count = self.read_count
        t_begin, cpu_begin = time.monotonic(), time.process_time()
        records = self.bus.read(self.store.code, count=count, block_ms=block_ms)
        self._read_at = time.monotonic()  # everything published before now was just read (up to the bus's count)
        # a full read may have left records in the streams: a source whose records wait there is not silent
        sizes = Counter(kind for kind, _, _ in records).values() if self.bus.COUNT_PER_KIND else [len(records)]
        backlogged = any(n >= count for n in sizes)
        read_wall = time.time()
        with cart_publish_batch():  # each cart the step changed is pushed once, with the step's outcome
            for kind, sid, rec in records:
                done = self.offsets.get(kind)
                if done is not None and stream_id_key(sid) <= stream_id_key(done):
                    continue  # applied before the checkpoint this worker resumed from
                self._apply(kind, sid, rec)
                self.offsets[kind] = sid
            if self.join is not None:
                self._join_step()
            self.pipeline.loop.shelf_horizon = self.shelf_horizon()
            applied_at, loop_from = time.monotonic(), self.pipeline.loop.now
            self.pipeline.advance(self.watermark(), slice_s=self.ADVANCE_SLICE_S, push_every_s=self.PUSH_EVERY_S)
        if self.driven or backlogged:
            # the caller's devices were held up for as long as this step took: that time is not their silence (a
            # 36 s step — a first JIT compile on a loaded machine — took every source for down at the next, empty
            # read, and the watermark ran 36 s ahead of the records: shoppers lost, hands missed). Likewise while
            # the streams hold more than one read: the records of a source may wait behind the others' (200
            # shoppers live: shelf controllers and the tracker taken for down at the peak, their events decided
            # without them)
            busy = time.monotonic() - self._read_at
            for entry in self.sources.values():
                entry[1] += busy
        if self.pipeline.loop.bill_timings:
            self._log_checkouts(read_wall)
        took = time.monotonic() - t_begin
        if took > self.SLOW_STEP_S:
            loop = self.pipeline.loop
            log.info("store %s: slow step, %.2f s wall (%.2f s CPU of this worker): read %d records (count %d%s) in "
                     "%.2f s, applied in %.2f s, advanced %.2f store s in %.2f s; the loop is %.2f s behind the wall "
                     "clock", self.store.code, took, time.process_time() - cpu_begin, len(records), count,
                     ", full" if backlogged else "", self._read_at - t_begin, applied_at - self._read_at,
                     loop.now - loop_from if math.isfinite(loop_from) else 0.0, time.monotonic() - applied_at,
                     time.time() - loop.now)
        self._adapt_count(count, backlogged, time.monotonic() - self._read_at)
        return len(records)

    def _adapt_count(self, count: int, full: bool, took_s: float) -> None:
        """The next read's count (:attr:`STEP_TARGET_S`): a full read of ``count`` that took ``took_s`` wall seconds
        over the target shrinks it in proportion; a step under half the target doubles it."""
        if full and took_s > self.STEP_TARGET_S:
            # never above the count it shrinks (a count already at or under the floor stays)
            shrunk = min(count - 1, int(count * self.STEP_TARGET_S / took_s))
            self.read_count = min(count, max(self.READ_COUNT_MIN, shrunk))
        elif took_s < self.STEP_TARGET_S / 2:
            self.read_count = min(self.READ_COUNT, max(count + 1, 2 * count))

    def _log_checkouts(self, read_wall: float) -> None:
        """One INFO line per checkout the step queued: where its exit → checkout time went (``bench_live`` reads
        them). Sources' clocks are UTC, so a source time and a wall time compare: ``settle`` (``settle_s``),
        ``overshoot`` (the loop's step past the deadline), ``waited`` (what held it past that,
        ``carts.loop_billing.BILL_WAITS``), then how far the loop ran behind the wall clock at the checkout: the slowest
        live source's lag when the step read the streams (``watermark``) and the step's own time up to it. Devices
        whose clock runs ahead of the wall clock (an emulation faster than real time) put the loop *ahead of* the
        wall clock and their newest record *early*: those are worded so, with the magnitude (never "-5.74 s
        behind")."""
        loop = self.pipeline.loop
        queued = getattr(self.pipeline.sink, "queued_at", {})
        slowest = self._slowest()
        # the devices' own lateness (their newest record) apart from the watermark's wait for the slowest source
        newest = max((t for t, _ in self.sources.values()), default=math.nan)
        while loop.bill_timings:
            w = loop.bill_timings.popleft()
            wall = queued.pop(w.track, None)
            visit = loop.visit_of.get(w.track)
            if wall is None or visit is None:
                continue
            waits = ", ".join(f"{k} {v:.2f}" for k, v in sorted(w.waited.items(), key=lambda kv: -kv[1]) if v > 0)
            log.info("store %s: visit %s checkout queued %.2f s after its exit: settle %.2f s, overshoot %.2f s, "
                     "waited %.2f s (%s); the loop ran %s the wall clock (watermark %.2f s: the newest "
                     "record %s, the slowest source %s %.2f s behind it; step %.2f s)", self.store.code,
                     visit, wall - w.t_exit, w.deadline - w.t_exit, w.due - w.deadline, w.now - w.due,
                     waits or "nothing", _lag_words(wall - w.now, "behind", "ahead of"), read_wall - w.now,
                     _lag_words(read_wall - newest, "late", "early"), slowest, newest - w.now, wall - read_wall)

    def _slowest(self) -> str:
        """The live source furthest behind (the one the watermark waits for), or "-"."""
        wall = self._looked()
        live = [(t, s) for s, (t, seen) in self.sources.items() if wall - seen <= self.source_down_s]
        return min(live)[1] if live else "-"

    def shelf_horizon(self) -> float:
        """How far every shelf controller has been fed (s UTC), counting a silent one until it has been silent for
        ``bill_wait_s``: billing waits for a controller's outage that long (its takes would otherwise reach
        billed visits), then goes on without it (the visit's late events go to review as corrections)."""
        wall = self._looked()
        shelves = [t for s, (t, seen) in self.sources.items()
                   if s.startswith("shelf:") and wall - seen <= self.bill_wait_s]
        return min(shelves) if shelves else math.inf

    def _apply(self, kind: str, sid: str, rec: dict) -> None:
        self.stats.records[kind] = self.stats.records.get(kind, 0) + 1
        try:
            if "_error" in rec:
                raise RecordError(rec["_error"])
            if kind == "shelf":
                controller, bins, t, grams, rate = decode_shelf(rec)
                self.pipeline.on_samples(bin_codes=bins, t=t, grams=grams, rate_hz=rate)
                if len(t):
                    self._seen(f"shelf:{controller}", float(t[-1]))
            elif kind == "obs":
                source, obs, t_last = decode_obs(rec)
                if self.cameras.refuses(source):  # a --no-join camera while the others are joined
                    self.stats.unjoined_records += 1
                    self.sources.pop(f"obs:{source}", None)  # not waited for
                    return
                self.pipeline.loop.on_observations(obs)
                if t_last is not None:
                    self._seen(f"obs:{source}", t_last)
            elif kind == "cam":
                camera, t_last = self.cameras.add(rec, now=self._looked())  # all of it or nothing
                self._seen(f"cam:{camera}", t_last)
            elif kind == "tag":
                # evidence, not a clock: an exit-only reader is silent between shoppers, so it never holds the
                # watermark back (billing waits the exit settle time, which covers a pass's reads)
                _, events, _ = decode_tag(rec)
                self.pipeline.loop.on_tags(events)
            elif kind == "gate":
                visit, t = int(rec["visit"]), float(rec["t"])
                if not math.isfinite(t):
                    raise RecordError("non-finite time")
                if rec["event"] == "entry":
                    lead = rec.get("party_lead")
                    self.pipeline.loop.on_gate_entry(visit=visit, t=t, party_lead=int(lead) if lead else None,
                                                     gate=str(rec.get("gate") or ""))
                elif rec["event"] == "exit":
                    self.pipeline.loop.on_visit_exit(visit=visit, t=t)
                else:
                    raise RecordError(f"unknown gate event {rec['event']!r}")
            else:
                raise RecordError(f"unknown stream kind {kind!r}")
        except (RecordError, KeyError, TypeError, ValueError) as exc:
            self.stats.bad_records += 1
            log.warning("store %s: record %s on %s dropped: %s", self.store.code, sid, kind, exc)

    def _looked(self) -> float:
        """Monotonic s of the latest read of the streams (now, before the first)."""
        return self._read_at if self._read_at is not None else time.monotonic()

    def _seen(self, source: str, t: float) -> None:
        entry = self.sources.get(source)
        if entry is None:
            self.sources[source] = [t, self._looked()]
        else:
            entry[0] = max(entry[0], t)
            entry[1] = self._looked()
        if source in self.down:
            self.down.discard(source)
            self._resolve_down(source)

    def watermark(self) -> float:
        """The source time every live source has reached (s UTC): the slowest live source's latest time. A
        source silent for ``source_down_s`` wall seconds (up to this worker's latest read of the streams: its own
        long steps do not count) is down (alerted; not waited for); with every source
        down, time goes on at the wall clock's pace from the latest record."""
        if not self.sources:
            return -math.inf
        wall = self._looked()
        live = []
        for source, (t, seen) in self.sources.items():
            if wall - seen <= self.source_down_s:
                if not source.startswith("cam:"):  # a camera's frames reach the loop through the join's clock
                    live.append(t)
            elif source not in self.down:
                self.down.add(source)
                self._alert_down(source, wall - seen)
        if live:
            return min(live)
        clocks = [v for s, v in self.sources.items() if not s.startswith("cam:")] or list(self.sources.values())
        t, seen = max(clocks, key=lambda v: v[0])
        return t + (wall - seen)

    def _alert_down(self, source: str, silent_s: float) -> None:
        StoreAlert.objects.update_or_create(
            store=self.store, kind=StoreAlert.Kind.SOURCE_DOWN, key=source,
            defaults={"message": f"{source} sent nothing for {silent_s:.0f} s: events it should have seen go to "
                                 f"review", "resolved_at": None})
        log.warning("store %s: source %s is down", self.store.code, source)

    def _resolve_down(self, source: str) -> None:
        StoreAlert.objects.filter(store=self.store, kind=StoreAlert.Kind.SOURCE_DOWN, key=source,
                                  resolved_at__isnull=True).update(resolved_at=timezone.now())
