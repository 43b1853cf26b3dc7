"""Weight side of the simulator (``carts.offline.simulation``): each plate's 60 Hz series — tare and stock, noise,
wander and drift, crosstalk, calibration gain, spikes, quantisation, lost messages — and each interaction's step,
hand jostle and swing on it."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.signal import lfilter

from store.recording import ShelfSamples

from .simulation_config import CROSSTALK_NEAR, CROSSTALK_TWO, PLATE_SD_QUANTILES_G, QUANTUM_G, SimConfig
from .simulation_shoppers import _Plate, _World


def _shelves(world: _World, t0: float, t1: float) -> list[ShelfSamples]:
    cfg, rng = world.cfg, world.rng
    n = int((t1 - t0) * cfg.rate_hz)
    t = t0 + np.arange(n) / cfg.rate_hz
    by_g: dict[int, list[str]] = {}
    for code, b in world.bins.items():
        by_g.setdefault(b.gondola, []).append(code)
    plates_by_bin: dict[str, list[_Plate]] = {}
    for p in world.plates:
        plates_by_bin.setdefault(p.code, []).append(p)
        b = world.bins[p.code]
        for step, ratio in ((1, CROSSTALK_NEAR), (-1, CROSSTALK_NEAR), (2, CROSSTALK_TWO), (-2, CROSSTALK_TWO)):
            nb = world.neighbour(p.code, step)
            if nb is not None and cfg.crosstalk_scale > 0:
                r = ratio * cfg.crosstalk_scale * rng.uniform(0.5, 1.3)
                plates_by_bin.setdefault(nb, []).append(_Plate(nb, p.t, p.delta * r, p.t0, p.t1, -1.0))
    for p in world.touches:
        plates_by_bin.setdefault(p.code, []).append(p)
    q_sd = np.asarray(PLATE_SD_QUANTILES_G)
    # each plate's calibration gain, from its own generator so that every other draw of the session stays the same
    gain_rng = np.random.default_rng([cfg.seed, 7919, 11])
    gain = dict(zip(sorted(world.bins), 1.0 + gain_rng.normal(0.0, cfg.plate_gain_sd, len(world.bins))))
    out = []
    for g in sorted(by_g):
        codes = sorted(by_g[g])
        B = len(codes)
        sd = np.interp(rng.random(B), [0, .05, .25, .5, .75, .95, 1.0], q_sd) * cfg.noise_scale
        white = rng.normal(size=(n, B)) * (sd * math.sqrt(1.0 - cfg.wander_share))
        # AR(1) wander with a 0.5 s time constant, stationary sd = sd·√wander_share
        a = math.exp(-1.0 / (0.5 * cfg.rate_hz))
        wander = lfilter([math.sqrt(1 - a * a)], [1, -a], rng.normal(size=(n, B)), axis=0) * (
            sd * math.sqrt(cfg.wander_share))
        x = white + wander
        x += np.outer(t - t0, rng.normal(0, cfg.drift_g_per_min / 60.0, B))
        for j, code in enumerate(codes):
            units = world.stock_initial.get(code, 0.0)
            x[:, j] += rng.uniform(300, 3000) + units
            for p in plates_by_bin.get(code, ()):
                _plate_trace(x[:, j], t, replace(p, delta=p.delta * gain[code]), cfg, rng)
        n_spikes = rng.poisson(cfg.spikes_per_plate_hour * B * (t1 - t0) / 3600.0)
        if n_spikes:
            rows, cols = rng.integers(0, n, n_spikes), rng.integers(0, B, n_spikes)
            x[rows, cols] += rng.choice([-1, 1], n_spikes) * rng.uniform(50, max(cfg.spike_g, 51), n_spikes)
        x = np.round(x / QUANTUM_G) * QUANTUM_G
        msgs = n // 12
        lost = np.flatnonzero(rng.random(msgs) < cfg.drop_share)
        for m in lost:
            x[m * 12:(m + 1) * 12] = np.nan
        out.append(ShelfSamples(t=t, bin_codes=tuple(codes), grams=x))
    return out


def _plate_trace(x: np.ndarray, t: np.ndarray, p: _Plate, cfg: SimConfig, rng) -> None:
    """Add one interaction to a plate's series ``x`` (n,) in place: the step (a 0.12 s ramp), the hand's jostle
    while it touches the shelf, the damped swing after it leaves."""
    i = int(np.searchsorted(t, p.t))
    x[i:] += p.delta
    j = int(np.searchsorted(t, p.t + 0.12))
    if j > i:
        x[i:j] -= p.delta * (1 - (t[i:j] - p.t) / 0.12)
    if p.swing_s < 0:  # crosstalk: the step only
        return
    size = max(abs(p.delta), 30.0)
    a, b = int(np.searchsorted(t, p.t0)), int(np.searchsorted(t, p.t1, side="right"))
    if b > a:
        amp = cfg.jostle * size * rng.uniform(0.3, 1.0)
        x[a:b] += amp * np.sin(2 * math.pi * rng.uniform(2.0, 6.0) * (t[a:b] - p.t0) + rng.uniform(0, 6.3))
    c = int(np.searchsorted(t, p.t1 + 5 * p.swing_s, side="right"))
    if c > b:
        dt = t[b:c] - p.t1
        amp = (0.3 if p.swing_s > cfg.swing_s else 0.05) * size
        x[b:c] += amp * np.exp(-dt / p.swing_s) * np.sin(2 * math.pi * rng.uniform(2.0, 5.0) * dt)
