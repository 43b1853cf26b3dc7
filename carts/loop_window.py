"""The store loop's window of recent shopper-track observations (pure NumPy, no Django): :class:`ObservationWindow`,
appended per step, pruned from the front, packed once per part for checkpoints (``carts.loop.StoreLoop.snapshot``)."""
from __future__ import annotations

import math

import numpy as np

from store.recording import TrackObservations

from .chunks import PackedChunk


class ObservationWindow:
    """Recent shopper-track observations, appended in chunks (one per step) and pruned from the front (bounded
    memory). :meth:`between` reads only the chunks that overlap the interval asked for."""

    def __init__(self) -> None:
        self._parts: list[TrackObservations] = []
        #: each part's pickled form once made (:meth:`__getstate__`; None until then): a checkpoint every few
        #: seconds packs only the parts added since the last one
        self._packed: list[tuple | PackedChunk | None] = []
        self._spans: list[tuple[float, float]] = []  # each part's (earliest, latest) time, s
        self.t_min = math.inf

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def add(self, obs: TrackObservations) -> None:
        if len(obs):
            self._parts.append(obs)
            self._packed.append(None)
            self._spans.append((float(obs.t.min()), float(obs.t.max())))
            self.t_min = min(self.t_min, self._spans[-1][0])

    def prune(self, before: float) -> None:
        """Drop observations older than ``before`` (s)."""
        if not self._parts or self.t_min >= before:
            return
        kept, packed, spans = [], [], []
        for p, pk, (lo, hi) in zip(self._parts, self._packed, self._spans):
            if hi < before:
                continue
            if lo < before:
                p, pk = p[p.t >= before], None
                if not len(p):
                    continue
                lo = float(p.t.min())
            kept.append(p)
            packed.append(pk)
            spans.append((lo, hi))
        self._parts, self._packed, self._spans = kept, packed, spans
        self.t_min = min((lo for lo, _ in spans), default=math.inf)

    def __getstate__(self) -> dict:
        """The parts with their string columns (track ids, keypoint names: object arrays, slow to pickle row by
        row) as codes into their distinct values; each part packed once."""
        self._packed = [pk if pk is not None else PackedChunk(_pack(p)) for p, pk in zip(self._parts, self._packed)]
        return {"t_min": self.t_min, "packed": self._packed}

    def __setstate__(self, state: dict) -> None:
        if "packed" not in state:  # a checkpoint of the code before packing
            self.__dict__.update(state)
            self._packed = [None] * len(self._parts)
            self._spans = [(float(p.t.min()), float(p.t.max())) for p in self._parts]
            return
        self.t_min = state["t_min"]
        packed: list[tuple | PackedChunk] = list(state["packed"])
        self._packed = [pk for pk in packed]
        self._parts = [_unpack(pk) for pk in packed]
        self._spans = [(float(p.t.min()), float(p.t.max())) for p in self._parts]

    def between(self, t0: float, t1: float) -> TrackObservations:
        """The kept observations with ``t0 <= t <= t1`` (s), in the order they were added."""
        parts = [p if t0 <= lo and hi <= t1 else p.between(t0, t1)
                 for p, (lo, hi) in zip(self._parts, self._spans) if lo <= t1 and hi >= t0]
        parts = [p for p in parts if len(p)]
        if not parts:
            return TrackObservations.empty()
        if len(parts) == 1:
            return parts[0]
        return TrackObservations(
            np.concatenate([x.track_id for x in parts]), np.concatenate([x.t for x in parts]),
            np.concatenate([x.keypoint for x in parts]), np.concatenate([x.xyz for x in parts]),
            np.concatenate([x.score for x in parts]))


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An object array (n,) as (its distinct values (k,) object, codes (n,) int32 into them)."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values.tolist()), dtype=np.int32,
                        count=len(values))
    uniques = np.empty(len(index), dtype=object)
    uniques[:] = list(index)
    return uniques, codes


def _pack(obs: TrackObservations) -> tuple:
    """``obs`` for pickling (:meth:`ObservationWindow.__getstate__`); :func:`_unpack` gives it back equal."""
    return (*_codes(obs.track_id), obs.t, *_codes(obs.keypoint), obs.xyz, obs.score)


def _unpack(packed: "tuple | PackedChunk") -> TrackObservations:
    if isinstance(packed, PackedChunk):
        packed = packed.data
    ids, id_codes, t, names, name_codes, xyz, score = packed
    return TrackObservations(ids[id_codes], t, names[name_codes], xyz, score)
