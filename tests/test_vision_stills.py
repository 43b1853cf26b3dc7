"""Real ceiling-camera stills of the AutoCheckout store: person detection, floor projection through the store's
own calibration, and multi-camera association (plus association's hand-over rules on constructed tracks)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.conftest import shared_file
from vision.association import ShopperAssociator
from vision.geometry import CameraModel, spread_m
from vision.tracking import frame_tracks

STILLS = "datasets/autocheckout/camera_stills/camera_{}.png"






@pytest.fixture(scope="module")
def detections(person_detector):
    cal = json.loads(shared_file("datasets/autocheckout/store_meta/calibration.json").read_text())
    out = {}
    for i in range(1, 7):
        img = cv2.imread(str(shared_file(STILLS.format(i))))
        cam = CameraModel.from_autocheckout(str(i), cal["cameras"][str(i)], width=img.shape[1], height=img.shape[0])
        out[i] = (cam, person_detector.detect(img), img.shape[:2])
    return out, cal["world_ltrb"]


def test_the_shopper_is_found_where_visible(detections):
    dets, _ = detections
    # One shopper in the store; by eye they are visible in stills 1, 2, 3 (head only, bottom edge), 5 and 6, and
    # not in 4. Exactly one person must be found in each still that shows them, none in still 4.
    for i in (1, 2, 3, 5, 6):
        assert len(dets[i][1]) == 1, f"camera {i}: {len(dets[i][1])} people"
        assert dets[i][1].confidence[0] > 0.4
        assert dets[i][1].hands_source == "approx-box"
    assert len(dets[4][1]) == 0


def test_floor_positions_through_the_store_calibration(detections):
    dets, ltrb = detections
    floor = {}
    for i, (cam, det, shape) in dets.items():
        det = type(det)(det.xyxy, det.confidence, np.arange(1, len(det) + 1), det.wrists, det.wrist_score,
                        det.hands_source)
        ft = frame_tracks(cam, "stills", 0, 0.0, det, shape)
        if len(ft):
            floor[i] = ft.floor_xy[0]
    assert np.isnan(floor[3]).all()  # feet cut off by the frame edge: no floor point
    placed = {i: p for i, p in floor.items() if np.isfinite(p).all()}
    assert sorted(placed) == [1, 2, 5, 6]
    lo, hi = np.array(ltrb[:2]) * 0.0254, np.array(ltrb[2:]) * 0.0254
    for i, p in placed.items():
        assert (lo <= p).all() and (p <= hi).all(), f"camera {i} puts the shopper outside the store at {p}"
    spread = spread_m(np.array(list(placed.values())))
    print(f"floor positions {({i: np.round(p, 2).tolist() for i, p in placed.items()})} spread {100 * spread:.0f} cm")
    # Measured: 1.4 m around the median; the published calibration does not register with these stills (its
    # shelves project 0.5-1 m off the shelves in the images), so the stills cannot show a tighter spread.
    assert spread < 2.0


def _feed(assoc, camera, key, t0, t1, start, end, hz=10):
    ts = np.arange(t0, t1, 1 / hz)
    for t in ts:
        a = (t - t0) / max(t1 - t0, 1e-9)
        assoc.add(camera, key, float(t), np.asarray(start) + a * (np.asarray(end) - np.asarray(start)))


def test_association_joins_cameras_and_survives_handover():
    assoc = ShopperAssociator(gate_m=1.0, max_gap_s=2.0)
    _feed(assoc, "c1", "c1:s:1", 0.0, 5.0, (0, 0), (4, 0))            # walks along x under camera 1
    _feed(assoc, "c2", "c2:s:1", 0.0, 5.0, (0.2, 0.1), (4.2, 0.1))    # camera 2 sees the same person (20 cm off)
    _feed(assoc, "c3", "c3:s:7", 5.5, 9.0, (4.3, 0.2), (6, 2))       # leaves 1 and 2, appears in camera 3
    _feed(assoc, "c1", "c1:s:2", 0.0, 9.0, (0, 3), (0, 6))            # someone else, far away
    assoc.flush()
    a = assoc.assignments
    assert a["c1:s:1"] == a["c2:s:1"] == a["c3:s:7"]
    assert a["c1:s:2"] != a["c1:s:1"]
    assert len(assoc.shopper_ids) == 2


def test_one_camera_never_sees_one_shopper_twice():
    assoc = ShopperAssociator(gate_m=1.0)
    _feed(assoc, "c1", "c1:s:1", 0.0, 2.0, (0, 0), (1, 0))
    _feed(assoc, "c1", "c1:s:2", 0.5, 2.0, (0.3, 0.3), (1.3, 0.3))  # close, but the same camera at the same time
    assoc.flush()
    assert assoc.shopper_of("c1:s:1") != assoc.shopper_of("c1:s:2")


def test_a_gap_longer_than_max_gap_starts_a_new_shopper():
    assoc = ShopperAssociator(gate_m=1.0, max_gap_s=2.0)
    _feed(assoc, "c1", "c1:s:1", 0.0, 1.0, (0, 0), (0, 0))
    _feed(assoc, "c2", "c2:s:1", 10.0, 11.0, (0, 0), (0, 0))
    assoc.flush()
    assert assoc.shopper_of("c1:s:1") != assoc.shopper_of("c2:s:1")
