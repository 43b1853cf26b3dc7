"""The shoppers' body positions frame by frame: what the id-switch finding (:mod:`vision.identity`) reads.

A track's place on the floor in a frame of ``frame_s`` seconds is the mean floor position of its first
:data:`BODY_KEYPOINTS` sightings in that frame (:func:`body_positions`, from any rows). The store loop asks for the
positions of the same minute of bodies for every shelf event and every billing check, so :class:`BodyFrames` keeps
the body rows per track as they arrive (pruned like the loop's observation window) and gives the same positions
from each track's own rows, plus a coarse per-second box per track to find a track's neighbours quickly;
:class:`FramedBodies` is a window of those rows that carries the frames along, for :func:`vision.identity.find_swaps`
and :func:`vision.identity.swaps_of` to read. Pure NumPy, no framework.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from store.recording import TrackObservations


#: Body keypoints whose floor position stands for the track, best first.
BODY_KEYPOINTS = ("neck", "head")


def body_positions(bodies: TrackObservations, frame_s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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
    :func:`vision.identity.find_swaps` reads — come from each track's own rows instead of regrouping the whole
    window's rows (every shopper's minute of bodies) for every shelf event. :meth:`positions` gives exactly what
    :func:`body_positions` gives for the kept rows of the window (same frames, same sums in the same order).

    ``frame_s``: the frame length of the positions (s; :func:`vision.identity.find_swaps`' default). Not
    thread-safe."""

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
        #: :func:`vision.identity.swaps_of`'s answers: (tracks, t0, knobs) → [end, horizon, swaps or None]
        #: (:meth:`_swaps_valid`)
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
        """Whether a :func:`vision.identity.swaps_of` answer kept as ``[end0, horizon, swaps]`` for a window
        ``[t0, end0]`` (``end0`` no later than :attr:`newest` then) is the answer for ``[t0, end]`` now. :meth:`add` and
        :meth:`prune` drop every kept answer they may change, so one still kept is exact for ``end == end0`` (the same
        rows), and for ``end > end0`` when ``horizon <= end0`` and it is not None. Then: (1) no row of its tracks came
        since (an add with one drops it), so they were last seen at ``h = horizon − 2`` or before, (2) every row come
        since, or past ``end0``, lies at ``horizon`` or later (an add with an earlier one drops it), (3) nothing from
        ``t0`` on was pruned (a prune past ``t0`` drops it). :meth:`near` of the tracks reads the boxes of whole seconds
        within one of theirs, all before ``horizon``: unchanged, so the same neighbours. A neighbour's frames from
        ``horizon`` on come after every frame of the tracks, so the pairs that share frames, the frames shared and every
        frame the pair kernel reads (up to their last shared one) are unchanged; every neighbour has a neck row before
        ``end0`` (the answer is not None, and each had rows in the window: a neighbour without would make the horizon
        infinite), so each is placed by the same keypoint."""
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
        ``tracks`` (None: all), as :func:`body_positions` gives them for those rows: per track the first of
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
    """Body keypoints: every kept row of ``frames`` with ``max(t0, rows_t0) <= t <= t1`` (s), and ``frames`` itself,
    from which :func:`vision.identity.find_swaps` reads the per-frame positions of the whole window ``[t0, t1]``
    (:meth:`BodyFrames.positions`). ``rows_t0``: where the rows begin, for a caller whose readers of rows look at the
    end of the window only (``carts.fusion.body_rows_from``: the id-switch repair reads 20 s of frames, the evidence
    steps a few seconds of rows). Whoever builds one vouches that its rows are exactly those rows
    (``carts.loop.StoreLoop`` feeds and prunes both alike); :meth:`between` keeps that true, any other selection gives a
    plain ``TrackObservations``."""

    frames: BodyFrames | None = None
    t0: float = -math.inf
    t1: float = math.inf
    rows_t0: float = -math.inf

    def between(self, t0: float, t1: float) -> TrackObservations:
        rows = super().between(t0, t1)
        return FramedBodies(rows.track_id, rows.t, rows.keypoint, rows.xyz, rows.score, frames=self.frames,
                            t0=max(self.t0, t0), t1=min(self.t1, t1), rows_t0=self.rows_t0)


#: Windows whose boxes :meth:`BodyFrames.near` keeps at most (cleared when full; every add or prune drops them
#: sooner): its callers ask one window for several tracks in a row (a window's cut is tens of seconds of every track's
#: boxes, too large to keep many)
_NEAR_CUTS_KEPT = 4
