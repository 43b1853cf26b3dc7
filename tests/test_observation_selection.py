"""Selecting observation rows fast gives the rows the plain masks give: ``TrackObservations.between`` (a bisection
of rows sorted by time, views; a mask otherwise), its mask selection (columns taken by indices), the store loop's
``ObservationWindow`` (one buffer, views while its rows are in time order), and the nearest-bin distances of
``BinGeometry`` (all bins at once, bit for bit the per-bin minimum)."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from carts.fusion_config import BinGeometry
from carts.fusion_hands import _floor_distance, _groups
from carts.loop_window import ObservationWindow
from store.recording import NameCodes, TrackObservations

NAMES = np.array(["l_wrist", "r_wrist", "neck", "head"], dtype=object)


def _rows(rng: np.random.Generator, n: int, t0: float = 0.0, span: float = 10.0, *, ordered: bool = True,
          codes: bool = False) -> TrackObservations:
    t = np.round(t0 + rng.uniform(0, span, n), 1)  # rounded: many rows share a time (bounds fall on them)
    if ordered:
        t = np.sort(t)
    ids = np.array([f"t{k}" for k in rng.integers(0, 12, n)], dtype=object)
    kp = NAMES[rng.integers(0, 4, n)]
    cd = None
    if codes:
        tn = sorted(set(ids.tolist())) + ["gone"]
        ti = {x: i for i, x in enumerate(tn)}
        kn = NAMES.tolist()
        ki = {x: i for i, x in enumerate(kn)}
        cd = (NameCodes(np.array([ti[x] for x in ids], dtype=np.int32), tn, ti),
              NameCodes(np.array([ki[x] for x in kp], dtype=np.int32), kn, ki))
    return TrackObservations(ids, t, kp, rng.normal(size=(n, 3)), rng.uniform(0, 1, n), codes=cd)


def _same(a: TrackObservations, b: TrackObservations) -> None:
    assert a.track_id.tolist() == b.track_id.tolist() and a.keypoint.tolist() == b.keypoint.tolist()
    assert np.array_equal(a.t, b.t) and np.array_equal(a.xyz, b.xyz) and np.array_equal(a.score, b.score)
    assert a.xyz.shape == b.xyz.shape == (len(a), 3)
    if a.codes is not None:
        assert [a.codes[0].names[c] for c in a.codes[0].codes] == a.track_id.tolist()
        assert [a.codes[1].names[c] for c in a.codes[1].codes] == a.keypoint.tolist()


def _plain(obs: TrackObservations, t0: float, t1: float) -> TrackObservations:
    """The rows with t0 <= t <= t1 by plain fancy indexing (the reference)."""
    rows = np.array([i for i, t in enumerate(obs.t.tolist()) if t0 <= t <= t1], dtype=np.int64)
    return TrackObservations(obs.track_id[rows], obs.t[rows], obs.keypoint[rows], obs.xyz[rows].reshape(-1, 3),
                             obs.score[rows])


BOUNDS = [(2.0, 5.0), (2.05, 2.05), (3.0, 3.0), (-math.inf, 4.0), (6.0, math.inf), (-math.inf, math.inf),
          (-5.0, -1.0), (11.0, 20.0), (5.0, 2.0), (math.nan, 5.0), (2.0, math.nan), (0.0, 10.0)]


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("codes", [True, False])
def test_between_gives_the_rows_a_mask_gives_sorted_or_not(ordered, codes):
    rng = np.random.default_rng(3)
    obs = _rows(rng, 400, ordered=ordered, codes=codes)
    assert obs.time_sorted() is ordered
    for t0, t1 in BOUNDS:
        got = obs.between(t0, t1)
        _same(got, _plain(obs, t0, t1))
        assert (got.codes is not None) is codes
        if ordered and 0 < len(got) < len(obs):  # a run of sorted rows: views, no copy
            assert np.shares_memory(got.t, obs.t) and np.shares_memory(got.track_id, obs.track_id)
            assert got.time_sorted()
    assert obs.between(-math.inf, math.inf) is obs  # every row in range: the rows themselves
    one = obs.between(3.0, 3.0)
    assert len(one) >= 2 and set(one.t.tolist()) == {3.0}  # rows at the bounds are in


def test_between_of_empty_nan_times_and_one_row():
    empty = TrackObservations.empty()
    assert len(empty.between(0.0, 1.0)) == 0 and len(empty.between(-math.inf, math.inf)) == 0
    rng = np.random.default_rng(5)
    obs = _rows(rng, 50)
    t = obs.t.copy()
    t[17] = math.nan  # a NaN time: not sorted; never selected
    odd = TrackObservations(obs.track_id, t, obs.keypoint, obs.xyz, obs.score)
    assert not odd.time_sorted()
    for t0, t1 in BOUNDS:
        _same(odd.between(t0, t1), _plain(odd, t0, t1))
    lone = TrackObservations(obs.track_id[:1], np.array([math.nan]), obs.keypoint[:1], obs.xyz[:1], obs.score[:1])
    assert all(len(lone.between(t0, t1)) == 0 for t0, t1 in BOUNDS)


def test_mask_index_and_slice_selections_agree_and_keep_codes():
    rng = np.random.default_rng(7)
    obs = _rows(rng, 300, codes=True)
    mask = rng.uniform(size=300) < 0.3
    rows = np.flatnonzero(mask)
    by_mask, by_rows = obs[mask], obs[rows]
    _same(by_mask, by_rows)
    _same(by_mask, TrackObservations(obs.track_id[rows], obs.t[rows], obs.keypoint[rows], obs.xyz[rows],
                                     obs.score[rows]))
    assert by_mask.codes is not None and by_mask.time_sorted()
    _same(obs[10:40], obs[np.arange(10, 40)])
    assert np.shares_memory(obs[10:40].xyz, obs.xyz)
    back = obs[rows[::-1]]  # indices out of order: its sortedness is looked at, not inherited
    assert not back.time_sorted() or len(set(back.t.tolist())) == 1
    with pytest.raises(IndexError):
        obs[np.ones(299, dtype=bool)]
    assert len(obs[np.zeros(300, dtype=bool)]) == 0


def _window_case(rng: np.random.Generator, late_every: int) -> set[bool]:
    """Feeds a window and a plain reference alike; returns whether its rows were in order, step by step."""
    window = ObservationWindow()
    ordered: set[bool] = set()
    grown = 0
    ref = TrackObservations.empty()
    taken: list[tuple[TrackObservations, TrackObservations]] = []  # answers given earlier must not change
    for step in range(160):
        t = step * 0.5
        n = int(rng.integers(20, 90))
        late = late_every and step % late_every == late_every - 1
        part = _rows(rng, n, t0=t - (6.0 if late else 0.0), span=0.5, ordered=not (late and step % 2))
        cap = window._rows.t.shape[0]
        window.add(part)
        grown += window._rows.t.shape[0] != cap
        ordered.add(window._rows.ordered)
        ref = TrackObservations(np.concatenate([ref.track_id, part.track_id]), np.concatenate([ref.t, part.t]),
                                np.concatenate([ref.keypoint, part.keypoint]), np.vstack([ref.xyz, part.xyz]),
                                np.concatenate([ref.score, part.score]))
        if step % 7 == 6:
            before = t - 20.0
            window.prune(before)
            ref = ref[ref.t >= before]
        assert len(window) == len(ref)
        for t0, t1 in ((t - 5.0, t), (t - 12.3, t - 3.0), (t - 100.0, t + 1.0), (t + 2.0, t + 3.0), (t, t - 1)):
            got = window.between(t0, t1)
            _same(got, _plain(ref, t0, t1))
            if step % 10 == 0:
                taken.append((got, _plain(ref, t0, t1)))
    for got, want in taken:
        _same(got, want)
    restored = pickle.loads(pickle.dumps(window))
    _same(restored.between(-math.inf, math.inf), ref)
    restored.add(_rows(rng, 30, t0=80.0, span=0.5))
    assert len(restored) == len(ref) + 30
    assert grown >= 1  # the buffer moved to new columns (parts handed out before then kept their rows)
    return ordered


def test_the_window_answers_as_its_rows_in_order_through_growth_pruning_and_a_checkpoint():
    assert _window_case(np.random.default_rng(11), late_every=0) == {True}


def test_the_window_answers_alike_when_rows_come_out_of_order():
    assert _window_case(np.random.default_rng(13), late_every=9) == {True, False}


def _bins() -> BinGeometry:
    rng = np.random.default_rng(17)
    b = 6
    centre = np.column_stack([rng.uniform(0, 3, b), rng.uniform(0, 3, b), np.array([0.5, 0.75, 1.0, 0.5, 0.8, 1.6])])
    centre[1, :2] = centre[0, :2]  # a plate above another: its headroom matters
    return BinGeometry(codes=tuple(f"B{i}" for i in range(b)), centre=centre,
                       half_size=np.column_stack([rng.uniform(0.1, 0.4, b), rng.uniform(0.1, 0.3, b)]),
                       yaw=rng.uniform(-math.pi, math.pi, b))


def test_nearest_bin_distances_are_the_per_bin_minimum_bit_for_bit():
    bins = _bins()
    rng = np.random.default_rng(19)
    points = np.vstack([rng.uniform(-1, 4, size=(500, 3)), bins.centre + 0.01])
    for codes in (("B0",), ("B0", "B1"), ("B2", "B4", "B5"), bins.codes):
        for clearance, along in ((0.35, 1.0), (0.35, 2.5), (0.1, 0.7)):
            want = np.min(np.stack([bins.distance(points, c, clearance, along) for c in codes]), axis=0)
            got = bins.nearest_distance(points, codes, clearance, along)
            assert got.tobytes() == want.tobytes()
        want = np.min(np.stack([_floor_distance(bins, points, c) for c in codes]), axis=0)
        assert bins.nearest_floor_distance(points, codes).tobytes() == want.tobytes()
    assert bins.nearest_distance(np.zeros((0, 3)), ("B0", "B1"), 0.35).shape == (0,)
    with pytest.raises(KeyError):
        bins.nearest_distance(points, ("B0", "nope"), 0.35)
    with pytest.raises(ValueError):
        bins.nearest_floor_distance(points, ())


def test_may_reach_lets_through_every_point_within_reach():
    bins = _bins()
    rng = np.random.default_rng(23)
    points = np.vstack([rng.uniform(-2, 5, size=(4000, 3)), [[math.nan, 0.0, 0.0]]])
    for codes in (("B0",), ("B1", "B3"), bins.codes):
        for reach, along in ((1.2, 0.15 / 0.07), (0.45, 1.0), (0.3, 0.5), (0.0, 1.0)):
            maybe = bins.may_reach(points, codes, reach, along)
            near = bins.nearest_distance(points, codes, 0.35, along) <= reach
            floor = bins.nearest_floor_distance(points, codes) <= reach
            assert not (near & ~maybe).any() and not (floor & ~maybe).any()
            assert (~maybe).sum() > 1000  # it does leave out the far ones
    assert bins.may_reach(points, ("B0",), math.inf).all() and bins.may_reach(points, ("B0",), 1.0, 0.0).all()


def test_membership_of_some_rows_and_hand_groups_by_codes_match_the_strings():
    rng = np.random.default_rng(29)
    coded = _rows(rng, 500, codes=True)[rng.permutation(500)]
    plain = TrackObservations(coded.track_id, coded.t, coded.keypoint, coded.xyz, coded.score)
    rows = np.sort(rng.choice(500, 120, replace=False))
    for obs in (coded, plain):
        some = {"t1", "t4", "t7", "nobody"}
        assert np.array_equal(obs.track_in(some, rows), obs.track_in(some)[rows])
        assert np.array_equal(obs.keypoint_in(("neck", "l_wrist"), rows), obs.keypoint_in(("neck", "l_wrist"))[rows])
        assert obs.track_in(some, rows[:0]).shape == (0,)
    (g1, n1), (g2, n2) = _groups(coded), _groups(plain)
    assert n1 == n2 == len({(a, b) for a, b in zip(plain.track_id.tolist(), plain.keypoint.tolist())})
    assert np.array_equal(g1, g2)
    keys = [f"{a}\x00{b}" for a, b in zip(plain.track_id.tolist(), plain.keypoint.tolist())]
    assert [keys[i] for i in np.argsort(g1, kind="stable")] == sorted(keys)  # groups in the keys' order
