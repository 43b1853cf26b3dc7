"""The compiled per-frame loops of the id-switch finding (:mod:`vision.identity`): numba-jitted where installed.

:func:`pair_kernel` reads one pair of tracks frame by frame (the alpha-beta filters and the flip of the pairing
:func:`vision.identity.find_swaps` describes); :func:`track_swaps` reads one track against every other in one
compiled call, skipping pairs whose floor boxes per stretch of :data:`BOX_FRAMES` frames (:func:`frame_boxes`) are
never within ``near_m``. They take and give plain arrays (frames, positions, frame numbers); the Python side, which
turns frames into :class:`vision.identity.Swap` times, stays in :mod:`vision.identity`. Without numba the same
functions run as plain Python and give the same answers.
"""
from __future__ import annotations

import math

import numpy as np

try:  # the per-frame reading of a pair is a tight loop: compiled where numba is installed, plain Python elsewhere
    from numba import njit as _numba_jit

    def _jit(fn):
        return _numba_jit(cache=True, nogil=True)(fn)
except ImportError:  # pragma: no cover - numba is a dependency; the plain function gives the same answers
    def _jit(fn):
        return fn


#: Frames per bounding box of :func:`frame_boxes` (a pair whose boxes are farther apart than ``near_m`` in every
#: stretch they share is not read frame by frame).
BOX_FRAMES = 32


@_jit
def frame_boxes(frames, xy, offs, width):
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
def track_swaps(a, frames, xy, offs, boxes, done, near_m, margin_m, noise_k, smooth, velocity_gain, gap, warmup,
                longest):
    """The swaps of track row ``a`` with every row ``b`` not ``done`` (:func:`vision.identity._swaps_involving`):
    (k, 4) int64 rows (b, first frame, end frame or −1, end seen), by b. A pair is read (:func:`pair_kernel`,
    identity of the lower row first, as :func:`vision.identity._pair_swaps` reads it in name order) when it shares
    two frames or more and is within ``near_m`` in one of them, as :func:`vision.identity._pair_swaps` requires."""
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
        spans = pair_kernel(frames[p0:p1], xy[p0:p1], frames[q0:q1], xy[q0:q1], min(frames[p0], frames[q0]),
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


@_jit
def pair_kernel(fa, xa, fb, xb, lo, hi, c0, margin_m, noise_k, smooth, velocity_gain, gap, warmup, longest):
    """The frame-by-frame reading of one pair (:func:`vision.identity.find_swaps`): frames ``fa`` (m,) int64 and
    positions ``xa`` (m, 2) metres of identity a, likewise of b; every frame in ``[lo, hi]`` where either is seen, in
    time order; the pairing may flip from frame ``c0`` (their first common one). Returns (k, 3) int64: each swap's first
    frame, its end frame (exclusive; −1 when it is still on at the end) and whether that end was seen (1) or the swap
    ran out after ``longest`` frames (0)."""
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
