"""Per-camera tracking on the real store CCTV clip, and the field faults: ids across recordings and cameras, empty
and black frames, out-of-order frames, truncated/corrupt video, a camera that stops sending, bounded memory."""
from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest

from tests.conftest import shared_file
from vision.detector import PersonDetector
from vision.geometry import CameraModel
from vision.tracking import CameraTracker, Frame, FrameSource, SourceError, TrackSummary

AISLE = "media/store_aisle_overhead.mp4"


def needs_ultralytics() -> None:
    """Skip (naming the extra to install) where ultralytics is not installed."""
    pytest.importorskip("ultralytics", reason="needs the vision extra: pip install -e '.[vision]'")


@pytest.fixture(scope="module")
def model_path():
    needs_ultralytics()
    return shared_file("models/yolo11n_int8.onnx")


def _tracker(model_path, camera="cam-1", session="rec-A") -> CameraTracker:
    return CameraTracker(CameraModel(name=camera), PersonDetector(model_path), session)


def test_one_shopper_keeps_one_id_on_the_real_clip(model_path):
    # Frames 0-299, every 2nd: the shopper in the blue jacket is in view the whole time (checked by eye).
    tr = _tracker(model_path)
    summary = TrackSummary()
    for ft in tr.run(FrameSource(shared_file(AISLE), stride=2, max_frames=150)):
        summary.add(ft)
    assert summary.frames == 150
    longest = max(summary.intervals.values(), key=lambda iv: iv.frames)
    assert longest.frames >= 0.9 * 150, f"the longest track covers only {longest.frames} of 150 frames"
    assert len(summary.intervals) <= 6


def test_ids_do_not_continue_or_collide_across_recordings_and_cameras(model_path):
    clip = shared_file(AISLE)
    tr = _tracker(model_path, "cam-1", "rec-A")
    keys_a = {k for ft in tr.run(FrameSource(clip, max_frames=15)) for k in ft.key}
    tr.start_session("rec-B")
    first_b = next(tr.run(FrameSource(clip, max_frames=5)), None)
    keys_b = {k for ft in tr.run(FrameSource(clip, max_frames=15)) for k in ft.key}
    assert keys_a and keys_b and not keys_a & keys_b
    assert all(k.startswith("cam-1:rec-B:") for k in keys_b)
    assert first_b is None or len(first_b) == 0 or first_b.raw_id.min() == 1  # a fresh tracker, not a continuation
    # a second camera in the same worker process: its own tracker, raw ids may repeat, keys never do
    other = _tracker(model_path, "cam-2", "rec-B")
    keys_c = {k for ft in other.run(FrameSource(clip, max_frames=15)) for k in ft.key}
    raw = lambda ks: {k.rsplit(":", 1)[1] for k in ks}  # noqa: E731
    assert raw(keys_c) & raw(keys_b) and not keys_c & keys_b


def test_black_empty_and_out_of_order_frames_do_not_stop_tracking(model_path, caplog):
    tr = _tracker(model_path)
    frames = list(FrameSource(shared_file(AISLE), max_frames=6))
    assert len(tr.step(frames[0])) >= 1
    black = Frame(1, frames[1].t, np.zeros_like(frames[1].image))
    assert len(tr.step(black)) == 0  # no detections: no crash, no tracks
    with caplog.at_level(logging.WARNING, logger="vision.tracking"):
        assert tr.step(Frame(2, frames[0].t, frames[2].image)) is None  # older than the last frame
        assert tr.step(Frame(3, frames[3].t, np.zeros((0, 0, 3), np.uint8))) is None
    assert "out of order" in caplog.text and "not a BGR image" in caplog.text
    resumed = [tr.step(f) for f in frames[4:]]
    assert all(r is not None and len(r) >= 1 for r in resumed)


def test_truncated_and_corrupt_video(tmp_path, caplog):
    data = shared_file(AISLE).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 5])
    with caplog.at_level(logging.WARNING, logger="vision.tracking"):
        src = FrameSource(cut, stride=10)
        n = sum(1 for _ in src)
    assert 0 < n < 54
    assert any("truncated or corrupt" in p for p in src.problems)
    assert "truncated or corrupt" in caplog.text
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource(junk)
    with pytest.raises(SourceError, match="does not exist"):
        FrameSource(tmp_path / "missing.mp4")


class _StallingCapture:
    """A live camera that sends 3 frames, stops, and sends 2 more after one reconnect."""

    opened = 0

    def __init__(self, frames):
        self.frames = frames
        _StallingCapture.opened += 1

    def isOpened(self):
        return True

    def get(self, prop):
        return {3: 64.0, 4: 48.0, 5: 10.0}.get(prop, 0.0)

    def grab(self):
        return bool(self.frames)

    def retrieve(self):
        return True, self.frames.pop(0)

    def release(self):
        pass


def test_a_camera_that_stops_sending_is_reopened(monkeypatch, caplog):
    batches = [[np.zeros((48, 64, 3), np.uint8)] * 0, [np.zeros((48, 64, 3), np.uint8)] * 3,
               [np.zeros((48, 64, 3), np.uint8)] * 2]
    monkeypatch.setattr(FrameSource, "_open", lambda self: _StallingCapture(batches.pop(0) if batches else []))
    with caplog.at_level(logging.WARNING, logger="vision.tracking"):
        src = FrameSource("rtsp://camera.invalid/stream", reconnects=2, retry_s=0.0, name="door")
        frames = list(src)
    assert len(frames) == 5
    assert "stopped sending after frame 2; reconnecting" in caplog.text
    assert "gave up" in caplog.text


def test_unreadable_image_in_a_folder_is_skipped(tmp_path):
    import cv2

    img = cv2.imread(str(shared_file("datasets/mot15/TUD-Campus/img1/000001.jpg")))
    cv2.imwrite(str(tmp_path / "000001.jpg"), img)
    (tmp_path / "000002.jpg").write_bytes(b"broken")
    cv2.imwrite(str(tmp_path / "000003.jpg"), img)
    src = FrameSource(tmp_path, fps=25)
    assert [f.index for f in src] == [0, 2]
    assert "frame 1 (000002.jpg) is unreadable" in src.problems[0]


def test_decoding_streams_with_bounded_memory():
    src = FrameSource(shared_file("media/crowd_overhead.mp4"))
    tracemalloc.start()
    n = 0
    for _frame in src:
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n >= 340  # the container says 341; 340 decode (its count is an estimate)
    assert peak < 30 * 640 * 360 * 3  # a few frames' worth, not the clip's 341 frames
