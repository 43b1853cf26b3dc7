"""The live RFID path (Django shell over :mod:`sensors.rfid`): readers (registration, API keys, problem counters),
the tag registry (what each serial is, where it was last read, which visit paid for it), and :class:`RfidIngestor`,
which validates authenticated reader messages, records tags and tag events, and hands the events to a
:class:`TagSink` (the store loop's ``tag`` stream when the loop is on: ``carts.runtime_publish``).

Like :class:`sensors.live.ShelfIngestor`, one ingestor owns its readers' shelf-tag state, so one process feeds a
store: the MQTT worker (``manage.py ingest_mqtt``) in production, the process-wide :func:`http_rfid_ingestor` of
the HTTP endpoint in the embedded profile (in production the endpoint forwards to the broker).
"""
from __future__ import annotations

import collections
import hashlib
import logging
import math
import re
import secrets
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Protocol

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from store.inventory.models import Product
from store.layout.models import Bin, Store

from .models import ReaderProblem, RfidAntenna, RfidReader, RfidTag, TagEvent
from .rfid import ReadProblem, ShelfTagConfig, ShelfTagTracker, TagEvent as TagEventData, gtin14, parse_reads
from .services import utc

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- readers
class ReaderInputError(ValueError):
    """A reader registration that cannot be saved; the message says why."""


def reader_key_hash(api_key: str) -> str:
    """SHA-256 hex digest of a reader's API key (the database never stores the key)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def reader_create(*, store: Store, name: str, antennas: Iterable[Mapping[str, Any]],
                  clock_offset_s: float = 0.0) -> tuple[RfidReader, str]:
    """Register an RFID reader of ``store`` with its ``antennas``: ``[{"port": 1, "kind": "shelf", "bin": "1-1-3"}
    | {"port": 2, "kind": "exit", "lane": "door-1"}]``. Returns the reader and its API key (shown once). Raises
    :class:`ReaderInputError` for a bad or taken name, no antenna, a repeated port, a bin of another store or an
    exit antenna without a lane."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name or ""):
        raise ReaderInputError(f"reader name {name!r} must be 1–64 letters, digits, - or _")
    if not math.isfinite(clock_offset_s):
        raise ReaderInputError("clock_offset_s must be finite")
    specs = list(antennas)
    if not specs:
        raise ReaderInputError("a reader needs at least one antenna")
    rows = []
    for a in specs:
        port, kind = a.get("port"), a.get("kind")
        if not (isinstance(port, int) and 1 <= port <= 64):
            raise ReaderInputError(f"antenna port {port!r} must be 1 … 64")
        if kind == RfidAntenna.Kind.SHELF:
            b = Bin.objects.filter(store=store, code=a.get("bin")).first()
            if b is None:
                raise ReaderInputError(f"store {store.code} has no bin {a.get('bin')!r}")
            rows.append(RfidAntenna(port=port, kind=kind, bin=b))
        elif kind == RfidAntenna.Kind.EXIT:
            lane = str(a.get("lane") or "").strip()
            if not lane:
                raise ReaderInputError(f"exit antenna {port} needs a lane name")
            rows.append(RfidAntenna(port=port, kind=kind, lane=lane[:64]))
        else:
            raise ReaderInputError(f"antenna kind {kind!r} must be shelf or exit")
    if len({r.port for r in rows}) != len(rows):
        raise ReaderInputError("each antenna port once")
    if RfidReader.objects.filter(store=store, name=name).exists():
        raise ReaderInputError(f"store {store.code} already has a reader named {name!r}")
    api_key = secrets.token_urlsafe(32)
    with transaction.atomic():
        reader = RfidReader.objects.create(store=store, name=name, api_key_hash=reader_key_hash(api_key),
                                           clock_offset_s=float(clock_offset_s))
        for r in rows:
            r.reader = reader
        RfidAntenna.objects.bulk_create(rows)
    return reader, api_key


def reader_authenticate(*, api_key: str) -> RfidReader | None:
    """The active reader whose API key is ``api_key`` (its store loaded), else None."""
    if not api_key or len(api_key) > 200:
        return None
    return (RfidReader.objects.select_related("store")
            .filter(api_key_hash=reader_key_hash(api_key), active=True).first())


def reader_problems_record(*, reader: RfidReader, problems: Iterable[ReadProblem]) -> int:
    """Add ``problems`` to the reader's per-reason counters (count, reads lost, last message and time); each is
    logged at WARNING. Returns how many were recorded."""
    problems = list(problems)
    if not problems:
        return 0
    counts = Counter(p.reason for p in problems)
    lost: dict[str, int] = defaultdict(int)
    last: dict[str, str] = {}
    for p in problems:
        lost[p.reason] += p.reads_lost
        last[p.reason] = p.message
        log.warning("%s", p.message)
    now = timezone.now()
    for reason, n in counts.items():
        row, _ = ReaderProblem.objects.get_or_create(reader=reader, reason=reason)
        ReaderProblem.objects.filter(pk=row.pk).update(count=F("count") + n, reads_lost=F("reads_lost") + lost[reason],
                                                       last_message=last[reason][:300], last_at=now)
    return len(problems)


def reader_counters(*, reader: RfidReader) -> dict[str, int]:
    """{reason: count} of the reader's problems so far."""
    return dict(ReaderProblem.objects.filter(reader=reader).values_list("reason", "count"))


# --------------------------------------------------------------------------------------------- tag registry
def barcode_of_gtin(*, store: Store) -> dict[str, str]:
    """GTIN-14 → catalogue barcode for the store's products whose barcode is a GTIN (``sensors.rfid.gtin14``)."""
    out = {}
    for barcode in Product.objects.filter(store=store).values_list("barcode", flat=True):
        g = gtin14(barcode)
        if g is not None:
            out[g] = barcode
    return out


def tags_sold(*, store: Store, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(GTIN-14, serial) → the visit id that paid for it, for those of ``keys`` sold already."""
    keys = set(keys)
    if not keys:
        return {}
    rows = RfidTag.objects.filter(store=store, gtin__in={g for g, _ in keys}, sold_visit__isnull=False)
    return {(r.gtin, r.serial): r.sold_visit_id for r in rows if (r.gtin, r.serial) in keys}


def tag_sell(*, store: Store, gtin: str, serial: str, epc: str, visit, charged: bool, at) -> bool:
    """Mark the tag (created if never read before) as paid for by ``visit`` at ``at`` (``charged``: the tag put it
    on the receipt; False: it confirmed a unit charged by weight). Atomic and conditional: False when another
    visit (or this one) already holds it — a serial is sold once."""
    with transaction.atomic():
        tag, _ = RfidTag.objects.get_or_create(store=store, gtin=gtin, serial=serial, defaults={"epc": epc})
        n = RfidTag.objects.filter(pk=tag.pk, sold_visit__isnull=True).update(
            sold_visit=visit, sold_at=at, charged=charged)
    return n == 1


# --------------------------------------------------------------------------------------------- ingestion
class TagSink(Protocol):
    """Where tag events go: ``on_tags(*, store, reader, events, t_last)`` with ``events`` a list of
    ``sensors.rfid.TagEvent`` (store clock) and ``t_last`` the reader's latest time (s UTC)."""

    def on_tags(self, *, store: Store, reader: str, events: list[TagEventData], t_last: float) -> None: ...


_tag_sink_factory: Callable[[], TagSink | None] | None = None


def set_default_tag_sink_factory(factory: Callable[[], TagSink | None] | None) -> None:
    """Let ``carts`` choose where ingestors send tag events (its store loop's ``tag`` stream); an injected
    callback, so that sensors never imports the apps above it."""
    global _tag_sink_factory
    _tag_sink_factory = factory


@dataclass(frozen=True)
class RfidOutcome:
    """What one message did: ``reads`` accepted, tag ``events`` produced, ``problems``, ``rejected`` (nothing
    used), ``duplicate`` (a sequence number already taken)."""

    reads: int
    events: int
    problems: tuple[ReadProblem, ...]
    rejected: bool = False
    duplicate: bool = False


@dataclass
class _ReaderState:
    reader: RfidReader
    ports: dict[int, tuple[str, str]]                # port → (kind, where)
    tracker: ShelfTagTracker
    seqs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1024))
    last_exit: dict[str, float] = field(default_factory=dict)   # epc → last exit read (one TagEvent row per pass)


@dataclass
class RfidStats:
    """Totals of one ingestor: messages, reads accepted, tag events, problems by reason, refused messages of no
    known reader (``unknown``)."""

    messages: int = 0
    reads: int = 0
    events: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    unknown: int = 0


class RfidIngestor:
    """Validates and records authenticated reader messages, and sends their tag events to ``sink`` (default: the
    registered factory's, else none). ``shelf``: knobs of the shelf-tag tracker. Not thread-safe."""

    #: An exit read this long after the tag's previous one at an exit is a new pass (a new ``exit`` row).
    PASS_GAP_S = 10.0

    def __init__(self, *, sink: TagSink | None = None, shelf: ShelfTagConfig = ShelfTagConfig()) -> None:
        self.sink = sink if sink is not None else (_tag_sink_factory() if _tag_sink_factory else None)
        self.shelf_config = shelf
        self.stats = RfidStats()
        self._states: dict[int, _ReaderState] = {}
        self._gtins: dict[int, tuple[float, dict[str, str]]] = {}

    def _state(self, reader: RfidReader) -> _ReaderState:
        state = self._states.get(reader.pk)
        if state is None:
            ports = {a.port: (a.kind, a.where) for a in RfidAntenna.objects.filter(reader=reader).select_related("bin")}
            state = self._states[reader.pk] = _ReaderState(reader, ports, ShelfTagTracker(
                shelf_of={p: w for p, (k, w) in ports.items() if k == RfidAntenna.Kind.SHELF},
                lane_of={p: w for p, (k, w) in ports.items() if k == RfidAntenna.Kind.EXIT}, config=self.shelf_config))
        else:
            state.reader = reader
        return state

    def _barcodes(self, store: Store) -> dict[str, str]:
        cached = self._gtins.get(store.pk)
        if cached is None or time.monotonic() - cached[0] > 30.0:
            cached = self._gtins[store.pk] = (time.monotonic(), barcode_of_gtin(store=store))
        return cached[1]

    def refuse(self, *, reader: RfidReader | None, message: str) -> None:
        """Log and count a refused message (bad key, unknown reader, unreadable topic)."""
        self.stats.problems["unauthenticated"] = self.stats.problems.get("unauthenticated", 0) + 1
        if reader is None:
            self.stats.unknown += 1
            log.warning("%s", message)
            return
        reader_problems_record(reader=reader, problems=[ReadProblem("unauthenticated", f"reader {reader.name}: "
                                                                                        f"{message}")])

    def handle(self, *, reader: RfidReader, payload: bytes | str | Mapping[str, Any]) -> RfidOutcome:
        """Validate and use one message of an AUTHENTICATED ``reader``. Bad input never raises: it is counted."""
        state = self._state(reader)
        store = reader.store
        self.stats.messages += 1
        msg = parse_reads(payload, store=store.code, reader=reader.name, antennas=state.ports)
        problems = list(msg.problems)
        if not msg.rejected and msg.seq in state.seqs:
            problems = [ReadProblem("duplicate", f"reader {reader.name}: seq {msg.seq} already taken; dropped",
                                    len(msg.reads))]
            self._count(reader, problems)
            return RfidOutcome(0, 0, tuple(problems), rejected=True, duplicate=True)
        if msg.rejected:
            self._count(reader, problems)
            return RfidOutcome(0, 0, tuple(problems), rejected=True)
        state.seqs.append(msg.seq)
        offset = float(reader.clock_offset_s)
        reads = [replace(r, t=r.t + offset) for r in msg.reads] if offset else list(msg.reads)
        barcodes = self._barcodes(store)
        unknown = sorted({r.tag.gtin for r in reads if r.tag.gtin not in barcodes})
        if unknown:
            problems.append(ReadProblem("unknown_product", f"reader {reader.name} seq {msg.seq}: GTIN(s) "
                                                           f"{', '.join(unknown[:5])} not in the catalogue"))
        events = state.tracker.push(reads)
        self._record(state, reads, events, barcodes)
        self._count(reader, problems)
        if reads:
            RfidReader.objects.filter(pk=reader.pk).update(messages=F("messages") + 1, reads=F("reads") + len(reads),
                                                           last_seen_at=timezone.now())
        if self.sink is not None and (events or reads):
            self.sink.on_tags(store=store, reader=reader.name, events=events,
                              t_last=max((r.t for r in reads), default=state.tracker.now))
        self.stats.reads += len(reads)
        self.stats.events += len(events)
        return RfidOutcome(len(reads), len(events), tuple(problems))

    def poll(self, now: float | None = None) -> int:
        """Takes of tags gone quiet by ``now`` (s UTC, default the wall clock) on every reader; returns how many."""
        now = time.time() if now is None else now
        n = 0
        for state in self._states.values():
            events = state.tracker.advance(now)
            if events:
                barcodes = self._barcodes(state.reader.store)
                self._record(state, [], events, barcodes)
                if self.sink is not None:
                    self.sink.on_tags(store=state.reader.store, reader=state.reader.name, events=events, t_last=now)
                n += len(events)
        self.stats.events += n
        return n

    def _count(self, reader: RfidReader, problems: list[ReadProblem]) -> None:
        for p in problems:
            self.stats.problems[p.reason] = self.stats.problems.get(p.reason, 0) + 1
        reader_problems_record(reader=reader, problems=problems)

    def _record(self, state: _ReaderState, reads, events: list[TagEventData], barcodes: dict[str, str]) -> None:
        """Upsert the tags read (last seen, where, product) and store the take/return events and the first exit
        read of each pass."""
        store = state.reader.store
        latest: dict[tuple[str, str], Any] = {}
        for r in reads:
            latest[r.tag.key] = r
        keys = set(latest) | {(e.gtin, e.serial) for e in events}
        if not keys:
            return
        products = dict(Product.objects.filter(store=store, barcode__in=set(barcodes.values()))
                        .values_list("barcode", "pk")) if barcodes else {}
        with transaction.atomic():
            tags = {(t.gtin, t.serial): t for t in RfidTag.objects.filter(
                store=store, gtin__in={g for g, _ in keys}, serial__in={s for _, s in keys})}
            for key in keys:
                tag = tags.get(key)
                r = latest.get(key)
                epc = r.tag.epc if r is not None else next(e.epc for e in events if (e.gtin, e.serial) == key)
                product_id = products.get(barcodes.get(key[0], ""))
                if tag is None:
                    tag = tags[key] = RfidTag.objects.create(store=store, gtin=key[0], serial=key[1], epc=epc,
                                                             product_id=product_id)
                if r is not None:
                    where = state.ports.get(r.antenna, ("", ""))[1]
                    RfidTag.objects.filter(pk=tag.pk).update(last_seen_at=utc(r.t), last_where=where, epc=epc,
                                                             product_id=product_id)
            rows = []
            for e in events:
                if e.kind == "exit":
                    last = state.last_exit.get(e.epc)
                    state.last_exit[e.epc] = e.t
                    if last is not None and e.t - last < self.PASS_GAP_S:
                        continue
                rows.append(TagEvent(store=store, tag=tags[(e.gtin, e.serial)], kind=e.kind, t=utc(e.t),
                                     where=e.where, rssi_dbm=e.rssi_dbm, on_shelf=e.on_shelf, reader=state.reader))
            TagEvent.objects.bulk_create(rows, ignore_conflicts=True)
        if len(state.last_exit) > 100_000:
            state.last_exit.clear()


_http_lock = threading.Lock()
_http: RfidIngestor | None = None


def http_rfid_ingestor() -> tuple[RfidIngestor, threading.Lock]:
    """The process-wide ingestor the HTTP endpoint feeds in the embedded profile, and its lock."""
    global _http
    with _http_lock:
        if _http is None:
            _http = RfidIngestor()
        return _http, _http_lock


def http_rfid_ingestor_reset() -> None:
    """Forget the process-wide ingestor (tests)."""
    global _http
    with _http_lock:
        _http = None
