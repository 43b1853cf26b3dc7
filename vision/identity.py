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
from typing import Sequence

import numpy as np

from store.recording import NameCodes, TrackObservations, member
from vision.identity_frames import BODY_KEYPOINTS, BodyFrames, FramedBodies, body_positions
from vision.identity_kernels import BOX_FRAMES, frame_boxes, pair_kernel, track_swaps


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
        pos = body_positions(w, frame_s)
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
    read by :func:`pair_kernel` — the same pairs as reading them one by one (each once, whatever the order), in one
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
    boxes = frame_boxes(frames, xy, offs, BOX_FRAMES)
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
        spans = track_swaps(a, frames, xy, offs, boxes, skip, float(near_m), float(margin_m), float(noise_k),
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
    spans = pair_kernel(fa, np.ascontiguousarray(xa, dtype=np.float64), fb,
                         np.ascontiguousarray(xb, dtype=np.float64), lo, hi, int(common[0]), float(margin_m),
                         float(noise_k), float(smooth), float(velocity_gain), int(gap), int(warmup), int(longest))
    for since, end, seen in spans.tolist():
        found.append(Swap(a, b, since * frame_s - frame_s / 2, end * frame_s - frame_s / 2 if end >= 0 else math.inf,
                          end_seen=bool(seen)))
    return found




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
#: it. A switch whose end is not seen is undone for ``max_swap_s`` (5 s) at most, so only a switch whose switch-back
#: is seen can reach an event from further back; 20 s covers the simulator's switches (1–4 s,
#: ``SimConfig.id_switch_share``) five times over. A switch-back seen more than 20 s after its switch is read as a
#: switch of its own and undone for ``max_swap_s`` wrongly (the choice: docs/store-worker-load.md, fourteenth pass).
REPAIR_LOOKBACK_S = 20.0


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
