"""Load-cell health: dead, saturated, stuck and noisy plates, with the evidence (pure NumPy, no Django).

:class:`PlateHealthMonitor` watches the same blocks the detector gets (``t`` (n,) s UTC, ``grams`` (n, B)) and
keeps, per bin, a few running figures; :meth:`PlateHealthMonitor.report` classifies every bin. The shell
(``sensors/services.py``) stores the classification in ``SensorHealth`` rows for the manager's dashboard.

Statuses, checked in this order (the first that applies wins):

- ``dead``: no valid sample for ``dead_after_s`` (default 5 s): the cell, its cable or its ADC channel is gone
  (HX711 boards read NaN / time out when a cell is unplugged).
- ``saturated``: every valid sample for ``saturated_s`` (1 s) at or beyond ``saturation_frac`` (0.98) of the
  cell's capacity, either sign: overloaded or railed ADC; changes on it are invisible.
- ``stuck``: not one sample has changed value for ``stuck_s`` (10 s). A live cell never repeats itself that long:
  on BENCHMARK-1 even the quietest fitted plates (0.3 g sd, 0.25 g steps) change value every few samples, while
  the unfitted columns of the export read one constant or NaN for all 17 s.
- ``noisy``: the robust sample-to-sample noise (1.4826 × median |Δx| / √2 per block, median of the last
  ``noise_blocks`` blocks) above ``noisy_sd_g`` (10 g): twice the top of the 0.3–5 g quiet-plate range of this
  store's plates (the fitted BENCHMARK-1 plates measure 0.5–7.3 g, median 0.8–1.8 g per gondola). Such a plate
  needs a bigger change before the detector trusts it.
- ``ok``; ``unknown`` before any block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STATUSES = ("ok", "dead", "saturated", "stuck", "noisy", "unknown")


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of :class:`PlateHealthMonitor` (see the module docstring for their sources). Raises
    ``ValueError`` for non-positive values or ``saturation_frac`` outside (0, 1]."""

    dead_after_s: float = 5.0
    saturated_s: float = 1.0
    saturation_frac: float = 0.98
    stuck_s: float = 10.0
    noisy_sd_g: float = 10.0
    noise_blocks: int = 50

    def __post_init__(self) -> None:
        for name in ("dead_after_s", "saturated_s", "stuck_s", "noisy_sd_g"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"HealthConfig.{name} must be a positive number, got {v!r}")
        if not 0 < self.saturation_frac <= 1:
            raise ValueError(f"HealthConfig.saturation_frac must be in (0, 1], got {self.saturation_frac}")
        if isinstance(self.noise_blocks, bool) or not isinstance(self.noise_blocks, int) or self.noise_blocks < 1:
            raise ValueError(f"HealthConfig.noise_blocks must be an integer ≥ 1, got {self.noise_blocks!r}")


@dataclass(frozen=True)
class HealthReport:
    """Health of B bins at time ``t`` (s UTC). ``status`` (B,) object array of :data:`STATUSES`; ``noise_g`` (B,)
    float64 robust sample noise, grams (NaN if unknown); ``level_g`` (B,) last valid reading, grams;
    ``silent_s`` (B,) seconds since the last valid sample; ``unchanged_s`` (B,) seconds since a sample last
    changed value; ``railed_s`` (B,) seconds the readings have been at the capacity rail (0 if not)."""

    t: float
    status: np.ndarray
    noise_g: np.ndarray
    level_g: np.ndarray
    silent_s: np.ndarray
    unchanged_s: np.ndarray
    railed_s: np.ndarray

    def __len__(self) -> int:
        return int(self.status.shape[0])

    def evidence(self, i: int) -> str:
        """One line of evidence for bin ``i`` (what a manager reads next to the status)."""
        s = self.status[i]
        if s == "dead":
            return f"no reading for {self.silent_s[i]:.0f} s"
        if s == "saturated":
            return f"reading {self.level_g[i]:.0f} g at the capacity rail for {self.railed_s[i]:.1f} s"
        if s == "stuck":
            return f"reading {self.level_g[i]:.2f} g has not changed for {self.unchanged_s[i]:.0f} s"
        if s == "noisy":
            return f"sample noise {self.noise_g[i]:.1f} g sd (quiet plates: 0.3–5 g)"
        if s == "unknown":
            return "no data yet"
        return f"sample noise {self.noise_g[i]:.1f} g sd"


class PlateHealthMonitor:
    """Running health figures of ``n_bins`` load cells; ``capacity_g`` (n_bins,) grams (each cell's range).

    :meth:`update` with each block (``t`` (n,) float64 s UTC increasing, ``grams`` (n, n_bins), NaN = missing);
    :meth:`report` at any time. Raises ``ValueError`` for a bad ``n_bins``/``capacity_g`` or a block of the wrong
    shape."""

    def __init__(self, n_bins: int, capacity_g: np.ndarray, config: HealthConfig = HealthConfig()) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        cap = np.asarray(capacity_g, dtype=np.float64)
        if cap.shape != (n_bins,) or not np.all(np.isfinite(cap) & (cap > 0)):
            raise ValueError(f"capacity_g must be ({n_bins},) positive grams, got {cap.shape}")
        self.n_bins = n_bins
        self.capacity_g = cap
        self.config = config
        self._t_first = math.nan
        self._t_last = math.nan
        self._last_valid_t = np.full(n_bins, np.nan)
        self._last_change_t = np.full(n_bins, np.nan)
        self._last_value = np.full(n_bins, np.nan)
        self._rail_since = np.full(n_bins, np.nan)
        self._noise = np.full((config.noise_blocks, n_bins), np.nan)
        self._k = 0

    def update(self, t: np.ndarray, grams: np.ndarray) -> None:
        """Add one block. Raises ``ValueError`` for ``grams`` not (n, n_bins) or ``t`` not (n,)."""
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(grams, dtype=np.float64)
        if t.ndim != 1 or x.shape != (t.shape[0], self.n_bins):
            raise ValueError(f"grams must be (n, n_bins) = {(t.shape[0], self.n_bins)}, got {x.shape}")
        if t.shape[0] == 0:
            return
        if math.isnan(self._t_first):
            self._t_first = float(t[0])
            self._last_change_t[:] = t[0]
        self._t_last = float(t[-1])
        valid = np.isfinite(x)
        any_valid = valid.any(axis=0)
        last_idx = x.shape[0] - 1 - np.argmax(valid[::-1], axis=0)
        self._last_valid_t = np.where(any_valid, t[last_idx], self._last_valid_t)
        # value changes: against the previous valid sample, including the last one of the previous block
        prev = np.vstack([self._last_value[None, :], x])
        filled = _ffill(prev)
        changed_rows = (np.diff(filled, axis=0) != 0) & np.isfinite(np.diff(filled, axis=0))
        has_change = changed_rows.any(axis=0)
        last_change_row = x.shape[0] - 1 - np.argmax(changed_rows[::-1], axis=0)
        self._last_change_t = np.where(has_change, t[last_change_row], self._last_change_t)
        self._last_value = np.where(any_valid, filled[-1], self._last_value)
        # capacity rail
        railed = np.abs(x) >= self.config.saturation_frac * self.capacity_g
        all_railed = np.where(valid, railed, True).all(axis=0) & any_valid
        off_rail = (valid & ~railed).any(axis=0)
        first_rail_row = np.argmax(railed, axis=0)
        start = np.where(np.isnan(self._rail_since), t[first_rail_row], self._rail_since)
        self._rail_since = np.where(off_rail, np.nan, np.where(all_railed, start, self._rail_since))
        # robust sample noise of this block
        d = np.diff(x, axis=0)
        ok = np.isfinite(d).sum(axis=0) >= 4
        if ok.any():
            ad = np.abs(d[:, ok])
            with np.errstate(all="ignore"):
                med = np.median(ad, axis=0) if np.isfinite(ad).all() else np.nanmedian(ad, axis=0)
            est = 1.4826 * med / math.sqrt(2.0)
            row = np.full(self.n_bins, np.nan)
            row[ok] = est
            self._noise[self._k % self._noise.shape[0]] = row
            self._k += 1

    def report(self, now: float | None = None) -> HealthReport:
        """Classify every bin as of ``now`` (s UTC; default the last sample time)."""
        cfg = self.config
        b = self.n_bins
        if math.isnan(self._t_last):
            nan = np.full(b, np.nan)
            return HealthReport(math.nan if now is None else now, np.full(b, "unknown", dtype=object), nan, nan,
                                nan, nan, np.zeros(b))
        now = self._t_last if now is None else float(now)
        silent = now - np.where(np.isnan(self._last_valid_t), self._t_first, self._last_valid_t)
        unchanged = now - self._last_change_t
        railed = np.where(np.isnan(self._rail_since), 0.0, now - self._rail_since)
        with np.errstate(all="ignore"):
            have = np.isfinite(self._noise).any(axis=0)
            noise = np.full(b, np.nan)
            if have.any():
                noise[have] = np.nanmedian(self._noise[:, have], axis=0)
        status = np.full(b, "ok", dtype=object)
        noisy = np.isfinite(noise) & (noise > cfg.noisy_sd_g)
        status[noisy] = "noisy"
        status[unchanged >= cfg.stuck_s] = "stuck"
        status[railed >= cfg.saturated_s] = "saturated"
        status[silent >= cfg.dead_after_s] = "dead"
        return HealthReport(now, status, noise, self._last_value.copy(), silent, unchanged, railed)


def _ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaN down each column (rows before the first valid value stay NaN)."""
    valid = np.isfinite(x)
    idx = np.where(valid, np.arange(x.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = x[idx, np.arange(x.shape[1])[None, :]]
    out[~np.maximum.accumulate(valid, axis=0)] = np.nan
    return out
