"""Vision side of the simulator (``carts.offline.simulation``): the shoppers' true body and wrist paths, and the
10 Hz keypoints a tracker would report of them, with position noise and bias, missed frames and hands, occlusion
gaps and id switches between shoppers who come close."""
from __future__ import annotations

import math

import numpy as np

from store.recording import TrackObservations

from .simulation_shoppers import _Shopper, _World


def _body_path(sh: _Shopper, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.array(sh.waypoints)
    order = np.argsort(w[:, 0], kind="stable")
    w = w[order]
    xy = np.c_[np.interp(t, w[:, 0], w[:, 1]), np.interp(t, w[:, 0], w[:, 2])]
    idx = np.clip(np.searchsorted(w[:, 0], t, side="right") - 1, 0, len(w) - 1)
    lateral = w[idx, 3:5]
    return xy, lateral


def _hands(sh: _Shopper, t: np.ndarray, xy: np.ndarray, lateral: np.ndarray, rng) -> np.ndarray:
    """(2, n, 3) true wrist positions (left, right)."""
    out = np.empty((2, t.size, 3))
    for h, side in ((0, -1.0), (1, 1.0)):
        out[h, :, :2] = xy + side * 0.22 * lateral
        out[h, :, 2] = 0.85 + 0.03 * np.sin(2 * math.pi * 0.7 * t + h)
    for (r0, r1, g, hand) in sh.reaches:
        m = (t >= r0) & (t <= r1)
        if not m.any():
            continue
        tt = t[m]
        up = np.clip((tt - r0) / 0.5, 0, 1)
        down = np.clip((r1 - tt) / 0.5, 0, 1)
        a = np.minimum(up, down)[:, None]
        jitter = rng.normal(0, 0.01, (tt.size, 3))
        out[hand, m] = (1 - a) * out[hand, m] + a * (g[None, :] + jitter)
    return out


def _tracks(world: _World, shoppers: list[_Shopper], t0: float, t1: float) -> TrackObservations:
    cfg, rng = world.cfg, world.rng
    grid = t0 + np.arange(int((t1 - t0) * cfg.track_hz) + 1) / cfg.track_hz
    per: dict[str, tuple] = {}
    for sh in shoppers:
        m = (grid >= sh.t_enter) & (grid <= sh.t_exit)
        t = grid[m]
        xy, lateral = _body_path(sh, t)
        per[sh.track] = (t, xy, _hands(sh, t, xy, lateral, rng))
    # id switches between shoppers who come within 0.6 m: observed ids swap for 1–4 s
    observed = {tr: np.array([tr] * v[0].size, dtype=object) for tr, v in per.items()}
    if cfg.id_switch_share > 0:
        tracks = list(per)
        for i, a in enumerate(tracks):
            ta, xa, _ = per[a]
            for b in tracks[i + 1:]:
                tb, xb, _ = per[b]
                if ta.size == 0 or tb.size == 0 or ta[-1] < tb[0] or tb[-1] < ta[0]:
                    continue
                common, ia, ib = np.intersect1d(np.round(ta * cfg.track_hz), np.round(tb * cfg.track_hz),
                                                return_indices=True)
                close = np.hypot(*(xa[ia] - xb[ib]).T) < 0.6
                starts = np.flatnonzero(close & ~np.concatenate([[False], close[:-1]]))
                for s in starts:
                    if rng.random() < cfg.id_switch_share:
                        n = int(rng.uniform(1, 4) * cfg.track_hz)
                        sa, sb = ia[s:s + n], ib[s:s + n]
                        k = min(sa.size, sb.size)
                        observed[a][sa[:k]], observed[b][sb[:k]] = b, a
                        if k:
                            world.switches.append((a, b, float(ta[sa[0]]), float(ta[sa[k - 1]]) + 1 / cfg.track_hz))
    tid, ts, kp, xyz, sc = [], [], [], [], []
    for sh in shoppers:
        t, xy, hands = per[sh.track]
        n = t.size
        keep = rng.random(n) >= cfg.missed_frame_share
        occl = int(rng.poisson(cfg.occlusions_per_min * (sh.t_exit - sh.t_enter) / 60.0))
        for _ in range(occl):
            c = rng.uniform(sh.t_enter, sh.t_exit)
            keep &= ~((t >= c) & (t <= c + rng.exponential(cfg.occlusion_s)))
        bias = rng.normal(0, cfg.position_bias_m, 2)
        body = xy + bias + rng.normal(0, cfg.position_noise_m, (n, 2))
        ids = observed[sh.track]
        for name, z in (("head", 1.65), ("neck", 1.45)):
            tid.append(ids[keep])
            ts.append(t[keep])
            kp.append(np.full(int(keep.sum()), name, dtype=object))
            xyz.append(np.c_[body[keep], np.full(int(keep.sum()), z) + rng.normal(0, 0.03, int(keep.sum()))])
            sc.append(rng.uniform(0.7, 1.0, int(keep.sum())))
        for h, name in ((0, "l_wrist"), (1, "r_wrist")):
            k2 = keep & (rng.random(n) >= cfg.missed_hand_share)
            p = hands[h] + np.r_[bias, 0.0] + rng.normal(0, cfg.hand_noise_m, (n, 3))
            tid.append(ids[k2])
            ts.append(t[k2])
            kp.append(np.full(int(k2.sum()), name, dtype=object))
            xyz.append(p[k2])
            sc.append(rng.uniform(0.4, 1.0, int(k2.sum())))
    if not ts:
        return TrackObservations.empty()
    obs = TrackObservations(np.concatenate(tid).astype(object), np.concatenate(ts), np.concatenate(kp).astype(object),
                            np.concatenate(xyz), np.concatenate(sc))
    return obs[np.argsort(obs.t, kind="stable")]
