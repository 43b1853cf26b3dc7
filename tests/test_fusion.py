"""Fusion core (pure): which shopper's hand was at the bin during a shelf event."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from carts.fusion_config import BinGeometry, FusionConfig
from carts.fusion_hands import _quantile, attribute_event
from store.recording import TrackObservations


@dataclass(frozen=True)
class Ev:
    bin_codes: tuple
    t_start: float
    t_end: float


BINS = BinGeometry(
    codes=("A", "B", "R"),
    centre=np.array([[1.0, 0.2, 1.0], [1.1, 0.2, 1.0], [5.0, 5.0, 0.5]]),
    half_size=np.array([[0.05, 0.2], [0.05, 0.2], [0.05, 0.2]]),
    yaw=np.array([0.0, 0.0, math.pi / 2]),
)


def hand_path(track, t, xyz, score=0.9):
    n = len(t)
    return TrackObservations(np.array([track] * n, dtype=object), np.asarray(t, float),
                             np.array(["r_wrist"] * n, dtype=object), np.asarray(xyz, float), np.full(n, score))


def cat(*obs):
    return TrackObservations(*(np.concatenate([getattr(o, f) for o in obs])
                               for f in ("track_id", "t", "keypoint", "xyz", "score")))


def test_distance_to_an_oriented_bin():
    # inside the volume above bin A → 0; 0.1 m in front of its front edge (y = 0) → 0.1
    pts = np.array([[1.0, 0.2, 1.1], [1.0, -0.1, 1.1], [1.0, 0.2, 0.8]])
    np.testing.assert_allclose(BINS.distance(pts, "A", 0.35), [0.0, 0.1, 0.2], atol=1e-9)
    # bin R is turned 90°: its width runs along y, its depth along x
    np.testing.assert_allclose(BINS.distance(np.array([[5.0, 5.049, 0.6], [5.0, 5.1, 0.6]]), "R", 0.35),
                               [0.0, 0.05], atol=1e-9)


def test_the_reaching_shopper_gets_the_event_with_high_confidence():
    t = np.linspace(0, 4, 41)
    reach = np.where(np.abs(t - 2) < 0.5, -0.05, -0.6)
    a = hand_path("a", t, np.c_[np.full_like(t, 1.0), reach, np.full_like(t, 1.05)])
    b = hand_path("b", t, np.c_[np.full_like(t, 2.5), np.full_like(t, -0.8), np.full_like(t, 1.0)])
    att = attribute_event(Ev(("A",), 1.8, 2.3), cat(a, b), BINS)
    assert att.track_id == "a"
    assert att.confidence > 0.9
    assert att.candidates[0].distance_m == pytest.approx(0.05, abs=1e-6)


def test_two_shoppers_at_one_shelf_lower_the_confidence():
    t = np.linspace(0, 4, 41)
    a = hand_path("a", t, np.c_[np.full_like(t, 1.0), np.full_like(t, -0.05), np.full_like(t, 1.05)])
    b = hand_path("b", t, np.c_[np.full_like(t, 1.1), np.full_like(t, -0.08), np.full_like(t, 1.05)])
    att = attribute_event(Ev(("A",), 1.8, 2.3), cat(a, b), BINS)
    assert att.track_id == "a"
    assert 0.4 < att.confidence < 0.6
    assert [c.track_id for c in att.candidates] == ["a", "b"]


def test_no_hand_near_and_ineligible_tracks_give_no_candidate():
    t = np.linspace(0, 4, 41)
    far = hand_path("far", t, np.c_[np.full_like(t, 4.0), np.full_like(t, -2.0), np.full_like(t, 1.0)])
    att = attribute_event(Ev(("A",), 1.8, 2.3), far, BINS)
    assert att.track_id is None and att.confidence == 0.0 and "within" in att.reason
    near = hand_path("near", t, np.c_[np.full_like(t, 1.0), np.full_like(t, -0.05), np.full_like(t, 1.05)])
    att = attribute_event(Ev(("A",), 1.8, 2.3), near, BINS, eligible=["someone-else"])
    assert att.track_id is None and "no shopper" in att.reason


def test_only_hands_during_the_padded_event_count():
    t = np.linspace(0, 10, 101)
    # the hand was at the bin at t ≈ 1 s, long before the event at 8 s, and away during it
    y = np.where(t < 1.5, -0.05, -1.5)
    a = hand_path("a", t, np.c_[np.full_like(t, 1.0), y, np.full_like(t, 1.05)])
    att = attribute_event(Ev(("A",), 8.0, 8.5), a, BINS, FusionConfig(pad_s=1.0))
    assert att.track_id is None


def test_low_score_keypoints_are_ignored():
    t = np.linspace(0, 4, 41)
    a = hand_path("a", t, np.c_[np.full_like(t, 1.0), np.full_like(t, -0.05), np.full_like(t, 1.05)], score=0.05)
    assert attribute_event(Ev(("A",), 1.8, 2.3), a, BINS).track_id is None


def test_event_over_two_bins_uses_the_nearer():
    t = np.linspace(0, 4, 41)
    a = hand_path("a", t, np.c_[np.full_like(t, 1.1), np.full_like(t, -0.05), np.full_like(t, 1.05)])
    att = attribute_event(Ev(("A", "B"), 1.8, 2.3), a, BINS)
    assert att.candidates[0].distance_m == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(KeyError):
        attribute_event(Ev(("nope",), 1.8, 2.3), a, BINS)


def test_the_fast_quantile_is_numpys_bit_for_bit():
    rng = np.random.default_rng(7)
    for trial in range(20_000):
        x = rng.random(int(rng.integers(1, 40))) * rng.choice([1e-3, 1.0, 10.0])
        if trial % 5 == 0:
            x = np.round(x, 2)  # ties
        q = float(rng.random()) if trial % 3 else [0.0, 0.3, 0.5, 1.0][trial % 4]
        assert _quantile(x, q) == float(np.quantile(x, q)), (x, q)
    assert math.isnan(_quantile(np.array([0.1, np.nan]), 0.3))
