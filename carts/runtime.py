"""The live store runtime: records on streams between processes, and the store worker that runs the store loop.

Producers publish time-stamped **records** on one stream per store and source kind (:data:`KINDS`): ``shelf``
(validated sample blocks of a shelf controller: ``ingest_mqtt``, or the HTTP controller API), ``obs`` (shopper-
track observations in store metres: the camera workers, the external-tracker adapter), ``gate`` (entries and exit
scans: the gate API), ``tag`` (RFID tag events: shelf takes and returns, exit-lane reads; ``ingest_mqtt`` or the
HTTP reader API), ``cam`` (a camera's tracked frames, :func:`cam_record`: the camera workers of a store with several
cameras, ``run_camera --join``). The **store worker** (:class:`StoreWorker`, ``manage.py run_store STORE``) is the one
consumer per store: it feeds the records to a :class:`carts.loop.StoreLoop` writing to the database
(:class:`carts.pipeline.DatabaseSink`), joins its cameras' ``cam`` records into shoppers (one
``vision.shoppers.ShopperStream`` for the store: multi-camera association, triangulated and single-view wrists,
``vision.shoppers.LIVE_LAG_S`` behind the slowest camera; fed to the loop as the one source :data:`CAMERAS_JOINED`;
a camera silent for ``source_down_s`` is no longer waited for, alerted as ``cam:<name>``, and joins again when it
sends), advances the loop to the slowest live source (a source silent for
``source_down_s`` is declared down, alerted, and no longer waited for), checkpoints the loop's state with the
stream offsets every ``checkpoint_every_s``, and only then acknowledges what it read.

Transport (:func:`bus`): **Redis Streams** in the production profile (:class:`RedisBus`: ``XADD``, a consumer group
per stream, ``XACK`` after the checkpoint, ``XTRIM MINID`` of what is acknowledged; a lease key keeps one active
worker per store, a second one stands by and takes over when the lease lapses); an in-process :class:`MemoryBus`
in the embedded profile, where the worker runs as a thread of the process that publishes (:func:`local_worker`).

Crash safety: a worker killed at any moment restarts from its last checkpoint and re-reads every record after
its offsets; every output is idempotent (``carts.pipeline.DatabaseSink``), so nothing is lost and nothing is done
twice. DESIGN.md "Running a store live".
"""
from __future__ import annotations

import base64
import json
import logging
import math
import os
import pickle
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

import numpy as np

from store.recording import TrackObservations

log = logging.getLogger(__name__)

#: Stream kinds, one stream per store and kind.
KINDS = ("shelf", "obs", "gate", "tag", "cam")
#: Source name of the store worker's join of its cameras' ``cam`` records (its clock: how far the join has written).
CAMERAS_JOINED = "cameras"
#: Largest record the worker accepts (bytes of JSON): a block of 306 plates × 60 samples is ~100 kB.
MAX_RECORD_BYTES = 4_000_000


class RecordError(ValueError):
    """A record on a stream that cannot be read (the worker counts it and goes on)."""


# ------------------------------------------------------------------------------------------------- records
def _b64(arr: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str, n: int) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.size != n:
        raise RecordError(f"expected {n} values, got {arr.size}")
    return arr


def shelf_record(*, controller: str, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray,
                 rate_hz: float) -> dict:
    """A block of one controller's samples: ``t`` (n,) s UTC (clock offset applied), ``grams`` (n, B) for
    ``bin_codes`` (B). Raises ValueError on shapes."""
    t = np.asarray(t, dtype=np.float64)
    grams = np.asarray(grams, dtype=np.float32)
    if grams.shape != (t.shape[0], len(bin_codes)):
        raise ValueError(f"grams must be ({t.shape[0]}, {len(bin_codes)}), got {grams.shape}")
    return {"controller": controller, "bins": list(bin_codes), "rate_hz": float(rate_hz), "n": int(t.shape[0]),
            "t": _b64(t, "<f8"), "grams": _b64(grams, "<f4"), "t_last": float(t[-1]) if len(t) else None}


def obs_record(*, source: str, obs: TrackObservations, t_last: float | None = None) -> dict:
    """Shopper-track observations of one source (a camera worker, a tracker adapter) up to ``t_last`` (s UTC;
    default the latest observation's time): a frame with nobody in it still moves the source's clock."""
    n = len(obs)
    if t_last is None:
        t_last = float(obs.t.max()) if n else None
    return {"source": source, "n": n, "t_last": t_last, "track": [str(x) for x in obs.track_id],
            "keypoint": [str(x) for x in obs.keypoint], "t": _b64(obs.t, "<f8"), "xyz": _b64(obs.xyz, "<f8"),
            "score": _b64(obs.score, "<f8")}


def gate_record(*, event: str, visit: int, t: float, party_lead: int | None = None, gate: str = "") -> dict:
    """A gate's entry (``event`` "entry": ``visit`` admitted at ``t`` s UTC, ``party_lead`` the visit whose party it
    joined) or exit scan ("exit")."""
    if event not in ("entry", "exit"):
        raise ValueError(f"gate event must be entry or exit, got {event!r}")
    return {"event": event, "visit": int(visit), "t": float(t), "party_lead": party_lead, "gate": gate}


def tag_record(*, reader: str, events: list, t_last: float) -> dict:
    """RFID tag events of one reader (``sensors.rfid.TagEvent``, s UTC on the store clock) up to ``t_last``."""
    return {"reader": reader, "t_last": float(t_last), "events": [e.as_dict() for e in events]}


def decode_tag(rec: dict) -> tuple[str, list, float]:
    """(reader, [sensors.rfid.TagEvent], t_last) of a :func:`tag_record`. Raises RecordError."""
    from sensors.rfid import TagEvent

    try:
        events = [TagEvent.from_dict(d) for d in rec["events"]]
        t_last = float(rec["t_last"])
        if not math.isfinite(t_last):
            raise RecordError("non-finite t_last")
        return str(rec["reader"]), events, t_last
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad tag record: {exc}") from None


def decode_shelf(rec: dict) -> tuple[str, tuple[str, ...], np.ndarray, np.ndarray, float]:
    """(controller, bin codes, t (n,), grams (n, B), rate Hz) of a :func:`shelf_record`. Raises RecordError."""
    try:
        bins = tuple(str(b) for b in rec["bins"])
        n = int(rec["n"])
        t = _unb64(rec["t"], "<f8", n)
        grams = _unb64(rec["grams"], "<f4", n * len(bins)).reshape(n, len(bins)).astype(np.float64)
        rate = float(rec["rate_hz"])
        if not (bins and np.isfinite(t).all() and rate > 0):
            raise RecordError("empty bins, non-finite times or a bad rate")
        return str(rec["controller"]), bins, t, grams, rate
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad shelf record: {exc}") from None


def cam_record(*, camera: str, frames: list, t_last: float) -> dict:
    """A camera's tracked frames for the store worker's join: ``frames`` (``vision.tracking.FrameTracks`` of
    ``camera``, time order, s UTC with the camera's clock offset applied; boxes are not sent) up to ``t_last`` (s UTC:
    a frame with nobody in it, or none at all, still moves the camera's clock). Raises ValueError for a frame of
    another camera, frames out of order or after ``t_last``."""
    out, prev = [], -math.inf
    for ft in frames:
        if ft.camera != camera:
            raise ValueError(f"frame of camera {ft.camera!r} in a record of {camera!r}")
        if not prev <= ft.t <= t_last:
            raise ValueError(f"frame times must be in order and at most t_last {t_last}, got {ft.t}")
        prev = ft.t
        n = len(ft)
        out.append({"session": ft.session, "frame": int(ft.frame), "t": float(ft.t), "n": n,
                    "key": [str(k) for k in ft.key], "raw_id": _b64(ft.raw_id, "<i8"),
                    "confidence": _b64(ft.confidence, "<f8"), "floor_xy": _b64(ft.floor_xy, "<f8"),
                    "wrists_xyz": _b64(ft.wrists_xyz, "<f8"), "wrist_score": _b64(ft.wrist_score, "<f8"),
                    "hands_source": ft.hands_source,
                    "wrist_rays": None if ft.wrist_rays is None else _b64(ft.wrist_rays, "<f8")})
    return {"camera": camera, "t_last": float(t_last), "frames": out}


def decode_cam(rec: dict) -> tuple[str, list, float]:
    """(camera, [``vision.tracking.FrameTracks``] in time order, t_last s UTC) of a :func:`cam_record`; boxes are
    zeros. Raises RecordError: missing fields, sizes that do not match ``n``, non-finite times or infinite positions
    (NaN is "not placed"), frames out of order or after ``t_last``."""
    from vision.tracking import FrameTracks

    try:
        camera = str(rec["camera"])
        t_last = float(rec["t_last"])
        if not camera or not math.isfinite(t_last):
            raise RecordError("no camera or a non-finite t_last")
        frames, prev = [], -math.inf
        for f in rec["frames"]:
            n, t = int(f["n"]), float(f["t"])
            if n < 0 or not (math.isfinite(t) and prev <= t <= t_last):
                raise RecordError(f"frame at {t} out of order, after t_last or with {n} tracks")
            prev = t
            key = np.array([str(k) for k in f["key"]], dtype=object).reshape(n)
            rays = f.get("wrist_rays")
            ft = FrameTracks(camera=camera, session=str(f["session"]), frame=int(f["frame"]), t=t, key=key,
                             raw_id=_unb64(f["raw_id"], "<i8", n).copy(), xyxy=np.zeros((n, 4), np.float32),
                             confidence=_unb64(f["confidence"], "<f8", n).copy(),
                             floor_xy=_unb64(f["floor_xy"], "<f8", 2 * n).reshape(n, 2).copy(),
                             wrists_xyz=_unb64(f["wrists_xyz"], "<f8", 6 * n).reshape(n, 2, 3).copy(),
                             wrist_score=_unb64(f["wrist_score"], "<f8", 2 * n).reshape(n, 2).copy(),
                             hands_source=str(f.get("hands_source") or "none"),
                             wrist_rays=None if rays is None else _unb64(rays, "<f8", 12 * n).reshape(n, 2, 6).copy())
            if any(np.isinf(a).any() for a in (ft.floor_xy, ft.wrists_xyz, ft.confidence, ft.wrist_score)) or \
                    (ft.wrist_rays is not None and np.isinf(ft.wrist_rays).any()):
                raise RecordError(f"infinite values in the frame at {t}")
            frames.append(ft)
        return camera, frames, t_last
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(f"bad camera record: {exc}") from None


def decode_obs(rec: dict) -> tuple[str, TrackObservations, float | None]:
    """(source, observations, t_last) of an :func:`obs_record`. Raises RecordError."""
    try:
        n = int(rec["n"])
        track = np.array([str(x) for x in rec["track"]], dtype=object)
        kp = np.array([str(x) for x in rec["keypoint"]], dtype=object)
        obs = TrackObservations(track.reshape(n), _unb64(rec["t"], "<f8", n).copy(), kp.reshape(n),
                                _unb64(rec["xyz"], "<f8", 3 * n).reshape(n, 3).copy(),
                                _unb64(rec["score"], "<f8", n).copy())
        if not (np.isfinite(obs.t).all() and np.isfinite(obs.xyz).all()):
            raise RecordError("non-finite times or positions")
        t_last = rec.get("t_last")
        return str(rec["source"]), obs, (None if t_last is None else float(t_last))
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad observation record: {exc}") from None


# ---------------------------------------------------------------------------------------------------- buses
class Bus(Protocol):
    """Streams of records per store and kind, a lease per store and a checkpoint per store."""

    def publish(self, store: str, kind: str, record: dict) -> str:
        """Append ``record`` to the store's ``kind`` stream; returns its id."""

    def read(self, store: str, *, count: int = 500, block_ms: int = 100) -> list[tuple[str, str, dict]]:
        """The next records of the store's streams for its worker: (kind, id, record), oldest first per kind."""

    def rewind(self, store: str, offsets: dict[str, str]) -> None:
        """Re-read from just after ``offsets`` (kind → last id already applied): a worker restarting."""

    def ack(self, store: str, offsets: dict[str, str]) -> None:
        """Everything up to ``offsets`` is applied and checkpointed: acknowledge it and let it go."""

    def lease(self, store: str, owner: str, ttl_s: float) -> bool:
        """Take or renew the store's worker lease for ``owner``; False while another owner holds it."""

    def release(self, store: str, owner: str) -> None:
        """Give the lease up (a clean shutdown)."""

    def save_checkpoint(self, store: str, data: bytes) -> None: ...

    def load_checkpoint(self, store: str) -> bytes | None: ...

    def save_chunks(self, store: str, chunks: Mapping[str, bytes]) -> None:
        """Keep the checkpoint's observation chunks (``carts.chunks.PackedChunk``; each written once)."""

    def load_chunk(self, store: str, key: str) -> bytes | None: ...

    def drop_chunks(self, store: str, keys: Iterable[str]) -> None: ...

    def chunk_keys(self, store: str) -> set[str]:
        """Keys of every chunk kept for ``store`` (to find those no checkpoint refers to)."""


def _id_key(stream_id: str) -> tuple[int, int]:
    a, _, b = stream_id.partition("-")
    return int(a), int(b or 0)


class MemoryBus:
    """In-process streams (the embedded profile): bounded only by acknowledgement, like the Redis streams."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._streams: dict[tuple[str, str], deque[tuple[str, dict]]] = {}
        self._seq = 0
        self._cursor: dict[tuple[str, str], str] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._checkpoints: dict[str, bytes] = {}
        self._chunks: dict[tuple[str, str], bytes] = {}

    def publish(self, store: str, kind: str, record: dict) -> str:
        with self._lock:
            self._seq += 1
            sid = f"{self._seq}-0"
            self._streams.setdefault((store, kind), deque()).append((sid, record))
            self._lock.notify_all()
            return sid

    def read(self, store: str, *, count: int = 500, block_ms: int = 100) -> list[tuple[str, str, dict]]:
        with self._lock:
            out = self._take(store, count)
            if not out and block_ms > 0:
                self._lock.wait(block_ms / 1000)
                out = self._take(store, count)
            return out

    def _take(self, store: str, count: int) -> list[tuple[str, str, dict]]:
        out = []
        for kind in KINDS:
            stream = self._streams.get((store, kind))
            if not stream:
                continue
            after = _id_key(self._cursor.get((store, kind), "0-0"))
            for sid, rec in stream:
                if _id_key(sid) > after:
                    out.append((kind, sid, rec))
                    if len(out) >= count:
                        break
            if out and out[-1][0] == kind:
                self._cursor[(store, kind)] = out[-1][1]
            if len(out) >= count:
                break
        return out

    def rewind(self, store: str, offsets: dict[str, str]) -> None:
        with self._lock:
            for kind in KINDS:
                self._cursor[(store, kind)] = offsets.get(kind, "0-0")

    def ack(self, store: str, offsets: dict[str, str]) -> None:
        with self._lock:
            for kind, sid in offsets.items():
                stream = self._streams.get((store, kind))
                while stream and _id_key(stream[0][0]) <= _id_key(sid):
                    stream.popleft()

    def backlog(self, store: str) -> int:
        """Records published and not yet acknowledged (tests, the emulator's wait for the end)."""
        with self._lock:
            return sum(len(v) for (s, _), v in self._streams.items() if s == store)

    def lease(self, store: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            held = self._leases.get(store)
            if held is not None and held[0] != owner and held[1] > time.monotonic():
                return False
            self._leases[store] = (owner, time.monotonic() + ttl_s)
            return True

    def release(self, store: str, owner: str) -> None:
        with self._lock:
            if self._leases.get(store, ("",))[0] == owner:
                del self._leases[store]

    def save_checkpoint(self, store: str, data: bytes) -> None:
        with self._lock:
            self._checkpoints[store] = data

    def load_checkpoint(self, store: str) -> bytes | None:
        with self._lock:
            return self._checkpoints.get(store)

    def save_chunks(self, store: str, chunks: Mapping[str, bytes]) -> None:
        with self._lock:
            self._chunks.update({(store, k): v for k, v in chunks.items()})

    def load_chunk(self, store: str, key: str) -> bytes | None:
        with self._lock:
            return self._chunks.get((store, key))

    def drop_chunks(self, store: str, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._chunks.pop((store, k), None)

    def chunk_keys(self, store: str) -> set[str]:
        with self._lock:
            return {k for s, k in self._chunks if s == store}


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisBus:
    """Redis Streams (the production profile). Streams ``walkout:<store>:<kind>`` with a consumer group
    ``store-worker`` read by the one consumer ``active`` (whoever holds the lease ``walkout:<store>:lease``);
    the checkpoint is ``walkout:<store>:checkpoint``. Records are JSON in the field ``r``."""

    GROUP = "store-worker"
    CONSUMER = "active"

    def __init__(self, url: str, *, prefix: str = "walkout") -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.prefix = prefix
        self._groups: set[str] = set()
        self._cursor: dict[str, str] = {}  # kind → "0" while re-reading the pending list, else ">"
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    def key(self, store: str, kind: str) -> str:
        return f"{self.prefix}:{store}:{kind}"

    def _group(self, key: str) -> None:
        if key in self._groups:
            return
        import redis

        try:
            self.redis.xgroup_create(key, self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:  # BUSYGROUP: it exists
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    def publish(self, store: str, kind: str, record: dict) -> str:
        sid = self.redis.xadd(self.key(store, kind), {"r": json.dumps(record, separators=(",", ":"))})
        return sid.decode() if isinstance(sid, bytes) else sid

    def read(self, store: str, *, count: int = 500, block_ms: int = 100) -> list[tuple[str, str, dict]]:
        out: list[tuple[str, str, dict]] = []
        for kind in KINDS:
            self._group(self.key(store, kind))
        # first what this consumer was given and did not acknowledge (a restart: cursor "0" or the last id
        # re-read), then new entries (">")
        for kind in KINDS:
            cursor = self._cursor.get(kind, "0")
            if cursor == ">":
                continue
            got = self.redis.xreadgroup(self.GROUP, self.CONSUMER, {self.key(store, kind): cursor}, count=count)
            entries = got[0][1] if got else []
            if not entries:
                self._cursor[kind] = ">"
                continue
            entries = [self._entry(e) for e in entries]
            self._cursor[kind] = entries[-1][0]
            out += [(kind, sid, rec) for sid, rec in entries]
        if out:
            return out
        got = self.redis.xreadgroup(self.GROUP, self.CONSUMER, {self.key(store, k): ">" for k in KINDS},
                                    count=count, block=block_ms)
        for key, entries in got or []:
            kind = (key.decode() if isinstance(key, bytes) else key).rsplit(":", 1)[1]
            out += [(kind, *self._entry(e)) for e in entries]
        return out

    @staticmethod
    def _entry(entry) -> tuple[str, dict]:
        sid, fields = entry
        sid = sid.decode() if isinstance(sid, bytes) else sid
        raw = fields.get(b"r", fields.get("r", b""))
        try:
            if len(raw) > MAX_RECORD_BYTES:
                raise ValueError(f"{len(raw)} bytes")
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError) as exc:
            rec = {"_error": f"unreadable record {sid}: {exc}"}
        return sid, rec

    def rewind(self, store: str, offsets: dict[str, str]) -> None:
        self._cursor = {kind: "0" for kind in KINDS}  # re-read the pending list; applied ids are skipped

    def ack(self, store: str, offsets: dict[str, str]) -> None:
        pipe = self.redis.pipeline()
        for kind, sid in offsets.items():
            key = self.key(store, kind)
            # every entry up to sid was applied: acknowledge the pending ones, then trim the stream below sid
            pending = self.redis.xpending_range(key, self.GROUP, min="-", max=sid, count=10_000)
            ids = [p["message_id"] for p in pending]
            if ids:
                pipe.xack(key, self.GROUP, *ids)
            pipe.xtrim(key, minid=sid, approximate=False)
        pipe.execute()

    def backlog(self, store: str) -> int:
        total = 0
        for kind in KINDS:
            key = self.key(store, kind)
            self._group(key)
            total += int(self.redis.xlen(key))
        return total

    def lease(self, store: str, owner: str, ttl_s: float) -> bool:
        return bool(self._renew(keys=[f"{self.prefix}:{store}:lease"], args=[owner, int(ttl_s * 1000)]))

    def release(self, store: str, owner: str) -> None:
        self._release(keys=[f"{self.prefix}:{store}:lease"], args=[owner])

    def save_checkpoint(self, store: str, data: bytes) -> None:
        self.redis.set(f"{self.prefix}:{store}:checkpoint", data)

    def load_checkpoint(self, store: str) -> bytes | None:
        return self.redis.get(f"{self.prefix}:{store}:checkpoint")

    def save_chunks(self, store: str, chunks: Mapping[str, bytes]) -> None:
        if chunks:
            self.redis.mset({f"{self.prefix}:{store}:chunk:{k}": v for k, v in chunks.items()})

    def load_chunk(self, store: str, key: str) -> bytes | None:
        return self.redis.get(f"{self.prefix}:{store}:chunk:{key}")

    def drop_chunks(self, store: str, keys: Iterable[str]) -> None:
        names = [f"{self.prefix}:{store}:chunk:{k}" for k in keys]
        for i in range(0, len(names), 500):
            self.redis.delete(*names[i:i + 500])

    def chunk_keys(self, store: str) -> set[str]:
        head = f"{self.prefix}:{store}:chunk:"
        return {(name.decode() if isinstance(name, bytes) else name)[len(head):]
                for name in self.redis.scan_iter(match=head + "*", count=1000)}


_bus_lock = threading.Lock()
_bus: Any = None


def bus():
    """The configured bus: :class:`RedisBus` on ``settings.REDIS_URL`` in the production profile, a process-wide
    :class:`MemoryBus` in the embedded one."""
    global _bus
    from django.conf import settings

    with _bus_lock:
        if _bus is None:
            _bus = (RedisBus(settings.REDIS_URL, prefix=settings.WALKOUT.get("STREAM_PREFIX", "walkout"))
                    if getattr(settings, "PRODUCTION", False) else MemoryBus())
        return _bus


def bus_reset() -> None:
    """Forget the process-wide bus and local workers (tests)."""
    global _bus
    for worker, thread in list(_local.values()):
        worker.stop.set()
        if thread is not None:
            thread.join(10)
    _local.clear()
    with _bus_lock:
        _bus = None


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


class StoreWorker:
    """Runs the store loop of one store on the records of ``bus`` (module docstring).

    ``store_code``: the store; ``session``: ``ShelfEvent.session`` of what it stores (default
    ``settings.WALKOUT["SENSORS_SESSION"]``, "live"); ``checkpoint_every_s``: wall seconds between checkpoints;
    ``source_down_s``: wall seconds of silence after which a source is down; ``lease_s``: the lease's time to live
    (a standby takes over at most this long after the active worker died); ``bill_wait_s``: wall seconds billing
    waits for a silent shelf controller (:meth:`shelf_horizon`). Raises ``Store.DoesNotExist``."""

    def __init__(self, store_code: str, *, bus_: Any = None, session: str | None = None,
                 checkpoint_every_s: float = 2.0, source_down_s: float = 5.0, lease_s: float = 5.0,
                 owner: str | None = None, bill_wait_s: float = 60.0) -> None:
        from django.conf import settings

        from store.layout.models import Store

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
        self._chunks: set[str] = set()  # keys of the observation chunks the saved checkpoint refers to
        #: monotonic s of the latest read of the streams: a source's silence is measured up to the last time this
        #: worker looked, so a long step of its own (a first JIT compile, a slow database) is not a source's silence
        self._read_at: float | None = None
        #: Stepped by the caller that publishes the devices' records, on the caller's thread (:func:`register_local`:
        #: the emulator, ``bench_store``), not by :meth:`run`: the devices cannot send while this worker steps, so
        #: the wall time of its own steps is not their silence (:meth:`step`). A worker of its own thread or
        #: process (``run_store``) leaves it False: there the devices go on sending while it steps, and a source
        #: that sent nothing meanwhile was silent.
        self.driven = False
        #: the join of the store's cameras (``vision.shoppers.ShopperStream``), built at the first ``cam`` record or
        #: restored with the checkpoint; None while no camera sends frames (single cameras publish observations)
        self.join = None
        self._join_since: float | None = None  # monotonic s of the first cam record (or of the restore)
        self._cam_fed = False  # a cam record was applied since the join last wrote

    # -------------------------------------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        """Build the loop, from the checkpoint when there is one, and rewind the streams to its offsets."""
        from django.conf import settings

        from store.gates.models import Visit

        from sensors.services import planogram_for

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
                self.join = state.get("join")
                self._join_since = time.monotonic() if self.join is not None else None
                self.stats.restored = True
                log.info("store %s: resumed from the checkpoint at %s", self.store.code, self.offsets)
            except Exception as exc:  # a checkpoint of older code: start afresh (outputs are idempotent)
                log.error("store %s: checkpoint unreadable (%s); starting afresh", self.store.code, exc)
                loop = None
                self.join, self._join_since = None, None
        self.pipeline = StorePipeline(store=self.store, session=self.session, loop=loop, queue_checkouts=True)
        if settings.WALKOUT.get("PRODUCT_IMAGES", True):  # the product in the taking hand (carts.product_images)
            from vision.hand_crops import HandCropStore

            from .product_images import HandImageEvidence

            from vision.tasks import product_gallery_refresh

            self.pipeline.sink.images = HandImageEvidence(HandCropStore(self.store.code), self.pipeline.loop.bins)
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
        from store.layout.models import Zone

        loop = self.pipeline.loop
        entry = list(Zone.objects.filter(store=self.store, kind=Zone.Kind.ENTRY).order_by("name"))
        loop.entry_zones = [np.asarray(z.polygon, dtype=float) for z in entry]
        loop.gate_zones = {z.name: np.asarray(z.polygon, dtype=float) for z in entry}  # a gate's zone: its name
        loop.exit_zones = [np.asarray(z.polygon, dtype=float) for z in
                           Zone.objects.filter(store=self.store, kind=Zone.Kind.EXIT)]

    def _joiner(self):
        """The join of the store's cameras, built on first use: a ``vision.shoppers.ShopperStream`` waiting for the
        store's enabled cameras (a camera that never sends is given up after ``source_down_s``), placing people on
        its floor zones (the store's zones; a store without floor zones places everyone), association as
        ``carts.offline.video.vision_settings`` says, ids ``j<random>-S<n>``: never an id of an earlier join the loop may
        still hold. The camera workers apply their clock offsets (``Camera.clock_offset_s``) to the frames' times, so
        the stream adds none."""
        if self.join is None:
            from store.layout.models import Zone as ZoneRow
            from vision.models import Camera
            from vision.config import vision_settings
            from vision.shoppers import LIVE_LAG_S, ShopperStream
            from vision.zones import Zone

            cfg = vision_settings()
            cameras = list(Camera.objects.filter(store=self.store, enabled=True).order_by("name")
                           .values_list("name", flat=True))
            zones = []
            for z in ZoneRow.objects.filter(store=self.store).order_by("name"):
                try:
                    zones.append(Zone(z.name, z.kind, np.asarray(z.polygon, dtype=np.float64)))
                except (TypeError, ValueError) as exc:  # a zone the join cannot use: left out, not fatal
                    log.warning("store %s: zone %s left out of the camera join: %s", self.store.code, z.name, exc)
            self.join = ShopperStream(cameras, zones, gate_m=float(cfg["GATE_M"]), max_gap_s=float(cfg["MAX_GAP_S"]),
                                      lag_s=LIVE_LAG_S, prefix=f"j{uuid.uuid4().hex[:6]}-S")
        return self.join

    def _join_step(self) -> None:
        """Stop waiting for the cameras silent for ``source_down_s`` (a camera never heard of since the join began
        is alerted here; the others by :meth:`watermark`), write what the join now can to the loop, and move its
        clock (:data:`CAMERAS_JOINED`: how far the joined observations go) when a camera sent something."""
        join = self.join
        wall = self._looked()
        for camera in join.waiting_for:
            source = f"cam:{camera}"
            entry = self.sources.get(source)
            seen = entry[1] if entry is not None else self._join_since
            if seen is None or wall - seen <= self.source_down_s:
                continue
            join.stop_waiting(camera)
            log.warning("store %s: the join no longer waits for camera %s", self.store.code, camera)
            if entry is None and source not in self.down:
                self.down.add(source)
                self._alert_down(source, wall - seen)
        obs = join.advance()
        if len(obs):
            self.pipeline.loop.on_observations(obs)
        if self._cam_fed:
            self._cam_fed = False
            self._seen(CAMERAS_JOINED, join.t_written)

    def checkpoint(self) -> None:
        """Save the loop's state with the offsets it has applied, then acknowledge those records."""
        if self.pipeline is None:
            return
        loop = self.pipeline.loop
        # the observation windows' chunks go to the bus by key, each once: the checkpoint itself stays small
        data = pickle.dumps({"loop": loop.snapshot(chunks=(self.bus, self.store.code, self._chunks)),
                             "offsets": self.offsets, "sources": {k: v[0] for k, v in self.sources.items()},
                             "join": self.join, "chunked": True}, protocol=pickle.HIGHEST_PROTOCOL)
        self.bus.save_checkpoint(self.store.code, data)
        loop.drop_gone_chunks(self.bus, self.store.code)
        self.stats.checkpoint_bytes = len(data)
        if self.offsets:
            self.bus.ack(self.store.code, self.offsets)
        self.stats.checkpoints += 1
        self._last_checkpoint = time.monotonic()

    def run(self, *, max_seconds: float | None = None, idle_exit_s: float | None = None,
            standby_poll_s: float = 0.5) -> WorkerStats:
        """Wait for the lease (standing by while another worker holds it), then run until :attr:`stop` is set,
        ``max_seconds`` pass, or ``idle_exit_s`` without a record (after the first). Checkpoints on the way out;
        never bills open visits early (no ``finish``)."""
        from django.db import close_old_connections

        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        while not self.bus.lease(self.store.code, self.owner, self.lease_s):
            if self.stop.wait(standby_poll_s) or (t_end is not None and time.monotonic() >= t_end):
                return self.stats
        log.info("store %s: worker %s is active", self.store.code, self.owner)
        self._start()
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
                if time.monotonic() - self._last_checkpoint >= self.checkpoint_every_s and not lost.is_set():
                    self.checkpoint()
                    close_old_connections()
            if not lost.is_set():
                self.checkpoint()
        finally:
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
        from .services import cart_publish_batch

        records = self.bus.read(self.store.code, block_ms=block_ms)
        self._read_at = time.monotonic()  # everything published before now was just read (up to the bus's count)
        read_wall = time.time()
        with cart_publish_batch():  # each cart the step changed is pushed once, with the step's outcome
            for kind, sid, rec in records:
                done = self.offsets.get(kind)
                if done is not None and _id_key(sid) <= _id_key(done):
                    continue  # applied before the checkpoint this worker resumed from
                self._apply(kind, sid, rec)
                self.offsets[kind] = sid
            if self.join is not None:
                self._join_step()
            self.pipeline.loop.shelf_horizon = self.shelf_horizon()
            self.pipeline.advance(self.watermark())
        if self.driven:
            # the caller's devices were held up for as long as this step took: that time is not their silence (a
            # 36 s step — a first JIT compile on a loaded machine — took every source for down at the next, empty
            # read, and the watermark ran 36 s ahead of the records: shoppers lost, hands missed)
            busy = time.monotonic() - self._read_at
            for entry in self.sources.values():
                entry[1] += busy
        if self.pipeline.loop.bill_timings:
            self._log_checkouts(read_wall)
        return len(records)

    def _log_checkouts(self, read_wall: float) -> None:
        """One INFO line per checkout the step queued: where its exit → checkout time went (``bench_live`` reads
        them). Sources' clocks are UTC, so a source time and a wall time compare: ``settle`` (``settle_s``),
        ``overshoot`` (the loop's step past the deadline), ``waited`` (what held it past that,
        ``carts.loop.BILL_WAITS``), then how far the loop ran behind the wall clock at the checkout: the slowest
        live source's lag when the step read the streams (``watermark``) and the step's own time up to it."""
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
                     "waited %.2f s (%s); the loop ran %.2f s behind the wall clock (watermark %.2f s: the newest "
                     "record %.2f s late, the slowest source %s %.2f s behind it; step %.2f s)", self.store.code,
                     visit, wall - w.t_exit, w.deadline - w.t_exit, w.due - w.deadline, w.now - w.due,
                     waits or "nothing", wall - w.now, read_wall - w.now, read_wall - newest, slowest,
                     newest - w.now, wall - read_wall)

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
                self.pipeline.loop.on_observations(obs)
                if t_last is not None:
                    self._seen(f"obs:{source}", t_last)
            elif kind == "cam":
                camera, frames, t_last = decode_cam(rec)  # all of it or nothing: a bad record adds no frame
                join = self._joiner()
                for ft in frames:
                    join.add(ft)
                join.reached(camera, t_last)
                self._seen(f"cam:{camera}", t_last)
                if self._join_since is None:
                    self._join_since = self._looked()
                self._cam_fed = True
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
        from .models import StoreAlert

        StoreAlert.objects.update_or_create(
            store=self.store, kind=StoreAlert.Kind.SOURCE_DOWN, key=source,
            defaults={"message": f"{source} sent nothing for {silent_s:.0f} s: events it should have seen go to "
                                 f"review", "resolved_at": None})
        log.warning("store %s: source %s is down", self.store.code, source)

    def _resolve_down(self, source: str) -> None:
        from django.utils import timezone

        from .models import StoreAlert

        StoreAlert.objects.filter(store=self.store, kind=StoreAlert.Kind.SOURCE_DOWN, key=source,
                                  resolved_at__isnull=True).update(resolved_at=timezone.now())


# ------------------------------------------------------------------------------- publishing and local workers
_local: dict[str, tuple[StoreWorker, threading.Thread]] = {}
_local_lock = threading.Lock()


def local_worker(store_code: str) -> StoreWorker | None:
    """Embedded profile: the store worker of ``store_code`` in this process — one a caller registered
    (:func:`register_local`: the emulator drives its own), else a thread started on first use (devices posting
    to the embedded server). None in the production profile, where ``run_store`` runs it."""
    from django.conf import settings

    if getattr(settings, "PRODUCTION", False):
        return None
    with _local_lock:
        entry = _local.get(store_code)
        if entry is None or (entry[1] is not None and not entry[1].is_alive()):
            worker = StoreWorker(store_code)
            thread = threading.Thread(target=_run_local, args=(worker,), name=f"store-{store_code}", daemon=True)
            _local[store_code] = (worker, thread)
            thread.start()
            entry = _local[store_code]
        return entry[0]


def register_local(store_code: str, worker: StoreWorker | None, *, stop_timeout_s: float = 30.0) -> None:
    """Embedded profile: ``worker`` is this process's store worker of ``store_code``, driven by its caller
    (``worker.step()`` after each batch it publishes) instead of a thread: deterministic (``worker.driven`` is set:
    the time of its own steps is not its sources' silence), and its cart pushes happen on the caller's thread (the
    server's event loop for the dashboard's live emulation). A worker thread
    already running for the store (devices posting to the served site started it) is stopped first, up to
    ``stop_timeout_s`` s: it checkpoints on the way out, so ``worker`` resumes where it left off and no record is
    applied by two loops. Raises ``RuntimeError`` when that thread does not stop in time."""
    if worker is not None:
        worker.driven = True
    with _local_lock:
        old = _local.get(store_code)
        _local[store_code] = (worker, None)
    if old is not None and old[1] is not None and old[1].is_alive():
        old[0].stop.set()
        old[1].join(stop_timeout_s)
        if old[1].is_alive():
            raise RuntimeError(f"store {store_code}: its running store loop did not stop within {stop_timeout_s:g} s")


def unregister_local(store_code: str) -> None:
    """Forget the in-process loop of ``store_code`` (the embedded profile's registry; no-op when absent)."""
    with _local_lock:
        _local.pop(store_code, None)


def _run_local(worker: StoreWorker) -> None:
    from django.db import close_old_connections

    try:
        worker.run()
    except Exception:  # the thread must report, not vanish
        log.exception("store %s: local worker stopped", worker.store.code)
    finally:
        close_old_connections()


def publish(store_code: str, kind: str, record: dict) -> str:
    """Publish ``record`` on the store's ``kind`` stream (embedded: and make sure the local worker runs)."""
    sid = bus().publish(store_code, kind, record)
    local_worker(store_code)
    return sid


class BusShelfSink:
    """``sensors.live.ShelfSink`` that publishes validated sample blocks on the store's ``shelf`` stream for the
    store worker, instead of running detection in the ingestion process."""

    def on_samples(self, *, store, bin_codes, t, grams, rate_hz, controller: str = "") -> int:
        publish(store.code, "shelf", shelf_record(controller=controller or ",".join(bin_codes[:1]),
                                                  bin_codes=tuple(bin_codes), t=t, grams=grams, rate_hz=rate_hz))
        return 0

    def advance(self, *, store, now: float) -> int:
        return 0

    def finish(self, *, store) -> int:
        return 0


class BusTagSink:
    """``sensors.rfid_live.TagSink`` that publishes tag events on the store's ``tag`` stream for the store worker."""

    def on_tags(self, *, store, reader: str, events: list, t_last: float) -> None:
        if events:
            publish(store.code, "tag", tag_record(reader=reader, events=events, t_last=t_last))


def default_tag_sink() -> BusTagSink | None:
    """The RFID ingestors' default sink (``sensors.rfid_live.set_default_tag_sink_factory``): the store loop's tag
    stream when the loop is on, else None (tags and tag events are recorded, the receipt does not use them)."""
    return BusTagSink() if store_loop_enabled() else None


def default_shelf_sink(session: str):
    """The ingestors' default sink (``sensors.live.set_default_sink_factory``): the store loop's shelf streams
    when the loop is on, else a ``carts.pipeline.PipelineSink`` of ``session`` (ingestion runs detection and fusion
    itself, without cameras)."""
    if store_loop_enabled():
        return BusShelfSink()
    from .pipeline import PipelineSink  # the pipeline imports Django models; the bus does not

    return PipelineSink(session=session)


def publish_observations(store_code: str, source: str, obs: TrackObservations, t_last: float | None = None,
                         chunk: int = 20_000) -> None:
    """Publish observations of ``source`` (in chunks of at most ``chunk`` rows)."""
    n = len(obs)
    if n == 0:
        publish(store_code, "obs", obs_record(source=source, obs=obs, t_last=t_last))
        return
    for i in range(0, n, chunk):
        part = obs[i:i + chunk]
        last = t_last if i + chunk >= n else None
        publish(store_code, "obs", obs_record(source=source, obs=part, t_last=last))


def publish_frames(store_code: str, camera: str, frames: list, t_last: float) -> None:
    """Publish a camera's tracked frames (``vision.tracking.FrameTracks``, up to ``t_last`` s UTC) on the store's
    ``cam`` stream for the store worker's join (:func:`cam_record`)."""
    publish(store_code, "cam", cam_record(camera=camera, frames=frames, t_last=t_last))


def store_loop_enabled() -> bool:
    """``settings.WALKOUT["STORE_LOOP"]`` is on: gate scans, shelf blocks and observations go to the store loop's
    streams (production default; the embedded profile turns it on for ``emulate_store`` and the demo)."""
    from django.conf import settings

    return str(settings.WALKOUT.get("STORE_LOOP", "off")).lower() in ("on", "1", "true", "yes")


def on_visit_admitted(sender, *, visit, gate, at, **kwargs) -> None:
    """``store.gates.signals.visit_admitted`` → an ``entry`` record on the store's gate stream."""
    if not store_loop_enabled():
        return
    try:
        publish(gate.store.code, "gate", gate_record(event="entry", visit=visit.pk, t=at.timestamp(),
                                                     party_lead=visit.party_lead_id, gate=gate.name))
    except Exception:  # the visit stands; without its binding its events go to review (alerted by the loop)
        log.exception("store %s: could not publish the entry of visit %s", gate.store.code, visit.pk)


def on_visit_exit_scanned(sender, *, visit, gate, at, **kwargs) -> None:
    """``store.gates.signals.visit_exit_scanned`` → an ``exit`` record on the store's gate stream."""
    if not store_loop_enabled():
        return
    try:
        publish(gate.store.code, "gate", gate_record(event="exit", visit=visit.pk, t=at.timestamp(), gate=gate.name))
    except Exception:  # the exit scan already exited the visit; its checkout task bills it
        log.exception("store %s: could not publish the exit of visit %s", gate.store.code, visit.pk)
