"""Activity in fusion (carts.fusion_activity): a hand that passes the bin while its shopper walks counts less than
one that reached in while its shopper stood (FusionConfig.walking_factor, off by default)."""
from __future__ import annotations

import numpy as np
import pytest

from carts.fusion_config import FusionConfig
from carts.fusion_activity import track_speeds
from store.recording import TrackObservations
from tests.test_fusion_decide import T, cat, decide, event, reach

N = T.size


def body(track, x):
    """Neck keypoints of ``track`` at x (metres along the shelf; an array: moving), 0.5 m in front of it."""
    x = np.broadcast_to(np.asarray(x, float), (N,))
    return TrackObservations(np.array([track] * N, dtype=object), T.copy(), np.array(["neck"] * N, dtype=object),
                             np.c_[x, np.full(N, -0.5), np.full(N, 1.5)], np.full(N, 0.9))


def passer(track, speed, at_bin_s=2.5, x_bin=1.0):
    """A shopper walking along the shelf at ``speed`` m/s, a hand swinging 0.12 m in front of the shelf edge,
    passing bin A's centre at ``at_bin_s``: (hands, body)."""
    x = x_bin + speed * (T - at_bin_s)
    hand = TrackObservations(np.array([track] * N, dtype=object), T.copy(), np.array(["l_wrist"] * N, dtype=object),
                             np.c_[x, np.full(N, -0.12), np.full(N, 1.1)], np.full(N, 0.9))
    return hand, body(track, x)


def scene(speed):
    hand_b, body_b = passer("b", speed)
    hands = cat(reach("a", 1.0, t_in=1.9, t_out=3.1, rest_y=-0.3), hand_b)
    return event(["A"], -301.0), hands, cat(body("a", 1.0), body_b)


def test_a_hand_passing_while_walking_counts_less_than_a_reach():
    ev, hands, bodies = scene(0.5)
    off = decide(ev, hands, bodies=bodies)                                   # the default: off
    assert off.review and off.track_id == "a" and off.confidence < 0.6
    on = decide(ev, hands, bodies=bodies, config=FusionConfig(walking_factor=0.3))
    assert (on.track_id, on.review, on.shares) == ("a", False, (("a", 1),)) and on.confidence > 0.75
    scores = {c.track_id: c.score for c in on.candidates}
    assert scores["b"] == pytest.approx(0.3 * {c.track_id: c.score for c in off.candidates}["b"])
    assert scores["a"] == pytest.approx({c.track_id: c.score for c in off.candidates}["a"])   # she stood


def test_a_standing_neighbour_or_unknown_bodies_are_not_discounted():
    ev, hands, _ = scene(0.5)
    standing = cat(body("a", 1.0), body("b", 1.0))          # b's body stands still (its hand label moves)
    on = FusionConfig(walking_factor=0.3)
    assert decide(ev, hands, bodies=standing, config=on).confidence == pytest.approx(
        decide(ev, hands, bodies=standing).confidence)
    assert decide(ev, hands, config=on).confidence == pytest.approx(decide(ev, hands).confidence)   # no bodies
    assert track_speeds(standing, ["a", "b", "c"], 2.0, 3.0) == {"a": 0.0, "b": 0.0}
    assert track_speeds(scene(0.5)[2], ["b"], 2.0, 3.0)["b"] == pytest.approx(0.5)


def test_bad_walking_knobs_are_refused():
    for bad in ({"walking_factor": 0.0}, {"walking_factor": 1.5}, {"walking_speed_m_s": 0.0}):
        with pytest.raises(ValueError, match="walking"):
            FusionConfig(**bad)
