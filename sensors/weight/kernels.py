"""The weight detector's per-sample loop compiled with numba where it is installed (plain Python otherwise).

:func:`quiet_run` is ``WeightEventDetector._step`` over the samples where nothing opens or closes, bin by bin;
``tests/test_sensors_weight_detector.py`` checks it gives the NumPy machine's changes.
"""
from __future__ import annotations

import math

import numpy as np

def _no_jit(fn):
    return fn


try:  # the detector's per-sample loop is compiled where numba is installed (WeightEventDetector._run_machine)
    from numba import njit as _numba_jit

    def _jit(fn):
        return _numba_jit(cache=True, nogil=True)(fn)

    COMPILED = True
except ImportError:  # pragma: no cover - numba is a dependency; without it every sample takes the NumPy path
    _jit = _no_jit
    COMPILED = False


@_jit
def _nan_max(a, b):
    """``np.maximum`` of two floats (NaN when either is NaN)."""
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


@_jit
def _sign(x):
    """``np.sign`` of a float (NaN for NaN)."""
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    if x == 0:
        return 0.0
    return math.nan


@_jit
def quiet_run(i0, T, M, S, V, level, spread, mad, n_seen, active, run, run_sum, run_first, qrun, qrun_sum,
               qrun_first, ring, ring_pos, last_active_t, last_quiet_t, due, n_before, n_after, n_quick, params):
    """``WeightEventDetector._step`` over samples ``i0 …`` for as long as nothing happens: no bin would open an
    activity or close one, and no held change is due (time ``due``). The state arrays are updated in place.
    Returns (the first sample it did not take, the ring position then)."""
    activity_k, activity_floor, activity_ceiling, floor, level_floor, level_k, close_k, alpha, eta, mad_to_sd = (
        params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7], params[8],
        params[9])
    quick_k = params[10]
    n, nb = M.shape
    w = ring.shape[0]
    sqrt2 = math.sqrt(2.0)
    thr_act = np.empty(nb)
    thr_lvl = np.empty(nb)
    q_tol = np.empty(nb)
    i = i0
    while i < n:
        t = T[i]
        if t >= due:
            return i, ring_pos
        # first pass: would anything happen at this sample? (read only; a fresh bin's values as they would be)
        for b in range(nb):
            m, s, v = M[i, b], S[i, b], V[i, b]
            sp, md, lv = spread[b], mad[b], level[b]
            if v and n_seen[b] == 0 and not active[b]:
                lv = m
                sp = _nan_max(s, floor)
                md = sp / mad_to_sd
            a = activity_k * sp
            if a == a:
                a = min(max(a, activity_floor), activity_ceiling)
            thr_act[b] = a
            sdd = _nan_max(md * mad_to_sd, floor * sqrt2)
            thr_lvl[b] = _nan_max(level_floor, level_k * sdd)
            q_tol[b] = quick_k * sdd
            quiet = s <= a
            if not active[b]:
                if n_seen[b] >= n_before and v and (not quiet or abs(m - lv) > thr_lvl[b]):
                    return i, ring_pos  # an activity opens
            else:
                if s <= close_k * a:
                    steady = run[b] > 0 and abs(m - run_first[b]) <= thr_lvl[b]
                    new_run = run[b] + 1 if steady else 1
                    if new_run >= n_after:
                        return i, ring_pos  # an activity closes
                if quiet:
                    q_steady = qrun[b] > 0 and abs(m - qrun_first[b]) <= q_tol[b]
                    if (qrun[b] + 1 if q_steady else 1) >= n_quick:
                        return i, ring_pos  # an activity closes early (quick confirmation)
        # second pass: the sample's updates, bin by bin
        for b in range(nb):
            m, s, v = M[i, b], S[i, b], V[i, b]
            if v and n_seen[b] == 0 and not active[b]:
                level[b] = m
                spread[b] = _nan_max(s, floor)
                mad[b] = spread[b] / mad_to_sd
            quiet = s <= thr_act[b]
            upd = False
            if not active[b]:
                if n_seen[b] < n_before and v and not quiet:  # moving during warm-up: learn the level again
                    n_seen[b] = 0
                upd = quiet
            if upd:
                k = 1.0 / (n_seen[b] + 1.0)
                step_a = alpha if alpha >= k else k
                level[b] += step_a * (m - level[b])
                step_n = eta if eta >= k else k
                spread[b] *= math.exp(step_n * _sign(s - spread[b]))
                spread[b] = _nan_max(spread[b], floor)
                d = abs(m - ring[ring_pos, b])
                if d == d and abs(d) != math.inf:
                    mad[b] *= math.exp(step_n * _sign(d - mad[b]))
                ring[ring_pos, b] = m
                n_seen[b] += 1
                last_quiet_t[b] = t
            else:
                ring[ring_pos, b] = math.nan
            if active[b]:
                if not quiet and v:
                    last_active_t[b] = t
                if s <= close_k * thr_act[b]:
                    if run[b] > 0 and abs(m - run_first[b]) <= thr_lvl[b]:
                        run_sum[b] += m
                        run[b] += 1
                    else:
                        run_first[b] = m
                        run_sum[b] = m
                        run[b] = 1
                else:
                    run[b] = 0
                if quiet:
                    if qrun[b] > 0 and abs(m - qrun_first[b]) <= q_tol[b]:
                        qrun_sum[b] += m
                        qrun[b] += 1
                    else:
                        qrun_first[b] = m
                        qrun_sum[b] = m
                        qrun[b] = 1
                else:
                    qrun[b] = 0
        ring_pos = (ring_pos + 1) % w
        i += 1
    return i, ring_pos


@_jit
def _cumsum_rows_jit(x, out):
    k, b = x.shape
    for j in range(b):
        out[0, j] = 0.0
    if k == 0:
        return
    for j in range(b):
        out[1, j] = x[0, j]
    for i in range(1, k):
        for j in range(b):
            out[i + 1, j] = out[i, j] + x[i, j]


def cumsum_rows(x: np.ndarray) -> np.ndarray:
    """``np.concatenate([zeros((1, B)), np.cumsum(x, axis=0)])`` of ``x`` (k, B) float64: (k + 1, B), the same bits
    (NumPy's cumulative sum is sequential too: row ``i`` is row ``i − 1`` plus ``x[i]``, the first row ``x[0]`` itself,
    one IEEE addition each, so a signed zero or a rounding comes out alike). Compiled, it runs along the rows of a
    C-ordered array instead of down each column; without numba it is NumPy's."""
    k, b = x.shape
    out = np.empty((k + 1, b))
    if COMPILED:
        _cumsum_rows_jit(np.ascontiguousarray(x, dtype=np.float64), out)
    else:  # pragma: no cover - numba is a dependency
        out[0] = 0.0
        np.cumsum(x, axis=0, out=out[1:])
    return out
