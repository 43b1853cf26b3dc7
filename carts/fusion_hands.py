"""Fusion's hand evidence (pure NumPy, no Django): how near each shopper's hand came to a shelf event's bins and
whether it reached in (:func:`hand_evidence`), shoppers standing there with no hand in sight (:func:`hidden_hands`),
single-view wrist rays (:func:`wrist_ray_hands`), and the hand-only view of an event (:func:`attribute_event`).
The model: docs/fusion.md (1, 2); the decision that weighs this evidence: ``carts.fusion.decide_event``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from store.checks import check_rows
from store.recording import HAND_KEYPOINTS, RAY_KEYPOINTS, WRIST_RAY_KEYPOINTS, TrackObservations

from .fusion_config import BinGeometry, FusionConfig, _Event


# ---------------------------------------------------------------------------------------------- hand evidence
#: One track's row of :class:`HandEvidence` before it becomes columns: ``(track_id, distance_m, effective_m,
#: t_closest, motion_m, score, hand_xyz)``.
_EvidenceRow = tuple[str, float, float, float, float, float, tuple[float, ...]]


@dataclass(frozen=True)
class HandEvidence:
    """Hand-at-bin evidence of one shelf event, one row per candidate track (best hand), best score first.

    ``track_id`` (k,) object str; ``distance_m`` (k,) float64 closest raw hand-to-bin distance, metres;
    ``effective_m`` (k,) float64 the time-penalised distance ``d_eff``; ``t_closest`` (k,) float64 s UTC;
    ``motion_m`` (k,) float64 metres (entered-and-left depth, NaN when neither side was seen); ``score`` (k,)
    float64 in (0, 1] (docs/fusion.md); ``hand_xyz`` (k, 3) float64 metres, the closest hand sighting (the
    keypoint snapshot a reviewer sees). Raises ValueError on mismatched shapes.
    """

    track_id: np.ndarray
    distance_m: np.ndarray
    effective_m: np.ndarray
    t_closest: np.ndarray
    motion_m: np.ndarray
    score: np.ndarray
    hand_xyz: np.ndarray

    def __post_init__(self) -> None:
        n = self.track_id.shape[0]
        check_rows(self, ("distance_m", "effective_m", "t_closest", "motion_m", "score", "hand_xyz:3"), n)

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    @classmethod
    def empty(cls) -> "HandEvidence":
        z = np.zeros(0)
        return cls(np.array([], dtype=object), z, z, z, z, z, np.zeros((0, 3)))

    @classmethod
    def from_rows(cls, rows: Sequence[_EvidenceRow]) -> "HandEvidence":
        """One row per track, in the order given: ``(track_id, distance_m, effective_m, t_closest, motion_m, score,
        hand_xyz)`` (units as the columns'; ``hand_xyz`` three floats, metres). At least one row."""
        cols = list(zip(*rows))

        def floats(k: int) -> np.ndarray:
            return np.asarray(cols[k], dtype=np.float64)

        return cls(np.array(cols[0], dtype=object), floats(1), floats(2), floats(3), floats(4), floats(5),
                   floats(6).reshape(-1, 3))


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def _quantile(x: np.ndarray, q: float) -> float:
    """``float(np.quantile(x, q))`` for a 1-D float64 ``x`` of at least one value and ``0 <= q <= 1``, bit for bit
    (numpy's default ``linear`` method: its virtual index ``(n − 1)·q``, the two order statistics around it
    and its two-sided linear interpolation), without numpy's per-call overhead (~0.3 ms: fusion reads tens of
    thousands of short windows per minute in a crowd). NaN anywhere: numpy's answer."""
    n = x.size
    if n == 0 or np.isnan(x).any():
        return float(np.quantile(x, q))
    v = (n - 1) * q
    s = np.sort(x)
    if v >= n - 1:
        return float(s[-1])
    if v < 0:
        return float(s[0])
    i = math.floor(v)
    a, b, g = float(s[i]), float(s[i + 1]), v - i
    diff = b - a
    return b - diff * (1 - g) if g >= 0.5 else a + diff * g


def _core_distance(t: np.ndarray, d: np.ndarray, t0: float, t1: float, config: FusionConfig) -> float | None:
    """The hand's distance while the weight changed: the ``core_quantile`` quantile of ``d`` (metres) over the
    samples ``t`` (s, sorted) in ``[t0, t1]``; over a long change (a swinging or settling plate, or several takes
    merged), the smallest such quantile over any ``core_window_s`` stretch of it — the hand that took an item
    whose plate then swung for seconds was at the bin at the start, not for a good part of the whole interval,
    while a neighbour who lingered was. None when fewer than ``min_core_samples`` samples fall in every stretch."""
    core = np.flatnonzero((t >= t0) & (t <= t1))
    if core.size < config.min_core_samples:
        return None
    if t1 - t0 <= config.core_window_s:
        return _quantile(d[core], config.core_quantile)
    tc, dc = t[core], d[core]
    ends = np.searchsorted(tc, tc + config.core_window_s, side="right")
    starts = np.flatnonzero(ends - np.arange(ends.size) >= config.min_core_samples)
    if starts.size == 0:
        return None
    # a stretch's quantile is at least its minimum: read the stretches from the lowest minimum up and stop at the
    # first whose minimum is no lower than the best quantile so far (the same answer as reading them all)
    lows = np.array([dc[i:ends[i]].min() for i in starts.tolist()])
    best = math.inf
    for k in np.argsort(lows, kind="stable").tolist():
        if lows[k] >= best:
            break
        i = int(starts[k])
        best = min(best, _quantile(dc[i:ends[i]], config.core_quantile))
    return best


def _onset_distance(t: np.ndarray, d: np.ndarray, starts: Sequence[float], t1: float, config: FusionConfig
                    ) -> float | None:
    """The hand's distance when a one-unit change began: the ``core_quantile`` quantile of ``d`` (metres) over the
    samples ``t`` (s, sorted) in the first ``core_window_s`` of the core interval from each start in ``starts``
    (s UTC: the event's, and each of its merged changes'), ``[a − core_pad_s, min(a − core_pad_s +
    core_window_s, t1 + core_pad_s)]``, the smallest over the starts (``t1``: the event's end). One unit moves at
    one moment, and the hand that took or put it back was at the bin then: the detector's start is that hand's
    touch (docs/accuracy.md, change 7). A neighbour whose hand came to these plates only later, for an item of
    its own beside them, was not, even if it then stayed for the rest of a change that settles for a second.
    None when fewer than ``min_core_samples`` samples fall in every such window."""
    best: float | None = None
    for a in starts:
        lo = a - config.core_pad_s
        hi = min(lo + config.core_window_s, t1 + config.core_pad_s)
        i0, i1 = int(np.searchsorted(t, lo, side="left")), int(np.searchsorted(t, hi, side="right"))
        if i1 - i0 < config.min_core_samples:
            continue
        q = _quantile(d[i0:i1], config.core_quantile)
        best = q if best is None else min(best, q)
    return best


#: Points read along a single-view wrist's stretch of ray (:func:`wrist_ray_hands`): 2 cm apart on an arm's reach
#: of 0.8 m either side of the body (1.6 m), finer than the hand score's σ (0.15 m) by far.
RAY_SAMPLES = 81


def wrist_ray_hands(hands: TrackObservations, codes: Sequence[str], bins: BinGeometry,
                    config: FusionConfig = FusionConfig()) -> TrackObservations:
    """``hands`` with every single-view wrist ray (``store.recording.WRIST_RAY_KEYPOINTS``: the two ends of the
    stretch of one camera's wrist ray where the wrist can be, rows ``…_ray_a`` and ``…_ray_b`` of one track at one
    time, paired in row order) replaced by one wrist row (``l_wrist``/``r_wrist``, same track, time and score) at
    the point of that stretch nearest to the volume above the bins ``codes`` by fusion's distance
    (:meth:`BinGeometry.distance` with ``clearance_m`` and the along-shelf weight ``sigma_m / along_sigma_m``).
    One camera cannot tell how deep along its ray the wrist is; the stretch's nearest point is a lower bound of
    the hand's distance that needs no depth. Where several points of the stretch are equally near (a ray grazing
    the bins), the middle one. Rows that are not rays are returned as they are, first; ``hands`` without rays is
    returned itself (keypoint sources with 3-D hands). An ``…_ray_a`` row without its ``…_ray_b`` is dropped.
    Raises KeyError for a bin not in ``bins``."""
    is_ray = hands.keypoint_in(RAY_KEYPOINTS)
    if not is_ray.any():
        return hands
    keep = hands[~is_ray]
    out_name: list[str] = []
    ends_a: list[int] = []
    ends_b: list[int] = []
    for name, (ka, kb) in WRIST_RAY_KEYPOINTS.items():
        a_rows: dict[tuple[str, float], list[int]] = {}
        for i in np.flatnonzero(hands.keypoint == ka).tolist():
            a_rows.setdefault((str(hands.track_id[i]), float(hands.t[i])), []).append(i)
        for i in np.flatnonzero(hands.keypoint == kb).tolist():
            queue = a_rows.get((str(hands.track_id[i]), float(hands.t[i])))
            if queue:
                ends_a.append(queue.pop(0))
                ends_b.append(i)
                out_name.append(name)
    if not ends_a:
        return keep
    A, B = hands.xyz[ends_a], hands.xyz[ends_b]                              # (m, 3) each
    u = np.linspace(0.0, 1.0, RAY_SAMPLES)
    pts = A[:, None, :] + u[None, :, None] * (B - A)[:, None, :]            # (m, S, 3)
    flat = pts.reshape(-1, 3)
    d = bins.nearest_distance(flat, codes, config.clearance_m, config.sigma_m / config.along_sigma_m
                              ).reshape(len(ends_a), RAY_SAMPLES)
    near = d <= d.min(axis=1, keepdims=True) + 1e-9                          # the nearest samples of each stretch
    first = np.argmax(near, axis=1)
    last = RAY_SAMPLES - 1 - np.argmax(near[:, ::-1], axis=1)
    pick = (first + last) // 2
    xyz = pts[np.arange(len(ends_a)), pick]
    rows = np.asarray(ends_a, dtype=np.int64)
    resolved = TrackObservations(hands.track_id[rows], hands.t[rows], np.array(out_name, dtype=object), xyz,
                                 hands.score[rows])
    return TrackObservations(np.concatenate([keep.track_id, resolved.track_id]), np.concatenate([keep.t, resolved.t]),
                             np.concatenate([keep.keypoint, resolved.keypoint]), np.vstack([keep.xyz, resolved.xyz]),
                             np.concatenate([keep.score, resolved.score]))


def usable_hands(w: TrackObservations, codes: Sequence[str], bins: BinGeometry, config: FusionConfig,
                 eligible: Sequence[str] | None, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """The hand rows of ``w`` that :func:`hand_evidence` reads for an event on the bins ``codes``: hand keypoints
    (``HAND_KEYPOINTS``) scored at least ``min_hand_score``, of a track in ``eligible`` (None: any) with such a
    row within ``limit`` metres of the bins (:meth:`BinGeometry.nearest_distance`, ``clearance_m``, along-shelf
    weight ``sigma_m / along_sigma_m``). Returns (the usable rows' indices (k,) int, in order; their distances
    (k,), metres). Every test is a row's own: made on the rows a square around the bins lets through
    (:meth:`BinGeometry.may_reach`) to find the tracks, then on those tracks' rows; no row is copied."""
    along = config.sigma_m / config.along_sigma_m
    near = np.flatnonzero(bins.may_reach(w.xyz, codes, limit, along))
    near = near[_usable(w, near, config, eligible)]
    none = np.zeros(0, dtype=np.int64), np.zeros(0)
    if near.size == 0:
        return none
    reached = near[bins.nearest_distance(w.xyz[near], codes, config.clearance_m, along) <= limit]
    if reached.size == 0:
        return none
    rows = np.flatnonzero(w.track_in(_track_names(w, reached)))
    rows = rows[_usable(w, rows, config, None)]  # eligible: these tracks are
    return rows, bins.nearest_distance(w.xyz[rows], codes, config.clearance_m, along)


def _usable(w: TrackObservations, rows: np.ndarray, config: FusionConfig, eligible: Sequence[str] | None
            ) -> np.ndarray:
    """(k,) bool: which of the rows at the indices ``rows`` (k,) of ``w`` are hand keypoints scored at least
    ``min_hand_score`` of a track in ``eligible`` (None: any)."""
    ok = (w.score[rows] >= config.min_hand_score) & w.keypoint_in(HAND_KEYPOINTS, rows)
    if eligible is not None:
        ok &= w.track_in(eligible, rows)
    return ok


def _track_names(w: TrackObservations, rows: np.ndarray) -> set[str]:
    """The distinct track ids of the rows ``rows`` of ``w`` (an (n,) bool mask or indices)."""
    if w.codes is not None:
        names = w.codes[0].names
        return {str(names[c]) for c in np.unique(w.codes[0].codes[rows]).tolist()}
    return {str(x) for x in w.track_id[rows].tolist()}


def candidate_reach_m(event: _Event, config: FusionConfig) -> float:
    """m: how near a track's hand must come to ``event``'s bins to be a candidate of its decision
    (:func:`hand_evidence`): ``2 · reach_m``, or ``weak_reach_m`` for a weak event (``ShelfEvent.weak``)."""
    return config.weak_reach_m if getattr(event, "weak", False) else 2 * config.reach_m


def hand_evidence(event: _Event, hands: TrackObservations, bins: BinGeometry, config: FusionConfig = FusionConfig(),
                  *, eligible: Sequence[str] | None = None, onset: bool = False) -> HandEvidence:
    """Hand-at-bin evidence for ``event`` from ``hands`` (hand keypoints; other keypoints are ignored).

    ``eligible``: only these tracks (None: all). Tracks whose best ``d_eff`` exceeds ``2 · reach_m`` are left out
    (:func:`candidate_reach_m`: ``weak_reach_m`` for a weak event).
    ``onset``: the event is one unit (``carts.fusion._one_unit``): ``d_eff`` is read when its change (or each merged
    change, ``event.parts``) began (:func:`_onset_distance`), not over its whole length (:func:`_core_distance`).
    Raises KeyError if the event names a bin not in ``bins``.
    """
    lo, hi = event.t_start - config.pad_s, event.t_end + config.pad_s
    w = wrist_ray_hands(hands.between(lo, hi), event.bin_codes, bins, config)
    limit = candidate_reach_m(event, config)
    # a track none of whose sightings came within 2 · reach_m is left out below whatever its core distance (every
    # quantile of d is at least its minimum, and the effective distance at least d): skip it here. The rows are
    # selected once, at the end (the distance of a row is its own: read for every row of the window, no copy)
    near, d = usable_hands(w, event.bin_codes, bins, config, eligible, limit)
    if near.size == 0:
        return HandEvidence.empty()
    w = w[near]
    c0, c1 = event.t_start - config.core_pad_s, event.t_end + config.core_pad_s
    starts = sorted({float(event.t_start), *(float(p.t_start) for p in getattr(event, "parts", ()))}) if onset else []
    outside = np.maximum(np.maximum(c0 - w.t, w.t - c1), 0.0)
    eff = d + config.gap_speed_m_s * outside
    # one group per (track, keypoint), in the order of their "track\0keypoint" keys (what np.unique of the keys
    # gives), each group's rows by time (ties in their order): one sort, not one scan of the rows per group
    group, n_groups = _groups(w)
    by_group = np.lexsort((w.t, group))  # stable: within a group, by time, ties in the rows' order
    bounds = np.searchsorted(group[by_group], np.arange(n_groups + 1))
    best: dict[str, _EvidenceRow] = {}
    for g in range(n_groups):
        sel = by_group[bounds[g]:bounds[g + 1]]
        t, dk, ek, xyz = w.t[sel], d[sel], eff[sel], w.xyz[sel]
        j = int(np.argmin(ek))
        d_eff = (_onset_distance(t, dk, starts, event.t_end, config) if onset
                 else _core_distance(t, dk, event.t_start, event.t_end, config))
        if d_eff is None:
            d_eff = float(ek[j])
        if d_eff > limit:
            continue
        before, after = dk[:j + 1], dk[j:]
        sides = []
        if j > 0:
            sides.append(float(before.max()))
        if j < dk.size - 1:
            sides.append(float(after.max()))
        motion = (min(sides) - float(dk[j])) if len(sides) == 2 else math.nan
        moved = 0.5 if math.isnan(motion) else _logistic((motion - config.motion_m0) / config.motion_scale_m)
        score = math.exp(-d_eff ** 2 / (2 * config.sigma_m ** 2)) * (
            config.motion_floor + (1 - config.motion_floor) * moved)
        track = str(w.track_id[sel[0]])
        row = (track, float(dk[j]), d_eff, float(t[j]), motion, score, tuple(float(v) for v in xyz[j]))
        if track not in best or score > best[track][5]:
            best[track] = row
    rows = sorted(best.values(), key=lambda r: -r[5])
    if not rows:
        return HandEvidence.empty()
    return HandEvidence.from_rows(rows)


def _groups(w: TrackObservations) -> tuple[np.ndarray, int]:
    """Each row's (track, keypoint) group: ((n,) int64 group numbers, in the order of the groups'
    ``"track\0keypoint"`` keys; the number of groups). By :attr:`TrackObservations.codes` when kept (one string
    per group, not per row)."""
    if w.codes is not None:
        tc, kc = w.codes
        width = max(len(kc.names), 1)
        pair = tc.codes.astype(np.int64) * width + kc.codes
        uniq, inverse = np.unique(pair, return_inverse=True)
        keys = [f"{tc.names[u // width]}\x00{kc.names[u % width]}" for u in uniq.tolist()]
        rank = np.empty(len(keys), dtype=np.int64)
        rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
        return rank[inverse.reshape(-1)], len(keys)
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(f"{a}\x00{b}", len(index))
                         for a, b in zip(w.track_id.tolist(), w.keypoint.tolist())), dtype=np.int64, count=len(w))
    names = sorted(index)
    rank = np.empty(len(names), dtype=np.int64)
    rank[[index[k] for k in names]] = np.arange(len(names))
    return rank[codes], len(names)


def hidden_reach_m(config: FusionConfig) -> float:
    """m: the farthest a body may stand from a bin's footprint and still score at least 1e-6 in :func:`hidden_hands`
    (``hidden_standoff_m`` plus the distance at which ``hidden_prior · exp(−e² / 2σ²)`` falls to 1e-6)."""
    return config.hidden_standoff_m + config.sigma_m * math.sqrt(2 * math.log(max(config.hidden_prior, 1e-6) / 1e-6))


def hidden_hands(ev: HandEvidence, event: _Event, hands: TrackObservations, bodies: TrackObservations,
                 bins: BinGeometry, config: FusionConfig = FusionConfig(), *,
                 eligible: Sequence[str] | None = None) -> HandEvidence:
    """``ev`` plus the shoppers who stood at the bin while the weight changed with both hands unseen (an
    occlusion in a crowd, a neighbour's body between the camera and the hand): an eligible track with no hand
    sighting (score ≥ ``min_hand_score``) in ``[t_start, t_end]`` whose body (``neck``, else ``head``) was seen
    within ``hidden_seen_s`` before and after (or on one side only, when the whole track was hidden on the other:
    a crowd hides a shopper for seconds), each time within ``hidden_standoff_m`` of the bin's footprint
    plus the fall-off below, scores ``hidden_prior · exp(−e² / 2σ²)``, ``e`` = metres beyond
    ``hidden_standoff_m`` (``sigma_m``). Without this row such a shopper only has a hand seen before or after
    the change, far weaker than a neighbour's hand passing the bin, and the take went to the neighbour with a high
    confidence. ``distance_m`` of the row is the body's distance; ``motion_m`` NaN; ``hand_xyz`` the body. Not read
    for a weak event (``carts.fusion._decide_whole``): the reach look makes one only where a hand was seen reaching in."""
    t0, t1 = event.t_start, event.t_end
    # the plain rows (``TrackObservations.between``, their codes kept), not a subclass's framed selection
    w = TrackObservations.between(bodies, t0 - config.hidden_seen_s, t1 + config.hidden_seen_s)
    if len(w) == 0:
        return ev
    seen = hands.between(t0, t1)
    shown = _track_names(seen, (seen.score >= config.min_hand_score) & seen.keypoint_in(HAND_KEYPOINTS + RAY_KEYPOINTS))
    have = {str(x) for x in ev.track_id}
    # a body none of whose rows came within hidden_reach_m scores below 1e-6 (its ends are rows): not a candidate
    reach = hidden_reach_m(config) + 1e-6
    near = np.flatnonzero(bins.may_reach(w.xyz, event.bin_codes, reach))  # a superset: the exact test on these
    cand = _track_names(w, near[bins.nearest_floor_distance(w.xyz[near], event.bin_codes) <= reach]) - shown
    if eligible is not None:
        cand &= {str(x) for x in eligible}
    rows: list[_EvidenceRow] = []
    at: dict[str, list[int]] = {}  # each candidate's rows of w, in order: one pass, not one scan per candidate
    mine = np.flatnonzero(w.track_in(cand)) if cand else np.zeros(0, dtype=np.int64)
    for i, x in zip(mine.tolist(), w.track_id[mine].tolist()):
        at.setdefault(str(x), []).append(i)
    for track in sorted(cand):
        m = w[np.asarray(at[track], dtype=np.int64)]
        for name in ("neck", "head"):
            k = m[m.keypoint == name]
            if len(k):
                break
        before, after = k.t < t0, k.t > t1
        if not before.any() and not after.any():
            continue
        # a side with no sighting at all within hidden_seen_s: the whole track was hidden then (a crowd hides a
        # shopper for seconds); the side seen says where it stood
        ends = np.stack([k.xyz[before][np.argmax(k.t[before])] if before.any() else k.xyz[after][np.argmin(k.t[after])],
                         k.xyz[after][np.argmin(k.t[after])] if after.any() else k.xyz[before][np.argmax(k.t[before])]])
        d = bins.nearest_floor_distance(ends, event.bin_codes)
        e = max(0.0, float(d.max()) - config.hidden_standoff_m)
        score = config.hidden_prior * math.exp(-e * e / (2 * config.sigma_m ** 2))
        if score < 1e-6:
            continue
        if track in have:  # its hand was seen before or after: keep whichever row says more
            j = [str(x) for x in ev.track_id].index(track)
            if ev.score[j] >= score:
                continue
        rows.append((track, float(d.max()), float(d.max()), 0.5 * (t0 + t1), math.nan, score,
                     tuple(float(v) for v in ends[0])))
    if not rows:
        return ev
    keep = [j for j in range(len(ev)) if str(ev.track_id[j]) not in {r[0] for r in rows}]
    old = [(str(ev.track_id[j]), float(ev.distance_m[j]), float(ev.effective_m[j]), float(ev.t_closest[j]),
            float(ev.motion_m[j]), float(ev.score[j]), tuple(ev.hand_xyz[j].tolist())) for j in keep]
    return HandEvidence.from_rows(sorted(old + rows, key=lambda r: -r[5]))


def _floor_distance(bins: BinGeometry, points: np.ndarray, code: str) -> np.ndarray:
    """Horizontal distance (metres) from ``points`` (n, 3; z ignored) to the footprint of bin ``code``."""
    return bins.nearest_floor_distance(points, (code,))


# ---------------------------------------------------------------------------------------------- legacy view
@dataclass(frozen=True)
class Candidate:
    """One shopper track's evidence for an event: closest hand distance (m), when (s UTC), its hand score, and
    (in a ``carts.fusion.Decision``) its posterior share ``posterior`` of the event."""

    track_id: str
    distance_m: float
    t_closest: float
    score: float
    motion_m: float = math.nan
    posterior: float = math.nan
    hand_xyz: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Attribution:
    """Hand-only answer for one shelf event: the track (None: nobody), confidence in [0, 1], candidates best
    first, and a sentence for people."""

    track_id: str | None
    confidence: float
    candidates: tuple[Candidate, ...]
    reason: str


def attribute_event(event: _Event, hands: TrackObservations, bins: BinGeometry,
                    config: FusionConfig = FusionConfig(), *, eligible: Sequence[str] | None = None) -> Attribution:
    """Hand evidence alone (no product, no cart): the track whose hand score is highest, with confidence = its
    share of the summed scores (nobody included) × a plausibility factor falling from 1 to 0 as the closest
    distance goes from ``reach_m`` to ``2·reach_m``. ``carts.fusion.decide_event`` is what the pipelines use; this is the
    per-event "who was there" view. Raises KeyError for an unknown bin."""
    ev = hand_evidence(event, hands, bins, config, eligible=eligible)
    if len(ev) == 0 and eligible is not None and len(eligible) == 0:
        return Attribution(None, 0.0, (), "no shopper was in the store (no open visit) during the event")
    if len(ev) == 0:
        seen = hands.between(event.t_start - config.pad_s, event.t_end + config.pad_s)
        seen = seen[seen.score >= config.min_hand_score]
        if eligible is not None:
            seen = seen[seen.track_in(eligible)]
        return Attribution(None, 0.0, (), "no shopper's hand was seen during the event" if not seen else
                           f"no hand came within {2 * config.reach_m:.1f} m of the bin")
    total = float(ev.score.sum()) + 0.5 * math.exp(-config.nobody_m ** 2 / (2 * config.sigma_m ** 2))
    cands = tuple(Candidate(str(ev.track_id[i]), float(ev.distance_m[i]), float(ev.t_closest[i]),
                            float(ev.score[i]), float(ev.motion_m[i])) for i in range(len(ev)))
    plausible = float(np.clip((2 * config.reach_m - ev.effective_m[0]) / config.reach_m, 0.0, 1.0))
    conf = float(ev.score[0]) / total * plausible
    return Attribution(cands[0].track_id, conf, cands, _hand_reason(cands))


def _hand_reason(cands: Sequence[Candidate]) -> str:
    best = cands[0]
    return (f"hand of track {best.track_id} came within {best.distance_m:.2f} m"
            + (f"; next track at {cands[1].distance_m:.2f} m" if len(cands) > 1 else "; no other track near"))
