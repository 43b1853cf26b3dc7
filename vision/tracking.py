"""Per-camera tracking: frames in, keyed tracks projected onto the store floor out (no Django).

- :class:`FrameSource` reads a video file, an image folder, an RTSP/HTTP URL or a device index in streaming mode
  (one frame in memory at a time), with bad input handled: a source that cannot be opened raises
  :class:`SourceError`; an unreadable image, a truncated or corrupt file, or a live camera that stops sending is
  logged once with the camera, frame and reason, and reading resumes or ends cleanly.
- :class:`CameraTracker` owns one :class:`vision.detector.PersonDetector` (one tracker state) for one camera and
  one session. Ultralytics track ids are per tracker and restart after a reset, so every track is keyed
  ``"<camera>:<session>:<raw id>"`` (:func:`track_key`): ids never collide across cameras or recordings.
  Frames out of time order are dropped with a log line; blank frames (black, or one flat colour: a covered or
  dark camera, an encoder's filler) are not run through the detector and are counted, one problem per run of them.
- :class:`FrameTracks` is one frame's output: boxes, keys, the floor point of each track (metres) and its wrists in
  3-D (metres) where the calibration allows.
- :class:`TrackSummary` accumulates compact per-track intervals (never a row per frame); :func:`write_mot` writes
  MOTChallenge text.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from store.checks import check_rows

from .detector import Detections, PersonDetector
from .geometry import CameraModel

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: A box whose bottom edge is this close to the frame's bottom (pixels) has its feet cut off: its floor point is
#: not trusted (NaN) unless the pose model saw the ankles. 8 px: cps-test-01's cam5 boxes of a shopper cut at the
#: waist end 3-7 px above the edge (their box-bottom "floor points" landed 1 m off, at the glass).
EDGE_PX = 8.0
#: A frame whose grey levels (on a 1-in-8 subsample) span at most this many levels is blank. Black frames written
#: through mp4v fall under it (tests/test_vision_multiview.py); every frame of the cps-test-01 videos spans 255.
BLANK_RANGE = 12


def is_blank(img: np.ndarray) -> bool:
    """True when ``img`` ((H, W, 3) uint8) is one flat colour up to :data:`BLANK_RANGE` grey levels."""
    sub = img[::8, ::8]
    return int(sub.max()) - int(sub.min()) <= BLANK_RANGE


class SourceError(RuntimeError):
    """A frame source cannot be opened (missing file, unreachable camera, not a video)."""


def track_key(camera: str, session: str, raw_id: int) -> str:
    """The unique key of one per-camera track: ``"<camera>:<session>:<raw id>"``."""
    return f"{camera}:{session}:{int(raw_id)}"


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` in the source (0-based), ``t`` seconds (source clock: from the container's
    timestamps or ``index / fps``, plus the source's ``t0``), ``image`` (H, W, 3) uint8 BGR."""

    index: int
    t: float
    image: np.ndarray


class FrameSource:
    """Frames of one camera, streamed.

    ``source``: a video file, a folder of images (sorted by name), an ``rtsp://``/``http(s)://`` URL, or a device
    index (``"0"``). ``t0`` (s UTC) is the time of frame 0 for files and folders (live sources use the wall clock);
    ``fps`` overrides the container's rate (required for image folders, default 25); ``stride`` keeps every
    ``stride``-th frame (counted from ``start_frame``, files and folders only); ``max_frames`` stops after that many kept frames; ``reconnects`` how many times a live
    source is reopened after it stops sending (``retry_s`` apart). Raises SourceError when it cannot be opened.
    After iteration, ``problems`` lists what went wrong (each also logged) and ``frames_read`` counts frames.
    """

    def __init__(self, source: str | Path, *, t0: float = 0.0, fps: float | None = None, stride: int = 1,
                 max_frames: int | None = None, reconnects: int = 3, retry_s: float = 1.0, name: str = "",
                 start_frame: int = 0):
        self.source = str(source)
        self.name = name or Path(self.source).name or self.source
        self.t0 = float(t0)
        self.stride = max(1, int(stride))
        self.start_frame = max(0, int(start_frame))
        self.max_frames = max_frames
        self.reconnects = reconnects
        self.retry_s = retry_s
        self.problems: list[str] = []
        self.frames_read = 0
        self.live = self.source.isdigit() or self.source.split("://")[0].lower() in {"rtsp", "rtsps", "http",
                                                                                        "https", "udp", "tcp"}
        path = Path(self.source)
        self.folder = (not self.live) and path.is_dir()
        if not self.live and not path.exists():
            raise SourceError(f"{self.name}: {self.source} does not exist")
        self.expected_frames: int | None = None
        if self.folder:
            self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise SourceError(f"{self.name}: folder {self.source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            self.fps = float(fps or 25.0)
            self.expected_frames = len(self._files)
            self.width, self.height = 0, 0
        else:
            cap = self._open()
            rate = cap.get(5)  # cv2.CAP_PROP_FPS
            self.fps = float(fps or (rate if rate and math.isfinite(rate) and 0 < rate < 1000 else 25.0))
            self.width, self.height = int(cap.get(3)), int(cap.get(4))
            n = int(cap.get(7))  # CAP_PROP_FRAME_COUNT
            self.expected_frames = n if n > 0 and not self.live else None
            cap.release()

    def _open(self):
        import cv2

        cap = cv2.VideoCapture(int(self.source) if self.source.isdigit() else self.source)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: cannot open {self.source} (missing, unreachable, or not a video "
                              f"OpenCV can decode)")
        return cap

    def _problem(self, message: str) -> None:
        log.warning("camera %s: %s", self.name, message)
        self.problems.append(message)

    def __iter__(self) -> Iterator[Frame]:
        yield from (self._iter_folder() if self.folder else self._iter_capture())

    def _iter_folder(self) -> Iterator[Frame]:
        import cv2

        for i, p in enumerate(self._files):
            if i < self.start_frame:
                continue
            if self.max_frames is not None and (i - self.start_frame) // self.stride >= self.max_frames:
                return
            if (i - self.start_frame) % self.stride:
                continue
            img = cv2.imread(str(p))
            if img is None or img.ndim != 3:
                self._problem(f"frame {i} ({p.name}) is unreadable; skipped")
                continue
            self.frames_read += 1
            yield Frame(i, self.t0 + i / self.fps, img)

    def _iter_capture(self) -> Iterator[Frame]:
        cap = self._open()
        index = -1
        if self.start_frame and not self.live:
            cap.set(1, self.start_frame)  # CAP_PROP_POS_FRAMES
            index = int(cap.get(1)) - 1
        first = index + 1
        tries = 0
        try:
            while True:
                if self.max_frames is not None and (index + 1 - first) // self.stride >= self.max_frames:
                    return
                ok = cap.grab()
                if not ok:
                    if self.live and tries < self.reconnects:
                        tries += 1
                        self._problem(f"stopped sending after frame {index}; reconnecting ({tries}/"
                                      f"{self.reconnects}) in {self.retry_s:.1f} s")
                        cap.release()
                        time.sleep(self.retry_s)
                        try:
                            cap = self._open()
                        except SourceError as exc:
                            self._problem(str(exc))
                        continue
                    if self.live:
                        self._problem(f"stopped sending after frame {index}; gave up after {tries} reconnects")
                    elif self.expected_frames and self.expected_frames - (index + 1) > max(1, self.expected_frames // 100):
                        # the container's frame count is an estimate: a shortfall of one frame (or 1 %) is normal
                        self._problem(f"stream ended at frame {index + 1} of {self.expected_frames}: the file is "
                                      f"truncated or corrupt; the frames before were used")
                    return
                index += 1
                if (index - first) % self.stride:
                    continue
                ok, img = cap.retrieve()
                if not ok or img is None or img.ndim != 3 or img.size == 0:
                    self._problem(f"frame {index} could not be decoded; skipped")
                    continue
                tries = 0
                self.frames_read += 1
                if self.live:
                    t = time.time()
                else:
                    ms = cap.get(0)  # CAP_PROP_POS_MSEC of the frame just retrieved
                    t = self.t0 + (ms / 1000.0 if ms and ms > 0 and index > 0 else index / self.fps)
                yield Frame(index, t, img)
        finally:
            cap.release()


@dataclass(frozen=True)
class FrameTracks:
    """The tracks of one camera in one frame.

    ``camera``, ``session``; ``frame`` index; ``t`` s UTC (camera clock offset applied); ``key`` (n,) object str
    (:func:`track_key`); ``raw_id`` (n,) int64 (the tracker's own id); ``xyxy`` (n, 4) pixels; ``confidence`` (n,);
    ``floor_xy`` (n, 2) metres, store coordinates of the foot point (NaN when uncalibrated, above the horizon, or
    feet cut off by the frame edge); ``wrists_xyz`` (n, 2, 3) metres, [left, right] wrists in 3-D at the body's
    depth (NaN without a full pose); ``wrist_score`` (n, 2); ``hands_source`` as in :class:`Detections`;
    ``wrist_rays`` (n, 2, 6) or None: each wrist's viewing ray, camera centre (3,) and unit direction (3,) in store
    metres (NaN where unknown), for triangulation across cameras (:func:`vision.geometry.triangulate`).
    """

    camera: str
    session: str
    frame: int
    t: float
    key: np.ndarray
    raw_id: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray
    floor_xy: np.ndarray
    wrists_xyz: np.ndarray
    wrist_score: np.ndarray
    hands_source: str = "none"
    wrist_rays: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_rows(self, ("raw_id", "xyxy:4", "confidence", "floor_xy:2", "wrists_xyz:2x3", "wrist_score:2") + (
            ("wrist_rays:2x6",) if self.wrist_rays is not None else ()), self.key.shape[0])

    def __len__(self) -> int:
        return int(self.key.shape[0])


def frame_tracks(camera: CameraModel, session: str, frame: int, t: float, det: Detections,
                 frame_shape: tuple[int, int] | None = None) -> FrameTracks:
    """Project one frame's tracked detections through ``camera``: foot point → floor (metres), wrists → 3-D on the
    vertical body plane (:meth:`CameraModel.body_plane_points`). ``frame_shape`` (H, W) marks feet cut off by the
    bottom edge as unknown."""
    n = len(det)
    keys = np.array([track_key(camera.name, session, i) for i in det.tracker_id], dtype=object)
    floor = np.full((n, 2), np.nan)
    wrists = np.full((n, 2, 3), np.nan)
    rays = None
    if n and camera.has_pose:
        rays = np.full((n, 2, 6), np.nan)
        for side in (0, 1):
            uv = det.wrists[:, side, :]
            good = np.isfinite(uv).all(axis=1)
            if good.any():
                rays[good, side, :3] = camera.C
                rays[good, side, 3:] = camera.rays(uv[good])
    if n and camera.has_floor:
        floor = camera.image_to_floor(det.foot)
        if frame_shape is not None:
            from_box = np.ones(n, bool) if det.ankles is None else ~np.isfinite(det.ankles).all(axis=1)
            floor[from_box & (det.xyxy[:, 3] >= frame_shape[0] - EDGE_PX)] = np.nan
        if camera.has_pose:
            ok = np.isfinite(floor).all(axis=1)
            for side in (0, 1):
                uv = det.wrists[:, side, :]
                good = ok & np.isfinite(uv).all(axis=1)
                if good.any():
                    wrists[good, side] = camera.body_plane_points(uv[good], floor[good])
    return FrameTracks(camera=camera.name, session=session, frame=frame, t=t + camera.clock_offset_s, key=keys,
                       raw_id=det.tracker_id.astype(np.int64), xyxy=det.xyxy, confidence=det.confidence,
                       floor_xy=floor, wrists_xyz=wrists, wrist_score=det.wrist_score,
                       hands_source=det.hands_source, wrist_rays=rays)


class CameraTracker:
    """Detection + tracking + floor projection for one camera in one session.

    ``camera`` its :class:`CameraModel`; ``detector`` a :class:`PersonDetector` owned by this camera (its tracker
    state is this camera's); ``session`` names the recording or live session. :meth:`step` takes one frame;
    :meth:`start_session` resets the tracker for the next recording.
    """

    def __init__(self, camera: CameraModel, detector: PersonDetector, session: str):
        self.camera = camera
        self.detector = detector
        self.session = session
        self.last_t = -math.inf
        self.frames = 0
        self.blank_frames = 0
        self._blank_run: list[int] = []
        self.problems: list[str] = []

    def start_session(self, session: str) -> None:
        """Begin a new recording/session: the tracker forgets every track, keys carry the new session."""
        self.detector.reset_tracker()
        self.session = session
        self.last_t = -math.inf
        self.frames = 0
        self.blank_frames = 0
        self._blank_run = []

    def _problem(self, message: str) -> None:
        log.warning("camera %s: %s", self.camera.name, message)
        self.problems.append(message)

    def _end_blank_run(self) -> None:
        if self._blank_run:
            a, b = self._blank_run[0], self._blank_run[-1]
            self._problem(f"frames {a}-{b} ({len(self._blank_run)}) are blank (one flat colour: covered, dark or "
                          f"filler frames); not tracked")
            self._blank_run = []

    def step(self, frame: Frame) -> FrameTracks | None:
        """Track one frame. Returns its :class:`FrameTracks` (empty for a blank frame, :func:`is_blank`: not run
        through the detector, counted in ``blank_frames``, one problem per run of them), or None when the frame is
        dropped (out of time order, not an image: logged). The tracker state is kept so tracking resumes on the next
        good frame. Call :meth:`finish` after the last frame (:meth:`run` does) to report a blank run at the end."""
        if not (frame.t > self.last_t):
            self._problem(f"frame {frame.index} at t={frame.t:.3f} is not after the previous frame "
                          f"(t={self.last_t:.3f}): out of order, dropped")
            return None
        img = frame.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
            self._problem(f"frame {frame.index} is not a BGR image ({getattr(img, 'shape', None)}); dropped")
            return None
        self.last_t = frame.t
        if is_blank(img):  # nothing to see: no detector run, the tracker's state untouched
            self.blank_frames += 1
            self._blank_run.append(frame.index)
            return frame_tracks(self.camera, self.session, frame.index, frame.t,
                                Detections.empty(self.detector.hands_source), img.shape[:2])
        self._end_blank_run()
        self.frames += 1
        det = self.detector.track(img)
        return frame_tracks(self.camera, self.session, frame.index, frame.t, det, img.shape[:2])

    def run(self, source: FrameSource) -> Iterator[FrameTracks]:
        """Track every frame of ``source`` (streaming)."""
        for frame in source:
            out = self.step(frame)
            if out is not None:
                yield out
        self.finish()

    def finish(self) -> None:
        """Report a run of blank frames still open at the end of the source."""
        self._end_blank_run()


@dataclass
class TrackInterval:
    """A compact summary of one per-camera track: ``key``, ``camera``, ``raw_id``; first/last time (s UTC) and
    frame; ``frames`` seen; ``mean_confidence``; ``floor_start``/``floor_end`` (2,) metres (NaN if never on the
    floor)."""

    key: str
    camera: str
    raw_id: int
    t_start: float
    t_end: float
    frame_start: int
    frame_end: int
    frames: int = 0
    confidence_sum: float = 0.0
    floor_start: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    floor_end: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.frames if self.frames else 0.0


class TrackSummary:
    """Accumulates :class:`FrameTracks` into one :class:`TrackInterval` per track key (memory ∝ tracks, not
    frames) and, optionally, MOTChallenge rows for the ``track`` command."""

    def __init__(self, keep_mot: bool = False):
        self.intervals: dict[str, TrackInterval] = {}
        self.keep_mot = keep_mot
        self.mot_rows: list[tuple[int, int, float, float, float, float, float]] = []
        self._mot_ids: dict[str, int] = {}
        self.frames = 0

    def add(self, ft: FrameTracks) -> None:
        """Fold one frame's tracks in."""
        self.frames += 1
        for i in range(len(ft)):
            key = str(ft.key[i])
            iv = self.intervals.get(key)
            if iv is None:
                iv = self.intervals[key] = TrackInterval(key, ft.camera, int(ft.raw_id[i]), ft.t, ft.t, ft.frame,
                                                         ft.frame)
            iv.t_end, iv.frame_end = ft.t, ft.frame
            iv.frames += 1
            iv.confidence_sum += float(ft.confidence[i])
            if np.isfinite(ft.floor_xy[i]).all():
                if not np.isfinite(iv.floor_start).all():
                    iv.floor_start = ft.floor_xy[i].copy()
                iv.floor_end = ft.floor_xy[i].copy()
            if self.keep_mot:
                mid = self._mot_ids.setdefault(key, len(self._mot_ids) + 1)
                x1, y1, x2, y2 = (float(v) for v in ft.xyxy[i])
                self.mot_rows.append((ft.frame + 1, mid, x1, y1, x2 - x1, y2 - y1, float(ft.confidence[i])))


def write_mot(path: str | Path, rows: list[tuple[int, int, float, float, float, float, float]]) -> Path:
    """Write MOTChallenge text: ``frame, id, x, y, w, h, conf, -1, -1, -1`` per line (frame 1-based, pixels)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for fr, tid, x, y, w, h, c in sorted(rows, key=lambda r: (r[0], r[1])):
            f.write(f"{fr},{tid},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{c:.4f},-1,-1,-1\n")
    return p
