"""Checkpoint chunks: parts of the store loop's state that never change once made (an observation window's parts,
the reach look's sealed plate levels) pickled by reference into keys of their own on the bus, each written once
(``pickle`` persistent ids), so a checkpoint every few seconds writes only what is new (``carts.loop.StoreLoop.snapshot``,
``carts.runtime.StoreWorker.checkpoint``)."""
from __future__ import annotations

import pickle
import uuid
from typing import Callable, Iterable, Mapping, Protocol


class PackedChunk:
    """One immutable part of the loop's state (``data``: a tuple of arrays: an observation window's packed part, a
    plate-levels part) under a key of its own (``key``: a uuid4 hex unless given). The parts
    never change once added, so a checkpoint with a :class:`ChunkStore` writes each one once, by reference
    (``carts.runtime.StoreWorker.checkpoint``): the bytes of a checkpoint then grow with the observations added
    since the last one, not with the whole window (tens of MB at a hundred shoppers, every few seconds)."""

    __slots__ = ("key", "data")

    def __init__(self, data: tuple, key: str | None = None) -> None:
        self.key = key or uuid.uuid4().hex
        self.data = data

    def __reduce__(self):  # pickled whole where no chunk store is given (tests, a plain snapshot)
        return (PackedChunk, (self.data, self.key))


class ChunkStore(Protocol):
    """Where a checkpoint's chunks live (the bus: Redis keys, or memory). Keys are :class:`PackedChunk` keys."""

    def save_chunks(self, store: str, chunks: Mapping[str, bytes]) -> None:
        """Keep each chunk's bytes under its key (idempotent)."""

    def load_chunk(self, store: str, key: str) -> bytes | None:
        """The bytes saved under ``key``; None when they are gone."""

    def drop_chunks(self, store: str, keys: Iterable[str]) -> None:
        """Forget chunks no checkpoint refers to any more."""


class ChunkPickler(pickle.Pickler):
    """Pickles :class:`PackedChunk` s by key, collecting the ones ``saved`` does not hold yet in ``new``."""

    def __init__(self, file, saved: set[str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.saved = saved
        self.new: dict[str, bytes] = {}
        self.used: set[str] = set()

    def persistent_id(self, obj):
        if isinstance(obj, PackedChunk):
            self.used.add(obj.key)
            if obj.key not in self.saved and obj.key not in self.new:
                self.new[obj.key] = pickle.dumps(obj.data, protocol=pickle.HIGHEST_PROTOCOL)
            return ("chunk", obj.key)
        return None


class ChunkUnpickler(pickle.Unpickler):
    """Reads what :class:`ChunkPickler` wrote, fetching each chunk with ``load_chunk(key)`` (bytes, None when gone:
    ``pickle.UnpicklingError``); ``keys`` collects the keys read."""

    def __init__(self, file, load_chunk: Callable[[str], bytes | None]) -> None:
        super().__init__(file)
        self.load_chunk = load_chunk
        self.keys: set[str] = set()

    def persistent_load(self, pid):
        kind, key = pid
        self.keys.add(key)
        data = self.load_chunk(key) if kind == "chunk" else None
        if data is None:
            raise pickle.UnpicklingError(f"checkpoint chunk {key} is missing")
        return PackedChunk(pickle.loads(data), key)  # noqa: S301 — our own checkpoint's chunk
