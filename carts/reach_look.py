"""A reach-triggered look at the plates' levels: the light items the weight detector cannot see alone (pure NumPy).

The detector (``sensors.weight.WeightEventDetector``) watches every plate blind, all day: it must hold a 5 σ gate
(3 σ for a share beside a full change) against the level noise of hundreds of plates over thousands of windows.
A light item (20–45 g) standing across two noisy plates leaves less than that on each, so no change and no event
exist and the take is never charged (docs/accuracy.md, issue #18: 7 of 16 wrong receipts on the default tuning
seeds). Vision says where a hand went in and when; after such a reach a change is likely, and only a handful of
places and moments are tested instead of every plate at every moment, so a lower gate is affordable there.

:class:`ReachLook` (one per store loop, fed by ``carts.loop.StoreLoop``, so the live store, the replay and the
benchmark run it alike):

1. **Levels.** Each controller's samples are kept as 0.1 s medians (spikes and lost messages do not move a median)
   for ``keep_s``. Each plate's noise for this test — the sd of the difference of two ``window_s`` medians a
   reach apart — is learnt from the plate's own history while it runs (a running median of |difference|, the
   detector's robust scheme; differences beyond 6 sd, the plate's real changes, are left out), so a quiet plate
   gets a tight gate and a vibrating one a loose one.
2. **Reaches.** A hand (any track's wrist, score ≥ ``FusionConfig.min_hand_score``) within ``reach_m`` of a bin's
   volume (fusion's distance, the offset along the shelf weighted as fusion weighs it) is at that bin; the
   sightings of hands at one shelf with gaps under ``join_gap_s`` are one reach (two shoppers side by side at one
   shelf: one look, fusion decides who).
3. **The look**, once the detector has settled past the after-window: level before = median over ``window_s``
   ending ``before_gap_s`` before the first sighting, after = median over ``window_s`` from ``after_gap_s`` after
   the last. The plates tested are the bin the hand came closest to, alone and with either neighbour (an item
   stands across two plates); Δ = the summed change, sd = √Σ sd². A reach is skipped when an event already
   stored (the detector's, or an earlier look's) on that shelf overlaps its windows: the decisions of events the
   detector finds stay theirs, and no change is counted twice.
4. **The test**: "nothing" (Δ ~ N(0, sd²), prior ``nothing_prior``: most reaches the detector saw nothing of took
   nothing) against one unit of each product facing the plates, or for a gain, also of a product the reaching
   shoppers hold (a misplaced put-back; ``misplaced_weight``), N(∓μ, sd² + σ_μ²). A unit whose posterior is at
   least ``min_posterior``, with |Δ| ≥ max(``min_delta_g``, ``gate_k`` sd), becomes a shelf event flagged
   ``weak`` over the reach's interval: fusion decides it like any other, and takes it for a take only where a
   hand reached in (``FusionConfig.weak_hand_min``), else for noise.

Memory is bounded by ``keep_s`` of 10 Hz levels per plate and the reaches of the last few seconds; the whole
object pickles with the loop's checkpoint.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.spatial import cKDTree

from sensors import weight
from store.checks import check_numbers
from store.recording import HAND_KEYPOINTS, TrackObservations

from .chunks import PackedChunk

log = logging.getLogger(__name__)

_MAD_TO_SD = 1.4826


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian(a, axis)`` without its per-call cost on small arrays (NaN where a slice has no value): a
    sort puts the NaNs last, the median is read at the middle of each slice's values."""
    s = np.sort(a, axis=axis)
    fin = np.isfinite(s)
    m = s.shape[axis]
    if m and fin.all():  # no NaN (the usual block): every slice has all m values, read by plain indexing
        return np.asarray(0.5 * (np.take(s, (m - 1) // 2, axis=axis) + np.take(s, m // 2, axis=axis)))
    return _nanmedian_sorted(s, fin, axis)


def _nanmedian_sorted(s: np.ndarray, fin: np.ndarray, axis: int) -> np.ndarray:
    """:func:`_nanmedian` of ``s`` sorted along ``axis`` (NaNs last), ``fin`` = ``np.isfinite(s)``: each slice's
    median read at the middle of its own count of values (the general path; tests pin the fast one against it)."""
    n = fin.sum(axis=axis, keepdims=True)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0), axis=axis)
    hi = np.take_along_axis(s, np.maximum(n // 2, 0) - (n == 0), axis=axis)
    out = np.squeeze(0.5 * (lo + hi), axis=axis)
    return np.where(np.squeeze(n, axis=axis) > 0, out, np.nan)


def _slot_medians(cube: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``_nanmedian(cube, axis=1)`` of slots (S, P, B) whose slot ``i`` holds ``counts[i]`` (S,) samples followed by
    NaN padding: (S, B). Where every sample is finite (the usual block) the padding is the only NaN, so slot ``i``'s
    sorted values have exactly ``counts[i]`` values per plate and its median is read at the middle of those, as the
    general path reads it; otherwise (a missing sample) the general path."""
    s = np.sort(cube, axis=1)
    fin = np.isfinite(s)
    if int(fin.sum()) != int(counts.sum()) * cube.shape[2]:
        return _nanmedian_sorted(s, fin, 1)
    slots = np.arange(cube.shape[0])
    return 0.5 * (s[slots, (counts - 1) // 2] + s[slots, counts // 2])


@dataclass(frozen=True)
class ReachLookConfig:
    """Knobs of :class:`ReachLook` (seconds, metres, grams, probabilities). Raises ValueError for a non-positive
    time or length or a probability outside (0, 1)."""

    #: False: no look (the loop runs as before).
    enabled: bool = True
    #: A hand this close (m, fusion's distance to a bin's volume with the along-shelf offset weighted
    #: ``along_scale`` times) is at the bin. The simulator's and BENCHMARK-1's grasping wrist stays 0.04–0.2 m in
    #: front of the plate; a hand hanging at the side of a shopper standing at the shelf is ~0.45 m away.
    reach_m: float = 0.25
    #: Weight of the offset along the shelf in that distance (fusion's ``sigma_m / along_sigma_m``).
    along_scale: float = 0.15 / 0.07
    #: Height above the plate (m) that still counts as over it (fusion's ``clearance_m``), at most up to the plate
    #: above.
    clearance_m: float = 0.35
    #: Hand sightings at one shelf closer than this in time are one reach.
    join_gap_s: float = 0.5
    #: Sightings below this keypoint score are ignored (fusion's ``min_hand_score``).
    min_hand_score: float = 0.2
    #: Length of the before and after windows whose medians are the levels.
    window_s: float = 1.5
    #: The before window ends this long before the first sighting of the reach…
    before_gap_s: float = 0.1
    #: …and the after window starts this long after the last (a plate swings ~1 s after the hand leaves).
    after_gap_s: float = 0.5
    #: Levels (10 Hz medians) kept per plate.
    keep_s: float = 30.0
    #: A reach waits at most this long past its after window for the detector to settle (a busy plate).
    max_wait_s: float = 10.0
    #: A reach longer than this is a shopper browsing with a hand at the shelf: not looked at.
    max_reach_s: float = 10.0
    #: The combined change must be at least this many sd of the plates' noise (the detector needs 5)…
    gate_k: float = 3.0
    #: …and at least this many grams (the lightest products sold are 20 g,
    #: ``carts.offline.simulation_config.MIN_PICK_WEIGHT_G``).
    min_delta_g: float = 8.0
    #: Prior that a reach the detector saw nothing of moved nothing.
    nothing_prior: float = 0.7
    #: Posterior a unit needs to become an event…
    min_posterior: float = 0.9
    #: …and it must fit within this many sd (a reject option: a change far from every unit is no light item).
    fit_k: float = 3.0
    #: Prior weight of a held product that does not face the plates (a misplaced put-back; fusion's
    #: ``misplaced_prior``) against 1 for a facing one.
    misplaced_weight: float = 0.15
    #: The plate-noise estimate: updated every ``noise_every_s`` from the level history, a running median with
    #: step 1 / ``noise_updates`` (so it follows over that many updates); a plate is looked at only after
    #: ``noise_min_updates`` updates.
    noise_every_s: float = 1.0
    noise_updates: float = 30.0
    noise_min_updates: int = 20
    #: Floor of a plate's noise sd (g): the load cells' quantisation step (0.24 g) times √2.
    noise_floor_g: float = 0.35

    def __post_init__(self) -> None:
        check_numbers(self, ("reach_m", "along_scale", "clearance_m", "join_gap_s", "window_s", "keep_s", "max_wait_s",
                             "max_reach_s", "gate_k", "fit_k", "noise_every_s", "noise_updates", "noise_floor_g"),
                      low=0, low_open=True)
        check_numbers(self, ("before_gap_s", "after_gap_s", "min_delta_g", "min_hand_score"), low=0)
        check_numbers(self, ("nothing_prior", "min_posterior", "misplaced_weight"), low=0, high=1, low_open=True,
                      high_open=True)
        if self.keep_s < 2 * self.window_s + self.max_reach_s + self.before_gap_s + self.after_gap_s:
            raise ValueError("ReachLookConfig.keep_s must hold both windows around the longest reach")


@dataclass
class ReachLookStats:
    """Counters of one look (since it was created)."""

    reaches: int = 0      # reaches that ended
    looked: int = 0       # of them, looked at (windows clear of stored events, noise known)
    blocked: int = 0      # skipped: an event already stored on the shelf overlaps the windows
    events: int = 0       # shelf events made


@dataclass
class _Reach:
    shelf: int
    t0: float
    t1: float
    closest: dict[str, float] = field(default_factory=dict)  # bin → smallest hand distance (m)
    tracks: set[str] = field(default_factory=set)


class _Levels:
    """One controller's 10 Hz medians, its per-plate noise estimate, and the samples of an unfinished 0.1 s.

    The medians are kept as sealed parts of ``SEAL_S`` each (never changed again: a checkpoint writes each once, by
    reference, ``carts.chunks.PackedChunk``) and an open tail."""

    #: seconds of medians per sealed part (a checkpoint every ~2 s then rewrites at most this much per controller)
    SEAL_S = 5.0

    def __init__(self, bin_codes: tuple[str, ...]) -> None:
        self.codes = bin_codes
        b = len(bin_codes)
        self.sealed: list = []       # PackedChunk of (t (k,), x (k, b)), oldest first
        self.t = np.zeros(0)         # the open tail
        self.x = np.zeros((0, b))
        self.part_t = np.zeros(0)
        self.part_x = np.zeros((0, b))
        self.mad = np.full(b, np.nan)
        self.n_noise = np.zeros(b, np.int64)
        self.next_noise = -math.inf

    def __setstate__(self, state: dict) -> None:
        state.setdefault("sealed", [])  # a checkpoint of the code before sealed parts
        self.__dict__.update(state)

    @property
    def last_t(self) -> float | None:
        """Time (s) of the newest median; None before any."""
        if self.t.size:
            return float(self.t[-1])
        return float(self.sealed[-1].data[0][-1]) if self.sealed else None

    def add(self, t: np.ndarray, grams: np.ndarray, step: float) -> None:
        t = np.concatenate([self.part_t, np.asarray(t, dtype=np.float64)])
        x = np.concatenate([self.part_x, np.asarray(grams, dtype=np.float64)])
        if not t.size:
            return
        slot = np.floor(t / step)
        done = slot < slot[-1]  # the last slot may still get samples
        if done.any():
            n = int(done.sum())
            bounds = np.flatnonzero(np.diff(slot[:n])) + 1
            starts = np.concatenate(([0], bounds))
            counts = np.diff(np.append(starts, n))
            which = np.repeat(np.arange(starts.size), counts)
            pos = np.arange(n) - starts[which]
            cube = np.full((starts.size, int(pos.max()) + 1, x.shape[1]), np.nan)
            cube[which, pos] = x[:n]
            meds = _slot_medians(cube, counts)
            self.t = np.concatenate([self.t, (slot[starts] + 0.5) * step])
            self.x = np.concatenate([self.x, meds])
            if self.t[-1] - self.t[0] >= self.SEAL_S:
                self.sealed.append(PackedChunk((self.t, self.x)))
                self.t, self.x = self.t[:0], self.x[:0]
        self.part_t, self.part_x = t[~done], x[~done]

    def prune(self, before: float) -> None:
        """Drop the medians before ``before`` (s): whole sealed parts, and the tail's rows."""
        while self.sealed and self.sealed[0].data[0][-1] < before:
            self.sealed.pop(0)
        if self.t.size and self.t[0] < before:
            k = int(np.searchsorted(self.t, before))
            self.t, self.x = self.t[k:], self.x[k:]

    def _between(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """The medians with ``t0 <= t <= t1``: times (k,) s and levels (k, B) g."""
        parts = [c.data for c in self.sealed if c.data[0][-1] >= t0 and c.data[0][0] <= t1] + [(self.t, self.x)]
        ts, xs = [], []
        for t, x in parts:
            a, e = int(np.searchsorted(t, t0)), int(np.searchsorted(t, t1, side="right"))
            ts.append(t[a:e])
            xs.append(x[a:e])
        return np.concatenate(ts), np.concatenate(xs)

    def level(self, t0: float, t1: float, cols: Sequence[int]) -> np.ndarray | None:
        """Median level (g) of columns ``cols`` over ``[t0, t1]``; None when under half the window has data."""
        _, x = self._between(t0, t1)
        block = x[:, list(cols)]
        if block.shape[0] == 0:
            return None
        ok = np.isfinite(block)
        if (ok.sum(axis=0) < 0.5 * (t1 - t0) / 0.1).any():
            return None
        return _nanmedian(block, axis=0)

    def sd(self, cfg: ReachLookConfig) -> np.ndarray:
        """(B,) sd (g) of a level difference per plate (NaN until learnt)."""
        sd = np.maximum(self.mad * _MAD_TO_SD, cfg.noise_floor_g)
        return np.where(self.n_noise >= cfg.noise_min_updates, sd, np.nan)

    def learn(self, cfg: ReachLookConfig, gap_s: float) -> None:
        """Update the noise estimate from the newest history (every ``noise_every_s``)."""
        now = self.last_t
        if now is None or now < self.next_noise:
            return
        self.next_noise = now + cfg.noise_every_s
        w = cfg.window_s
        cols = range(len(self.codes))
        after = self.level(now - w, now, cols)
        before = self.level(now - 2 * w - gap_s, now - w - gap_s, cols)
        if after is None or before is None:
            return
        d = np.abs(after - before)
        ok = np.isfinite(d)
        fresh = ok & (self.n_noise == 0)
        self.mad[fresh] = np.maximum(d[fresh], cfg.noise_floor_g / _MAD_TO_SD)
        old = ok & ~fresh
        # a plate's real changes (beyond 6 sd of what it has shown so far) are not noise
        outlier = old & (self.n_noise >= cfg.noise_min_updates) & (d > 6 * _MAD_TO_SD * self.mad)
        upd = old & ~outlier
        eta = np.maximum(1.0 / cfg.noise_updates, 1.0 / (self.n_noise + 1.0))
        self.mad[upd] *= np.exp(eta[upd] * np.sign(d[upd] - self.mad[upd]))
        self.mad[upd] = np.maximum(self.mad[upd], cfg.noise_floor_g / _MAD_TO_SD)
        self.n_noise += ok


class ReachLook:
    """The reach-triggered look (module docstring) for one store. ``planogram``: the store's facings and unit
    weights; ``bins``: bin geometry (``carts.fusion_config.BinGeometry``). Feed :meth:`on_samples` with every
    controller's samples, :meth:`on_event` with every shelf event stored, and call :meth:`scan` as time
    advances."""

    def __init__(self, planogram: weight.Planogram, bins, config: ReachLookConfig = ReachLookConfig()) -> None:
        self.config = config
        self.stats = ReachLookStats()
        self._levels: dict[tuple[str, ...], _Levels] = {}
        self._where: dict[str, tuple[tuple[str, ...], int]] = {}  # bin → (controller, column)
        self._open: dict[int, _Reach] = {}   # shelf → the reach going on there
        self._ready: list[_Reach] = []       # ended reaches waiting for their after window and the detector
        self._stored: list[tuple[int, float, float]] = []  # (shelf, t0, t1) of the shelf events stored
        self._hand_t = -math.inf             # hands are read up to here
        self._hands: list[TrackObservations] = []  # hand keypoints fed since the last scan
        self._setup(planogram, bins)

    def _setup(self, planogram: weight.Planogram, bins) -> None:
        """The geometry and shelves (not pickled state: rebuilt after a restore, :meth:`attach`)."""
        self.planogram = planogram
        self.bins = bins
        self._shelf_of = planogram.shelf_numbers()
        self._codes = tuple(bins.codes)
        self._known = np.array([c in self._shelf_of for c in self._codes])
        # the volume over a plate ends at the plate above it (``BinGeometry.headroom``: shelves stand 0.22–0.3 m
        # apart, under fusion's 0.35 m clearance): a hand reaching into a shelf is over that shelf's plate, not
        # over the one below too
        c = np.asarray(bins.centre, dtype=np.float64).reshape(-1, 3)
        self._clearance = np.minimum(self.config.clearance_m, np.asarray(bins.headroom, dtype=np.float64))
        self._tree = cKDTree(c)  # candidate bins of a hand: those with the nearest centres

    def forget(self, bin_codes: set[str]) -> None:
        """Drop the plate levels of every controller with a bin in ``bin_codes`` (``StoreLoop.shelves_restocked``)."""
        for key in [k for k in self._levels if bin_codes & set(k)]:
            del self._levels[key]
            for code in key:
                self._where.pop(code, None)

    def attach(self, planogram: weight.Planogram, bins) -> None:
        """After :meth:`StoreLoop.restore`: the store's current planogram and bins."""
        self._setup(planogram, bins)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("planogram", "bins", "_shelf_of", "_codes",
                                                                     "_known", "_clearance", "_tree")}

    # ------------------------------------------------------------------------------------------------ inputs
    def on_samples(self, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray) -> None:
        """A block of a controller's raw samples (``t`` (n,) s, ``grams`` (n, B) g, NaN = missing)."""
        if not self.config.enabled:
            return
        lv = self._levels.get(bin_codes)
        if lv is None:
            lv = self._levels[bin_codes] = _Levels(bin_codes)
            for j, c in enumerate(bin_codes):
                self._where[c] = (bin_codes, j)
        lv.add(t, grams, 0.1)
        lv.learn(self.config, self._noise_gap())
        last = lv.last_t
        if last is not None:
            lv.prune(last - self.config.keep_s)

    def on_hands(self, hands: TrackObservations) -> None:
        """Hand keypoints of shopper tracks (metres, store coordinates), as they come; read at the next
        :meth:`scan`."""
        if self.config.enabled and self._levels and len(hands):
            self._hands.append(hands)

    def on_event(self, event: weight.ShelfEvent) -> None:
        """A shelf event was stored (by the detector's path or this look): reaches over it are not looked at."""
        shelf = self._shelf_of.get(event.bin_codes[0])
        if shelf is not None:
            self._stored.append((shelf, float(event.t_start), float(event.t_end)))

    def pending_windows(self, t: float) -> list[tuple[float, float, tuple[str, ...]]]:
        """The reaches beginning at or before ``t`` (s) that may still become an event, each as ``(t0, t1, bins)``:
        the interval of the event it would make (s: the reach's own, :meth:`_event`; ``t1`` is infinite for a reach
        still going on, whose end still moves) and the bins that event may name (the bins the hand came to and
        their planogram neighbours). Billing waits for those that may name its party."""
        out = []
        for r, ended in [*((r, True) for r in self._ready),
                         *((r, False) for r in self._open.values() if r.t1 - r.t0 <= self.config.max_reach_s)]:
            if r.t0 <= t:
                codes = set(r.closest)
                for c in r.closest:
                    codes.update(self.planogram.neighbours.get(c, ()))
                out.append((r.t0, r.t1 if ended else math.inf, tuple(sorted(codes))))
        return out

    # -------------------------------------------------------------------------------------------------- scan
    def scan(self, now: float, *, settled: Callable[[tuple[str, ...]], float],
             holdings: Callable[[Sequence[str]], Mapping[str, Mapping[str, int]]]) -> list[weight.ShelfEvent]:
        """Read the hands fed (:meth:`on_hands`) up to ``now`` (s), close the reaches that ended and look at those
        whose windows are in: the new shelf events. ``settled(controller)``: the time up to which that controller's detector has emitted every change (its
        ``settled_until``, less held changes); ``holdings(tracks)``: what each track's visit holds now."""
        cfg = self.config
        if not cfg.enabled or not self._levels:
            return []
        self._read_hands(now)
        for shelf, r in list(self._open.items()):
            if r.t1 < now - cfg.join_gap_s:
                del self._open[shelf]
                self._end(r)
        out: list[weight.ShelfEvent] = []
        left = []
        for r in self._ready:
            done_at = r.t1 + cfg.after_gap_s + cfg.window_s
            if now < done_at:
                left.append(r)
                continue
            controllers = {self._where[c][0] for c in r.closest if c in self._where}
            if now < done_at + cfg.max_wait_s and any(settled(c) < done_at for c in controllers):
                left.append(r)
                continue
            event = self._look(r, holdings)
            if event is not None:
                out.append(event)
                self._stored.append((r.shelf, event.t_start, event.t_end))
        self._ready = left
        keep = now - cfg.keep_s if math.isfinite(now) else -math.inf
        self._stored = [s for s in self._stored if s[2] >= keep]
        return out

    def _noise_gap(self) -> float:
        """The gap between the two windows of the noise estimate: a typical reach (~1.5 s) plus both margins."""
        return 1.5 + self.config.before_gap_s + self.config.after_gap_s

    def _read_hands(self, now: float) -> None:
        cfg = self.config
        parts = [p[p.t <= now] for p in self._hands]
        self._hands = [p[p.t > now] for p in self._hands if (p.t > now).any()]
        parts = [p for p in parts if len(p)]
        if not parts:
            self._hand_t = max(self._hand_t, now)
            return
        new = parts[0] if len(parts) == 1 else TrackObservations(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("track_id", "t", "keypoint", "xyz", "score")))
        new = new[(new.t > self._hand_t) & (new.score >= cfg.min_hand_score) & new.keypoint_in(HAND_KEYPOINTS)]
        self._hand_t = max(self._hand_t, now)
        if not len(new):
            return
        k = min(12, len(self._codes))  # ±2 plates on the shelf at the hand and the shelves above and below
        _, cand = self._tree.query(new.xyz, k=k)
        cand = np.asarray(cand).reshape(len(new), k)
        d = self._distances(new.xyz, cand)                 # (n, k)
        d[~self._known[cand]] = np.inf
        jj = np.argmin(d, axis=1)
        j = cand[np.arange(d.shape[0]), jj]
        dmin = d[np.arange(d.shape[0]), jj]
        near = np.flatnonzero(dmin <= cfg.reach_m)
        if not near.size:
            return
        order = near[np.argsort(new.t[near], kind="stable")]
        for i in order.tolist():
            code = self._codes[int(j[i])]
            shelf = self._shelf_of[code]
            t = float(new.t[i])
            r = self._open.get(shelf)
            if r is not None and t - r.t1 > cfg.join_gap_s:
                del self._open[shelf]
                self._end(r)
                r = None
            if r is None:
                r = self._open[shelf] = _Reach(shelf, t, t)
            r.t1 = max(r.t1, t)
            r.closest[code] = min(r.closest.get(code, math.inf), float(dmin[i]))
            r.tracks.add(str(new.track_id[i]))

    def _end(self, r: _Reach) -> None:
        self.stats.reaches += 1
        if r.t1 - r.t0 <= self.config.max_reach_s:
            self._ready.append(r)

    def _distances(self, points: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(n, k) distance (m) of each point (n, 3) to the volumes of its candidate bins ``cand`` (n, k) (indices
        into the bins; the along-shelf offset weighted)."""
        cfg, b = self.config, self.bins
        d = points[:, None, :] - b.centre[cand]
        yaw = b.yaw[cand]
        c, s = np.cos(yaw), np.sin(yaw)
        along = d[..., 0] * c + d[..., 1] * s
        into = -d[..., 0] * s + d[..., 1] * c
        ex = np.maximum(np.abs(along) - b.half_size[cand, 0], 0.0) * cfg.along_scale
        ey = np.maximum(np.abs(into) - b.half_size[cand, 1], 0.0)
        ez = np.maximum(np.maximum(-d[..., 2], d[..., 2] - self._clearance[cand]), 0.0)
        return np.sqrt(ex * ex + ey * ey + ez * ez)

    # -------------------------------------------------------------------------------------------------- look
    def _look(self, r: _Reach, holdings) -> weight.ShelfEvent | None:
        cfg = self.config
        b0, b1 = r.t0 - cfg.before_gap_s - cfg.window_s, r.t0 - cfg.before_gap_s
        a0, a1 = r.t1 + cfg.after_gap_s, r.t1 + cfg.after_gap_s + cfg.window_s
        if any(s == r.shelf and t0 <= a1 and t1 >= b0 for s, t0, t1 in self._stored):
            self.stats.blocked += 1
            return None
        centre = min(r.closest, key=lambda code: r.closest[code])
        if centre not in self._where:
            return None
        controller, _ = self._where[centre]
        lv = self._levels[controller]
        nbs = [n for n in self.planogram.neighbours.get(centre, ()) if self._where.get(n, (None,))[0] == controller]
        sets = [(centre,)] + [tuple(sorted((centre, n), key=lambda c: self._where[c][1])) for n in nbs]
        cols = sorted({self._where[c][1] for s in sets for c in s})
        before, after = lv.level(b0, b1, cols), lv.level(a0, a1, cols)
        sd = lv.sd(cfg)[cols]
        if before is None or after is None or not np.isfinite(sd).all():
            return None
        self.stats.looked += 1
        col_delta = dict(zip(cols, (after - before).tolist()))
        col_sd = dict(zip(cols, sd.tolist()))
        held: set[str] = set()
        for cart in holdings(sorted(r.tracks)).values():
            held |= {code for code, q in cart.items() if q > 0}
        best = None
        for s in sets:
            delta = float(sum(col_delta[self._where[c][1]] for c in s))
            sd_s = float(math.sqrt(sum(col_sd[self._where[c][1]] ** 2 for c in s)))
            unit = self._unit(s, delta, sd_s, held) if abs(delta) >= max(cfg.min_delta_g, cfg.gate_k * sd_s) else None
            log.debug("reach %.1f–%.1f s, bins %s: Δ=%.1f g, sd %.1f g: %s", r.t0, r.t1, ",".join(s), delta, sd_s,
                      unit or "below the gate")
            if unit is not None and (best is None or unit[2] > best[5]):  # the plates a unit fits best
                best = (s, unit[0], unit[1], delta, sd_s, unit[2])
        if best is None or best[2] < cfg.min_posterior:
            return None
        codes, barcode, post, delta, sd_s, _ = best
        event = self._event(codes, r, delta, sd_s, barcode)
        self.stats.events += 1
        log.info("reach at shelf bins %s %.1f–%.1f s (tracks %s): the plates' levels moved %.1f g (sd %.1f g), "
                 "one %s (posterior %.2f): an event for fusion", ",".join(codes), r.t0, r.t1,
                 ",".join(sorted(r.tracks)), delta, sd_s, barcode, post)
        return event

    def _unit(self, codes: tuple[str, ...], delta: float, sd: float, held: set[str]
              ) -> tuple[str, float, float] | None:
        """(the single unit most likely to explain ``delta``, the posterior that one unit of some product moved
        rather than nothing, its log odds); None when no product is a candidate."""
        cfg, products = self.config, self.planogram.products
        facing = {p for c in codes for p in self.planogram.facings.get(c, ())}
        names = sorted(facing | (held if delta > 0 else set()))
        known = set(products.barcode.tolist())
        names = [n for n in names if n in known]
        if not names:
            return None
        pw = products.select(names)
        unit_sd = np.maximum(pw.sd_g, np.maximum(weight.MIN_UNIT_SD_G, weight.MIN_UNIT_SD_REL * pw.mean_g))
        expected = np.sign(delta) * pw.mean_g           # a loss: a unit taken; a gain: one put back
        var = sd ** 2 + unit_sd ** 2
        log_l = -0.5 * (delta - expected) ** 2 / var - 0.5 * np.log(2 * math.pi * var)
        w = np.array([1.0 if n in facing else cfg.misplaced_weight for n in names])
        log_p = np.log((1 - cfg.nothing_prior) * w / w.sum()) + log_l
        log_0 = math.log(cfg.nothing_prior) - 0.5 * delta ** 2 / sd ** 2 - 0.5 * math.log(2 * math.pi * sd ** 2)
        top = max(float(log_p.max()), log_0)
        p = np.exp(log_p - top)
        total = float(p.sum()) + math.exp(log_0 - top)
        k = int(np.argmax(p))
        if abs(delta - expected[k]) > cfg.fit_k * math.sqrt(float(var[k])):
            return None
        # some unit moved (which one is fusion's to decide, by the hand)
        return names[k], float(p.sum() / total), float(np.logaddexp.reduce(log_p) - log_0)

    def _event(self, codes: tuple[str, ...], r: _Reach, delta: float, sd: float, barcode: str) -> weight.ShelfEvent:
        """The shelf event of a look: over the reach's interval, explained over the facing products (a pick) and,
        for a put-back, the unit found (fusion re-explains put-backs over what the shoppers hold)."""
        noise = sd / math.sqrt(2.0)  # the sd of one level estimate, as the detector's events carry
        facing = tuple(dict.fromkeys(p for c in codes for p in self.planogram.facings.get(c, ())))
        names = list(dict.fromkeys(facing + ((barcode,) if delta > 0 else ())))
        hyps = weight.explain_change(delta, noise, self.planogram.products.select(names), max_quantity=1)
        misplaced = delta > 0 and barcode not in facing
        return weight.ShelfEvent(codes, float(r.t0), float(r.t1), float(delta), float(noise), tuple(hyps),
                                 misplaced=misplaced, weak=True)
