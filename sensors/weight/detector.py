"""The streaming weight-event detector: raw load-cell samples → settled weight changes per bin (pure NumPy).

Detection, per bin, vectorised over bins (one NumPy operation covers all B bins; the only Python loop is over
samples). Sources of the scheme: the weight-event detectors used on this very store, AIM3S (Ruiz et al.,
"AIM3S: Autonomous Inventory Monitoring through Multi-Modal Sensing for Cashier-Less Convenience Stores",
BuildSys 2019; CarlosRDomin/AIM3S ``detectWeightEvents.m``: moving variance > 100 g², ≥ 60 samples active then
≥ 60 samples stable, |Δ| > 10 g) and the CMU competition entry (AutoCheckout-CMU/AutoCheckout ``WeightTrigger.py``:
rolling std > 40 g per shelf, |Δ| > 10 g):

1. Rolling statistics over a centred window of ``window_s`` (default 0.5 s = 31 samples at 60 Hz): mean ``m`` and
   standard deviation ``s`` of the valid (non-NaN) samples. A window with fewer than ``min_valid_frac`` valid
   samples is a gap: it is never stable, never active, and updates nothing.
2. Two noise figures per bin, learnt only while the bin is stable, as running medians (robust to bursts; a
   multiplicative sign update, i.e. Robbins–Monro stochastic approximation of a quantile, Robbins & Monro 1951):
   ``spread`` = the median window sd (the "sd > 20 g" of the literature, but each plate's own), and ``sd_diff`` =
   1.4826 × median |m(t) − m(t − window)|, the spread of the difference of two stable levels one window apart,
   i.e. the null distribution of a measured Δ (it includes the slow wander and vibration the per-sample sd
   misses and that white-noise formulas underestimate).
3. A stable bin becomes ACTIVE when ``s > clip(activity_k · spread, activity_floor_g, activity_ceiling_g)`` (the
   ceiling, 20 g, is the AIM3S/CMU constant: a noisy plate is never less sensitive than the literature) or when
   its level leaves the baseline, ``|m − baseline| > max(level_floor_g, level_k · sd_diff)`` (catches a change too
   slow or small to raise the sd).
4. The baseline follows the level while stable through an exponential average with time constant
   ``baseline_tau_s`` (slow drift and creep are absorbed and never become events).
5. An ACTIVE bin closes after ``stable_after_s`` of consecutive calm windows (sd ≤ ``close_k`` × the activity
   threshold, a hysteresis) whose level stays within the level threshold of the first; ``after`` = mean level
   over that run, ``before`` = baseline when the activity began, Δ = after − before. The change is reported if
   ``|Δ| ≥ max(min_delta_g, delta_k · sd_diff)``; in every case the baseline becomes ``after``. A single-sample
   spike or a NaN burst makes the bin active or gapped for a moment but leaves the level where it was, so Δ ≈ 0
   and nothing is reported. It closes sooner, after ``quick_after_s``, when those windows are quiet and their level
   holds within ``quick_k`` level-noise sds (a quiet plate needs less evidence than a noisy one; ``after`` is then
   their mean).
6. A bin is armed (may start an activity) after ``stable_before_s`` of stable samples: the first level is known.

Times: every sample carries its own time (seconds since epoch UTC); ``t_start``/``t_end`` are the times of the
first and last active window centres, so they bracket the raw change with about half a window to spare each
side (the hand is there a little before and after the weight moves: what fusion wants). A time gap between
samples longer than 1.5 sample periods is filled with NaN rows (up to one window), so windows never straddle it.

7. A settled change is held back while another bin of the same detector is still active with an activity that
   began around it (``group_window_s``, at most ``max_hold_s``), so the pieces of one item standing across
   plates, or of a lean on the shelf, leave the detector together and can be merged (step 8). An isolated
   change is never held.

The knobs of every step, their defaults and where those come from: :class:`.detector_config.DetectorConfig`.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from store.checks import rejected

from .changes import WeightChanges, changes_from_rows
from .detector_config import DetectorConfig
from .kernels import COMPILED, cumsum_rows, quiet_run

log = logging.getLogger(__name__)

_MAD_TO_SD = 1.4826  # sd of a Gaussian = 1.4826 × its median absolute deviation (Rousseeuw & Croux 1993)


# --------------------------------------------------------------------------------------------- detector
class WeightEventDetector:
    """Streaming pick/put-back detector over ``n_bins`` load cells sampled together at ``rate_hz``.

    Feed blocks in time order with :meth:`push` (``t`` (n,) float64 s UTC strictly increasing across calls,
    ``grams`` (n, n_bins) raw grams, NaN = missing); each call returns the changes completed so far (in the order
    they settled). :meth:`flush` ends the stream; :meth:`reset` forgets everything. Processing lags the input by
    half a window (the centred window needs the samples after a centre). The algorithm is described in the module
    docstring. ``noise_sd()`` gives each bin's current level noise.

    Raises ``ValueError`` for a bad ``n_bins``/``rate_hz`` and, in ``push``, for wrong shapes, non-finite or
    non-increasing times (nothing of that block is used; the detector state is unchanged).
    """

    def __init__(self, n_bins: int, rate_hz: float, config: DetectorConfig = DetectorConfig()) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        self.n_bins = int(n_bins)
        self.rate_hz = float(rate_hz)
        self.config = config
        self._h = max(1, int(round(config.window_s * rate_hz / 2)))  # half window, samples
        self._w = 2 * self._h + 1
        self._min_valid = int(math.ceil(config.min_valid_frac * self._w))
        self._n_before = max(1, int(round(config.stable_before_s * rate_hz)))
        self._n_after = max(1, int(round(config.stable_after_s * rate_hz)))
        self._n_quick = max(1, int(round(config.quick_after_s * rate_hz)))
        self._n_tail = max(1, int(round(config.tail_min_s * rate_hz)))
        self._alpha = 1.0 / max(1.0, config.baseline_tau_s * rate_hz)
        self._eta = 1.0 / max(1.0, config.noise_tau_s * rate_hz)
        #: Take quiet runs of samples through the compiled loop where numba is installed (False: NumPy only; the
        #: two give the same changes, tests/test_sensors_weight_detector.py compares them).
        self.compiled = True
        self.reset()

    # ----------------------------------------------------------------------------------------- public
    def reset(self) -> None:
        """Forget all samples and learnt levels and noise; the next push starts a new stream."""
        b = self.n_bins
        self._started = False
        self._buf_t = np.zeros(0)
        self._buf_x = np.zeros((0, b))
        self._last_t = -math.inf                 # last real sample time pushed
        self._grid_t = -math.inf                 # last row time in the buffer (real or padding)
        self._level = np.full(b, np.nan)        # stable baseline, grams
        self._spread = np.full(b, np.nan)       # median window sd while stable, grams
        self._mad_diff = np.full(b, np.nan)     # median |m(t) − m(t − W)| while stable, grams
        self._n_seen = np.zeros(b, np.int64)    # stable samples seen
        self._ring = np.full((self._w, b), np.nan)
        self._ring_pos = 0
        self._active = np.zeros(b, bool)
        self._t_start = np.full(b, np.nan)
        self._before = np.full(b, np.nan)
        self._noise_at_start = np.full(b, np.nan)
        self._run = np.zeros(b, np.int64)
        self._run_sum = np.zeros(b)
        self._run_first = np.zeros(b)
        self._quick_state()
        self._last_active_t = np.full(b, np.nan)
        self._last_quiet_t = np.full(b, np.nan)
        self._held: list[tuple] = []             # settled changes waiting for overlapping activities to settle

    def settled_until(self) -> float:
        """Source time (s) before which every change of this stream has been emitted: the earliest start of an
        activity not yet settled (open, or settled and held back for an overlapping one), else the last window
        centre processed. A change :meth:`push` returns later starts at or after it (−inf before any window)."""
        if not self._started or self._buf_t.shape[0] < self._h:
            return -math.inf
        until = float(self._buf_t[self._h - 1])
        if self._active.any():
            until = min(until, float(np.nanmin(self._t_start[self._active])))
        if self._held:
            until = min(until, min(float(row[1]) for row in self._held))
        return until

    def noise_sd(self) -> np.ndarray:
        """(n_bins,) float64 grams: current sd of one stable level estimate per bin (NaN before any data)."""
        return self._sd_diff() / math.sqrt(2.0)

    def spread(self) -> np.ndarray:
        """(n_bins,) float64 grams: current median window sd per bin (the plate's sample noise; NaN before data)."""
        return self._spread.copy()

    def push(self, t: np.ndarray, grams: np.ndarray) -> WeightChanges:
        """Add samples ``t`` (n,) float64 s UTC and ``grams`` (n, n_bins) raw grams; return the changes that
        settled since the previous call (in settling order).

        Non-finite grams are treated as missing. Rejected input is logged at WARNING and leaves the detector as it
        was. Raises ``ValueError`` for wrong shapes, non-finite times, times
        not strictly increasing or not after the previous block's last time.
        """
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(grams, dtype=np.float64)
        if t.ndim != 1:
            raise rejected(log, f"push: t must be (n,), got {t.shape}")
        if x.shape != (t.shape[0], self.n_bins):
            raise rejected(log, f"push: grams must be (n, n_bins) = {(t.shape[0], self.n_bins)}, got {x.shape}")
        if t.shape[0] == 0:
            return WeightChanges.empty()
        if not np.all(np.isfinite(t)):
            raise rejected(log, f"push: t has a non-finite time at row {int(np.flatnonzero(~np.isfinite(t))[0])}")
        if t.shape[0] > 1 and not np.all(np.diff(t) > 0):
            raise rejected(log, f"push: t must be strictly increasing; row {int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1} "
                       f"is not after the row before")
        if t[0] <= self._last_t:
            raise rejected(log, f"push: block starts at t={t[0]:.6f}, not after the previous sample t={self._last_t:.6f}")
        finite = np.isfinite(x)
        if not finite.all():
            x = np.where(finite, x, np.nan)
        if not self._started:
            # left edge of the stream: half a window of NaN rows, so the first samples are window centres too
            self._started = True
            self._buf_t = t[0] - np.arange(self._h, 0, -1) / self.rate_hz
            self._buf_x = np.full((self._h, self.n_bins), np.nan)
            self._grid_t = float(self._buf_t[-1])
        t, x = self._fill_gaps(t, x)
        self._last_t = float(t[-1])
        self._grid_t = self._last_t
        return self._process(np.concatenate([self._buf_t, t]), np.concatenate([self._buf_x, x]), final=False)

    def flush(self) -> WeightChanges:
        """End the stream: process the last half window and close what can be closed.

        An activity still open is closed if it already has ``tail_min_s`` of stable tail (Δ measured on that
        tail), else dropped with an INFO log line naming the bin. The detector keeps its learnt levels and noise;
        a later push continues the stream (after a gap).
        """
        if not self._started:
            return WeightChanges.empty()
        pad = self._h
        tail_t = self._buf_t[-1] + np.arange(1, pad + 1) / self.rate_hz
        out = self._process(np.concatenate([self._buf_t, tail_t]),
                            np.concatenate([self._buf_x, np.full((pad, self.n_bins), np.nan)]), final=True)
        self._started = False  # a later push starts a new edge; levels, noise and the last time are kept
        self._buf_t = np.zeros(0)
        self._buf_x = np.zeros((0, self.n_bins))
        return out

    # ----------------------------------------------------------------------------------------- internals
    def _quick_state(self) -> None:
        """The early confirmation's run per bin (``DetectorConfig.quick_after_s``): length in windows, sum and first
        of its window means. Also called for a detector restored from a checkpoint taken before it existed."""
        b = self.n_bins
        self._qrun = np.zeros(b, np.int64)
        self._qrun_sum = np.zeros(b)
        self._qrun_first = np.zeros(b)
        if not hasattr(self, "_n_quick"):
            self._n_quick = max(1, int(round(self.config.quick_after_s * self.rate_hz)))

    def _sd_diff(self) -> np.ndarray:
        return np.maximum(self._mad_diff * _MAD_TO_SD, self.config.noise_floor_g * math.sqrt(2.0))

    def _fill_gaps(self, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Insert NaN rows where consecutive times are > 1.5 periods apart (at most one window per gap)."""
        dt = np.diff(np.concatenate([[self._grid_t], t]))
        if not dt.max() > 1.5 / self.rate_hz:  # no gap (the usual block); NaN never comes: times are finite
            return t, x
        ins = np.where(dt > 1.5 / self.rate_hz, np.minimum(np.rint(dt * self.rate_hz) - 1, self._w), 0)
        ins = ins.astype(np.int64)
        if not ins.any():
            return t, x
        n = t.shape[0]
        total = n + int(ins.sum())
        pos = np.arange(n) + np.cumsum(ins)
        new_x = np.full((total, self.n_bins), np.nan)
        new_x[pos] = x
        new_t = np.empty(total)
        new_t[pos] = t
        gap_rows = np.setdiff1d(np.arange(total), pos, assume_unique=True)
        new_t[gap_rows] = np.interp(gap_rows, np.concatenate([[-1], pos]), np.concatenate([[self._grid_t], t]))
        log.debug("time gap(s) before %d sample(s): %d NaN rows inserted", int((ins > 0).sum()), total - n)
        return new_t, new_x

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centred-window mean, sd and validity for rows h … len−h−1 of ``x`` (k, B); NaN samples excluded."""
        valid = np.isfinite(x)
        if valid.all():
            return self._features_full(x)
        return self._features_nan(x, valid)

    def _features_nan(self, x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_features` in general (``valid`` = ``np.isfinite(x)``): counts of valid samples per window."""
        w = self._w
        cnt_all = valid.sum(axis=0)
        ref = np.where(cnt_all > 0, np.where(valid, x, 0.0).sum(axis=0) / np.maximum(cnt_all, 1), 0.0)
        xv = np.where(valid, x - ref, 0.0)
        zero = np.zeros((1, x.shape[1]))
        c0 = np.concatenate([zero, np.cumsum(valid, axis=0, dtype=np.float64)])
        c1 = np.concatenate([zero, np.cumsum(xv, axis=0)])
        c2 = np.concatenate([zero, np.cumsum(xv * xv, axis=0)])
        n = c0[w:] - c0[:-w]
        s1 = c1[w:] - c1[:-w]
        s2 = c2[w:] - c2[:-w]
        ok = n >= self._min_valid
        nn = np.maximum(n, 1.0)
        mean = s1 / nn
        var = np.maximum(s2 / nn - mean * mean, 0.0)
        sd = np.where(ok, np.sqrt(var), np.inf)
        mean = np.where(ok, mean + ref, 0.0)
        return mean, sd, ok

    def _features_full(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_features` of an ``x`` without a NaN (the usual block): the same operations on the same values with
        the validity steps left out (every count is the whole window), so the same bits; tests pin it against the
        general path."""
        w = self._w
        ref = x.sum(axis=0) / np.float64(x.shape[0])
        xv = x - ref
        c1 = cumsum_rows(xv)
        c2 = cumsum_rows(xv * xv)
        nn = np.float64(w)
        mean = (c1[w:] - c1[:-w]) / nn
        var = np.maximum((c2[w:] - c2[:-w]) / nn - mean * mean, 0.0)
        return mean + ref, np.sqrt(var), np.ones(mean.shape, bool)

    def _process(self, t_all: np.ndarray, x_all: np.ndarray, *, final: bool) -> WeightChanges:
        h = self._h
        k = t_all.shape[0]
        if k < 2 * h + 1:  # not one full window yet (only at a stream edge)
            self._buf_t, self._buf_x = t_all, x_all
            return self._close_open(t_all) if final else WeightChanges.empty()
        mean, sd, ok = self._features(x_all)
        centres_t = t_all[h:k - h]
        rows = self._run_machine(centres_t, mean, sd, ok)
        keep = k - 2 * h
        self._buf_t, self._buf_x = t_all[keep:], x_all[keep:]
        out = changes_from_rows(rows)
        if final:
            out = WeightChanges.concat([out, self._close_open(centres_t)])
        return out

    def _close_open(self, centres_t: np.ndarray) -> WeightChanges:
        """At the end of the stream: close open activities that have a stable tail; drop the others."""
        rows: list[tuple] = []
        dropped: list[str] = []
        rows.extend(self._held)
        self._held = []
        for b in np.flatnonzero(self._active):
            if self._run[b] >= self._n_tail:
                rows.extend(self._close(np.array([b]), float(centres_t[-1]) if centres_t.size else math.nan))
            else:
                dropped.append(f"{b} (from t={self._t_start[b]:.3f})")
                self._active[b] = False
                self._run[b] = 0
        if dropped:
            log.info("%d bin(s) still active at the end of the stream without a stable tail; dropped: %s",
                     len(dropped), ", ".join(dropped))
        return changes_from_rows(rows)

    def _release(self, t: float) -> list[tuple]:
        """Held changes that may go at time ``t``: no bin still active that started before their ``t_end +
        group_window_s``, and no held change overlapping them that is still waiting; or held ``max_hold_s``."""
        cfg = self.config
        busy_starts = self._t_start[self._active]
        waiting = []
        for row in self._held:
            t_end = row[2]
            blocked = bool(np.any((busy_starts <= t_end + cfg.group_window_s)
                                  & (busy_starts >= row[1] - cfg.group_window_s))) if busy_starts.size else False
            waiting.append(blocked and t < t_end + cfg.max_hold_s)
        # a change overlapping a waiting one waits with it (the pieces of one item leave together)
        changed = True
        while changed:
            changed = False
            for i, row in enumerate(self._held):
                if waiting[i]:
                    continue
                for j, other in enumerate(self._held):
                    if waiting[j] and other[1] <= row[2] + cfg.group_window_s and row[1] <= other[2] + \
                            cfg.group_window_s and t < row[2] + cfg.max_hold_s:
                        waiting[i] = changed = True
                        break
        out = [row for row, w in zip(self._held, waiting) if not w]
        if out:
            self._held = [row for row, w in zip(self._held, waiting) if w]
        return out

    def _close(self, bins: np.ndarray, t_now: float) -> list[tuple]:
        """Close activities of ``bins``; return emitted rows and move baselines to the settled levels."""
        cfg = self.config
        quick = (self._run[bins] < self._n_after) & (self._qrun[bins] >= self._n_quick)  # confirmed early
        after = np.where(quick, self._qrun_sum[bins] / np.maximum(self._qrun[bins], 1),
                         self._run_sum[bins] / np.maximum(self._run[bins], 1))
        before = self._before[bins]
        delta = after - before
        sd_diff = self._noise_at_start[bins] * math.sqrt(2.0)
        gate = np.maximum(cfg.min_delta_g, cfg.delta_k * sd_diff)
        weak_gate = np.maximum(cfg.weak_min_g, cfg.weak_k * sd_diff)
        rows = []
        for j, b in enumerate(bins):
            if abs(delta[j]) >= min(gate[j], weak_gate[j]):
                t_end = self._last_active_t[b]
                if not np.isfinite(t_end) or t_end < self._t_start[b]:
                    t_end = self._t_start[b]
                rows.append((int(b), float(self._t_start[b]), float(t_end), float(before[j]), float(after[j]),
                             float(delta[j]), float(self._noise_at_start[b]), bool(abs(delta[j]) < gate[j])))
            else:
                log.debug("bin %d: activity %.3f–%.3f settled with Δ=%.1f g < gate %.1f g; no event",
                          b, self._t_start[b], self._last_active_t[b], delta[j], gate[j])
        self._level[bins] = after
        self._active[bins] = False
        self._run[bins] = 0
        self._qrun[bins] = 0
        self._ring[:, bins] = np.nan  # level jumped: differences across the change are not noise
        self._last_quiet_t[bins] = t_now
        return rows

    def _run_machine(self, T: np.ndarray, M: np.ndarray, S: np.ndarray, V: np.ndarray) -> list[tuple]:
        """The per-sample state machine; every operation covers all bins at once. Where numba is installed, runs
        of samples in which no bin opens or closes an activity and no held change is due go through the compiled
        :func:`quiet_run` (the same arithmetic, bin by bin); the samples where something happens go through
        :meth:`_step`."""
        cfg = self.config
        rows: list[tuple] = []
        n = T.shape[0]
        i = 0
        if not hasattr(self, "_qrun"):  # a detector restored from a checkpoint taken before the early confirmation
            self._quick_state()
        params = np.array([cfg.activity_k, cfg.activity_floor_g, cfg.activity_ceiling_g, cfg.noise_floor_g,
                           cfg.level_floor_g, cfg.level_k, cfg.close_k, self._alpha, self._eta, _MAD_TO_SD,
                           cfg.quick_k])
        while i < n:
            if COMPILED and getattr(self, "compiled", True):  # (a detector restored from an older checkpoint)
                due = min(row[2] for row in self._held) + cfg.max_hold_s if self._held else math.inf
                i, self._ring_pos = quiet_run(i, T, M, S, V, self._level, self._spread, self._mad_diff,
                                               self._n_seen, self._active, self._run, self._run_sum,
                                               self._run_first, self._qrun, self._qrun_sum, self._qrun_first,
                                               self._ring, self._ring_pos, self._last_active_t,
                                               self._last_quiet_t, due, self._n_before, self._n_after,
                                               self._n_quick, params)
                if i >= n:
                    break
            self._step(T[i], M[i], S[i], V[i], rows)
            i += 1
        return rows

    def _step(self, t: float, m: np.ndarray, s: np.ndarray, v: np.ndarray, rows: list[tuple]) -> None:
        """One sample of the state machine (time ``t``, window means ``m``, sds ``s``, validity ``v``, all (B,));
        settled changes released are appended to ``rows``."""
        cfg = self.config
        level, spread, mad = self._level, self._spread, self._mad_diff
        n_seen, active = self._n_seen, self._active
        run, run_sum, run_first = self._run, self._run_sum, self._run_first
        ring = self._ring
        w = self._w
        alpha, eta = self._alpha, self._eta
        floor = cfg.noise_floor_g
        gap_tol = 1.5 / self.rate_hz
        # first valid window of a bin: initialise its level and noise from it
        fresh = v & (n_seen == 0) & ~active
        if fresh.any():
            level[fresh] = m[fresh]
            spread[fresh] = np.maximum(s[fresh], floor)
            mad[fresh] = spread[fresh] / _MAD_TO_SD
        thr_act = np.clip(cfg.activity_k * spread, cfg.activity_floor_g, cfg.activity_ceiling_g)
        sd_diff = np.maximum(mad * _MAD_TO_SD, floor * math.sqrt(2.0))
        thr_lvl = np.maximum(cfg.level_floor_g, cfg.level_k * sd_diff)
        quiet = s <= thr_act  # s is +inf in a gap
        dev = np.abs(m - level)
        stable = ~active
        armed = n_seen >= self._n_before
        trig = stable & armed & v & (~quiet | (dev > thr_lvl))
        upd = stable & quiet & ~trig
        restart = stable & ~armed & v & ~quiet
        if restart.any():  # moving during warm-up: learn the level again from the next window
            n_seen[restart] = 0
        # ---- stable bins: follow the baseline and learn the noise (running medians)
        if upd.any():
            step_a = np.where(upd, np.maximum(alpha, 1.0 / (n_seen + 1.0)), 0.0)
            level += step_a * np.where(upd, m - level, 0.0)
            step_n = np.where(upd, np.maximum(eta, 1.0 / (n_seen + 1.0)), 0.0)
            spread *= np.exp(step_n * np.sign(s - spread))
            np.maximum(spread, floor, out=spread)
            d = np.abs(m - ring[self._ring_pos])
            okd = upd & np.isfinite(d)
            mad *= np.exp(np.where(okd, step_n, 0.0) * np.sign(np.where(okd, d, mad) - mad))
            ring[self._ring_pos] = np.where(upd, m, np.nan)
            n_seen += upd
            self._last_quiet_t[upd] = t
        else:
            ring[self._ring_pos] = np.nan
        self._ring_pos = (self._ring_pos + 1) % w
        # ---- active bins: wait for a steady, quiet run
        if active.any():
            calm = s <= cfg.close_k * thr_act  # hysteresis: closing tolerates a little more spread
            busy = active & ~calm
            self._last_active_t[active & ~quiet & v] = t
            q = active & calm
            steady = q & (run > 0) & (np.abs(m - run_first) <= thr_lvl)
            start_new = q & ~steady
            run_first[start_new] = m[start_new]
            run_sum += np.where(steady, m, 0.0)
            run_sum[start_new] = m[start_new]
            run += steady
            run[start_new] = 1
            run[busy] = 0
            # the early confirmation: quiet windows whose level stays within quick_k level-noise sds of the first
            qrun, qfirst = self._qrun, self._qrun_first
            qa = active & quiet
            q_steady = qa & (qrun > 0) & (np.abs(m - qfirst) <= cfg.quick_k * sd_diff)
            q_new = qa & ~q_steady
            qfirst[q_new] = m[q_new]
            self._qrun_sum += np.where(q_steady, m, 0.0)
            self._qrun_sum[q_new] = m[q_new]
            qrun += q_steady
            qrun[q_new] = 1
            qrun[active & ~quiet] = 0
            close = active & ((run >= self._n_after) | (qrun >= self._n_quick))
            if close.any():
                self._held.extend(self._close(np.flatnonzero(close), t))
        # ---- release settled changes whose overlapping activities have settled too
        if self._held:
            rows.extend(self._release(t))
        # ---- new activities
        if trig.any():
            idx = np.flatnonzero(trig)
            lq = self._last_quiet_t[idx]
            self._t_start[idx] = np.where(np.isfinite(lq) & (t - lq > gap_tol), lq, t)
            self._before[idx] = level[idx]
            self._noise_at_start[idx] = sd_diff[idx] / math.sqrt(2.0)
            self._last_active_t[idx] = t
            active[idx] = True
            run[idx] = 0
            self._qrun[idx] = 0
            if quiet[idx].any():  # a level trigger on a quiet window starts the stable runs at once
                qi = idx[quiet[idx]]
                run[qi] = 1
                run_first[qi] = m[qi]
                run_sum[qi] = m[qi]
                self._qrun[qi] = 1
                self._qrun_first[qi] = m[qi]
                self._qrun_sum[qi] = m[qi]


def detect_weight_changes(t: np.ndarray, grams: np.ndarray, rate_hz: float,
                          config: DetectorConfig = DetectorConfig()) -> WeightChanges:
    """Batch detection: ``t`` (n,) float64 s UTC, ``grams`` (n, B) raw grams → all settled changes.

    Equivalent to one :meth:`WeightEventDetector.push` of everything followed by :meth:`~WeightEventDetector.flush`.
    Raises ``ValueError`` as ``push`` does.
    """
    grams = np.asarray(grams)
    if grams.ndim != 2:
        raise ValueError(f"grams must be (n, B), got {grams.shape}")
    det = WeightEventDetector(grams.shape[1], rate_hz, config)
    return WeightChanges.concat([det.push(t, grams), det.flush()])
