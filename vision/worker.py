"""The camera worker: one long-running process per camera (``manage.py run_camera STORE:NAME``) that reads the
camera's stream continuously, detects and tracks people (``vision.tracking.CameraTracker``: YOLO + ByteTrack,
wrists), projects them onto the store floor and publishes their observations on the store's ``obs`` stream for the
store loop (``carts.runtime``), as source ``camera:<name>``.

A dropped stream is reopened (``retry_s`` apart, for ever, until stopped); a frame that is black (mean intensity
below ``black_level``) or frozen (byte-identical to the previous one) carries no evidence: such frames are not
published, so after a few seconds the store worker declares the camera down, alerts the dashboard and sends the
events it should have seen to review. The worker keeps no state that matters across a restart: a new tracker starts
new track ids (the store loop continues a shopper's visit onto a track that appears where one was lost).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from store.recording import TrackObservations

from .tracking import Frame, FrameSource, FrameTracks, SourceError

log = logging.getLogger(__name__)


@dataclass
class CameraWorkerStats:
    """Counters of one camera worker run: frames read, published (with tracks or empty), black, frozen,
    reconnects, observation records published."""

    frames: int = 0
    black: int = 0
    frozen: int = 0
    reconnects: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)


def frame_observations(ft: FrameTracks) -> TrackObservations:
    """One frame's tracks as observations (store metres): per track its floor point (``floor``, z = 0) and each wrist
    (``l_wrist``, ``r_wrist``) where known; tracks not on the floor (uncalibrated, feet cut off) are left out."""
    tid, ts, kp, xyz, sc = [], [], [], [], []
    for i in range(len(ft)):
        if not np.isfinite(ft.floor_xy[i]).all():
            continue
        key = str(ft.key[i])
        x, y = ft.floor_xy[i]
        tid.append(key), ts.append(ft.t), kp.append("floor"), xyz.append((x, y, 0.0))
        sc.append(float(ft.confidence[i]))
        for side, name in ((0, "l_wrist"), (1, "r_wrist")):
            w = ft.wrists_xyz[i, side]
            if np.isfinite(w).all():
                tid.append(key), ts.append(ft.t), kp.append(name), xyz.append(tuple(w))
                sc.append(float(ft.wrist_score[i, side]))
    if not ts:
        return TrackObservations.empty()
    return TrackObservations(np.array(tid, dtype=object), np.asarray(ts, float), np.array(kp, dtype=object),
                             np.asarray(xyz, float).reshape(-1, 3), np.asarray(sc, float))


class CameraWorker:
    """Runs one camera (module docstring). ``camera``: a ``vision.models.Camera`` row; ``tracker``: its
    ``vision.tracking.CameraTracker``; ``publish(obs, t_last)``: where observations go (default the store's ``obs``
    stream); ``batch_s``: seconds of frames per published record; ``realtime``: pace a file source at its frame rate
    (a recorded camera played as a live one); ``black_level``: mean 8-bit intensity under which a frame is black
    (a covered lens, a dead sensor); ``retry_s``: seconds between reopening attempts of a dropped source;
    ``frame_every_s``: how often (wall-clock seconds) a frame with its tracks drawn is kept for the manager's camera
    page (``vision.services.camera_frame_publish``; 0 or None: never; a camera row without a primary key: never)."""

    def __init__(self, camera, tracker, *, publish: Callable[[TrackObservations, float], None] | None = None,
                 batch_s: float = 0.2, realtime: bool = False, black_level: float = 8.0, retry_s: float = 2.0,
                 t0: float | None = None, frame_every_s: float | None = 2.0) -> None:
        self.camera = camera
        self.tracker = tracker
        self.publish = publish or self._publish_stream
        self.batch_s = batch_s
        self.realtime = realtime
        self.black_level = black_level
        self.retry_s = retry_s
        self.t0 = t0
        self.stop = threading.Event()
        self.stats = CameraWorkerStats()
        self._last_hash: bytes | None = None
        self.frame_every_s = frame_every_s
        self._frame_kept_at = float("-inf")

    def _keep_frame(self, frame: Frame, ft: FrameTracks) -> None:
        """Keep a drawn frame for the camera page every ``frame_every_s``; a failure is logged, never fatal."""
        pk = getattr(self.camera, "pk", None)
        if not self.frame_every_s or pk is None or time.monotonic() - self._frame_kept_at < self.frame_every_s:
            return
        self._frame_kept_at = time.monotonic()
        try:
            from .services import camera_frame_publish

            camera_frame_publish(camera_id=pk, image=frame.image, tracks=ft, t=ft.t)
        except Exception as exc:  # the cache down or an odd frame must not stop tracking
            self._problem(f"recent frame not kept: {exc}")

    def _publish_stream(self, obs: TrackObservations, t_last: float) -> None:
        from carts.runtime import publish_observations

        publish_observations(self.camera.store.code, f"camera:{self.camera.name}", obs, t_last=t_last)

    def _problem(self, message: str) -> None:
        log.warning("camera %s: %s", self.camera.name, message)
        self.stats.problems.append(message)
        del self.stats.problems[:-50]

    def usable(self, frame: Frame) -> bool:
        """False for a black or frozen frame (counted)."""
        image = frame.image
        if not isinstance(image, np.ndarray) or image.size == 0:
            return False
        if float(image.mean()) < self.black_level:
            self.stats.black += 1
            return False
        digest = hashlib.blake2b(np.ascontiguousarray(image[::4, ::4]).tobytes(), digest_size=16).digest()
        frozen = digest == self._last_hash
        self._last_hash = digest
        if frozen:
            self.stats.frozen += 1
        return not frozen

    def run(self, *, max_frames: int | None = None, once: bool = False) -> CameraWorkerStats:
        """Read, track and publish until :attr:`stop` is set (or ``max_frames`` frames; ``once``: a file source
        is read once instead of being reopened when it ends)."""
        while not self.stop.is_set():
            try:
                source = FrameSource(self.camera.source, t0=self.t0 if self.t0 is not None else time.time(),
                                     fps=self.camera.fps or None, name=self.camera.name, reconnects=0)
            except SourceError as exc:
                self._problem(f"{exc}; retrying in {self.retry_s:g} s")
                self.stats.reconnects += 1
                if once or self.stop.wait(self.retry_s):
                    break
                continue
            self._run_source(source, max_frames)
            if once or (max_frames is not None and self.stats.frames >= max_frames):
                break
            self._problem(f"the stream ended or dropped after {self.stats.frames} frames; reopening")
            self.stats.reconnects += 1
            self.tracker.start_session(self.tracker.session)  # ids do not continue across a reconnect
            if self.stop.wait(self.retry_s):
                break
        return self.stats

    def _run_source(self, source: FrameSource, max_frames: int | None) -> None:
        batch: list[TrackObservations] = []
        batch_t0 = None
        wall0 = time.monotonic()
        for frame in source:
            if self.stop.is_set() or (max_frames is not None and self.stats.frames >= max_frames):
                break
            self.stats.frames += 1
            if self.realtime and not source.live:
                ahead = (frame.t - source.t0) - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
            if not self.usable(frame):
                continue  # no evidence: publish nothing, so the store worker sees this camera go silent
            ft = self.tracker.step(frame)
            if ft is None:
                continue
            self._keep_frame(frame, ft)
            batch.append(frame_observations(ft))
            batch_t0 = ft.t if batch_t0 is None else batch_t0
            if ft.t - batch_t0 >= self.batch_s:
                self._flush(batch, ft.t)
                batch, batch_t0 = [], None
        if batch:
            self._flush(batch, float(batch[-1].t.max()) if len(batch[-1]) else time.time())

    def _flush(self, parts: list[TrackObservations], t_last: float) -> None:
        parts = [p for p in parts if len(p)] or [TrackObservations.empty()]
        obs = parts[0] if len(parts) == 1 else TrackObservations(*(np.concatenate([getattr(p, f) for p in parts])
                                                                   for f in ("track_id", "t", "keypoint", "xyz",
                                                                             "score")))
        self.publish(obs, t_last)
        self.stats.records += 1
