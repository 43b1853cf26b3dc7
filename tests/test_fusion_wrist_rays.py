"""Fusion from single-view wrist rays (``store.recording.WRIST_RAY_KEYPOINTS``, written by the video path): the
stretch of one camera's wrist ray where the wrist can be is read as its point nearest to the event's bins, a
depth-free lower bound of the hand's distance; observations without rays (keypoint sources with 3-D hands) are
left exactly as they are."""
from __future__ import annotations

import math

import numpy as np
import pytest

from carts.fusion_config import FusionConfig
from carts.fusion_hands import attribute_event, hand_evidence, wrist_ray_hands
from store.recording import TrackObservations
from tests.test_fusion import BINS, Ev, cat, hand_path


def rays(track, t, ends_a, ends_b, side="r_wrist", score=0.9):
    """One ray stretch per time: rows ``…_ray_a`` then ``…_ray_b`` (the video path's order)."""
    n = len(t)
    ka, kb = f"{side}_ray_a", f"{side}_ray_b"
    xyz = np.empty((2 * n, 3))
    xyz[0::2], xyz[1::2] = np.asarray(ends_a, float), np.asarray(ends_b, float)
    return TrackObservations(np.array([track] * 2 * n, dtype=object), np.repeat(np.asarray(t, float), 2),
                             np.array([ka, kb] * n, dtype=object), xyz, np.full(2 * n, score))


def brute_min(A, B, code, config=FusionConfig()):
    u = np.linspace(0, 1, 20001)[:, None]
    return float(BINS.distance(A + u * (B - A), code, config.clearance_m,
                               config.sigma_m / config.along_sigma_m).min())


def test_observations_without_rays_are_returned_untouched():
    t = np.linspace(0, 2, 21)
    obs = hand_path("a", t, np.c_[np.full_like(t, 1.0), np.full_like(t, -0.1), np.full_like(t, 1.1)])
    assert wrist_ray_hands(obs, ("A",), BINS) is obs


def test_a_ray_is_read_at_its_point_nearest_the_bins_a_lower_bound_of_the_hand_distance():
    # a camera at the aisle's end looks along the shelf; its ray passes 0.12 m in front of bin A's front edge
    # (y = 0) at the plate's height; the stretch within reach runs from x = 0.5 to x = 1.7
    A, B = np.array([0.5, -0.12, 1.2]), np.array([1.7, -0.12, 1.05])
    got = wrist_ray_hands(rays("a", [1.0], [A], [B]), ("A",), BINS)
    assert got.keypoint.tolist() == ["r_wrist"] and got.track_id.tolist() == ["a"] and got.t.tolist() == [1.0]
    d = float(BINS.distance(got.xyz, "A", 0.35, FusionConfig().sigma_m / FusionConfig().along_sigma_m)[0])
    assert d == pytest.approx(brute_min(A, B, "A"), abs=0.005) and d == pytest.approx(0.12, abs=0.005)
    # the point lies on the stretch, beside bin A (x 0.95–1.05)
    u = (got.xyz[0] - A) @ (B - A) / ((B - A) @ (B - A))
    assert 0 <= u <= 1 and np.linalg.norm(A + u * (B - A) - got.xyz[0]) < 1e-9
    assert 0.95 <= got.xyz[0, 0] <= 1.05
    # the same stretch read for bin B (0.1 m along) is read at bin B: its own lower bound, not bin A's point
    got_b = wrist_ray_hands(rays("a", [1.0], [A], [B]), ("B",), BINS)
    assert 1.05 <= got_b.xyz[0, 0] <= 1.15


def test_stretches_of_several_cameras_at_one_time_pair_in_row_order_and_a_lone_end_is_dropped():
    near = (np.array([0.5, -0.05, 1.1]), np.array([1.7, -0.05, 1.1]))        # passes 5 cm in front of bin A
    far = (np.array([0.5, -0.60, 1.1]), np.array([1.7, -0.60, 1.1]))         # 0.6 m in front
    both = cat(rays("a", [1.0], [near[0]], [near[1]]), rays("a", [1.0], [far[0]], [far[1]]))
    lone = TrackObservations(np.array(["a"], dtype=object), np.array([1.0]), np.array(["l_wrist_ray_a"], dtype=object),
                             np.array([[1.0, -0.1, 1.1]]), np.array([0.9]))
    got = wrist_ray_hands(cat(both, lone), ("A",), BINS)
    d = np.sort(BINS.distance(got.xyz, "A", 0.35))
    assert got.keypoint.tolist() == ["r_wrist", "r_wrist"]
    np.testing.assert_allclose(d, [0.05, 0.60], atol=0.005)


def test_a_shopper_seen_by_one_camera_only_is_attributed_by_the_ray_and_a_passer_by_is_not():
    # shopper a reaches into bin A; one camera along the shelf sees the wrist: its ray dips into the volume above
    # the plate during the change, and passes 0.5 m in front of it before and after. Shopper b's ray stays 1.5 m
    # away: never a candidate
    t = np.linspace(0, 4, 41)
    at = np.abs(t - 2) < 0.5
    y = np.where(at, 0.1, -0.5)
    obs = cat(rays("a", t, np.c_[np.full_like(t, 0.4), y, np.full_like(t, 1.3)],
                   np.c_[np.full_like(t, 1.6), y, np.full_like(t, 1.1)]),
              rays("b", t, np.c_[np.full_like(t, 0.4), np.full_like(t, -1.5), np.full_like(t, 1.3)],
                   np.c_[np.full_like(t, 1.6), np.full_like(t, -1.5), np.full_like(t, 1.1)]))
    event = Ev(("A",), 1.8, 2.3)
    ev = hand_evidence(event, obs, BINS)
    assert ev.track_id.tolist() == ["a"] and ev.distance_m[0] == pytest.approx(0.0, abs=1e-9)
    assert ev.motion_m[0] == pytest.approx(0.5, abs=0.01)        # the ray moved in and out: a reach
    att = attribute_event(event, obs, BINS)
    assert att.track_id == "a" and att.confidence > 0.9


def test_a_ray_never_counts_nearer_than_the_3d_hand_on_it():
    # the same hand seen in 3-D (a keypoint source) and as the stretch of a ray through it: the ray's distance is
    # a lower bound of the 3-D hand's
    rng = np.random.default_rng(3)
    C = np.array([3.5, 0.0, 2.45])
    for _ in range(50):
        hand = np.array([rng.uniform(0.6, 1.6), rng.uniform(-0.6, 0.1), rng.uniform(0.8, 1.6)])
        d = (hand - C) / np.linalg.norm(hand - C)
        s = np.linalg.norm(hand - C)
        A, B = C + (s - rng.uniform(0.1, 0.8)) * d, C + (s + rng.uniform(0.1, 0.8)) * d
        got = wrist_ray_hands(rays("a", [0.0], [A], [B]), ("A", "B"), BINS)
        scale = FusionConfig().sigma_m / FusionConfig().along_sigma_m
        ray_d = min(BINS.distance(got.xyz, c, 0.35, scale)[0] for c in ("A", "B"))
        hand_d = min(BINS.distance(hand[None], c, 0.35, scale)[0] for c in ("A", "B"))
        assert ray_d <= hand_d + 0.02                                   # 2 cm: the stretch is read every 2 cm
        assert math.isfinite(ray_d)
