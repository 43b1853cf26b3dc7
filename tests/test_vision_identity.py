"""Id switches between neighbouring shopper tracks: found from motion continuity and undone (vision.identity)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from store.recording import TrackObservations
from vision.identity import Swap, apply_swaps, find_swaps

HZ = 10.0


def walkers(paths, t, noise_m=0.05, swaps=(), seed=0):
    """Neck observations of people walking ``paths`` (name → (n, 2) xy), with ids exchanged over ``swaps``
    ((a, b, t_from, t_to), …) as a tracker would."""
    rng = np.random.default_rng(seed)
    ids = {k: np.array([k] * t.size, dtype=object) for k in paths}
    for a, b, t0, t1 in swaps:
        m = (t >= t0) & (t < t1)
        ids[a][m], ids[b][m] = b, a
    parts = []
    for k, xy in paths.items():
        p = xy + rng.normal(0, noise_m, xy.shape)
        parts.append(TrackObservations(ids[k], t.copy(), np.array(["neck"] * t.size, dtype=object),
                                       np.c_[p, np.full(t.size, 1.45)], np.full(t.size, 0.9)))
    return TrackObservations(*(np.concatenate([getattr(o, f) for o in parts])
                               for f in ("track_id", "t", "keypoint", "xyz", "score")))


T = np.round(np.arange(0.0, 20.0, 1 / HZ), 3)


def standing(x, y=-0.7):
    return np.c_[np.full(T.size, x), np.full(T.size, y)]


@pytest.mark.parametrize("seed", range(5))
def test_a_switch_between_neighbours_is_found_with_its_interval(seed):
    obs = walkers({"a": standing(1.0), "b": standing(1.45)}, T, swaps=[("a", "b", 6.0, 8.5)], seed=seed)
    found = find_swaps(obs)
    assert len(found) == 1
    s = found[0]
    assert {s.a, s.b} == {"a", "b"}
    assert abs(s.t_from - 6.0) <= 0.1 and abs(s.t_to - 8.5) <= 0.1
    fixed = apply_swaps(obs, found)
    for name, x in (("a", 1.0), ("b", 1.45)):
        xs = fixed.xyz[fixed.track_id == name, 0]
        assert np.all(np.abs(xs - x) < 0.25), name  # every sighting of each id is that person again


@pytest.mark.parametrize("seed", range(5))
def test_people_crossing_paths_are_not_a_switch(seed):
    # two shoppers walk towards each other along the aisle at 1.4 m/s and pass 0.3 m apart: the positions
    # cross, the ids must stay
    x = np.clip(1.4 * (T - 5.0), 0, 8)
    paths = {"a": np.c_[x, np.full(T.size, -0.6)], "b": np.c_[8 - x, np.full(T.size, -0.9)]}
    assert find_swaps(walkers(paths, T, seed=seed)) == []


def test_noisy_tracks_standing_close_give_no_switch():
    obs = walkers({"a": standing(1.0), "b": standing(1.3)}, T, noise_m=0.08, seed=3)
    assert find_swaps(obs) == []


def test_a_switch_still_on_at_the_end_lasts_to_the_end():
    obs = walkers({"a": standing(1.0), "b": standing(1.5)}, T, swaps=[("a", "b", 17.0, math.inf)], seed=1)
    (s,) = find_swaps(obs)
    assert abs(s.t_from - 17.0) <= 0.1 and s.t_to == math.inf


def test_a_switch_whose_end_is_not_seen_is_undone_for_max_swap_s_only():
    obs = walkers({"a": standing(1.0), "b": standing(1.5)}, T, swaps=[("a", "b", 5.0, math.inf)], seed=1)
    (s,) = find_swaps(obs, max_swap_s=4.0)
    assert abs(s.t_from - 5.0) <= 0.1 and abs(s.t_to - 9.0) <= 0.1


def test_apply_swaps_with_nothing_to_undo_returns_the_input():
    obs = walkers({"a": standing(1.0)}, T)
    assert apply_swaps(obs, []) is obs
    assert apply_swaps(obs, [Swap("a", "z", 0.0, 5.0)]).track_id[T < 5.0].tolist() == ["z"] * int((T < 5.0).sum())


def test_bad_parameters_are_refused():
    obs = walkers({"a": standing(1.0)}, T)
    with pytest.raises(ValueError):
        find_swaps(obs, margin_m=0)
    with pytest.raises(ValueError):
        find_swaps(obs, smooth=1.5)
