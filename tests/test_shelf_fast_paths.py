"""The shelf intake's fast paths give the general paths' bits: the detector's NaN-free window features, its
no-gap and all-finite shortcuts, the cheap empty ``WeightChanges``, the reach look's NaN-free medians and its 0.1 s
slot medians. Each fast path is compared bit for bit with the general one on the inputs it takes, and shown to be
wrong on the inputs its guard sends elsewhere (so a guard removed fails here)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from carts.reach_look import _Levels, _nanmedian, _nanmedian_sorted, _slot_medians
from sensors.weight import WeightChanges, WeightEventDetector
from sensors.weight.kernels import cumsum_rows
from tests.weight_changes import RATE


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, dtype and bytes (so -0.0 ≠ 0.0 and NaN = NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _plates(rng: np.random.Generator, k: int, b: int) -> np.ndarray:
    """(k, b) grams like a load cell's: levels of hundreds to thousands of grams in 0.24 g steps, with noise."""
    level = rng.uniform(0.0, 8000.0, b)
    return np.round((level + rng.normal(0.0, 2.0, (k, b))) / 0.24) * 0.24


@pytest.mark.parametrize("k,b", [(31, 1), (45, 54), (61, 72), (200, 7)])
def test_detector_nan_free_features_are_the_general_paths_bits(k, b):
    rng = np.random.default_rng(k * 100 + b)
    det = WeightEventDetector(b, RATE)
    for _ in range(5):
        x = _plates(rng, k, b)
        x[rng.random((k, b)) < 0.05] = -0.0  # signed zeros must survive too
        full = det._features_full(x)
        general = det._features_nan(x, np.isfinite(x))
        assert all(_same(f, g) for f, g in zip(full, general))
        assert all(_same(f, g) for f, g in zip(det._features(x), general))


@pytest.mark.parametrize("k,b", [(0, 3), (1, 1), (2, 5), (61, 54), (61, 72), (500, 9)])
def test_compiled_row_cumsum_is_numpys(k, b):
    rng = np.random.default_rng(k + b)
    x = rng.normal(0.0, 1.0, (k, b)) * 10.0 ** rng.integers(-3, 6, (k, b))
    x[rng.random((k, b)) < 0.1] = -0.0
    want = np.concatenate([np.zeros((1, b)), np.cumsum(x, axis=0)])
    assert _same(cumsum_rows(x), want)
    assert _same(cumsum_rows(np.asfortranarray(x)), want)
    assert _same(cumsum_rows(x.T.copy().T), want)


def test_detector_features_with_a_nan_take_the_general_path():
    rng = np.random.default_rng(3)
    det = WeightEventDetector(6, RATE)
    x = _plates(rng, 61, 6)
    x[10:30, 2] = np.nan  # a gap: that plate's windows there are invalid
    general = det._features_nan(x, np.isfinite(x))
    assert all(_same(f, g) for f, g in zip(det._features(x), general))
    assert not general[2][:, 2].all()
    assert not all(_same(f, g) for f, g in zip(det._features_full(x), general))  # the guard is needed


def test_detector_non_finite_samples_are_stored_as_nan():
    rng = np.random.default_rng(4)
    t = 1000.0 + np.arange(40) / RATE
    x = _plates(rng, 40, 3)
    a, b = WeightEventDetector(3, RATE), WeightEventDetector(3, RATE)
    y = x.copy()
    y[35, 1], y[37, 2] = np.inf, -np.inf
    a.push(t, y)
    z = x.copy()
    z[35, 1] = z[37, 2] = np.nan
    b.push(t, z)
    assert _same(a._buf_x, b._buf_x) and np.isnan(a._buf_x).any() and not np.isinf(a._buf_x).any()
    assert np.isfinite(x).all()  # the caller's array is left alone
    c = WeightEventDetector(3, RATE)
    c.push(t, x)
    assert np.isfinite(c._buf_x).all()


@pytest.mark.parametrize("gap_periods,inserted", [(1.0, 0), (1.49, 0), (1.6, 1), (3.0, 2), (1000.0, 31)])
def test_detector_gap_rows_only_after_a_gap(gap_periods, inserted):
    det = WeightEventDetector(2, RATE)
    det.push(1000.0 + np.arange(40) / RATE, np.zeros((40, 2)))
    t = det._last_t + (gap_periods - 1.0 + np.arange(1, 11)) / RATE
    x = np.ones((10, 2))
    new_t, new_x = det._fill_gaps(t, x)
    assert new_t.shape == (10 + inserted,) and int(np.isnan(new_x[:, 0]).sum()) == inserted
    if not inserted:
        assert new_t is t and new_x is x


def test_empty_changes_equal_the_checked_constructors():
    z = np.zeros(0)
    checked = WeightChanges(np.zeros(0, np.int64), z, z, z, z, z, z, np.zeros(0, dtype=bool))
    empty = WeightChanges.empty()
    assert repr(empty) == repr(checked) and len(empty) == 0
    for name in ("bin_index", "t_start", "t_end", "before_g", "after_g", "delta_g", "noise_sd_g", "weak"):
        assert _same(getattr(empty, name), getattr(checked, name))
    assert empty.t_start is not WeightChanges.empty().t_start  # a fresh object each time, never shared
    assert len(WeightChanges.concat([empty, checked])) == 0


@pytest.mark.parametrize("seed", range(6))
def test_nanmedian_fast_path_is_the_general_paths_bits(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(1, 9, size=int(rng.integers(1, 4))))
        a = np.round(rng.normal(0.0, 3.0, shape) * 4) / 4
        a[rng.random(shape) < 0.2] = -0.0
        if seed % 2:  # missing values: the general path must be taken
            a[rng.random(shape) < 0.25] = np.nan
        for axis in range(a.ndim):
            s = np.sort(a, axis=axis)
            got = _nanmedian(a, axis)
            assert _same(got, _nanmedian_sorted(s, np.isfinite(s), axis))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "All-NaN slice encountered"
                assert np.array_equal(got, np.nanmedian(a, axis=axis), equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_slot_medians_are_the_padded_cubes_nanmedian(seed):
    rng = np.random.default_rng(seed)
    for _ in range(100):
        counts = rng.integers(1, 8, size=int(rng.integers(1, 7)))
        b = int(rng.integers(1, 60))
        cube = np.full((counts.size, int(counts.max()), b), np.nan)
        for i, c in enumerate(counts):
            cube[i, :c] = _plates(rng, int(c), b)
        if seed >= 2:  # a missing sample inside a slot: the general path
            cube[0, 0, 0] = np.nan if seed == 2 else np.inf
        assert _same(_slot_medians(cube, counts), _nanmedian(cube, axis=1))
    if seed >= 2:  # the guard is needed: the shortcut reads the wrong place of a slot with a missing sample
        counts = np.array([3, 3])
        cube = np.array([[[1.0], [2.0], [9.0]], [[1.0], [2.0], [3.0]]])
        cube[0, 0, 0] = np.nan
        s = np.sort(cube, axis=1)
        slots = np.arange(2)
        assert not _same(0.5 * (s[slots, (counts - 1) // 2] + s[slots, counts // 2]), _nanmedian(cube, axis=1))


def test_levels_add_gives_the_medians_of_every_slot():
    """``_Levels.add`` over blocks of uneven slots (5–7 samples per 0.1 s, a missing sample) = ``np.nanmedian``
    of each slot."""
    rng = np.random.default_rng(9)
    t = 1000.0 + np.cumsum(rng.uniform(0.014, 0.019, 600))
    x = _plates(rng, 600, 5)
    x[100, 3] = np.nan
    lv = _Levels(tuple(f"1-1-{i}" for i in range(5)))
    for i in range(0, 600, 37):
        lv.add(t[i:i + 37], x[i:i + 37], 0.1)
    slot = np.floor(t / 0.1)
    done = slot < slot[-1]
    keys = np.unique(slot[done])
    want = np.stack([np.nanmedian(x[done][slot[done] == k], axis=0) for k in keys])
    got_t = np.concatenate([c.data[0] for c in lv.sealed] + [lv.t])
    got_x = np.concatenate([c.data[1] for c in lv.sealed] + [lv.x])
    assert np.array_equal(got_t, (keys + 0.5) * 0.1) and np.array_equal(got_x, want)
