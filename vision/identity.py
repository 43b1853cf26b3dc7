"""Id switches between neighbouring shopper tracks: find them from motion continuity and undo them (pure NumPy).

A tracker that loses two people standing close together may give each the other's id for a few frames (an
**id switch**; MOT's IDSW counts them). In store coordinates the switch shows as both tracks jumping at once,
each onto where the other just was: ``|a(t) − a(t−)| + |b(t) − b(t−)|`` is about twice their separation, while
the crossed pairing ``|b(t) − a(t−)| + |a(t) − b(t−)|`` is only the walking step and keypoint noise. Reading the
pair frame by frame and flipping the pairing whenever the crossed one is cheaper by more than ``margin_m`` is
the greedy form of the frame-to-frame assignment every tracker makes (ByteTrack's and SORT's IoU/Hungarian
matching; here on floor positions after the fact, Bewley et al., "Simple Online and Realtime Tracking", ICIP
2016). It runs forward in time only, so it works online as well as on a whole recording.

Fusion undoes the switches around each shelf event (:func:`repair`) before it reads whose hand was at the bin:
during a switch the hand that reached is labelled with the neighbour's id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from store.recording import NameCodes, TrackObservations, member

try:  # the per-frame reading of a pair is a tight loop: compiled where numba is installed, plain Python elsewhere
    from numba import njit as _numba_jit

    def _jit(fn):
        return _numba_jit(cache=True, nogil=True)(fn)
except ImportError:  # pragma: no cover - numba is a dependency; the plain function gives the same answers
    def _jit(fn):
        return fn

#: Body keypoints whose floor position stands for the track, best first.
BODY_KEYPOINTS = ("neck", "head")


@dataclass(frozen=True)
class Swap:
    """Tracks ``a`` and ``b`` carry each other's ids from ``t_from`` (inclusive) to ``t_to`` (exclusive), seconds
    since epoch UTC. ``end_seen``: the switch back was seen at ``t_to``; False when it was not (a swap still on
    at the end of the data, ``t_to`` = inf, or one ended after ``max_swap_s`` for want of a visible end: the real
    end lies anywhere before ``t_to``)."""

    a: str
    b: str
    t_from: float
    t_to: float
    end_seen: bool = field(default=True, compare=False)


def _positions(bodies: TrackObservations, frame_s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Track → (frames (m,) int64, floor xy (m, 2) metres): the mean body position per frame, from the first of
    :data:`BODY_KEYPOINTS` the track has."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(bodies) == 0:
        return out
    index: dict = {}
    codes = np.fromiter((index.setdefault(x, len(index)) for x in bodies.track_id.tolist()), dtype=np.int64,
                        count=len(bodies))
    order = np.argsort(codes, kind="stable")  # each track's rows together, in their own order
    bounds = np.searchsorted(codes[order], np.arange(len(index) + 1))
    for track, c in sorted(index.items(), key=lambda kv: str(kv[0])):
        rows = order[bounds[c]:bounds[c + 1]]
        names = bodies.keypoint[rows]
        for name in BODY_KEYPOINTS:
            sel = rows[names == name]
            if sel.size:
                break
        else:
            continue
        f = np.round(bodies.t[sel] / frame_s).astype(np.int64)
        frames, inv = np.unique(f, return_inverse=True)
        xy = np.zeros((frames.size, 2))
        np.add.at(xy, inv, bodies.xyz[sel, :2])
        xy /= np.bincount(inv, minlength=frames.size)[:, None]
        out[str(track)] = (frames, xy)
    return out


def _merge_boxes(code: np.ndarray, sec: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:class:`BodyFrames`' boxes with one row per (track code, second): the union of that pair's boxes."""
    by = np.lexsort((sec, code))
    code, sec, box = code[by], sec[by], box[by]
    starts = np.flatnonzero(np.r_[True, (code[1:] != code[:-1]) | (sec[1:] != sec[:-1])])
    if starts.size == code.size:
        return code, sec, box
    return (code[starts], sec[starts],
            np.hstack([np.minimum.reduceat(box[:, :2], starts, axis=0), np.maximum.reduceat(box[:, 2:], starts, axis=0)]))


class BodyFrames:
    """Every track's body sightings (:data:`BODY_KEYPOINTS`), kept per track as they arrive (bounded: pruned from
    the front like the store loop's observation window), so that the per-frame floor positions of a window — what
    :func:`find_swaps` reads — come from each track's own rows instead of regrouping the whole window's rows (every
    shopper's minute of bodies) for every shelf event. :meth:`positions` gives exactly what ``_positions`` gives
    for the kept rows of the window (same frames, same sums in the same order).

    ``frame_s``: the frame length of the positions (s; :func:`find_swaps`' default). Not thread-safe."""

    def __init__(self, frame_s: float = 0.1) -> None:
        if not frame_s > 0:
            raise ValueError(f"BodyFrames: frame_s must be > 0, got {frame_s}")
        self.frame_s = float(frame_s)
        #: track → [chunks of (t (m,), keypoint rank (m,) int8: index in BODY_KEYPOINTS, xy (m, 2), frame (m,)
        #: int64: round(t / frame_s)), earliest t, whether the joined rows' t never decreases (None: not known yet),
        #: the rows' frames per keypoint (:meth:`_framed`; None: not made yet)]
        self._tracks: dict[str, list] = {}
        #: (t0, t1) → (:meth:`positions` of every track, the ``second`` tracks): the rows do not change between
        #: :meth:`add`/:meth:`prune` calls, and the store loop asks for the same window for every party it tests
        self._memo: dict[tuple[float, float], tuple[dict, frozenset]] = {}
        #: where each track was, coarsely: per :meth:`add` call the rows' bounding box per track and whole second,
        #: as (code (k,) int64, second (k,) int64: floor(t), box (k, 4) x0, y0, x1, y1 metres) — :meth:`near`
        #: finds a window's neighbours of a track from these instead of every track's rows
        self._boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._boxes_joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._code: dict[str, int] = {}  # track → its code in the boxes (the tracks kept only)
        self._name: dict[int, str] = {}
        self._next_code = 0
        #: s: the latest t of a body row ever added (rows pruned since included): a window ending at or after it
        #: reads every kept row, as one ending there does
        self.newest = -math.inf
        #: :func:`swaps_of`'s answers: (tracks, t0, knobs) → [end, horizon, swaps or None] (:meth:`_swaps_valid`)
        self._swaps: dict[tuple, list] = {}
        #: :meth:`near`'s boxes of a window (t0, t1) → (first second, last second, its boxes: code, second − first
        #: second + 1, box), while the boxes stay the same: :meth:`add` and :meth:`prune` drop them all
        self._near_cut: dict[tuple[float, float], tuple] = {}

    def __len__(self) -> int:
        return sum(c[0].size for rec in self._tracks.values() for c in rec[0])

    def add(self, obs: TrackObservations) -> None:
        """Keep the body rows of ``obs`` (other keypoints are ignored), in their order."""
        if len(obs) == 0:
            return
        rank = np.full(len(obs), -1, dtype=np.int8)
        names = obs.keypoint.tolist()
        for r, name in enumerate(BODY_KEYPOINTS):
            rank[np.fromiter((x == name for x in names), dtype=bool, count=len(names))] = r
        keep = np.flatnonzero(rank >= 0)
        if keep.size == 0:
            return
        index: dict = {}
        ids = obs.track_id[keep].tolist()
        codes = np.fromiter((index.setdefault(x, len(index)) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(codes, kind="stable")  # each track's rows together, in their own order
        bounds = np.searchsorted(codes[order], np.arange(len(index) + 1))
        codes_kept = np.empty(len(index), dtype=np.int64)
        for track, c in index.items():
            rows = keep[order[bounds[c]:bounds[c + 1]]]
            t = obs.t[rows]
            rec = self._tracks.get(str(track))
            if rec is None:
                rec = self._tracks[str(track)] = [[], math.inf, None, None]
                self._code[str(track)] = self._next_code
                self._name[self._next_code] = str(track)
                self._next_code += 1
            rec[0].append((t, rank[rows], obs.xyz[rows, :2], np.round(t / self.frame_s).astype(np.int64)))
            rec[1] = min(rec[1], float(t.min()))
            rec[2] = rec[3] = None
            codes_kept[c] = self._code[str(track)]
        # the boxes: one per (track, second) of these rows (each row a box of its own point, merged)
        xy = obs.xyz[keep, :2]
        self._boxes.append(_merge_boxes(codes_kept[codes], np.floor(obs.t[keep]).astype(np.int64), np.hstack([xy, xy])))
        self._boxes_joined = None
        self._memo.clear()
        self._near_cut.clear()
        t_kept = obs.t[keep]
        self.newest = max(self.newest, float(t_kept.max()))
        if self._swaps:  # an answer stands while the rows added lie past its horizon and none is its tracks'
            t_min, added = float(t_kept.min()), {str(x) for x in index}
            self._swaps = {k: v for k, v in self._swaps.items()
                           if v[2] is not None and v[1] <= v[0] and t_min >= v[1] and added.isdisjoint(k[0])}

    def prune(self, before: float) -> None:
        """Drop the rows older than ``before`` (s), as ``carts.loop_window.ObservationWindow.prune`` does."""
        self._near_cut.clear()
        if self._swaps:  # a window from ``before`` on reads no row or box this drops (:meth:`_swaps_valid`)
            self._swaps = {k: v for k, v in self._swaps.items() if v[2] is not None and v[1] <= v[0] and k[1] >= before}
        for track in list(self._tracks):
            rec = self._tracks[track]
            if rec[1] >= before:
                continue
            self._memo.clear()
            kept = []
            for t, k, xy, f in rec[0]:
                if t.size and float(t.max()) < before:
                    continue
                if float(t.min()) < before:
                    m = t >= before
                    t, k, xy, f = t[m], k[m], xy[m], f[m]
                if t.size:
                    kept.append((t, k, xy, f))
            if not kept:
                del self._tracks[track]
                del self._name[self._code.pop(track)]
                continue
            rec[0] = kept
            rec[1] = min(float(c[0].min()) for c in kept)
            rec[3] = None
        boxes = []
        for code, sec, box in self._boxes:  # a second wholly before ``before`` holds no kept row
            if sec.size and int(sec.max()) + 1 <= before:
                continue
            if sec.size and int(sec.min()) + 1 <= before:
                m = sec + 1 > before
                code, sec, box = code[m], sec[m], box[m]
            boxes.append((code, sec, box))
        if len(boxes) != len(self._boxes) or any(a[0] is not b[0] for a, b in zip(boxes, self._boxes)):
            self._boxes, self._boxes_joined = boxes, None

    def near(self, t0: float, t1: float, tracks: Iterable[str], reach_m: float) -> set[str]:
        """The tracks (``tracks`` themselves included, where kept) with a row in a whole second that overlaps
        ``[t0, t1]`` (s) within ``reach_m`` metres of where one of ``tracks`` was in that second or the ones either
        side (bounding boxes per track and second): a superset of the tracks whose per-frame positions
        (:meth:`positions`) come within ``reach_m`` of one of theirs in a frame they share (a frame's position is
        the mean of its rows, which lie within a tenth of a second of each other)."""
        own = [self._code[str(x)] for x in tracks if str(x) in self._code]
        if not own or not self._boxes:
            return set()
        if self._boxes_joined is None:
            self._boxes_joined = _merge_boxes(*(np.concatenate([b[i] for b in self._boxes]) for i in range(3)))
            self._boxes = [self._boxes_joined]  # merged once: later steps add to it
        cut = self._near_cut.get((t0, t1))
        if cut is None:
            code, sec, box = self._boxes_joined
            if not code.size:
                return set()
            # the window's seconds, within those kept (an open or far-off bound must not size the arrays below)
            s0 = max(math.floor(t0), int(sec.min())) if math.isfinite(t0) else int(sec.min())
            s1 = min(math.floor(t1), int(sec.max())) if math.isfinite(t1) else int(sec.max())
            if s1 < s0:
                return set()
            inside = (sec >= s0) & (sec <= s1)
            if len(self._near_cut) >= _NEAR_CUTS_KEPT:
                self._near_cut.clear()
            cut = self._near_cut[(t0, t1)] = (s0, s1, code[inside], sec[inside] - (s0 - 1), box[inside])
        s0, s1, code, sec, box = cut
        # their rows: the boxes are in (code, second) order (_merge_boxes; a cut keeps it), so each track's rows
        # are one run
        runs = [(int(np.searchsorted(code, c, "left")), int(np.searchsorted(code, c, "right"))) for c in set(own)]
        mine = np.concatenate([np.arange(i, j) for i, j in runs])
        if not mine.size:
            return set()
        # their union box per second (index: second − s0 + 1), then widened to the seconds either side
        span = np.full((s1 - s0 + 3, 4), [np.inf, np.inf, -np.inf, -np.inf])
        np.minimum.at(span[:, 0], sec[mine], box[mine, 0])
        np.minimum.at(span[:, 1], sec[mine], box[mine, 1])
        np.maximum.at(span[:, 2], sec[mine], box[mine, 2])
        np.maximum.at(span[:, 3], sec[mine], box[mine, 3])
        wide = span.copy()
        for shift in (1, -1):
            src = span[:-1] if shift == 1 else span[1:]
            dst = wide[1:] if shift == 1 else wide[:-1]
            dst[:, :2] = np.minimum(dst[:, :2], src[:, :2])
            dst[:, 2:] = np.maximum(dst[:, 2:], src[:, 2:])
        at = wide[sec]
        hit = ((box[:, 0] <= at[:, 2] + reach_m) & (box[:, 2] >= at[:, 0] - reach_m)
               & (box[:, 1] <= at[:, 3] + reach_m) & (box[:, 3] >= at[:, 1] - reach_m))
        return {self._name[c] for c in set(code[hit].tolist()) if c in self._name}

    def _last_t(self, track: str) -> float:
        """The latest t (s) of ``track``'s kept rows (a kept track has one)."""
        return max(float(c[0].max()) for c in self._tracks[track][0])

    def _swaps_valid(self, kept: list, end: float) -> bool:
        """Whether a :func:`swaps_of` answer kept as ``[end0, horizon, swaps]`` for a window ``[t0, end0]`` (``end0``
        no later than :attr:`newest` then) is the answer for ``[t0, end]`` now. :meth:`add` and :meth:`prune` drop
        every kept answer they may change, so one still kept is exact for ``end == end0`` (the same rows), and for
        ``end > end0`` when ``horizon <= end0`` and it is not None. Then: (1) no row of its tracks came since (an
        add with one drops it), so they were last seen at ``h = horizon − 2`` or before, (2) every row come since,
        or past ``end0``, lies at ``horizon`` or later (an add with an earlier one drops it), (3) nothing from
        ``t0`` on was pruned (a prune past ``t0`` drops it). :meth:`near` of the tracks reads the boxes of whole
        seconds within one of theirs, all before ``horizon``: unchanged, so the same neighbours. A neighbour's
        frames from ``horizon`` on come after every frame of the tracks, so the pairs that share frames, the
        frames shared and every frame the pair kernel reads (up to their last shared one) are unchanged; every
        neighbour has a neck row before ``end0`` (the answer is not None, and each had rows in the window: a
        neighbour without would make the horizon infinite), so each is placed by the same keypoint."""
        return end == kept[0] or (kept[2] is not None and kept[1] <= kept[0] <= end)

    def _framed(self, track: str) -> list:
        """Per keypoint rank of ``track`` (rows in time order): (t (n,), frame (n,), xy (n, 2) of its rows,
        segment starts (S + 1,) int64: where each frame's rows begin, and n last; the mean position of each frame
        (S, 2), summed and divided as :meth:`_positions` sums a window's frame)."""
        rec = self._tracks[track]
        if rec[3] is None:
            t, k, xy, f, _ = self._rows(track)
            tables = []
            for r in range(len(BODY_KEYPOINTS)):
                sel = np.flatnonzero(k == r)
                tr, fr, pr = t[sel], f[sel], xy[sel]
                starts = np.flatnonzero(np.r_[True, fr[1:] != fr[:-1]]) if sel.size else np.zeros(0, np.int64)
                bounds = np.append(starts, sel.size)
                if sel.size:
                    mean = np.add.reduceat(pr, starts, axis=0)
                    mean /= np.diff(bounds).astype(np.float64)[:, None]
                else:
                    mean = np.zeros((0, 2))
                tables.append((tr, fr, pr, bounds, mean))
            rec[3] = tables
        return rec[3]

    def _window_frames(self, track: str, t0: float, t1: float) -> tuple[int, tuple[np.ndarray, np.ndarray]] | None:
        """:meth:`_positions` of one track whose rows are in time order over ``[t0, t1]``: (the rank of the
        keypoint that places it, (frames, xy)), None when it has no row there. A frame wholly inside the window has
        the mean kept (:meth:`_framed`: the same rows summed in the same order); a frame cut by an end of the window
        is summed from its rows inside, as the window's own reading sums it."""
        hit = None
        for rank, table in enumerate(self._framed(track)):  # the first keypoint with a row in the window
            j0, j1 = int(np.searchsorted(table[0], t0, "left")), int(np.searchsorted(table[0], t1, "right"))
            if j1 > j0:
                hit = rank, table, j0, j1
                break
        if hit is None:
            return None
        r, (_, fr, pr, bounds, mean), j0, j1 = hit
        s0 = int(np.searchsorted(bounds, j0, "right")) - 1  # the frames of rows j0 and j1 − 1
        s1 = int(np.searchsorted(bounds, j1 - 1, "right")) - 1
        if s1 - s0 + 1 == j1 - j0:  # one sighting per frame: its position
            return r, (fr[j0:j1].copy(), pr[j0:j1] + 0.0)
        xy = mean[s0:s1 + 1].copy()
        for s, a, b in ((s0, j0, min(int(bounds[s0 + 1]), j1)), (s1, max(int(bounds[s1]), j0), j1)):
            if a != bounds[s] or b != bounds[s + 1]:  # cut by the window
                part = np.add.reduceat(pr[a:b], np.zeros(1, np.int64), axis=0)
                part /= np.array([float(b - a)])[:, None]
                xy[s - s0] = part[0]
        return r, (fr[bounds[s0:s1 + 1]], xy)

    def _rows(self, track: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """``track``'s kept rows: t (m,), rank (m,), xy (m, 2), frame (m,), and whether t never decreases."""
        rec = self._tracks[track]
        if len(rec[0]) > 1:  # one array per track from here (appended chunks joined once)
            rec[0] = [tuple(np.concatenate([c[i] for c in rec[0]]) for i in range(4))]
        if rec[2] is None:
            t = rec[0][0][0]
            rec[2] = bool(t.size < 2 or (np.diff(t) >= 0).all())
        return (*rec[0][0], rec[2])

    def positions(self, t0: float, t1: float, tracks: Sequence[str] | None = None, *,
                  second: set[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Track → (frames (m,) int64, floor xy (m, 2) metres) of the kept rows with ``t0 <= t <= t1`` (s) of
        ``tracks`` (None: all), as ``_positions`` gives them for those rows: per track the first of
        :data:`BODY_KEYPOINTS` it has in the window, its mean position per frame; tracks with none left out.
        ``second``: a set that receives the tracks placed by a keypoint other than the first (no neck in the
        window: a neck in rows still to come would place them anew)."""
        if tracks is None:
            memo = self._memo.get((t0, t1))
            if memo is None:
                found: set[str] = set()
                memo = self._memo[(t0, t1)] = (self._positions(t0, t1, self._tracks, found), frozenset(found))
            if second is not None:
                second.update(memo[1])
            return dict(memo[0])
        return self._positions(t0, t1, {str(x) for x in tracks} & self._tracks.keys(), second)

    def _positions(self, t0: float, t1: float, names: Iterable[str], second: set[str] | None) -> dict:
        out = {}
        for track in sorted(names):
            t, k, xy, f, ordered = self._rows(track)
            if ordered:  # rows in time order (the usual case): the window's frames from the track's own
                got = self._window_frames(track, t0, t1)
                if got is None:
                    continue
                first, frames_xy = got
                if second is not None and first > 0:
                    second.add(track)
                out[track] = frames_xy
                continue
            if ordered:  # rows in time order (the usual case): the window is one slice
                inside = slice(int(np.searchsorted(t, t0, "left")), int(np.searchsorted(t, t1, "right")))
            else:
                inside = (t >= t0) & (t <= t1)
            kk = k[inside]
            if kk.size == 0:
                continue
            first = kk.min()  # the first keypoint of BODY_KEYPOINTS the track has in the window
            if second is not None and first > 0:
                second.add(track)
            if first == kk.max():
                ff, pts = f[inside], xy[inside]
            else:
                sel = kk == first
                ff, pts = f[inside][sel], xy[inside][sel]
            if ordered:  # frames in order: a frame's sightings are neighbours
                step = np.flatnonzero(ff[1:] != ff[:-1]) + 1
                if step.size == ff.size - 1:  # one sighting per frame: its position
                    out[track] = (ff.copy(), pts + 0.0)
                    continue
                starts = np.concatenate(([0], step))
                # the sightings of a frame summed in their order, as np.add.at sums them from zero
                acc = np.add.reduceat(pts, starts, axis=0)
                acc /= np.diff(np.append(starts, ff.size)).astype(np.float64)[:, None]
                out[track] = (ff[starts], acc)
                continue
            frames, inv = np.unique(ff, return_inverse=True)
            if frames.size == ff.size:  # one sighting per frame: its position, as the mean gives it
                out[track] = (frames, pts[np.argsort(ff, kind="stable")] + 0.0)
                continue
            acc = np.zeros((frames.size, 2))
            np.add.at(acc, inv, pts)
            acc /= np.bincount(inv, minlength=frames.size)[:, None]
            out[track] = (frames, acc)
        return out


@dataclass(frozen=True)
class FramedBodies(TrackObservations):
    """Body keypoints: every kept row of ``frames`` with ``max(t0, rows_t0) <= t <= t1`` (s), and ``frames``
    itself, from which :func:`find_swaps` reads the per-frame positions of the whole window ``[t0, t1]``
    (:meth:`BodyFrames.positions`). ``rows_t0``: where the rows begin, for a caller whose readers of rows look at
    the end of the window only (``carts.fusion.body_rows_from``: the id-switch repair reads a minute of frames,
    the evidence steps a few seconds of rows). Whoever builds one vouches that its rows are exactly those rows
    (``carts.loop.StoreLoop`` feeds and prunes both alike); :meth:`between` keeps that true, any other selection
    gives a plain ``TrackObservations``."""

    frames: BodyFrames | None = None
    t0: float = -math.inf
    t1: float = math.inf
    rows_t0: float = -math.inf

    def between(self, t0: float, t1: float) -> TrackObservations:
        rows = super().between(t0, t1)
        return FramedBodies(rows.track_id, rows.t, rows.keypoint, rows.xyz, rows.score, frames=self.frames,
                            t0=max(self.t0, t0), t1=min(self.t1, t1), rows_t0=self.rows_t0)


def _apart(box_a: np.ndarray, box_b: np.ndarray, near_m: float) -> bool:
    """Whether two tracks' floor boxes ((4,) x0, y0, x1, y1 metres) are more than ``near_m`` apart: then no frame
    of theirs is, and the pair cannot have switched (:func:`_pair_swaps` would read nothing)."""
    dx = max(0.0, box_a[0] - box_b[2], box_b[0] - box_a[2])
    dy = max(0.0, box_a[1] - box_b[3], box_b[1] - box_a[3])
    return math.hypot(dx, dy) > near_m


def find_swaps(bodies: TrackObservations, *, tracks: Sequence[str] | None = None, frame_s: float = 0.1,
               near_m: float = 1.0, margin_m: float = 0.25, noise_k: float = 2.5, smooth: float = 0.5,
               velocity_gain: float = 0.2, max_gap_s: float = 1.0, warmup: int = 10, max_swap_s: float = 5.0,
               involving: Sequence[str] | None = None) -> list[Swap]:
    """Id switches between pairs of ``tracks`` (None: all) in ``bodies`` (body keypoints, store metres).

    Per pair that comes within ``near_m`` metres, frames of ``frame_s`` seconds are read in time order with a
    constant-velocity alpha-beta filter per identity (gains ``smooth`` on position, ``velocity_gain`` on
    velocity; Kalata, "The tracking index", IEEE Trans. AES 1984) predicting where each should be; the
    pairing flips when the crossed assignment is cheaper than the current one by more than the margin: the larger
    of ``margin_m`` metres and ``noise_k`` × the sum of both filters' RMS prediction errors (a noisier tracker
    needs a bigger jump before a switch is believed; module docstring), once both filters have ``warmup``
    sightings (their velocity has converged: a walking track read from a standstill guess looks like a jump).
    A sighting farther from its identity's prediction than the margin does not update the filter (gating, as
    every tracker does): at a switch's edge one of the two is often missed for a frame, and the other's jump
    must not drag its filter along. A swap whose end is not seen within ``max_swap_s`` ends there (the labels
    stand again, both filters restart): the end of a switch between people who drifted close is a small jump and
    can be missed, and carrying a swap on forever would misattribute everything both do afterwards, while
    trackers re-identify within seconds (ByteTrack keeps a lost track 30 frames; re-identification does the
    rest). The labels at the pair's first common frame are taken as right. An identity unseen for more than
    ``max_gap_s`` restarts its filter from the current labels (and warms up again). Defaults: 0.25 m is
    five times the per-frame sd of a body keypoint in store coordinates (~5 cm) and more than the step of a
    person walking at 1.5 m/s in 0.1 s, so neither noise nor walking flips a pair; a switch between people
    0.2 m apart or more costs twice that. ``involving``: only the swaps that can change the label of a sighting
    of these tracks (pairs with one of them, then pairs with a track that swapped with one, and so on; the same
    swaps for those sightings as with every pair, read in a fraction of the time). Returns the swaps, earliest
    first (pairs in name order at one moment). Raises ValueError for
    non-positive ``frame_s``, ``near_m`` or ``margin_m``, or ``smooth`` outside (0, 1].
    """
    if not (frame_s > 0 and near_m > 0 and margin_m > 0 and 0 < smooth <= 1):
        raise ValueError("find_swaps: frame_s, near_m and margin_m must be > 0 and smooth in (0, 1]")
    framed_bodies = bodies if isinstance(bodies, FramedBodies) else None
    framed = framed_bodies.frames if framed_bodies is not None else None
    params = (frame_s, near_m, margin_m, noise_k, smooth, velocity_gain, max(1, int(round(max_gap_s / frame_s))),
              warmup, max(1, int(round(max_swap_s / frame_s))))
    if framed_bodies is not None and framed is not None and framed.frame_s == frame_s and involving is not None:
        return _framed_swaps_involving(framed_bodies, framed, tracks, involving, params)
    if framed_bodies is not None and framed is not None and framed.frame_s == frame_s:  # kept per track: no regrouping
        pos = framed.positions(framed_bodies.t0, framed_bodies.t1, tracks)
    else:
        if isinstance(bodies, FramedBodies) and bodies.rows_t0 > bodies.t0:
            raise ValueError(f"find_swaps: frames of {frame_s} s asked of a window whose rows begin at "
                             f"{bodies.rows_t0} s, after its start {bodies.t0} s")
        w = bodies[member(bodies.keypoint, BODY_KEYPOINTS)]
        if tracks is not None:
            w = w[member(w.track_id, tracks)]
        pos = _positions(w, frame_s)
    names = sorted(pos)
    out: list[Swap] = []
    if involving is None:
        box = {k: np.concatenate([xy.min(axis=0), xy.max(axis=0)]) for k, (_, xy) in pos.items()}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if not _apart(box[a], box[b], near_m):
                    out.extend(_pair_swaps(a, b, pos, params))
    elif names:
        out.extend(_swaps_involving(pos, names, [str(x) for x in involving if str(x) in pos], params, near_m))
    out.sort(key=lambda s: (s.t_from, s.a, s.b))
    return out


#: m: what :func:`swaps_of` adds to ``near_m`` when it picks the neighbours to read: a track placed by its head now
#: is placed by its neck once a neck row comes (the two project a few centimetres apart on the floor; 0.5 m is ten
#: times that), and it keeps the pick a superset whatever the rows' spread within a frame.
NEIGHBOUR_SLACK_M = 0.5


def _framed_swaps_involving(bodies: "FramedBodies", framed: BodyFrames, tracks: Sequence[str] | None,
                            involving: Sequence[str], params: tuple) -> list[Swap]:
    """:func:`find_swaps` with ``involving`` on a :class:`FramedBodies` window, reading the positions of the
    tracks near those it reaches only (:meth:`BodyFrames.near`) instead of every track's: the tracks it reaches
    (``involving`` and every partner of a swap found) grow until each has had its neighbours read, so every pair
    that can swap is read, and the swaps are those of reading every track. Each round reads the new tracks'
    positions and the new pairs only (:class:`_PairMemo`): a track's positions and a pair's swaps depend on the
    window and that track or pair alone, so those of an earlier round of the same call are theirs again."""
    allowed = None if tracks is None else {str(x) for x in tracks}
    start = {str(x) for x in involving}
    if allowed is not None:
        start &= allowed
    near_m = params[1]
    need, names = set(start), set(start)
    asked: set[str] = set()
    placed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    memo = _PairMemo()
    while True:
        found = framed.near(bodies.t0, bodies.t1, need, near_m + NEIGHBOUR_SLACK_M)
        names |= found if allowed is None else found & allowed
        placed.update(framed.positions(bodies.t0, bodies.t1, sorted(names - asked)))
        asked |= names
        pos = {x: placed[x] for x in sorted(names) if x in placed}
        out = (_swaps_involving(pos, sorted(pos), sorted(x for x in start if x in pos), params, near_m, memo=memo)
               if pos else [])
        reached = set(start) | {sw.a for sw in out} | {sw.b for sw in out}
        if reached <= need:
            break
        need |= reached
    out.sort(key=lambda s: (s.t_from, s.a, s.b))
    return out


def swaps_of(bodies: FramedBodies, tracks: Sequence[str], *, frame_s: float = 0.1, near_m: float = 1.0,
             margin_m: float = 0.25, noise_k: float = 2.5, smooth: float = 0.5, velocity_gain: float = 0.2,
             max_gap_s: float = 1.0, warmup: int = 10, max_swap_s: float = 5.0) -> list[Swap] | None:
    """Every swap between one of ``tracks`` and any track of ``bodies`` (a :class:`FramedBodies` window; its frames
    are read, not its rows; knobs as :func:`find_swaps`): a superset of the swaps :func:`find_swaps` over the same
    window (any ``tracks``/``involving``) can give that involve one of ``tracks``, hence of the hand sightings that
    :func:`apply_swaps` can label with one of them. Unordered, each pair read once. Only the tracks that came within
    ``near_m + NEIGHBOUR_SLACK_M`` of one of ``tracks`` in the window are read (:meth:`BodyFrames.near`): a pair
    farther apart in every frame has no swap. None when one of those is placed by its head (no neck in the
    window): the rows of a window still being fed could place it anew. Raises ValueError for ``bodies`` without
    frames of ``frame_s``.

    The answer is kept in the frames (:meth:`BodyFrames._swaps_valid` says when it stands) and given again, as a new
    list, while it is exactly what reading the window anew gives: the store loop's billing wait asks the same
    tracks over windows whose end moves with its clock, every step."""
    framed = bodies.frames if isinstance(bodies, FramedBodies) else None
    if framed is None or framed.frame_s != frame_s:
        raise ValueError("swaps_of needs a FramedBodies window with frames of frame_s")
    names = tuple(str(x) for x in tracks)
    knobs = (frame_s, near_m, margin_m, noise_k, smooth, velocity_gain, max_gap_s, warmup, max_swap_s)
    key = (names, bodies.t0, knobs)
    end = min(bodies.t1, framed.newest)  # rows past the newest fed one: none, so the same rows as ending there
    kept = framed._swaps.get(key)
    if kept is not None and framed._swaps_valid(kept, end):
        return None if kept[2] is None else list(kept[2])
    second: set[str] = set()
    near = framed.near(bodies.t0, bodies.t1, names, near_m + NEIGHBOUR_SLACK_M)
    pos = framed.positions(bodies.t0, bodies.t1, sorted(near), second=second)
    if second:
        found = None
    elif not pos:  # no track of the window near them (none kept, or none with rows in it): no swap
        found = []
    else:
        params = (frame_s, near_m, margin_m, noise_k, smooth, velocity_gain,
                  max(1, int(round(max_gap_s / frame_s))), warmup, max(1, int(round(max_swap_s / frame_s))))
        found = _swaps_involving(pos, sorted(pos), [x for x in names if x in pos], params, near_m, expand=False)
    # the horizon (BodyFrames._swaps_valid): rows from it on cannot change this answer, when every track read near
    # them has rows in the window (one that has none could come into it placed by its head: None)
    last = max((framed._last_t(x) for x in names if x in framed._tracks), default=-math.inf)
    horizon = math.floor(last) + 2.0 if math.isfinite(last) else -math.inf
    if not near <= pos.keys():
        horizon = math.inf
    if len(framed._swaps) >= _SWAPS_KEPT:
        framed._swaps.clear()
    framed._swaps[key] = [end, horizon, None if found is None else tuple(found)]
    return found


#: Answers :func:`swaps_of` keeps in a :class:`BodyFrames` at most (cleared when full; pruning drops them sooner)
_SWAPS_KEPT = 4096

#: Windows whose boxes :meth:`BodyFrames.near` keeps at most (cleared when full; every add or prune drops them
#: sooner): its callers ask one window for several tracks in a row (a window's cut is a minute of every track's
#: boxes, too large to keep many)
_NEAR_CUTS_KEPT = 4


class _PairMemo:
    """The pairs one :func:`_framed_swaps_involving` call has read so far, over one window (the positions do not
    change within the call): which pairs (``known``, by the tracks' numbers in ``index``; read whether or not they
    came close) and, of those, the swaps of each pair that swapped (``swaps``: (lower name, higher name) → its
    swaps; ``partners``: track → the tracks it swapped with), so that a later round of the call reads the new pairs
    only and gives the known ones' swaps again."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.known = np.zeros((0, 0), dtype=np.bool_)
        self.swaps: dict[tuple[str, str], list[Swap]] = {}
        self.partners: dict[str, list[str]] = {}

    def ids(self, names: list[str]) -> np.ndarray:
        """The numbers of ``names`` (new names numbered on), ``known`` grown to hold them."""
        ids = np.fromiter((self.index.setdefault(x, len(self.index)) for x in names), dtype=np.int64,
                          count=len(names))
        if len(self.index) > self.known.shape[0]:
            grown = np.zeros((2 * len(self.index), 2 * len(self.index)), dtype=np.bool_)
            n = self.known.shape[0]
            grown[:n, :n] = self.known
            self.known = grown
        return ids


def _swaps_involving(pos: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str], involving: list[str],
                     params: tuple, near_m: float, expand: bool = True, memo: _PairMemo | None = None) -> list[Swap]:
    """:func:`find_swaps` with ``involving``: every pair of a track reached from ``involving`` (through pairs that
    swapped) with a track that comes within ``near_m`` of it in a frame they share (two frames shared at least),
    read by :func:`_pair_kernel` — the same pairs as reading them one by one (each once, whatever the order), in one
    compiled call per track reached instead of a Python call per pair (a crowd of 200 reaches most of the store).
    ``expand`` False: the pairs of ``involving`` only (:func:`swaps_of`). ``memo``: the pairs read before over the
    same positions (:class:`_PairMemo`; their swaps are given from it, not read again), and where the pairs read
    now are kept. Unordered."""
    frame_s, _, margin_m, noise_k, smooth, velocity_gain, gap, warmup, longest = params
    row = {n: i for i, n in enumerate(names)}
    sizes = np.array([pos[n][0].size for n in names], dtype=np.int64)
    offs = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offs[1:])
    frames = np.concatenate([pos[n][0] for n in names]).astype(np.int64, copy=False)
    xy = np.ascontiguousarray(np.concatenate([pos[n][1] for n in names]), dtype=np.float64)
    boxes = _frame_boxes(frames, xy, offs, _BOX_FRAMES)
    done = np.zeros(len(names), dtype=np.bool_)
    ids = memo.ids(names) if memo is not None else None
    out: list[Swap] = []
    todo = [row[x] for x in involving]
    while todo:
        a = todo.pop()
        if done[a]:
            continue
        done[a] = True
        skip = done
        if memo is not None and ids is not None:
            skip = done | memo.known[ids[a], ids]  # the pairs of a read before: not again
        spans = _swaps_of(a, frames, xy, offs, boxes, skip, float(near_m), float(margin_m), float(noise_k),
                          float(smooth), float(velocity_gain), int(gap), int(warmup), int(longest))
        partners: list[int] = []
        for b, since, end, seen in spans.tolist():
            lo_, hi_ = (a, b) if a < b else (b, a)
            sw = Swap(names[lo_], names[hi_], since * frame_s - frame_s / 2,
                      end * frame_s - frame_s / 2 if end >= 0 else math.inf, end_seen=bool(seen))
            out.append(sw)
            if not partners or partners[-1] != b:
                partners.append(b)
            if memo is not None:
                memo.swaps.setdefault((sw.a, sw.b), []).append(sw)
                if len(memo.swaps[(sw.a, sw.b)]) == 1:
                    memo.partners.setdefault(sw.a, []).append(sw.b)
                    memo.partners.setdefault(sw.b, []).append(sw.a)
        if memo is not None and ids is not None:
            for other in memo.partners.get(names[a], ()):  # the known pairs of a, b not done, that swapped
                b = row.get(other, -1)
                if b >= 0 and not done[b] and memo.known[ids[a], ids[b]]:
                    out.extend(memo.swaps[(names[a], other) if names[a] < other else (other, names[a])])
                    partners.append(b)
            read = ids[~skip]
            memo.known[ids[a], read] = True
            memo.known[read, ids[a]] = True
        if expand:
            todo.extend(partners)
    return out


#: Frames per bounding box of :func:`_frame_boxes` (a pair whose boxes are farther apart than ``near_m`` in every
#: stretch they share is not read frame by frame).
_BOX_FRAMES = 32


@_jit
def _frame_boxes(frames, xy, offs, width):
    """(tracks, stretches, 4) float64: each track's floor box (x0, y0, x1, y1 metres) over every stretch of
    ``width`` frames (stretch k: frames [k·width, (k + 1)·width) from the earliest frame); NaN where unseen."""
    f0 = frames.min() if frames.shape[0] else 0
    f1 = frames.max() if frames.shape[0] else 0
    n = (f1 - f0) // width + 1
    out = np.full((offs.shape[0] - 1, n, 4), np.nan)
    for t in range(offs.shape[0] - 1):
        for i in range(offs[t], offs[t + 1]):
            k = (frames[i] - f0) // width
            x = xy[i, 0]
            y = xy[i, 1]
            if np.isnan(out[t, k, 0]):
                out[t, k, 0] = x
                out[t, k, 1] = y
                out[t, k, 2] = x
                out[t, k, 3] = y
            else:
                out[t, k, 0] = min(out[t, k, 0], x)
                out[t, k, 1] = min(out[t, k, 1], y)
                out[t, k, 2] = max(out[t, k, 2], x)
                out[t, k, 3] = max(out[t, k, 3], y)
    return out


@_jit
def _swaps_of(a, frames, xy, offs, boxes, done, near_m, margin_m, noise_k, smooth, velocity_gain, gap, warmup,
              longest):
    """The swaps of track row ``a`` with every row ``b`` not ``done`` (:func:`_swaps_involving`): (k, 4) int64 rows
    (b, first frame, end frame or −1, end seen), by b. A pair is read (:func:`_pair_kernel`, identity of the
    lower row first, as :func:`_pair_swaps` reads it in name order) when it shares two frames or more and is within
    ``near_m`` in one of them, as :func:`_pair_swaps` requires."""
    res = np.zeros((0, 4), dtype=np.int64)
    a0, a1 = offs[a], offs[a + 1]
    if a1 - a0 == 0:
        return res
    found = []
    for b in range(offs.shape[0] - 1):
        if b == a or done[b]:
            continue
        b0, b1 = offs[b], offs[b + 1]
        if b1 - b0 == 0:
            continue
        close = False
        for k in range(boxes.shape[1]):
            if np.isnan(boxes[a, k, 0]) or np.isnan(boxes[b, k, 0]):
                continue
            dx = max(0.0, boxes[a, k, 0] - boxes[b, k, 2], boxes[b, k, 0] - boxes[a, k, 2])
            dy = max(0.0, boxes[a, k, 1] - boxes[b, k, 3], boxes[b, k, 1] - boxes[a, k, 3])
            if math.hypot(dx, dy) <= near_m + 1e-9:
                close = True
                break
        if not close:
            continue
        # frames shared (both sorted, distinct): how many, the first and last, and whether one is within near_m
        i, j = a0, b0
        common, first, last = 0, -1, -1
        near = False
        while i < a1 and j < b1:
            if frames[i] < frames[j]:
                i += 1
            elif frames[i] > frames[j]:
                j += 1
            else:
                if common == 0:
                    first = frames[i]
                last = frames[i]
                common += 1
                if math.hypot(xy[i, 0] - xy[j, 0], xy[i, 1] - xy[j, 1]) <= near_m:
                    near = True
                i += 1
                j += 1
        if common < 2 or not near:
            continue
        lo_r, hi_r = (a, b) if a < b else (b, a)
        p0, p1, q0, q1 = offs[lo_r], offs[lo_r + 1], offs[hi_r], offs[hi_r + 1]
        spans = _pair_kernel(frames[p0:p1], xy[p0:p1], frames[q0:q1], xy[q0:q1], min(frames[p0], frames[q0]),
                             last, first, margin_m, noise_k, smooth, velocity_gain, gap, warmup, longest)
        for r in range(spans.shape[0]):
            found.append((b, spans[r, 0], spans[r, 1], spans[r, 2]))
    if len(found) == 0:
        return res
    res = np.zeros((len(found), 4), dtype=np.int64)
    for r in range(len(found)):
        res[r, 0] = found[r][0]
        res[r, 1] = found[r][1]
        res[r, 2] = found[r][2]
        res[r, 3] = found[r][3]
    return res


def _pair_swaps(a: str, b: str, pos: dict[str, tuple[np.ndarray, np.ndarray]], params: tuple) -> list[Swap]:
    """The swaps between tracks ``a`` and ``b`` (``a`` < ``b``; :func:`find_swaps`, whose knobs ``params``
    carries), read from their per-frame positions ``pos``."""
    frame_s, near_m, margin_m, noise_k, smooth, velocity_gain, gap, warmup, longest = params
    found: list[Swap] = []
    fa, xa = pos[a]
    fb, xb = pos[b]
    common, ia, ib = np.intersect1d(fa, fb, return_indices=True)
    if common.size < 2 or np.min(np.hypot(*(xa[ia] - xb[ib]).T)) > near_m:
        return found
    lo, hi = min(int(fa[0]), int(fb[0])), int(common[-1])
    spans = _pair_kernel(fa, np.ascontiguousarray(xa, dtype=np.float64), fb,
                         np.ascontiguousarray(xb, dtype=np.float64), lo, hi, int(common[0]), float(margin_m),
                         float(noise_k), float(smooth), float(velocity_gain), int(gap), int(warmup), int(longest))
    for since, end, seen in spans.tolist():
        found.append(Swap(a, b, since * frame_s - frame_s / 2, end * frame_s - frame_s / 2 if end >= 0 else math.inf,
                          end_seen=bool(seen)))
    return found


@_jit
def _pair_kernel(fa, xa, fb, xb, lo, hi, c0, margin_m, noise_k, smooth, velocity_gain, gap, warmup, longest):
    """The frame-by-frame reading of one pair (:func:`find_swaps`): frames ``fa`` (m,) int64 and positions ``xa``
    (m, 2) metres of identity a, likewise of b; every frame in ``[lo, hi]`` where either is seen, in time order;
    the pairing may flip from frame ``c0`` (their first common one). Returns (k, 3) int64: each swap's first frame,
    its end frame (exclusive; −1 when it is still on at the end) and whether that end was seen (1) or the swap ran
    out after ``longest`` frames (0)."""
    out = np.zeros((fa.shape[0] + fb.shape[0] + 1, 3), dtype=np.int64)
    n_out = 0
    # per identity: position and velocity (m, m per frame), last frame, RMS prediction error (m), sightings
    pos = np.zeros((2, 2))
    vel = np.zeros((2, 2))
    pred = np.zeros((2, 2))
    obs = np.zeros((2, 2))
    last = np.zeros(2, dtype=np.int64)
    rms = np.zeros(2)
    seen = np.zeros(2, dtype=np.int64)
    alive = np.zeros(2, dtype=np.bool_)
    has = np.zeros(2, dtype=np.bool_)
    swapped = False
    since = 0
    i = 0
    j = 0
    while i < fa.shape[0] and fa[i] < lo:
        i += 1
    while j < fb.shape[0] and fb[j] < lo:
        j += 1
    while True:
        ok_a = i < fa.shape[0] and fa[i] <= hi
        ok_b = j < fb.shape[0] and fb[j] <= hi
        if not ok_a and not ok_b:
            break
        if ok_a and ok_b:
            f = min(fa[i], fb[j])
        elif ok_a:
            f = fa[i]
        else:
            f = fb[j]
        in_a = ok_a and fa[i] == f
        in_b = ok_b and fb[j] == f
        if swapped and f - since > longest:  # no end seen: the labels stand again from here
            out[n_out, 0] = since
            out[n_out, 1] = since + longest
            n_out += 1
            swapped = False
            alive[0] = False
            alive[1] = False
        # what identity a and identity b show this frame
        ka, kb = (1, 0) if swapped else (0, 1)
        has[ka] = in_a
        has[kb] = in_b
        if in_a:
            obs[ka, 0] = xa[i, 0]
            obs[ka, 1] = xa[i, 1]
        if in_b:
            obs[kb, 0] = xb[j, 0]
            obs[kb, 1] = xb[j, 1]
        for k in range(2):
            if alive[k] and f - last[k] > gap:  # lost for a while: start that filter again
                alive[k] = False
            if alive[k]:
                pred[k, 0] = pos[k, 0] + vel[k, 0] * (f - last[k])
                pred[k, 1] = pos[k, 1] + vel[k, 1] * (f - last[k])
        settled = alive[0] and alive[1] and seen[0] >= warmup and seen[1] >= warmup
        if settled and has[0] and has[1] and f >= c0:
            keep = (math.hypot(obs[0, 0] - pred[0, 0], obs[0, 1] - pred[0, 1])
                    + math.hypot(obs[1, 0] - pred[1, 0], obs[1, 1] - pred[1, 1]))
            cross = (math.hypot(obs[1, 0] - pred[0, 0], obs[1, 1] - pred[0, 1])
                     + math.hypot(obs[0, 0] - pred[1, 0], obs[0, 1] - pred[1, 1]))
            margin = max(margin_m, noise_k * (rms[0] + rms[1]))
            if cross + margin < keep:
                if swapped:
                    out[n_out, 0] = since
                    out[n_out, 1] = f
                    out[n_out, 2] = 1
                    n_out += 1
                else:
                    since = f
                swapped = not swapped
                for c in range(2):
                    obs[0, c], obs[1, c] = obs[1, c], obs[0, c]
        for k in range(2):  # alpha-beta filter update (constant velocity)
            if not has[k]:
                continue
            if not alive[k]:
                alive[k] = True
                pos[k, 0] = obs[k, 0]
                pos[k, 1] = obs[k, 1]
                vel[k, 0] = 0.0
                vel[k, 1] = 0.0
                last[k] = f
                rms[k] = margin_m / (2 * noise_k)
                seen[k] = 1
                continue
            rx = obs[k, 0] - pred[k, 0]
            ry = obs[k, 1] - pred[k, 1]
            if math.hypot(rx, ry) > max(margin_m, noise_k * rms[k]):
                continue  # gated out: a sighting this far from the prediction is not this identity's
            seen[k] += 1
            rms[k] = math.sqrt(0.9 * rms[k] ** 2 + 0.1 * (rx * rx + ry * ry))  # RMS prediction error, metres
            pos[k, 0] = pred[k, 0] + smooth * rx
            pos[k, 1] = pred[k, 1] + smooth * ry
            step = max(f - last[k], 1)
            vel[k, 0] = vel[k, 0] + velocity_gain * rx / step
            vel[k, 1] = vel[k, 1] + velocity_gain * ry / step
            last[k] = f
        if in_a:
            i += 1
        if in_b:
            j += 1
    if swapped:
        out[n_out, 0] = since
        out[n_out, 1] = -1
        n_out += 1
    return out[:n_out]


def apply_swaps(obs: TrackObservations, swaps: Sequence[Swap]) -> TrackObservations:
    """``obs`` with the ids of each swap's two tracks exchanged over its interval (swaps applied in order).
    Returns ``obs`` itself when there is nothing to undo."""
    if not swaps or len(obs) == 0:
        return obs
    ids = obs.track_id.copy()
    # the rows' track codes (TrackObservations.codes) relabelled alike, compared instead of the strings while
    # both tracks of a swap have one
    table = obs.codes[0] if obs.codes is not None else None
    codes = table.codes.copy() if table is not None else None
    for s in swaps:
        inside = (obs.t >= s.t_from) & (obs.t < s.t_to)
        ca, cb = (table.index.get(s.a), table.index.get(s.b)) if table is not None else (None, None)
        if codes is not None and ca is not None and cb is not None:
            ia, ib = inside & (codes == ca), inside & (codes == cb)
            codes[ia], codes[ib] = cb, ca
        else:
            codes = None
            ia, ib = inside & (ids == s.a), inside & (ids == s.b)
        ids[ia], ids[ib] = s.b, s.a
    kept = None
    if codes is not None and table is not None and obs.codes is not None:
        kept = (NameCodes(codes, table.names, table.index), obs.codes[1])
    return TrackObservations(ids, obs.t, obs.keypoint, obs.xyz, obs.score, codes=kept)


#: Seconds of body keypoints before a window that :func:`repair` reads by default to find the switches that relabel
#: it (a switch older than a minute has been re-identified by the tracker long since; ByteTrack keeps a lost track
#: 30 frames).
REPAIR_LOOKBACK_S = 60.0


def repair(hands: TrackObservations, bodies: TrackObservations, t0: float, t1: float, *,
           tracks: Sequence[str] | None = None, lookback_s: float = REPAIR_LOOKBACK_S, **kwargs) -> tuple[TrackObservations,
                                                                                             list[Swap]]:
    """The hand observations of ``[t0, t1]`` (s UTC) with the id switches between ``tracks`` undone, read from
    ``bodies`` over ``[t0 − lookback_s, t1]`` (the labels at the start of that window are taken as right), and
    the swaps found. ``kwargs`` go to :func:`find_swaps` (``involving``: only the swaps that can relabel those
    tracks' sightings)."""
    w_hands = hands.between(t0, t1)
    swaps = find_swaps(bodies.between(t0 - lookback_s, t1), tracks=tracks, **kwargs)
    return apply_swaps(w_hands, swaps), swaps
