"""Zones: intervals with hysteresis, shelf interaction zones from the real AutoCheckout layout, hand-at-bin."""
from __future__ import annotations

import json

import numpy as np
import pytest

from store.recording import TrackObservations
from vision.zones import Zone, ZoneTracker, hand_at_bin_intervals, shelf_zones, zones_from_store

SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)


def test_zone_contains_and_rejects_bad_polygons():
    z = Zone("entry", "entry", SQUARE)
    assert z.contains([[0.5, 0.5], [1.5, 0.5], [np.nan, 0.5]]).tolist() == [True, False, False]
    with pytest.raises(ValueError):
        Zone("x", "entry", SQUARE[:2])
    with pytest.raises(ValueError):
        Zone("x", "kitchen", SQUARE)


def test_intervals_with_hysteresis():
    zt = ZoneTracker([Zone("entry", "entry", SQUARE), Zone("exit", "exit", SQUARE + [3, 0])], leave_s=0.5)
    path = [(0.0, 0.5), (0.1, 0.5), (0.2, 1.2), (0.3, 0.9), (0.4, 0.8)]  # a jitter across the edge at t=0.2
    path += [(1.0 + i * 0.1, 2.0) for i in range(5)]                       # walks out
    path += [(2.0, 3.5), (2.5, 3.5)]                                       # into the exit zone
    for t, x in path:
        zt.update("S1", t, (x, 0.5))
    ev = zt.finish()
    assert ev.zone.tolist() == ["entry", "exit"]
    assert ev.t_start.tolist() == [0.0, 2.0] and ev.t_end.tolist() == [0.4, 2.5]
    assert ev.shopper.tolist() == ["S1", "S1"]


def test_shelf_zones_from_the_real_store(benchmark1_recording):
    store = json.loads((benchmark1_recording / "store.json").read_text())
    zones = shelf_zones(store, reach_m=0.6)
    assert len(zones) == len(store["gondolas"]) == 5
    for z, g in zip(zones, store["gondolas"]):
        bins = np.array([[b["x"], b["y"]] for s in g["shelves"] for b in s["bins"]])
        assert z.contains(bins).all()  # every bin of the gondola lies in its zone
    assert len(zones_from_store(store)) == 5 + len(store["zones"])


def test_hand_at_bin_intervals():
    t = np.arange(0, 2, 0.1)
    xyz = np.tile([1.0, 0.0, 1.2], (t.size, 1))
    xyz[t >= 1.0, 0] = 5.0  # the hand leaves at t = 1.0
    obs = TrackObservations(np.array(["S1"] * t.size, dtype=object), t, np.array(["r_wrist"] * t.size, dtype=object),
                            xyz, np.ones(t.size))
    hab = hand_at_bin_intervals(obs, ("1-1-1", "1-1-2"), np.array([[1.05, 0, 1.2], [3, 0, 1.2]]), radius_m=0.2)
    assert len(hab) == 1 and hab.bin[0] == "1-1-1" and hab.shopper[0] == "S1"
    assert hab.t_in[0] == 0.0 and hab.t_out[0] == pytest.approx(0.9) and hab.min_distance_m[0] == pytest.approx(0.05)
