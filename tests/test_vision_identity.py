"""Id switches between neighbouring shopper tracks: found from motion continuity and undone (vision.identity)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from carts.loop_window import ObservationWindow
from store.recording import TrackObservations
from vision.identity import Swap, apply_swaps, find_swaps, swaps_of
from vision.identity_frames import BodyFrames, FramedBodies, body_positions

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


def test_positions_kept_per_track_are_those_of_the_window_and_find_the_same_swaps():
    """vision.identity_frames.BodyFrames (the store loop's per-track body rows): for any window and any track subset, the
    per-frame positions are exactly those regrouped from the window's rows, through pruning, with 15 Hz sightings
    (two in some 0.1 s frames), tracks with only a head, and necks missing for a while; find_swaps on a
    FramedBodies finds the same switches as on the plain rows."""
    t = np.round(np.arange(0.0, 60.0, 1 / 15), 4)
    rng = np.random.default_rng(3)
    paths = {f"{k}": np.c_[np.linspace(0, 6, t.size) + k * 0.4, np.full(t.size, -0.7 + 0.1 * k)] for k in range(6)}
    obs = walkers(paths, t, swaps=[("1", "2", 20.0, 23.0), ("3", "4", 40.0, 70.0)], seed=3)
    head = obs.keypoint.copy()
    head[(obs.track_id == "5") | ((obs.track_id == "0") & (obs.t > 30) & (obs.t < 35))] = "head"
    obs = TrackObservations(obs.track_id, obs.t, head, obs.xyz, obs.score)
    obs = obs[np.argsort(obs.t, kind="stable")]
    frames, window = BodyFrames(), ObservationWindow()
    checked = swaps_seen = 0
    for s in np.arange(0.0, 60.0, 0.5):
        chunk = obs[(obs.t >= s) & (obs.t < s + 0.5)]
        frames.add(chunk)
        window.add(chunk)
        if s > 30 and s % 5 == 0:
            frames.prune(s - 25)
            window.prune(s - 25)
        lo, hi = s - rng.uniform(0, 40), s + rng.uniform(0, 0.5)
        rows = window.between(lo, hi)
        tracks = None if s % 2 == 0 else ["0", "1", "2", "5"]
        sub = rows if tracks is None else rows[np.isin(rows.track_id, tracks)]
        want, got = body_positions(sub, 0.1), frames.positions(lo, hi, tracks)
        assert list(want) == list(got)
        for k in want:
            assert np.array_equal(want[k][0], got[k][0]) and np.array_equal(want[k][1], got[k][1])
        framed = FramedBodies(rows.track_id, rows.t, rows.keypoint, rows.xyz, rows.score, frames=frames, t0=lo, t1=hi)
        plain = find_swaps(rows, involving=["1", "3"])
        assert find_swaps(framed, involving=["1", "3"]) == plain
        assert find_swaps(framed.between(lo + 5, hi)) == find_swaps(rows.between(lo + 5, hi))
        checked += 1
        swaps_seen += bool(plain)
    assert checked == 120 and swaps_seen > 10


def test_positions_of_rows_come_late_or_asked_twice_are_those_of_the_window():
    """vision.identity_frames.BodyFrames: rows added out of time order (a camera's late batch) and a window asked for
    again after more rows came (its answer kept between additions) still give exactly the positions regrouped
    from the window's rows, with the tracks placed by their head reported both times."""
    t = np.round(np.arange(0.0, 20.0, 1 / 15), 4)
    paths = {f"{k}": np.c_[np.linspace(0, 4, t.size) + k * 0.5, np.full(t.size, 0.2 * k)] for k in range(4)}
    obs = walkers(paths, t, seed=5)
    head = obs.keypoint.copy()
    head[obs.track_id == "3"] = "head"
    obs = TrackObservations(obs.track_id, obs.t, head, obs.xyz, obs.score)
    rng = np.random.default_rng(5)
    frames, window = BodyFrames(), ObservationWindow()
    for s in np.arange(0.0, 20.0, 2.0):
        chunk = obs[(obs.t >= s) & (obs.t < s + 2.0)]
        chunk = chunk[rng.permutation(len(chunk))] if s in (4.0, 10.0) else chunk  # late rows, out of order
        frames.add(chunk)
        window.add(chunk)
        for lo, hi in ((0.0, 20.0), (max(0.0, s - 3.3), s + 2.0)):
            want = body_positions(window.between(lo, hi), 0.1)
            for _ in range(2):  # the second answer is the one kept
                second: set[str] = set()
                got = frames.positions(lo, hi, None, second=second)
                assert list(want) == list(got) and second == {"3"}
                for k in want:
                    assert np.array_equal(want[k][0], got[k][0]) and np.array_equal(want[k][1], got[k][1])


def test_swaps_of_a_track_read_its_neighbours_only_and_find_every_swap_of_its_own():
    """vision.identity.swaps_of (the store loop's billing wait) reads only the tracks that came near the asked one
    (BodyFrames.near): it finds exactly the switches of that track that reading every pair finds, whatever the
    window; a track placed by its head far away does not hold the answer back, one placed by its head nearby does
    (None); and the neighbours picked are a superset of every track within reach in some frame."""
    t = np.round(np.arange(0.0, 40.0, 1 / 15), 4)
    paths = {f"{k}": np.c_[np.linspace(0, 6, t.size) + k * 0.4, np.full(t.size, -0.7 + 0.1 * k)] for k in range(5)}
    paths["far"] = np.c_[np.linspace(0, 6, t.size), np.full(t.size, 30.0)]  # another aisle
    obs = walkers(paths, t, swaps=[("1", "2", 12.0, 15.0), ("3", "4", 25.0, 60.0)], seed=4)
    frames = BodyFrames()
    for s in np.arange(0.0, 40.0, 0.5):
        frames.add(obs[(obs.t >= s) & (obs.t < s + 0.5)])
    empty = TrackObservations.empty()
    checked = 0
    for lo, hi in ((0.0, 40.0), (10.0, 16.0), (20.0, 33.3), (14.2, 14.9)):
        framed = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=frames,
                              t0=lo, t1=hi)
        every = find_swaps(obs.between(lo, hi))
        for x in ("1", "2", "3", "far"):
            mine = sorted((sw for sw in every if x in (sw.a, sw.b)), key=lambda s: (s.t_from, s.a, s.b))
            got = sorted(swaps_of(framed, [x]), key=lambda s: (s.t_from, s.a, s.b))
            assert got == mine
            checked += bool(mine)
            pos = frames.positions(lo, hi)
            near = frames.near(lo, hi, [x], 1.0)
            for y, (fy, xy_y) in pos.items():
                fx, xy_x = pos[x]
                both, ix, iy = np.intersect1d(fx, fy, return_indices=True)
                if both.size and (np.hypot(*(xy_x[ix] - xy_y[iy]).T) <= 1.0).any():
                    assert y in near
    assert checked >= 3
    # open and far-off bounds read the seconds kept only (an epoch-long window must not size an array by it)
    assert frames.near(-math.inf, math.inf, ["1"], 1.0) == frames.near(0.0, 40.0, ["1"], 1.0) >= {"1", "2"}
    assert frames.near(-1e9, 1e10, ["far"], 1.0) == {"far"} and frames.near(100.0, 200.0, ["1"], 1.0) == set()
    assert find_swaps(FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=frames),
                      involving=["1"]) == [sw for sw in find_swaps(obs) if "1" in (sw.a, sw.b)]
    head = obs.keypoint.copy()
    head[obs.track_id == "far"] = "head"
    framed_far = BodyFrames()
    framed_far.add(TrackObservations(obs.track_id, obs.t, head, obs.xyz, obs.score))
    window = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=framed_far,
                          t0=10.0, t1=16.0)
    assert swaps_of(window, ["1"]) is not None and swaps_of(window, ["far"]) is None
    head[obs.track_id == "2"] = "head"
    framed_near = BodyFrames()
    framed_near.add(TrackObservations(obs.track_id, obs.t, head, obs.xyz, obs.score))
    window = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=framed_near,
                          t0=10.0, t1=16.0)
    assert swaps_of(window, ["1"]) is None


def test_swaps_of_kept_between_asks_is_what_reading_the_window_anew_gives():
    """vision.identity.swaps_of keeps its answers in the BodyFrames (the billing wait asks the same tracks each
    step over windows whose end moves with the clock): on a session fed step by step, with rows of a track come
    back after leaving, late rows from before a track left, a track beside one at a window's start come back placed by
    its head, and pruning, every answer equals the one read with nothing kept, and kept answers are given."""
    t = np.round(np.arange(0.0, 60.0, 1 / 15), 4)
    paths = {f"{k}": np.c_[np.linspace(0, 6, t.size) + k * 0.4, np.full(t.size, -0.7 + 0.1 * k)] for k in range(5)}
    obs = walkers(paths, t, swaps=[("1", "2", 12.0, 15.0), ("3", "4", 25.0, 32.0), ("0", "2", 45.0, 48.0)],
                  seed=7)
    gone = ((obs.track_id == "1") & (obs.t > 20.0)) | ((obs.track_id == "3") & (obs.t > 35.0))
    back = (obs.track_id == "0") & (obs.t > 18.0) & (obs.t < 40.0)  # track 0 leaves at 18 s and comes back at 40
    head = obs.keypoint.copy()
    late = (obs.track_id == "4") & (obs.t > 44.0) & (obs.t < 44.5)  # a camera's rows of 44 s come at 50 s
    obs = TrackObservations(obs.track_id, obs.t, head, obs.xyz, obs.score)[~gone & ~back]
    # a track beside 1 from 13.5 to 13.54 s (before a window from 13.55 s, in its first second) that comes back at
    # 40 s placed by its head: from then the window holds a neighbour placed by its head (None)
    tg = t[((t >= 13.5) & (t < 13.55)) | (t >= 40.0)]
    ghost = TrackObservations(np.array(["g"] * tg.size, dtype=object), tg,
                              np.where(tg < 40.0, "neck", "head").astype(object),
                              np.c_[np.full(tg.size, 1.75), np.full(tg.size, -0.3), np.full(tg.size, 1.45)],
                              np.full(tg.size, 0.9))
    frames = BodyFrames()
    empty = TrackObservations.empty()

    def window(lo, hi):
        return FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=frames,
                            t0=lo, t1=hi)

    asked = kept = 0
    late_rows = obs[(obs.track_id == "4") & (obs.t > 44.0) & (obs.t < 44.5)]
    obs_now = obs[~((obs.track_id == "4") & (obs.t > 44.0) & (obs.t < 44.5))]
    del late
    tz = t[(t >= 30.0) & (t < 34.0)]
    late_head = TrackObservations(np.array(["z"] * tz.size, dtype=object), tz, np.array(["head"] * tz.size, dtype=object),
                                  np.c_[6 * tz / 60 + 1.2, np.full(tz.size, -0.1), np.full(tz.size, 1.45)],
                                  np.full(tz.size, 0.9))
    for s in np.round(np.arange(0.0, 60.0, 0.5), 1):
        frames.add(obs_now[(obs_now.t >= s) & (obs_now.t < s + 0.5)])
        frames.add(ghost[(ghost.t >= s) & (ghost.t < s + 0.5)])
        if s == 50.0:
            frames.add(late_rows)
        if s == 45.0:  # a camera's rows of 30–34 s, beside track 3 (gone at 35 s) and placed by its head: None
            frames.add(late_head)
        if s in (30.0, 45.0):  # the first cuts the 12–15 s switch of 1 and 2 in two
            frames.prune({30.0: 13.5, 45.0: 20.0}[s])
        for lo, hi in ((0.5, s + 1.5), (10.0, s + 1.5), (10.0, 16.0), (22.0, s + 1.5), (13.55, s + 1.5),
                       (max(0.0, s - 20.0), s)):
            for x in ("0", "1", "2", "3", "4"):
                w = window(lo, hi)
                before = frames._swaps.get(((x,), lo, (0.1, 1.0, 0.25, 2.5, 0.5, 0.2, 1.0, 10, 5.0)))
                got = swaps_of(w, [x])
                after = frames._swaps.get(((x,), lo, (0.1, 1.0, 0.25, 2.5, 0.5, 0.2, 1.0, 10, 5.0)))
                kept += before is not None and after is before
                held, frames._swaps = frames._swaps, {}
                fresh = swaps_of(w, [x])
                frames._swaps = held
                asked += 1
                if fresh is None:
                    assert got is None, (x, lo, hi, s)
                else:
                    assert [(v.a, v.b, v.t_from, v.t_to, v.end_seen) for v in got] == \
                        [(v.a, v.b, v.t_from, v.t_to, v.end_seen) for v in fresh], (x, lo, hi, s)
    assert asked == 120 * 30 and kept >= 300


def test_near_boxes_kept_for_a_window_are_what_reading_them_anew_gives():
    """BodyFrames.near keeps a window's boxes until the rows change (swaps_of and the id-switch repair ask one
    window for several tracks in a row): on a session fed step by step, with a chain of switches (1–2, 2–3, 3–4),
    a track placed by its head coming beside them, one beside track 1 for its first 2 s only, and pruning between
    asks of the same window, every neighbourhood and every swaps_of answer (its order included) equals the one
    read with nothing kept, and kept boxes are read."""
    t = np.round(np.arange(0.0, 40.0, 1 / 15), 4)
    paths = {f"{k}": np.c_[np.linspace(0, 6, t.size) + k * 0.4, np.full(t.size, -0.7 + 0.1 * k)] for k in range(5)}
    # beside 1 for its first 2 s only, then in another aisle: a prune from 3 s on takes it out of 1's neighbours
    # over a window from 0 s
    paths["e"] = np.c_[np.linspace(0, 6, t.size) + 0.7, np.where(t < 2.0, -0.3, 20.0)]
    obs = walkers(paths, t, swaps=[("1", "2", 8.0, 11.0), ("2", "3", 18.0, 21.0), ("3", "4", 27.0, 30.0)], seed=5)
    th = t[(t >= 33.0)]
    head = TrackObservations(np.array(["h"] * th.size, dtype=object), th, np.array(["head"] * th.size, dtype=object),
                             np.c_[6 * th / 40 + 0.6, np.full(th.size, -0.6), np.full(th.size, 1.45)],
                             np.full(th.size, 0.9))
    frames = BodyFrames()
    empty = TrackObservations.empty()
    seen: list[bool] = []

    def ask(lo, hi, x):
        w = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=frames, t0=lo, t1=hi)
        frames._swaps = {}  # the answers kept per track: not this test's
        got = swaps_of(w, [x])
        near = frames.near(lo, hi, [x], 1.5)
        seen.append("e" in near)
        held, frames._near_cut, frames._swaps = frames._near_cut, {}, {}
        assert frames.near(lo, hi, [x], 1.5) == near, (x, lo, hi)
        fresh = swaps_of(w, [x])
        frames._swaps, frames._near_cut = {}, held
        return got, fresh

    kept = asked = nones = swapped = 0
    for s in np.round(np.arange(0.0, 40.0, 1.0), 1):
        frames.near(0.0, 100.0, ["1"], 1.5)  # a window's boxes kept before rows come (h's first at 33 s)
        frames.add(obs[(obs.t >= s) & (obs.t < s + 1.0)])
        frames.add(head[(head.t >= s) & (head.t < s + 1.0)])
        for rounds in range(2):
            if rounds and s in (15.0, 25.0, 35.0):
                frames.prune(s - 12.0)  # between asks of the same windows: cuts a switch read before
            elif rounds:
                continue
            for lo, hi in ((0.0, 100.0), (5.0, s + 0.5), (max(0.0, s - 10.0), s + 0.5)):
                for x in ("1", "2", "3", "4", "0", "2"):
                    kept += (lo, hi) in frames._near_cut
                    got, fresh = ask(lo, hi, x)
                    asked += 1
                    if fresh is None:
                        nones += 1
                        assert got is None, (x, lo, hi, s)
                    else:
                        assert got is not None, (x, lo, hi, s)
                        swapped += bool(fresh)
                        assert [(v.a, v.b, v.t_from, v.t_to, v.end_seen) for v in got] == \
                            [(v.a, v.b, v.t_from, v.t_to, v.end_seen) for v in fresh], (x, lo, hi, s, rounds)
    assert asked == 43 * 3 * 6 and kept >= 500 and nones >= 100 and swapped >= 200
    assert any(seen) and not all(seen)


def test_positions_from_kept_frames_are_bitwise_those_of_the_window():
    """BodyFrames keeps each track's mean position per frame between additions and reads a window from it, summing
    only the frames an end of the window cuts: on rows fed in pieces (two rows to a frame at 15 Hz and 0.1 s frames
    half the time, a track without a neck for a stretch), every window asked, cut anywhere, gives bit for bit the
    positions regrouped from the window's rows, and says alike which tracks their head places."""
    t = np.round(np.arange(0.0, 12.0, 1 / 15), 4)
    paths = {f"{k}": np.c_[np.linspace(0, 3, t.size) + k * 0.5, np.full(t.size, 0.3 * k)] for k in range(3)}
    neck = walkers(paths, t, seed=9)
    head = walkers(paths, t, seed=10)
    head = TrackObservations(head.track_id, head.t, np.array(["head"] * len(head), dtype=object), head.xyz, head.score)
    obs = TrackObservations(*(np.concatenate([getattr(o, f) for o in (neck, head)])
                              for f in ("track_id", "t", "keypoint", "xyz", "score")))
    obs = obs[np.argsort(obs.t, kind="stable")]
    obs = obs[~((obs.track_id == "2") & (obs.keypoint == "neck") & (obs.t > 4.0) & (obs.t < 8.0))]
    rng = np.random.default_rng(3)
    frames, window = BodyFrames(), ObservationWindow()
    compared = 0
    for s in np.round(np.arange(0.0, 12.0, 0.7), 1):
        chunk = obs[(obs.t >= s) & (obs.t < s + 0.7)]
        frames.add(chunk)
        window.add(chunk)
        for lo, hi in [(0.0, s + 0.7), (s - 1.0, s + 0.7), *np.sort(rng.uniform(-0.5, s + 1.0, (6, 2)), axis=1)]:
            for _ in range(2):  # the second reads the frames kept by the first
                second: set[str] = set()
                got = frames.positions(lo, hi, ["0", "1", "2"], second=second)
                want = body_positions(window.between(lo, hi), 0.1)
                rows = window.between(lo, hi)
                want_second = {x for x in ("0", "1", "2") if (rows.track_id == x).any()
                               and not ((rows.track_id == x) & (rows.keypoint == "neck")).any()}
                assert list(got) == list(want) and second == want_second
                for k in want:
                    assert got[k][0].tobytes() == want[k][0].tobytes() and got[k][1].tobytes() == want[k][1].tobytes()
                    compared += 1
    assert compared > 200


def test_a_chain_of_switches_read_round_by_round_gives_the_swaps_of_reading_it_anew():
    """vision.identity._framed_swaps_involving reads a chain of switches (0 with 1, 1 with 2, …, in a queue 0.45 m
    apart) in rounds, each adding the neighbours of the tracks the last one reached; later rounds read the new
    pairs only and give the pairs read before from what they kept (_PairMemo). Whatever the window and whichever
    track the chain is entered from, the swaps (end_seen too) are exactly those of reading the window's rows anew
    (find_swaps on plain rows keeps nothing), each once, and of every pair read, narrowed to the chain reached;
    rounds after the first do reuse kept pairs."""
    import vision.identity as identity

    t = np.round(np.arange(0.0, 40.0, 1 / HZ), 3)
    n = 10
    paths = {f"q{k}": np.c_[np.full(t.size, 0.45 * k), np.full(t.size, -0.7)] for k in range(n)}
    paths["far"] = np.c_[np.full(t.size, 0.0), np.full(t.size, 30.0)]
    chain = [(f"q{k}", f"q{k + 1}", 2.0 + 3.5 * k, 3.5 + 3.5 * k) for k in range(n - 1)]
    obs = walkers(paths, t, swaps=chain, seed=2)
    obs = obs[np.argsort(obs.t, kind="stable")]
    frames = BodyFrames()
    for s in np.arange(0.0, 40.0, 0.5):
        frames.add(obs[(obs.t >= s) & (obs.t < s + 0.5)])
    empty = TrackObservations.empty()
    reused = []
    plain_si = identity._swaps_involving

    def spy(pos, names, involving, params, near_m, expand=True, memo=None):
        if memo is not None:
            reused.append(bool(memo.known.any()))
        return plain_si(pos, names, involving, params, near_m, expand, memo=memo)

    def key(found):
        return [(v.a, v.b, v.t_from, v.t_to, v.end_seen) for v in found]

    identity._swaps_involving = spy
    try:
        checked = 0
        for lo, hi in ((0.0, 40.0), (1.0, 25.3), (9.95, 33.0)):
            rows = obs.between(lo, hi)
            framed = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score, frames=frames,
                                  t0=lo, t1=hi)
            every = find_swaps(rows)
            for start in (["q0"], ["q4"], ["q0", "q9"], ["far"]):
                got = find_swaps(framed, involving=start)
                assert key(got) == key(find_swaps(rows, involving=start)), (lo, hi, start)
                assert len(set(key(got))) == len(got)
                reach = set(start)
                while True:  # the chain reached from start, through every pair read
                    more = reach | {x for sw in every if {sw.a, sw.b} & reach for x in (sw.a, sw.b)}
                    if more == reach:
                        break
                    reach = more
                assert key(got) == key([sw for sw in every if sw.a in reach]), (lo, hi, start)
                checked += len(got) >= 5
            # one round read twice with what it kept: each pair's swaps once, both times, as read with nothing kept
            pos = frames.positions(lo, hi)
            params = (0.1, 1.0, 0.25, 2.5, 0.5, 0.2, 10, 10, 50)
            fresh = sorted(key(identity._swaps_involving(pos, sorted(pos), ["q0", "q5"], params, 1.0)))
            memo = identity._PairMemo()
            for _ in range(2):
                again = identity._swaps_involving(pos, sorted(pos), ["q0", "q5"], params, 1.0, memo=memo)
                assert sorted(key(again)) == fresh and len(fresh) >= 5
    finally:
        identity._swaps_involving = plain_si
    assert checked >= 6 and sum(reused) >= 10 + 3
