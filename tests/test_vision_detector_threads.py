"""ONNX Runtime threads of :class:`vision.detector.PersonDetector`: ``threads=1`` (the default: one worker process
per camera, one thread each, no spin-waiting) must really reach the session and must not change a single box
compared with ONNX Runtime's own default (``threads=0``)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import needs_ultralytics, shared_file
from vision.detector import DetectorError, PersonDetector, onnx_session_options

MODEL = "models/yolo11n_int8.onnx"
CLIP = "media/store_aisle_overhead.mp4"




@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """The first 12 frames of a real overhead clip (people visible from the first frame)."""
    cap = cv2.VideoCapture(str(shared_file(CLIP)))
    out = []
    while len(out) < 12:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    assert len(out) == 12, f"{CLIP}: only {len(out)} frames decoded"
    return out


def detector(threads: int) -> PersonDetector:
    needs_ultralytics()
    return PersonDetector(shared_file(MODEL), imgsz=320, threads=threads)


def test_session_options_say_one_thread_without_spinning():
    needs_ultralytics()
    opts = onnx_session_options(1)
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ValueError):
        onnx_session_options(0)


def test_negative_threads_are_refused():
    needs_ultralytics()
    with pytest.raises(DetectorError, match="threads"):
        PersonDetector(shared_file(MODEL), threads=-1)


def test_default_is_one_thread_and_the_session_has_it(frames):
    needs_ultralytics()
    det = PersonDetector(shared_file(MODEL), imgsz=320)  # no threads argument: the default must be 1
    assert det.threads == 1
    assert det.threads_applied is None  # no session before the first frame
    det.detect(frames[0])
    opts = det.onnx_session.get_session_options()  # read back from the running InferenceSession
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert det.threads_applied is True
    det.track(frames[1])  # tracking keeps the same predictor class, hence the same session settings
    assert det.onnx_session.get_session_options().intra_op_num_threads == 1


def test_threads_zero_keeps_onnxruntime_default(frames):
    det = detector(0)
    det.detect(frames[0])
    opts = det.onnx_session.get_session_options()
    assert opts.intra_op_num_threads == 0  # 0 = ONNX Runtime chooses (one per core)
    assert det.threads_applied is None


def test_same_boxes_with_one_thread_and_the_default(frames):
    one, default = detector(1), detector(0)
    a, b = one.detect(frames[0]), default.detect(frames[0])
    assert len(a) >= 1, "the first frame shows people"
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    # tracked over several frames too: same boxes and the same tracker ids
    one, default = detector(1), detector(0)
    tracked = 0
    for frame in frames:
        a, b = one.track(frame), default.track(frame)
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.tracker_id, b.tracker_id)
        tracked += len(a)
    assert tracked > 0, "the tracker confirmed nobody in 12 frames"
    assert one.threads_applied is True
