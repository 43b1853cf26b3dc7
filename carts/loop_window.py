"""The store loop's window of recent shopper-track observations (pure NumPy, no Django): :class:`ObservationWindow`,
appended per step, pruned from the front, packed once per part for checkpoints (``carts.loop.StoreLoop.snapshot``)."""
from __future__ import annotations

import math

import numpy as np

from store.recording import NameCodes, TrackObservations

from .chunks import PackedChunk


class ObservationWindow:
    """Recent shopper-track observations, appended in chunks (one per step) and pruned from the front (bounded
    memory). The rows live in one buffer in the order they came (:class:`_Rows`), each chunk a view of its run of
    it: while they are sorted by time (a tracker's steps in order), :meth:`between` is a bisection and its answer
    views of the buffer (no copy); rows that came out of order are read chunk by chunk, the chunks that overlap
    the interval asked for."""

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
        self._rows = _Rows()
        self.t_min = math.inf

    def __len__(self) -> int:
        return self._rows.hi - self._rows.lo

    def add(self, obs: TrackObservations) -> None:
        if len(obs):
            part, coded = self._rows.append(obs, (self._tables[0].encode(obs.track_id),
                                                  self._tables[1].encode(obs.keypoint)), self._parts, self._coded)
            self._parts.append(part)
            self._coded.append(coded)
            self._packed.append(None)
            self._spans.append((float(obs.t.min()), float(obs.t.max())))
            self.t_min = min(self.t_min, self._spans[-1][0])

    def prune(self, before: float) -> None:
        """Drop observations older than ``before`` (s)."""
        if not self._parts or self.t_min >= before:
            return
        rows = self._rows
        ordered = rows.ordered
        kept: list[TrackObservations] = []
        coded: list[tuple[np.ndarray, np.ndarray]] = []
        packed: list[tuple | PackedChunk | None] = []
        spans: list[tuple[float, float]] = []
        for p, cd, pk, (lo, hi) in zip(self._parts, self._coded, self._packed, self._spans):
            if hi < before:
                continue
            if lo < before:
                if ordered:  # sorted rows: those at or after ``before`` are the part's tail (a view)
                    k = int(np.searchsorted(p.t, before, side="left"))
                    p, cd, pk = p[k:], (cd[0][k:], cd[1][k:]), None
                else:
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
        if ordered:
            rows.lo = rows.hi - sum(len(p) for p in kept)
        else:  # the kept rows of out-of-order chunks are copies: one buffer of them again
            self._parts, self._coded = rows.rebuild(self._parts, self._coded)
        if len(self._tables[0].names) > 4 * _Names.SPARE:  # tracks long gone still named: name the kept rows anew
            self._recode()

    def _recode(self) -> None:
        """Name tables of the kept rows only, and the parts' codes into them."""
        self._tables = (_Names(), _Names())
        coded = [(self._tables[0].encode(p.track_id), self._tables[1].encode(p.keypoint)) for p in self._parts]
        self._parts, self._coded = self._rows.rebuild(self._parts, coded)

    def __getstate__(self) -> dict:
        """The parts with their string columns (track ids, keypoint names: object arrays, slow to pickle row by
        row) as codes into their distinct values; each part packed once."""
        self._packed = [pk if pk is not None else PackedChunk(_pack(p)) for p, pk in zip(self._parts, self._packed)]
        return {"t_min": self.t_min, "packed": self._packed}

    def __setstate__(self, state: dict) -> None:
        self._rows = _Rows()
        if "packed" not in state:  # a checkpoint of the code before packing
            self.__dict__.update({k: v for k, v in state.items() if k != "_rows"})
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
        """The kept observations with ``t0 <= t <= t1`` (s), in the order they were added (views of the window's
        buffer while its rows are sorted by time: do not write into them)."""
        tracks, names = self._tables
        rows = self._rows
        if rows.ordered:
            if not t0 <= t1 or rows.hi == rows.lo:
                return TrackObservations.empty()
            t = rows.t[rows.lo:rows.hi]
            i0 = rows.lo + int(np.searchsorted(t, t0, side="left"))
            i1 = rows.lo + int(np.searchsorted(t, t1, side="right"))
            if i1 <= i0:
                return TrackObservations.empty()
            out = TrackObservations(rows.track_id[i0:i1], rows.t[i0:i1], rows.keypoint[i0:i1], rows.xyz[i0:i1],
                                    rows.score[i0:i1],
                                    codes=(tracks.codes(rows.tcode[i0:i1]), names.codes(rows.kcode[i0:i1])))
            object.__setattr__(out, "_t_sorted", True)
            return out
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


class _Rows:
    """An :class:`ObservationWindow`'s rows in one buffer, in the order they came: columns with spare room at the
    end, the live rows ``[lo, hi)``; the window's parts are views of consecutive runs of them. Appending writes
    past ``hi`` only (views handed out stay as they were); when the room runs out the live rows move to new,
    larger columns (twice the live rows: copies amortised over the appends) and the parts become views of those.
    ``ordered``: every live row's time is at least the one before it (no NaN), so a time interval is a run."""

    def __init__(self) -> None:
        self.track_id = np.empty(0, dtype=object)
        self.t = np.zeros(0)
        self.keypoint = np.empty(0, dtype=object)
        self.xyz = np.zeros((0, 3))
        self.score = np.zeros(0)
        self.tcode = np.zeros(0, dtype=np.int32)
        self.kcode = np.zeros(0, dtype=np.int32)
        self.lo = self.hi = 0
        self.ordered = True

    _COLUMNS = ("track_id", "t", "keypoint", "xyz", "score")

    def _grow(self, need: int, parts: list[TrackObservations], coded: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Room for ``need`` more rows: the live rows moved to the front of new columns; ``parts``/``coded`` (views
        of the live rows, in order) re-made in place as views of the new columns."""
        live = self.hi - self.lo
        cap = max(2 * (live + need), 4096)
        cols = {}
        for name in (*self._COLUMNS, "tcode", "kcode"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[:live] = old[self.lo:self.hi]
            cols[name] = new
        for name, col in cols.items():
            setattr(self, name, col)
        self.lo, self.hi = 0, live
        at = 0
        for i, p in enumerate(parts):
            n = len(p)
            parts[i], coded[i] = self._view(at, at + n)
            at += n

    def _view(self, i0: int, i1: int) -> tuple[TrackObservations, tuple[np.ndarray, np.ndarray]]:
        part = TrackObservations(self.track_id[i0:i1], self.t[i0:i1], self.keypoint[i0:i1], self.xyz[i0:i1],
                                 self.score[i0:i1])
        return part, (self.tcode[i0:i1], self.kcode[i0:i1])

    def append(self, obs: TrackObservations, coded: tuple[np.ndarray, np.ndarray], parts: list[TrackObservations],
               parts_coded: list[tuple[np.ndarray, np.ndarray]]) -> tuple[TrackObservations,
                                                                         tuple[np.ndarray, np.ndarray]]:
        """Append ``obs`` (n ≥ 1 rows) and its codes; returns them as views of the buffer (the new part)."""
        n = len(obs)
        if self.hi + n > self.t.shape[0]:
            self._grow(n, parts, parts_coded)
        i0, i1 = self.hi, self.hi + n
        if self.ordered:
            self.ordered = obs.time_sorted() and (i0 == self.lo or bool(obs.t[0] >= self.t[i0 - 1]))
        self.track_id[i0:i1] = obs.track_id
        self.t[i0:i1] = obs.t
        self.keypoint[i0:i1] = obs.keypoint
        self.xyz[i0:i1] = obs.xyz
        self.score[i0:i1] = obs.score
        self.tcode[i0:i1] = coded[0]
        self.kcode[i0:i1] = coded[1]
        self.hi = i1
        return self._view(i0, i1)

    def rebuild(self, parts: list[TrackObservations], coded: list[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[list[TrackObservations], list[tuple[np.ndarray, np.ndarray]]]:
        """The buffer made anew from ``parts`` (with their codes ``coded``), in order; returns them as views of
        it. ``ordered`` looked at again."""
        self.__init__()  # type: ignore[misc]
        self._grow(sum(len(p) for p in parts), [], [])
        out_p: list[TrackObservations] = []
        out_c: list[tuple[np.ndarray, np.ndarray]] = []
        for p, cd in zip(parts, coded):
            part, c = self.append(p, cd, out_p, out_c)
            out_p.append(part)
            out_c.append(c)
        return out_p, out_c


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
