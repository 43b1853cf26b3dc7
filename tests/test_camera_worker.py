"""The camera worker: a real store clip through detection, tracking and projection onto the floor, published as
observations for the store loop in batches; black and frozen frames carry no evidence and are not published; a
source that cannot be opened is retried, not fatal."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from carts.records import decode_obs, obs_record
from store.layout.models import Store
from vision.models import Camera
from vision.tracking import CameraTracker
from vision.worker import CameraWorker
from conftest import needs_ultralytics, shared_file
from test_vision_web import aisle_camera

pytestmark = pytest.mark.django_db


def camera_row(source: str, fps: float = 10.0) -> Camera:
    store = Store.objects.create(code="cam-shop", name="Camera shop")
    cm = aisle_camera()
    return Camera.objects.create(store=store, name="aisle", source=source, fps=fps, intrinsics=cm.K.tolist(),
                                 rotation=cm.R.tolist(), centre=cm.C.tolist())


def test_a_real_clip_is_published_as_floor_observations(person_detector):
    needs_ultralytics()
    row = camera_row(str(shared_file("media/store_aisle_overhead.mp4")), fps=0)
    sent = []
    worker = CameraWorker(row, CameraTracker(aisle_camera(), person_detector, "live"),
                          publish=lambda obs, t_last: sent.append((obs, t_last)), t0=1_700_000_000.0)
    stats = worker.run(max_frames=40, once=True)
    assert stats.frames == 40 and stats.records == len(sent) >= 5
    obs = [o for o, _ in sent if len(o)]
    assert obs, "nobody was seen on the floor in 40 frames of the aisle clip"
    keys = {str(k) for o in obs for k in o.track_id}
    # the keys carry this opening's own session (a restarted worker's ids never name an earlier run's tracks)
    assert len(stats.sessions) == 1 and stats.sessions[0].startswith("live.")
    assert all(k.startswith(f"aisle:{stats.sessions[0]}:") for k in keys)
    kps = {str(k) for o in obs for k in o.keypoint}
    assert "floor" in kps
    assert all(np.isfinite(o.xyz).all() for o in obs)
    # each record's clock moves on, and a record survives the stream encoding
    t_lasts = [t for _, t in sent]
    assert t_lasts == sorted(t_lasts) and t_lasts[0] >= 1_700_000_000.0
    source, back, t_last = decode_obs(obs_record(source="camera:aisle", obs=obs[0], t_last=t_lasts[0]))
    assert source == "camera:aisle" and len(back) == len(obs[0])


def test_black_and_frozen_frames_are_not_evidence(person_detector, tmp_path):
    needs_ultralytics()
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(3)
    still = rng.integers(40, 200, (240, 320, 3), dtype=np.uint8)
    for i in range(30):
        if i < 10:
            img = np.zeros((240, 320, 3), np.uint8)                         # a covered lens
        elif i < 20:
            img = still                                                     # a frozen stream
        else:
            img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)       # noise: live, nobody in it
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    row = camera_row(str(folder))
    sent = []
    worker = CameraWorker(row, CameraTracker(aisle_camera(), person_detector, "live"),
                          publish=lambda obs, t_last: sent.append((obs, t_last)), t0=1_700_000_000.0)
    stats = worker.run(once=True)
    assert (stats.frames, stats.black, stats.frozen) == (30, 10, 9)
    # only the 11 live frames were tracked and published (the first frozen one is not yet known to be frozen)
    assert sent and min(t for _, t in sent) >= 1_700_000_000.0 + 10 / 10.0


def test_a_source_that_cannot_be_opened_is_retried(tmp_path):
    row = camera_row(str(tmp_path / "missing.mp4"))
    worker = CameraWorker(row, tracker=None, publish=lambda *a: None, retry_s=0.01)
    stats = worker.run(once=True)
    assert stats.reconnects == 1 and "does not exist" in stats.problems[0]


def test_each_opening_tracks_in_a_session_of_its_own_and_frames_above_the_rate_are_skipped(tmp_path):
    """A worker restarted (or reconnected) keys its tracks afresh: ByteTrack's ids restart at 1, and the store loop
    must not take a new person for the track it already holds under the same key. Frames closer than 1/fps to the
    last one processed are skipped."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(40, 200, (48, 64, 3), dtype=np.uint8))

    class Tracker:  # what the worker needs of vision.tracking.CameraTracker, without a model
        def __init__(self):
            self.session, self.starts, self.frames = "live", [], []

        def start_session(self, session):
            self.session = session
            self.starts.append(session)

        def step(self, frame):
            self.frames.append(frame.t)
            return None

    row = camera_row(str(folder), fps=10.0)
    first = CameraWorker(row, Tracker(), publish=lambda *a: None, t0=1_700_000_000.0)
    first.run(once=True)
    again = CameraWorker(row, Tracker(), publish=lambda *a: None, t0=1_700_000_000.0)
    again.run(once=True)
    assert first.stats.sessions != again.stats.sessions
    assert all(s.startswith("live.") for s in first.stats.sessions + again.stats.sessions)
    assert first.tracker.starts == first.stats.sessions  # the tracker was reset into that session
    # a 20 fps video on a camera processed at 5 fps: one frame in four is tracked, the rest skipped
    video = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for _ in range(24):
        out.write(rng.integers(40, 200, (48, 64, 3), dtype=np.uint8))
    out.release()
    Camera.objects.filter(pk=row.pk).update(source=str(video), fps=5.0)
    row.refresh_from_db()
    slow = CameraWorker(row, Tracker(), publish=lambda *a: None, t0=1_700_000_000.0)
    stats = slow.run(once=True)
    assert (stats.frames, stats.skipped) == (24, 18)
    assert np.allclose(np.diff(slow.tracker.frames), 0.2)


def test_a_worker_too_slow_for_a_realtime_source_skips_frames_instead_of_falling_behind(tmp_path):
    """Played as a live camera (``realtime``), a clip the tracker cannot keep up with is not processed frame by frame
    ever later: the frames already past are skipped, so what is published stays within a frame of the wall clock."""
    video = tmp_path / "clip.avi"
    rng = np.random.default_rng(6)
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for _ in range(40):  # 2 s at 20 fps
        out.write(rng.integers(40, 200, (48, 64, 3), dtype=np.uint8))
    out.release()

    class SlowTracker:  # 0.25 s a frame: 4 frames a second, against 20 sent
        session = "live"

        def __init__(self):
            self.seen = []

        def start_session(self, session):
            self.session = session

        def step(self, frame):
            self.seen.append((time.monotonic(), frame.t))
            time.sleep(0.25)
            return None

    import time

    row = camera_row(str(video), fps=0)
    worker = CameraWorker(row, SlowTracker(), publish=lambda *a: None, t0=1_700_000_000.0, realtime=True)
    stats = worker.run(once=True)
    seen = worker.tracker.seen
    assert stats.frames == 40 and stats.skipped >= 20 and len(seen) + stats.skipped == 40
    lag = [(w - seen[0][0]) - (t - seen[0][1]) for w, t in seen]
    assert max(lag) < 1.0, lag  # processing all 40 would end 40 × 0.25 − 2 = 8 s behind
