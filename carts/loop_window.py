"""The store loop's window of recent shopper-track observations (pure NumPy, no Django): :class:`ObservationWindow`,
appended per step, pruned from the front, packed once per part for checkpoints (``carts.loop.StoreLoop.snapshot``)."""
from __future__ import annotations

import math

import numpy as np

from store.recording import NameCodes, TrackObservations

from .chunks import PackedChunk


class ObservationWindow:
    """Recent shopper-track observations, appended in chunks (one per step) and pruned from the front (bounded
    memory). :meth:`between` reads only the chunks that overlap the interval asked for."""

    def __init__(self) -> None:
        self._parts: list[TrackObservations] = []
        #: each part's track ids and keypoint names as codes into the window's own name tables (``_tables``), which
        #: only grow until :meth:`prune` renames the kept rows: :meth:`between` attaches them
        #: (``TrackObservations.codes``)
        self._coded: list[tuple[np.ndarray, np.ndarray]] = []
        self._tables: tuple[_Names, _Names] = (_Names(), _Names())
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
            self._coded.append((self._tables[0].encode(obs.track_id), self._tables[1].encode(obs.keypoint)))
            self._packed.append(None)
            self._spans.append((float(obs.t.min()), float(obs.t.max())))
            self.t_min = min(self.t_min, self._spans[-1][0])

    def prune(self, before: float) -> None:
        """Drop observations older than ``before`` (s)."""
        if not self._parts or self.t_min >= before:
            return
        kept: list[TrackObservations] = []
        coded: list[tuple[np.ndarray, np.ndarray]] = []
        packed: list[tuple | PackedChunk | None] = []
        spans: list[tuple[float, float]] = []
        for p, cd, pk, (lo, hi) in zip(self._parts, self._coded, self._packed, self._spans):
            if hi < before:
                continue
            if lo < before:
                m = p.t >= before
                p, cd, pk = p[m], (cd[0][m], cd[1][m]), None
                if not len(p):
                    continue
                lo = float(p.t.min())
            kept.append(p)
            coded.append(cd)
            packed.append(pk)
            spans.append((lo, hi))
        self._parts, self._coded, self._packed, self._spans = kept, coded, packed, spans
        self.t_min = min((lo for lo, _ in spans), default=math.inf)
        if len(self._tables[0].names) > 4 * _Names.SPARE:  # tracks long gone still named: name the kept rows anew
            self._recode()

    def _recode(self) -> None:
        """Name tables of the kept rows only, and the parts' codes into them."""
        self._tables = (_Names(), _Names())
        self._coded = [(self._tables[0].encode(p.track_id), self._tables[1].encode(p.keypoint)) for p in self._parts]

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
            self._recode()
            return
        self.t_min = state["t_min"]
        packed: list[tuple | PackedChunk] = list(state["packed"])
        self._packed = [pk for pk in packed]
        self._parts = [_unpack(pk) for pk in packed]
        self._spans = [(float(p.t.min()), float(p.t.max())) for p in self._parts]
        self._recode()

    def between(self, t0: float, t1: float) -> TrackObservations:
        """The kept observations with ``t0 <= t <= t1`` (s), in the order they were added."""
        parts, coded = [], []
        for p, cd, (lo, hi) in zip(self._parts, self._coded, self._spans):
            if lo > t1 or hi < t0:
                continue
            if not (t0 <= lo and hi <= t1):
                m = (p.t >= t0) & (p.t <= t1)
                p, cd = p[m], (cd[0][m], cd[1][m])
            if len(p):
                parts.append(p)
                coded.append(cd)
        if not parts:
            return TrackObservations.empty()
        tracks, names = self._tables
        if len(parts) == 1:
            p, cd = parts[0], coded[0]
            return TrackObservations(p.track_id, p.t, p.keypoint, p.xyz, p.score,
                                     codes=(tracks.codes(cd[0]), names.codes(cd[1])))
        return TrackObservations(
            np.concatenate([x.track_id for x in parts]), np.concatenate([x.t for x in parts]),
            np.concatenate([x.keypoint for x in parts]), np.concatenate([x.xyz for x in parts]),
            np.concatenate([x.score for x in parts]),
            codes=(tracks.codes(np.concatenate([c[0] for c in coded])),
                   names.codes(np.concatenate([c[1] for c in coded]))))


class _Names:
    """A name table of :class:`ObservationWindow`: the distinct strings of a column in order of arrival, and codes
    into it. Only grows (codes handed out stay valid); the window starts new ones when they hold many gone names."""

    #: a window renames its kept rows once its track table holds four times this many names (:meth:`prune`): a
    #: day of trading brings thousands of tracks, the window holds a minute of them
    SPARE = 1024

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def encode(self, values: np.ndarray) -> np.ndarray:
        """(n,) int32 codes of ``values`` (n,) object, adding the names not seen yet."""
        index, names = self.index, self.names

        def code(v: str) -> int:
            c = index.get(v)
            if c is None:
                c = index[v] = len(names)
                names.append(v)
            return c
        return np.fromiter((code(v) for v in values.tolist()), dtype=np.int32, count=len(values))

    def codes(self, codes: np.ndarray) -> NameCodes:
        """``codes`` (n,) into this table, as the ``TrackObservations.codes`` of a selection."""
        return NameCodes(codes, self.names, self.index)


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
