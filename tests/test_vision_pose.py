"""BlazePose wrists on person crops (vision.pose) on real images: ultralytics' own bus.jpg and zidane.jpg and frames
of the real shop clip. What is checked is what can be seen by eye in those images: the person's wrists lie in
their box, the person's left is on the image's right for people facing the camera, scores are probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_file
from vision.detector import PersonDetector
from vision.pose import LEFT_WRIST, RIGHT_WRIST, BlazePoseLandmarks, litert_available
from vision.tracking import FrameSource

LITE = "models/mediapipe_pose_landmark_lite.tflite"
FULL = "models/mediapipe_pose_landmark_full.tflite"
L_SHOULDER, R_SHOULDER = 11, 12


def needs_litert() -> None:
    if not litert_available():
        pytest.skip("needs ai-edge-litert (the TFLite interpreter): pip install -e '.[vision]'")


def asset(name: str) -> np.ndarray:
    ultralytics = pytest.importorskip("ultralytics", reason="needs the vision extra: pip install -e '.[vision]'")
    import cv2

    path = Path(ultralytics.__file__).parent / "assets" / name
    if not path.exists():
        pytest.skip(f"needs {path} (ships in the ultralytics wheel)")
    return cv2.imread(str(path))


@pytest.fixture(scope="module", params=[LITE, FULL], ids=["lite", "full"])
def pose(request) -> BlazePoseLandmarks:
    needs_litert()
    return BlazePoseLandmarks(shared_file(request.param))


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("ultralytics", reason="needs the vision extra: pip install -e '.[vision]'")

    return PersonDetector(shared_file("models/yolov8n_int8.onnx"))


def inside(points: np.ndarray, box: np.ndarray, margin: float = 0.0) -> bool:
    return bool(((points >= box[:2] - margin) & (points <= box[2:] + margin)).all())


# Person boxes (x1, y1, x2, y2 px) of the people facing the camera, from yolov8n on these images (checked by eye).
BUS_FRONTAL = {"crossed arms, left": (50, 398, 244, 903), "dark jacket, middle": (221, 408, 343, 856)}
ZIDANE_ANCELOTTI = (751, 45, 1126, 708)  # the man on the right, facing the camera, hands out of frame


def test_model_contract_and_shapes(pose):
    img = asset("bus.jpg")
    p = pose(img, np.array(BUS_FRONTAL["dark jacket, middle"], float))
    assert p.keypoints.shape == (33, 3) and p.presence.shape == (33,)
    assert p.wrists.shape == (2, 2) and p.wrist_score.shape == (2,)
    assert (LEFT_WRIST, RIGHT_WRIST) == (15, 16)
    assert 0.0 <= p.score <= 1.0 and ((0 <= p.keypoints[:, 2]) & (p.keypoints[:, 2] <= 1)).all()
    assert p.roi[2] - p.roi[0] == pytest.approx(p.roi[3] - p.roi[1])  # square crop


@pytest.mark.parametrize("who", sorted(BUS_FRONTAL))
def test_frontal_people_on_the_bus_image(pose, who):
    img = asset("bus.jpg")
    box = np.array(BUS_FRONTAL[who], float)
    p = pose(img, box)
    assert p.found and p.score > 0.9, f"{who}: pose-presence {p.score:.2f}"
    assert inside(p.wrists, box), f"{who}: wrists {p.wrists.round()} outside {box}"
    assert max(p.wrist_score) > 0.6  # at least one wrist is plainly visible on both men
    # facing the camera: the person's left shoulder is on the image's right
    assert p.keypoints[L_SHOULDER, 0] > p.keypoints[R_SHOULDER, 0] + 0.2 * (box[2] - box[0])
    # the shoulders sit in the upper third of the box, the wrists below them
    assert (p.keypoints[[L_SHOULDER, R_SHOULDER], 1] < box[1] + 0.35 * (box[3] - box[1])).all()
    assert (p.wrists[:, 1] > p.keypoints[[L_SHOULDER, R_SHOULDER], 1].min()).all()


def test_arms_at_the_sides_put_the_wrists_on_the_expected_sides(pose):
    # the man in the dark jacket: right hand at the belly (image left), left hand in the pocket (image right)
    img = asset("bus.jpg")
    p = pose(img, np.array(BUS_FRONTAL["dark jacket, middle"], float))
    assert p.wrists[0, 0] > p.wrists[1, 0]


def test_zidane_the_man_on_the_right_faces_the_camera(pose):
    img = asset("zidane.jpg")
    box = np.array(ZIDANE_ANCELOTTI, float)
    p = pose(img, box)
    assert p.found
    assert p.keypoints[L_SHOULDER, 0] > p.keypoints[R_SHOULDER, 0] + 80
    assert inside(p.keypoints[[L_SHOULDER, R_SHOULDER], :2], box)
    assert inside(p.wrists, box, margin=0.1 * (box[2] - box[0]))


def test_shop_clip_wrists_of_the_shopper(pose, detector):
    seen = 0
    for frame in FrameSource(shared_file("media/shop_shelf_browsing.mp4"), stride=30, max_frames=4):
        det = detector.detect(frame.image)
        box = det.xyxy[np.argmax((det.xyxy[:, 2] - det.xyxy[:, 0]) * (det.xyxy[:, 3] - det.xyxy[:, 1]))]
        p = pose(frame.image, box)
        if not p.found:
            continue
        seen += 1
        assert inside(p.wrists, box), f"frame {frame.index}: wrists {p.wrists.round()} outside {box.round()}"
        assert max(p.wrist_score) > 0.5
    assert seen >= 3  # the shopper in the foreground is found in (nearly) every sampled frame


def test_detector_pose_stage_and_fallback(detector, tmp_path):
    needs_litert()

    img = asset("bus.jpg")
    with_pose = PersonDetector(shared_file("models/yolov8n_int8.onnx"), pose=shared_file(LITE))
    assert with_pose.hands_source == "blazepose"
    det = with_pose.detect(img)
    assert len(det) >= 3 and det.hands_source in {"blazepose", "blazepose+approx-box"}
    plain = detector.detect(img)
    assert plain.hands_source == "approx-box"
    framed = [i for i in range(len(det)) if det.wrist_score[i].max() != 0.2]
    assert len(framed) >= 2  # the two men facing the camera got BlazePose wrists, not the box guess
    for i in framed:
        assert inside(det.wrists[i], det.xyxy[i])
    missing = PersonDetector(shared_file("models/yolov8n_int8.onnx"), pose=tmp_path / "nope.tflite")
    assert missing.pose is None and "does not exist" in missing.pose_problem
    assert missing.hands_source == "approx-box" and missing.detect(img).hands_source == "approx-box"
