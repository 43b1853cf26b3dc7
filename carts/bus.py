"""Transport of the live store's records (``carts.records``): streams per store and kind, the store worker's lease,
its checkpoint and the checkpoint's chunks. :class:`RedisBus` in the production profile (Redis Streams, a consumer
group per stream, acknowledged after the checkpoint); :class:`MemoryBus` in process for the embedded profile and
the tests. :func:`bus` gives the configured one.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any, Iterable, Mapping, Protocol

from .records import KINDS, MAX_RECORD_BYTES


class Bus(Protocol):
    """Streams of records per store and kind, a lease per store and a checkpoint per store."""

    #: True: :meth:`read`'s ``count`` bounds each kind's records (a read with ``count`` records of one kind may have
    #: left more of that kind); False: it bounds the records of all kinds together
    COUNT_PER_KIND: bool

    def publish(self, store: str, kind: str, record: dict) -> str:
        """Append ``record`` to the store's ``kind`` stream; returns its id."""

    def read(self, store: str, *, count: int = 500, block_ms: int = 100) -> list[tuple[str, str, dict]]:
        """The next records of the store's streams for its worker: (kind, id, record), oldest first per kind; at
        most ``count`` of them (per kind where :attr:`COUNT_PER_KIND`)."""

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


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """A stream id ``"<ms>-<seq>"`` as a sortable pair (a bare ``"<ms>"``: seq 0)."""
    a, _, b = stream_id.partition("-")
    return int(a), int(b or 0)


class MemoryBus:
    """In-process streams (the embedded profile): bounded only by acknowledgement, like the Redis streams."""

    COUNT_PER_KIND = False  # Bus.COUNT_PER_KIND: count bounds all kinds together

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
            after = stream_id_key(self._cursor.get((store, kind), "0-0"))
            for sid, rec in stream:
                if stream_id_key(sid) > after:
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
                while stream and stream_id_key(stream[0][0]) <= stream_id_key(sid):
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

    COUNT_PER_KIND = True  # Bus.COUNT_PER_KIND: XREADGROUP's COUNT bounds each stream

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


def bus_forget() -> None:
    """Forget the process-wide bus (:func:`carts.runtime_publish.bus_reset`, tests): the next :func:`bus` builds one."""
    global _bus
    with _bus_lock:
        _bus = None
