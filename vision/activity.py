"""What a shopper is doing, per track over time: walking, standing, reaching into a shelf, holding an item (pure: no
Django, NumPy only).

Two kinds of input give the same per-sample features, then one temporal step turns them into intervals:

- :func:`image_features`: BlazePose keypoints in a camera's pixels (``vision.pose``: 33 × (x, y, visibility)).
  An arm *reaches* when it is raised away from the torso: the angle at the shoulder between the shoulder→hip line
  and the shoulder→wrist line is at least ``reach_angle_deg`` (a hanging arm is 0–25°, a hand in front of the
  belly holding something 25–50°, a hand out to a shelf 55°+) *and* the wrist is at least ``reach_extension``
  torso-lengths from the shoulder (a bent arm folded against the chest is not a reach). Body speed comes from the
  floor point (metres) when known, else from the hip midpoint in torso-lengths per second.
- :func:`store_features`: the store loop's published observations (``floor`` and ``l_wrist``/``r_wrist`` in store
  metres, as the camera worker sends them): a reach is a wrist at least ``reach_out_m`` horizontally from the body
  axis at a shelf height (``reach_z_m``); holding is a wrist raised in front.

:func:`segment` smooths the per-sample reach flags (a reach lasts ``reach_min_s``; gaps under ``gap_s`` are
bridged), marks *walking* where the body moves faster than ``walk_speed`` (a reaching hand while walking is not a
reach: the arm swings), *holding* after a reach while a hand stays raised in front (up to ``hold_max_s``), and
*standing* otherwise. :class:`ActivityTracker` keeps a short window per track for live use.

Bad input is refused per sample with a reason, counted in :class:`ActivityStats`, and the rest kept: a pose with
the wrong shape, non-finite values, a visibility outside [0, 1], or too few visible joints (shoulders and hips) to
know where the torso is. Thresholds and their measurement: docs/activity.md.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from store.checks import check_numbers

STATES = ("walking", "standing", "reaching", "holding")
# BlazePose indices (vision.pose): shoulders, elbows, wrists, hips; the person's left first.
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_HIP, R_HIP = 11, 12, 13, 14, 15, 16, 23, 24


class ActivityInputError(ValueError):
    """A sample that cannot be used (the message says why); ``reason`` is a short code for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ActivityConfig:
    """Thresholds of the activity classifier (docs/activity.md says how each was chosen).

    Raises ValueError for a non-positive duration or threshold.
    """

    #: Joints below this visibility (BlazePose's sigmoid, [0, 1]) are treated as missing.
    min_visibility: float = 0.5
    #: Image mode: the arm's angle at the shoulder (shoulder→hip vs shoulder→wrist), degrees, from which it reaches.
    reach_angle_deg: float = 55.0
    #: Image mode: shoulder→wrist distance over the torso length (shoulder midpoint to hip midpoint) for a reach.
    reach_extension: float = 0.6
    #: Image mode: a hand raised in front (holding): shoulder angle at least this many degrees, below the reach one.
    hold_angle_deg: float = 25.0
    #: Store mode: horizontal distance (m) of a wrist from the body's floor point for a reach (a hanging hand is
    #: ≈ 0.2 m from the body axis, half a shoulder width; an arm out to a shelf 0.45 m+).
    reach_out_m: float = 0.45
    #: Store mode: wrist heights (m above the floor) of a shelf reach (bottom shelf to a raised arm).
    reach_z_m: tuple[float, float] = (0.15, 2.2)
    #: Store mode: a wrist this high (m) and not a reach is held in front (a hanging wrist is ≈ 0.8 m up).
    hold_z_m: float = 0.95
    #: Body speed (m/s, floor point) above which the track walks (standing sway and shuffling stay under 0.3 m/s;
    #: a slow walk is 0.6 m/s+).
    walk_speed_m_s: float = 0.45
    #: The same in torso lengths per second of the hip midpoint, when the floor point is unknown (image only).
    walk_speed_torso_s: float = 0.9
    #: Speed is measured over this window (s), centred.
    speed_window_s: float = 1.0
    #: A reach lasts at least this long (s); shorter flickers are dropped.
    reach_min_s: float = 0.3
    #: Reach flags separated by less than this (s) are one reach.
    gap_s: float = 0.4
    #: Holding lasts at most this long after a reach (s) without a new reach.
    hold_max_s: float = 3.0

    def __post_init__(self) -> None:
        check_numbers(self, ("reach_angle_deg", "reach_extension", "reach_out_m", "walk_speed_m_s", "walk_speed_torso_s",
                             "speed_window_s", "reach_min_s", "gap_s", "hold_max_s"), low=0, low_open=True)
        check_numbers(self, ("min_visibility",), low=0, high=1)


@dataclass
class ActivityStats:
    """Samples used and refused (``rejected`` counts by reason; ``problems`` the last few messages)."""

    samples: int = 0
    rejected: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def refuse(self, exc: ActivityInputError) -> None:
        self.rejected[exc.reason] += 1
        self.problems.append(str(exc))
        del self.problems[:-20]


@dataclass(frozen=True)
class Interval:
    """One state from ``t0`` to ``t1`` (s, the samples' clock) of one track."""

    state: str
    t0: float
    t1: float


@dataclass(frozen=True)
class Features:
    """Per-sample features: ``t`` (n,) s; ``reach`` (n,) bool; ``raised`` (n,) bool (a hand held in front);
    ``position`` (n, 2) body position (metres, or pixels of the hip midpoint; NaN where unknown); ``scale`` (n,)
    the unit of speed in position units (1 for metres, the torso length in pixels for image positions: speed is
    measured in torso lengths over the window's median torso, so a torso foreshortened in one frame does not read
    as motion); ``metres`` whether position is in metres; ``ok`` (n,) bool, False for refused samples (their flags
    are False)."""

    t: np.ndarray
    reach: np.ndarray
    raised: np.ndarray
    position: np.ndarray
    metres: bool
    ok: np.ndarray
    scale: np.ndarray | None = None


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.hypot(*a)), float(np.hypot(*b))
    if na == 0 or nb == 0:
        return 0.0
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b) / (na * nb)))))


def pose_arms(keypoints: np.ndarray, config: ActivityConfig = ActivityConfig()) -> tuple[np.ndarray, np.ndarray,
                                                                                            np.ndarray, float]:
    """One image pose's arm geometry: keypoints (33, 3) pixels x, y and visibility in [0, 1] (BlazePose order).

    Returns (angle (2,) degrees at the [left, right] shoulder, NaN where the wrist is not visible; extension (2,)
    shoulder→wrist over torso length; hip midpoint (2,) pixels; torso length pixels). Raises
    :class:`ActivityInputError` (``shape``, ``non_finite``, ``visibility``, ``no_torso``) when it cannot be used.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] != 3 or kp.shape[0] <= R_HIP:
        raise ActivityInputError("shape", f"a pose must be (33, 3) x, y, visibility; got {kp.shape}")
    if not np.isfinite(kp).all():
        raise ActivityInputError("non_finite", "a pose holds NaN or infinite values (missing joints must have "
                                               "visibility 0, not NaN coordinates)")
    vis = kp[:, 2]
    if ((vis < 0) | (vis > 1)).any():
        raise ActivityInputError("visibility", f"visibility must be in [0, 1]; got {vis.min():.3g}..{vis.max():.3g}")
    seen = vis >= config.min_visibility
    if not (seen[[L_SHOULDER, R_SHOULDER]].any() and seen[[L_HIP, R_HIP]].any()):
        raise ActivityInputError("no_torso", "a pose without a visible shoulder and hip: the torso is unknown")
    sh = kp[[s for s in (L_SHOULDER, R_SHOULDER) if seen[s]], :2].mean(axis=0)
    hip = kp[[h for h in (L_HIP, R_HIP) if seen[h]], :2].mean(axis=0)
    torso = float(np.hypot(*(hip - sh)))
    width = float(np.hypot(*(kp[L_SHOULDER, :2] - kp[R_SHOULDER, :2]))) if seen[[L_SHOULDER, R_SHOULDER]].all() \
        else 0.0
    scale = max(torso, width)
    if scale < 1.0:
        raise ActivityInputError("no_torso", f"a pose whose torso is {scale:.2g} px long: collapsed")
    angle, ext = np.full(2, np.nan), np.full(2, np.nan)
    for side, (s, w, h) in enumerate(((L_SHOULDER, L_WRIST, L_HIP), (R_SHOULDER, R_WRIST, R_HIP))):
        if not (seen[s] and seen[w]):
            continue
        down = kp[h, :2] - kp[s, :2] if seen[h] else hip - sh
        arm = kp[w, :2] - kp[s, :2]
        angle[side] = _angle_deg(down, arm)
        ext[side] = float(np.hypot(*arm)) / scale
    return angle, ext, hip, scale


def image_features(t: np.ndarray, keypoints: np.ndarray, floor_xy: np.ndarray | None = None,
                   config: ActivityConfig = ActivityConfig(), stats: ActivityStats | None = None) -> Features:
    """Features of one track from image poses: ``t`` (n,) s increasing; ``keypoints`` (n, 33, 3) pixels and
    visibility; ``floor_xy`` (n, 2) metres or None (NaN rows: unknown). Refused samples are counted in ``stats``
    and marked not ``ok``. Raises ValueError when the arrays' lengths differ."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    n = t.shape[0]
    if len(keypoints) != n or (floor_xy is not None and len(floor_xy) != n):
        raise ValueError(f"t, keypoints and floor_xy must have the same length ({n}, {len(keypoints)}, "
                         f"{None if floor_xy is None else len(floor_xy)})")
    stats = stats if stats is not None else ActivityStats()
    reach, raised, ok = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    body, scales = np.full((n, 2), np.nan), np.full(n, np.nan)
    for i in range(n):
        try:
            angle, ext, hip, scale = pose_arms(keypoints[i], config)
        except ActivityInputError as exc:
            stats.refuse(exc)
            continue
        stats.samples += 1
        ok[i] = True
        a = np.nan_to_num(angle, nan=0.0)
        reach[i] = bool(((a >= config.reach_angle_deg) & (np.nan_to_num(ext) >= config.reach_extension)).any())
        raised[i] = bool(((a >= config.hold_angle_deg) & (a < config.reach_angle_deg)).any())
        body[i], scales[i] = hip, scale
    metres = floor_xy is not None and np.isfinite(np.asarray(floor_xy, float)).all(axis=1).mean() >= 0.5
    if metres:
        return Features(t, reach, raised, np.asarray(floor_xy, float).reshape(n, 2), True, ok, np.ones(n))
    return Features(t, reach, raised, body, False, ok, scales)


def store_features(t: np.ndarray, floor_xy: np.ndarray, wrists_xyz: np.ndarray,
                   config: ActivityConfig = ActivityConfig(), stats: ActivityStats | None = None) -> Features:
    """Features of one track from store observations: ``t`` (n,) s; ``floor_xy`` (n, 2) metres; ``wrists_xyz``
    (n, 2, 3) metres (NaN where a wrist is unknown). A sample without a finite floor point is refused
    (``no_floor``); a wrist below the floor or above ``reach_z_m``'s top + 0.5 m is refused (``implausible``)."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    floor = np.asarray(floor_xy, dtype=np.float64).reshape(-1, 2)
    wr = np.asarray(wrists_xyz, dtype=np.float64).reshape(-1, 2, 3)
    n = t.shape[0]
    if floor.shape[0] != n or wr.shape[0] != n:
        raise ValueError(f"t, floor_xy and wrists_xyz must have the same length ({n}, {floor.shape[0]}, "
                         f"{wr.shape[0]})")
    stats = stats if stats is not None else ActivityStats()
    ok = np.isfinite(floor).all(axis=1) & np.isfinite(t)
    z = wr[..., 2]
    bad = ok & ((np.nan_to_num(z, nan=1.0) < -0.2) | (np.nan_to_num(z, nan=0.0) > config.reach_z_m[1] + 0.5)).any(axis=1)
    for i in np.flatnonzero(~ok):
        stats.refuse(ActivityInputError("no_floor", f"sample at t={t[i]:.3f} has no floor point"))
    for i in np.flatnonzero(bad & ok):
        stats.refuse(ActivityInputError("implausible", f"sample at t={t[i]:.3f} has a wrist at "
                                                       f"z={np.nanmax(np.abs(z[i])):.2f} m"))
    ok &= ~bad
    stats.samples += int(ok.sum())
    out = np.hypot(wr[..., 0] - floor[:, None, 0], wr[..., 1] - floor[:, None, 1])
    lo, hi = config.reach_z_m
    with np.errstate(invalid="ignore"):
        reach_side = (out >= config.reach_out_m) & (z >= lo) & (z <= hi)
        raised_side = ~reach_side & (z >= config.hold_z_m) & (z <= hi)
    reach = ok & np.nan_to_num(reach_side, nan=0).astype(bool).any(axis=1)
    raised = ok & np.nan_to_num(raised_side, nan=0).astype(bool).any(axis=1)
    position = np.where(ok[:, None], floor, np.nan)
    return Features(t, reach, raised, position, True, ok, np.ones(n))


def body_speed(t: np.ndarray, position: np.ndarray, window_s: float, scale: np.ndarray | None = None) -> np.ndarray:
    """(n,) speed: the distance between the first and last known positions within ``window_s`` centred on each
    sample, over their time apart and over the median ``scale`` (n,) of the window (None: 1), NaN where fewer than
    two positions are known."""
    n = t.shape[0]
    speed = np.full(n, np.nan)
    scale = np.ones(n) if scale is None else np.asarray(scale, float)
    known = np.isfinite(position).all(axis=1) & np.isfinite(scale) & (scale > 0)
    tk, pk, sk = t[known], position[known], scale[known]
    if tk.shape[0] < 2:
        return speed
    lo = np.searchsorted(tk, t - window_s / 2, side="left")
    hi = np.searchsorted(tk, t + window_s / 2, side="right") - 1
    for i in range(n):
        a, b = lo[i], hi[i]
        if b > a and tk[b] - tk[a] >= window_s / 4:
            speed[i] = float(np.hypot(*(pk[b] - pk[a]))) / (tk[b] - tk[a]) / float(np.median(sk[a:b + 1]))
    return speed


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] index runs of True."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(idx[::2], idx[1::2])]


def segment(f: Features, config: ActivityConfig = ActivityConfig()) -> tuple[np.ndarray, list[Interval]]:
    """The state of each sample ((n,) object array of :data:`STATES`, None for refused samples) and the intervals
    (consecutive samples of one state; an interval ends at its last sample's time)."""
    t = f.t
    n = t.shape[0]
    states = np.full(n, None, dtype=object)
    if n == 0:
        return states, []
    limit = config.walk_speed_m_s if f.metres else config.walk_speed_torso_s
    speed = body_speed(t, f.position, config.speed_window_s, f.scale)
    walking = np.nan_to_num(speed, nan=0.0) > limit
    # reach flags of good samples, bridged over gaps < gap_s (refused samples in between do not break a reach)
    reach = f.reach & f.ok & ~walking
    runs = _runs(reach)
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and t[a] - t[merged[-1][1]] < config.gap_s:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    reaching = np.zeros(n, bool)
    for a, b in merged:
        if t[b] - t[a] >= config.reach_min_s - 1e-9:
            reaching[a:b + 1] = True
    holding = np.zeros(n, bool)
    last_reach_end = -math.inf
    for i in range(n):
        if reaching[i]:
            last_reach_end = t[i]
        elif f.ok[i] and f.raised[i] and not walking[i] and t[i] - last_reach_end <= config.hold_max_s:
            holding[i] = True
            last_reach_end = last_reach_end  # holding does not extend itself past hold_max_s
    states[f.ok] = "standing"
    states[f.ok & walking] = "walking"
    states[holding] = "holding"
    states[reaching] = "reaching"
    intervals: list[Interval] = []
    for i in range(n):
        s = states[i]
        if s is None:
            continue
        if intervals and intervals[-1].state == s and (i == 0 or states[i - 1] in (s, None)):
            intervals[-1] = Interval(s, intervals[-1].t0, float(t[i]))
        else:
            intervals.append(Interval(s, float(t[i]), float(t[i])))
    return states, intervals


def reach_intervals(intervals: list[Interval]) -> list[tuple[float, float]]:
    """The (t0, t1) of the reaching intervals."""
    return [(iv.t0, iv.t1) for iv in intervals if iv.state == "reaching"]


def match_intervals(detected: list[tuple[float, float]], truth: list[tuple[float, float, bool]],
                    tolerance_s: float = 0.5) -> dict:
    """Precision and recall of detected intervals against labelled ones (t0, t1, certain), one-to-one: a detected
    interval hits a label when they overlap or lie at most ``tolerance_s`` apart (the label with the largest
    overlap wins); a detection
    that only meets uncertain labels counts neither way, uncertain labels are not in recall. Returns ``{"tp", "fp",
    "fn", "precision", "recall", "hits": [(detected, label)]}`` (precision/recall NaN with nothing to count)."""
    certain = [(a, b) for a, b, c in truth if c]
    unsure = [(a, b) for a, b, c in truth if not c]
    used, hits, fp = set(), [], 0
    for d0, d1 in sorted(detected):
        best, best_overlap = None, -math.inf
        for j, (a, b) in enumerate(certain):
            if j in used:
                continue
            overlap = min(d1, b) - max(d0, a)
            if overlap >= -tolerance_s and overlap > best_overlap:
                best, best_overlap = j, overlap
        if best is not None:
            used.add(best)
            hits.append(((d0, d1), certain[best]))
        elif any(min(d1, b) - max(d0, a) >= -tolerance_s for a, b in unsure + certain):
            continue  # meets an uncertain label, or a second detection of a label already hit (split): not an error
        else:
            fp += 1
    tp = len(hits)
    fn = len(certain) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / len(certain) if certain else float("nan"), "hits": hits}


class _Window:
    """One track's recent samples: ``t`` (a deque of s, increasing) and ``rows`` (the same samples as a (n, 9)
    float64 array: t, floor x y, l/r wrist x y z), appended at the end and dropped from the start."""

    __slots__ = ("t", "_buf", "_start")

    def __init__(self) -> None:
        self.t: deque[float] = deque()
        self._buf = np.empty((64, 9))
        self._start = 0

    def __len__(self) -> int:
        return len(self.t)

    def append(self, t: float, row: np.ndarray) -> None:
        end = self._start + len(self.t)
        if end == self._buf.shape[0]:  # full: move the window to the front, in a buffer twice its size if need be
            buf = self._buf if 2 * len(self.t) <= self._buf.shape[0] else np.empty((2 * self._buf.shape[0], 9))
            buf[:len(self.t)] = self._buf[self._start:end]
            self._buf, self._start, end = buf, 0, len(self.t)
        self._buf[end] = row
        self.t.append(t)

    def popleft(self) -> None:
        self.t.popleft()
        self._start += 1

    @property
    def rows(self) -> np.ndarray:
        return self._buf[self._start:self._start + len(self.t)]


class ActivityTracker:
    """Live states of many tracks from store observations (:func:`store_features`), keeping ``window_s`` of
    samples per track and forgetting tracks silent for ``forget_s``. :meth:`add` a track's sample, :meth:`state`
    its current state (None before it has a usable sample). Memory: ``window_s`` × rate per live track."""

    def __init__(self, config: ActivityConfig = ActivityConfig(), *, window_s: float = 4.0, forget_s: float = 10.0):
        self.config = config
        self.window_s, self.forget_s = float(window_s), float(forget_s)
        self.stats = ActivityStats()
        self._hist: dict[str, _Window] = {}
        self._oldest = math.inf  # at most the earliest last sample (s, not NaN) of any track (add)

    def add(self, track: str, t: float, floor_xy, wrists_xyz) -> None:
        """One sample of ``track``: ``t`` s, ``floor_xy`` (2,) metres, ``wrists_xyz`` (2, 3) metres (NaN rows:
        unknown). Samples not after the track's last are ignored."""
        row = np.empty(9)
        row[0] = t
        row[1:3] = np.asarray(floor_xy, float).reshape(2)
        row[3:] = np.asarray(wrists_xyz, float).reshape(6)
        self._add(str(track), t, row)

    def add_many(self, tracks: list[str], samples: np.ndarray) -> None:
        """Samples of several tracks, as :meth:`add` one after the other: ``tracks`` (n,) their tracks, ``samples``
        (n, 9) t s, floor x y, l/r wrist x y z metres (NaN: unknown)."""
        for track, t, row in zip(tracks, samples[:, 0].tolist(), samples):
            self._add(track, t, row)

    def _add(self, track: str, t: float, row: np.ndarray) -> None:
        h = self._hist.get(track)
        if h is None:
            h = self._hist[track] = _Window()
        if h and t <= h.t[-1]:
            return
        h.append(float(t), row)
        while h and h.t[0] < t - self.window_s:
            h.popleft()
        # forget silent tracks; ``_oldest`` is at most the earliest last sample of any track, so the scan runs
        # whenever one is due (at the same calls as scanning at every sample, which cost O(tracks) a sample)
        if t == t:
            self._oldest = min(self._oldest, float(t))
        if t - self._oldest > self.forget_s:
            for k in [k for k, v in self._hist.items() if v and t - v.t[-1] > self.forget_s]:
                del self._hist[k]
            self._oldest = min((v.t[-1] for v in self._hist.values() if v and v.t[-1] == v.t[-1]), default=math.inf)

    def states(self) -> dict[str, str]:
        """The current state of every track with a usable sample: the last state that :func:`segment` gives its
        window's :func:`store_features` (the same states and the same ``stats``), for all tracks at once."""
        tracks = [k for k, h in self._hist.items() if h]
        if not tracks:
            return {}
        hists = [self._hist[k] for k in tracks]
        lengths = np.fromiter((len(h) for h in hists), dtype=np.intp, count=len(hists))
        flat = np.concatenate([h.rows for h in hists])  # (N, 9): t, floor x y, wrists (2, 3)
        codes = _last_states(flat, lengths, self.config, self.stats)
        return {track: STATES_BY_CODE[c - 1] for track, c in zip(tracks, codes.tolist()) if c}


#: :func:`_last_states`' codes 1–4 (0: no state, no usable sample), in :func:`segment`'s order of precedence
#: (standing < walking < holding < reaching): ``STATES_BY_CODE[code - 1]``.
STATES_BY_CODE = ("standing", "walking", "holding", "reaching")


def _last_states(flat: np.ndarray, lengths: np.ndarray, config: ActivityConfig, stats: ActivityStats) -> np.ndarray:
    """For G tracks' windows of store samples at once, the code (:data:`STATES_BY_CODE`, 0 none) of the last sample with a
    state that ``segment(store_features(...))`` gives each, alone: ``flat`` (N, 9) the tracks' samples one track
    after the other (t s increasing within a track, floor x y metres, l/r wrist x y z metres, NaN: unknown),
    ``lengths`` (G,) samples per track (sum N, each ≥ 1). Counts used and refused samples in ``stats`` in the
    order the per-track calls would. Returns (G,) int8. Every comparison and sum is the per-track one, on a
    (G, L) padding of the samples (L the longest window + 1), so the answer is identical."""
    G = lengths.shape[0]
    L = int(lengths.max()) + 1  # at least one padding column per row: runs never reach into the next track
    rows = np.repeat(np.arange(G), lengths)
    cols = np.arange(flat.shape[0]) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    valid = np.zeros((G, L), bool)
    valid[rows, cols] = True
    pad = np.full((G, L, 9), np.nan)
    pad[rows, cols] = flat
    t, floor, wr = pad[..., 0], pad[..., 1:3], pad[..., 3:].reshape(G, L, 2, 3)
    # store_features
    ok = np.isfinite(pad[..., 1]) & np.isfinite(pad[..., 2]) & np.isfinite(t) & valid
    z = wr[..., 2]
    top = config.reach_z_m[1] + 0.5
    with np.errstate(invalid="ignore"):  # a NaN wrist height is neither (as nan_to_num's 1.0 and 0.0 are not)
        bad = ok & ((z[..., 0] < -0.2) | (z[..., 0] > top) | (z[..., 1] < -0.2) | (z[..., 1] > top))
    no_floor = valid & ~ok
    if no_floor.any() or bad.any():
        for g in np.flatnonzero(no_floor.any(axis=1) | bad.any(axis=1)):
            for i in np.flatnonzero(no_floor[g]):
                stats.refuse(ActivityInputError("no_floor", f"sample at t={t[g, i]:.3f} has no floor point"))
            for i in np.flatnonzero(bad[g]):
                stats.refuse(ActivityInputError("implausible", f"sample at t={t[g, i]:.3f} has a wrist at "
                                                               f"z={np.nanmax(np.abs(z[g, i])):.2f} m"))
    ok &= ~bad
    stats.samples += int(ok.sum())
    out = np.hypot(wr[..., 0] - floor[..., None, 0], wr[..., 1] - floor[..., None, 1])
    lo, hi = config.reach_z_m
    with np.errstate(invalid="ignore"):
        reach_side = (out >= config.reach_out_m) & (z >= lo) & (z <= hi)
        raised_side = ~reach_side & (z >= config.hold_z_m) & (z <= hi)
    reach = ok & (reach_side[..., 0] | reach_side[..., 1])
    raised = ok & (raised_side[..., 0] | raised_side[..., 1])
    position = np.where(ok[..., None], floor, np.nan)
    # segment: body_speed (scale 1: metres), first and last known position within the window centred on each sample
    w = config.speed_window_s
    known = ok  # the samples with a position (store_features: ok ones, whose floor is finite)
    # each track's known samples as (track, t) keys in one sorted array: complex numbers sort by real part, then
    # imaginary part, so one searchsorted finds every window's ends within its own track, on the same comparisons
    kg, kj = np.nonzero(known)
    keys = np.empty(kg.shape[0], np.complex128)
    keys.real, keys.imag = kg, t[kg, kj]
    g_all = np.broadcast_to(np.arange(G)[:, None], (G, L))
    query = np.empty((G, L), np.complex128)
    query.real, query.imag = g_all, t - w / 2
    a = np.searchsorted(keys, query, side="left")  # the first known sample of the track from the window's start
    query.imag = t + w / 2
    b = np.searchsorted(keys, query, side="right") - 1  # the last up to the window's end
    n_known = kg.shape[0]
    a_in = (a < n_known) & (kg[np.minimum(a, max(n_known - 1, 0))] == g_all) if n_known else np.zeros((G, L), bool)
    b_in = (b >= 0) & (kg[np.maximum(b, 0)] == g_all) if n_known else np.zeros((G, L), bool)
    a, b = np.minimum(a, max(n_known - 1, 0)), np.maximum(b, 0)
    speed = np.full((G, L), np.nan)
    if n_known:
        ta, tb = keys.imag[a], keys.imag[b]
        with np.errstate(invalid="ignore"):
            has = valid & np.isfinite(t) & a_in & b_in & (b > a) & (tb - ta >= w / 4)
        pa, pb = position[kg[a[has]], kj[a[has]]], position[kg[b[has]], kj[b[has]]]
        speed[has] = np.hypot(pb[:, 0] - pa[:, 0], pb[:, 1] - pa[:, 1]) / (tb[has] - ta[has])
    with np.errstate(invalid="ignore"):
        walking = speed > config.walk_speed_m_s  # NaN (unknown) is not walking, as nan_to_num's 0 is not
    reach &= ~walking
    # reaches: runs of flags, runs less than gap_s apart merged, merged runs of at least reach_min_s kept
    tf = t.ravel()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], reach.ravel().astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2] - 1
    reaching = np.zeros(G * L, bool)
    if starts.size:
        join = ((starts[1:] // L) == (ends[:-1] // L)) & (tf[starts[1:]] - tf[ends[:-1]] < config.gap_s)
        first = np.flatnonzero(np.concatenate([[True], ~join]))
        last = np.concatenate([first[1:] - 1, [starts.size - 1]])
        m0, m1 = starts[first], ends[last]
        keep = tf[m1] - tf[m0] >= config.reach_min_s - 1e-9
        mark = np.zeros(G * L + 1, np.int64)
        mark[m0[keep]] += 1
        mark[m1[keep] + 1] -= 1
        reaching = np.cumsum(mark[:-1]) > 0
    reaching = reaching.reshape(G, L)
    # holding: a hand raised in front, not walking, within hold_max_s of the last reaching sample before it
    idx = np.maximum.accumulate(np.where(reaching, np.arange(L), -1), axis=1)
    last_reach = np.where(idx >= 0, np.take_along_axis(t, np.maximum(idx, 0), axis=1), -math.inf)
    with np.errstate(invalid="ignore"):
        holding = ~reaching & ok & raised & ~walking & (t - last_reach <= config.hold_max_s)
    code = np.zeros((G, L), np.int8)
    code[ok] = 1
    code[ok & walking] = 2
    code[holding] = 3
    code[reaching] = 4
    some = code > 0
    at = L - 1 - some[:, ::-1].argmax(axis=1)
    return np.where(some.any(axis=1), code[np.arange(G), at], 0).astype(np.int8)
