"""The camera worker: one long-running process per camera (``manage.py run_camera STORE:NAME``) that reads the
camera's stream continuously, detects and tracks people (``vision.tracking.CameraTracker``: YOLO + ByteTrack,
wrists), projects them onto the store floor and publishes them for the store loop (``carts.runtime``), one of two
ways:

- ``join`` off (a store with one camera): its tracks as observations on the store's ``obs`` stream, source
  ``camera:<name>`` (:func:`frame_observations`): the loop sees this camera's tracks as shoppers;
- ``join`` on (a store with several cameras, ``run_camera``'s default there): its tracked frames on the store's
  ``cam`` stream (``carts.camera_join.cam_record``), which the store worker, seeing every camera, joins into shoppers
  (``vision.shoppers.ShopperStream``: one person seen by two cameras is one shopper, a wrist only one camera sees
  is that shopper's) before the loop sees them.

A dropped stream is reopened (``retry_s`` apart, for ever, until stopped); a frame that is black (mean intensity
below ``black_level``) or frozen (byte-identical to the previous one) carries no evidence: such frames are not
published, so after a few seconds the store worker declares the camera down, alerts the dashboard and sends the
events it should have seen to review. The worker keeps no state that matters across a restart: a new tracker starts
new track ids (the store loop continues a shopper's visit onto a track that appears where one was lost). Each opening
of the source (a start, a restart after a crash, a reconnect) tracks in a session of its own, ``<session>.<run>``
with a fresh ``run`` token: the tracker's raw ids restart at 1, and without it a restarted worker's new people would
carry the keys of the tracks the store loop already holds (bound to visits, or exited) and inherit them.

``Camera.fps`` is the rate frames are processed at: frames closer than ``1/fps`` to the last one processed are
skipped (a 25 fps stream on a CPU that tracks 5 frames a second stays live instead of falling behind).

Hand crops: with a ``hand_crops`` store (``vision.hand_crops``; ``run_camera`` gives one unless
``WALKOUT["PRODUCT_IMAGES"]`` is false) the worker cuts a square around every wrist it places in each frame and keeps
it there a few seconds, before the frame's observations are published; the store worker reads the taking track's
crops when it decides a take (``carts.product_images``).

Review clips: with a ``clips`` store the worker keeps its last seconds of frames in a bounded ring
(``vision.clips.FrameRing``) and, every ``clip_poll_s``, asks ``clip_requests()`` for the shelf events the store loop
sent to review since (``vision.hooks.review_clip_requests``, from the review queue); for each one its camera sees, once the
ring holds the frames up to ``post_s`` after the event, it writes them out with the tracks and hands drawn (a request
whose frames have left the ring, or that the camera does not see, is dropped with a log line).
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from store.recording import TrackObservations

from . import hooks
from .clips import ClipRequest, ClipStore, FrameRing
from .hand_crops import HandCropConfig, HandCropStore, cut_hand_crops
from .tracking import Frame, FrameSource, FrameTracks, SourceError

log = logging.getLogger(__name__)


@dataclass
class CameraWorkerStats:
    """Counters of one camera worker run: frames read, skipped (above ``Camera.fps``), black, frozen, reconnects,
    records published (observations, or frames with ``join``), review clips written; ``sessions``: the tracker sessions of its source openings
    (track-key prefixes)."""

    frames: int = 0
    skipped: int = 0  # read, but closer than 1/Camera.fps to the last one processed, or (realtime) already past
    black: int = 0
    frozen: int = 0
    reconnects: int = 0
    records: int = 0
    clips: int = 0
    hand_crops: int = 0  # crops around wrists kept for the product recogniser (vision.hand_crops)
    problems: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)


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
    stream); ``join``: publish the tracked frames instead (module docstring) to ``publish_frames(frames, t_last)``
    (default the store's ``cam`` stream, ``vision.hooks.publish_frames``); ``batch_s``: seconds of frames per published record; ``realtime``: pace a file source at its frame rate
    (a recorded camera played as a live one: no frame is processed before its time, and frames the worker has
    fallen more than a frame behind are skipped, as a live camera's would be gone, so its clock stays live);
    ``black_level``: mean 8-bit intensity under which a frame is black (a covered lens, a dead sensor); ``retry_s``:
    seconds between reopening attempts of a dropped source.
    Review clips (module docstring): ``clips`` where they go (None: no ring, no clips); ``clip_requests()``: the new
    requests since the last call (default ``vision.hooks.review_clip_requests`` on this camera's store); ``ring``: the frame
    ring (default 30 s at 5 fps, 640 px wide); ``pre_s``/``post_s``: seconds of frames before and after the event;
    ``clip_poll_s``: seconds of frames between two asks. ``frame_every_s``: how often (wall-clock seconds) a frame
    with its tracks drawn is kept for the manager's camera page (``vision.services.camera_frame_publish``; 0 or
    None: never; a camera row without a primary key: never). ``hand_crops``: where crops around the tracks'
    wrists go for the product recogniser (``vision.hand_crops``; None: none kept), cut as ``hand_crop_config``
    says; a camera without a pose cannot place wrists in its image and keeps none."""

    def __init__(self, camera, tracker, *, publish: Callable[[TrackObservations, float], None] | None = None,
                 batch_s: float = 0.2, realtime: bool = False, black_level: float = 8.0, retry_s: float = 2.0,
                 t0: float | None = None, clips: ClipStore | None = None,
                 clip_requests: Callable[[], list[ClipRequest]] | None = None, ring: FrameRing | None = None,
                 pre_s: float = 3.0, post_s: float = 3.0, clip_poll_s: float = 1.0,
                 frame_every_s: float | None = 2.0, hand_crops: HandCropStore | None = None,
                 hand_crop_config: HandCropConfig = HandCropConfig(), join: bool = False,
                 publish_frames: Callable[[list[FrameTracks], float], None] | None = None) -> None:
        self.camera = camera
        self.tracker = tracker
        self.publish = publish or self._publish_stream
        self.join = bool(join)
        self.publish_frames = publish_frames or self._publish_frames_stream
        self.batch_s = batch_s
        self.realtime = realtime
        self.black_level = black_level
        self.retry_s = retry_s
        self.t0 = t0
        self.stop = threading.Event()
        self.stats = CameraWorkerStats()
        self._last_hash: bytes | None = None
        self.session = tracker.session if tracker is not None else "live"  # the base of each opening's session
        self.clips = clips
        self.ring = (ring or FrameRing()) if clips is not None else None
        self.clip_requests = clip_requests or (self._review_requests if clips is not None else None)
        self.pre_s, self.post_s, self.clip_poll_s = float(pre_s), float(post_s), float(clip_poll_s)
        self._pending: list[tuple[ClipRequest, float]] = []  # (request, wall time asked)
        self._last_poll_t = -float("inf")
        self._since = None
        self.frame_every_s = frame_every_s
        self._frame_kept_at = float("-inf")
        self._t_next = float("-inf")  # the next frame time to process (1/Camera.fps after the last one)
        self.hand_crops = hand_crops
        self.hand_crop_config = hand_crop_config
        self._hand_last: dict[tuple[str, int], float] = {}

    def _review_requests(self) -> list[ClipRequest]:
        requests, self._since = hooks.review_clip_requests(store_id=self.camera.store_id, since=self._since)
        return requests

    def _keep_frame(self, frame: Frame, ft: FrameTracks | None) -> None:
        """Put ``frame`` (with its tracks, wrists projected to pixels where the camera has a pose) in the ring."""
        if self.ring is None:
            return
        keys, boxes, wrists = (), None, None
        if ft is not None and len(ft):
            keys, boxes, wrists = [str(k) for k in ft.key], ft.xyxy, self._wrists_px(ft)
        self.ring.add(frame.t, frame.image, keys=keys, boxes=boxes, wrists_px=wrists)

    def _wrists_px(self, ft: FrameTracks) -> np.ndarray:
        """``(n, 2, 2)`` pixels of each track's [left, right] wrist in this camera (NaN where unknown, or where the
        camera has no pose)."""
        wrists = np.full((len(ft), 2, 2), np.nan)
        model = getattr(self.tracker, "camera", None)
        if model is not None and getattr(model, "has_pose", False):
            flat = ft.wrists_xyz.reshape(-1, 3)
            ok = np.isfinite(flat).all(axis=1)
            if ok.any():
                px = np.full((flat.shape[0], 2), np.nan)
                px[ok] = model.project(flat[ok])
                wrists = px.reshape(len(ft), 2, 2)
        return wrists

    def _keep_hand_crops(self, frame: Frame, ft: FrameTracks | None) -> None:
        """Cut the crops around this frame's wrists into :attr:`hand_crops`; a failure (the cache down, an odd
        frame) is a counted problem, never fatal: the store then decides without image evidence."""
        if self.hand_crops is None or ft is None or not len(ft):
            return
        try:
            crops = cut_hand_crops(frame.image, ft.t, camera=self.camera.name, keys=[str(k) for k in ft.key],
                                   boxes=ft.xyxy, wrists_px=self._wrists_px(ft), wrists_xyz=ft.wrists_xyz,
                                   wrist_score=ft.wrist_score, config=self.hand_crop_config, last=self._hand_last)
            self.stats.hand_crops += self.hand_crops.put(crops)
        except Exception as exc:
            self._problem(f"hand crops not kept: {type(exc).__name__}: {exc}")
        if len(self._hand_last) > 4096:  # tracks long gone
            newest = max(self._hand_last.values())
            self._hand_last = {k: v for k, v in self._hand_last.items() if v > newest - 10.0}

    def _bin_pixels(self, request: ClipRequest) -> np.ndarray | None:
        """The bin's centre in this camera's pixels when the camera sees it (in front, inside the frame), else
        None. A camera without a pose cannot tell: None."""
        model = getattr(self.tracker, "camera", None)
        if model is None or not getattr(model, "has_pose", False):
            return None
        px = model.project(np.asarray([request.bin_xyz], float))[0]
        w, h = getattr(model, "width", 0) or 0, getattr(model, "height", 0) or 0
        if not np.isfinite(px).all() or (w and h and not (0 <= px[0] < w and 0 <= px[1] < h)):
            return None
        return px

    def _clips_step(self, t_now: float) -> None:
        """Ask for new clip requests (every ``clip_poll_s`` of frame time) and write the ones the ring now covers."""
        if self.ring is None or self.clip_requests is None:
            return
        if t_now - self._last_poll_t >= self.clip_poll_s:
            self._last_poll_t = t_now
            try:
                self._pending += [(r, time.monotonic()) for r in self.clip_requests()]
            except Exception as exc:  # the review queue is out of reach: clips are a help, tracking goes on
                self._problem(f"review clip requests unavailable: {exc}")
        keep = []
        for request, asked in self._pending:
            t0, t1 = request.t0 - self.pre_s, request.t1 + self.post_s
            if self.ring.t_last < t1 and time.monotonic() - asked < self.post_s + 30.0:
                keep.append((request, asked))  # the frames after the event are still to come
                continue
            bin_px = self._bin_pixels(request)
            frames = self.ring.between(t0, t1)
            if bin_px is None:
                log.info("camera %s: does not see bin %s; no clip for review %s", self.camera.name,
                         request.bin_code, request.review)
            elif not frames:
                self._problem(f"review {request.review}: its frames are no longer in the ring")
            else:
                try:
                    if self.clips.write(request, self.camera.name, frames, bin_px_full=bin_px) is not None:
                        self.stats.clips += 1
                except (OSError, ValueError) as exc:
                    self._problem(f"review {request.review}: clip not written: {exc}")
        self._pending = keep

    def _keep_recent_frame(self, frame: Frame, ft: FrameTracks) -> None:
        """Keep a drawn frame for the camera page every ``frame_every_s``; a failure is logged, never fatal."""
        pk = getattr(self.camera, "pk", None)
        if not self.frame_every_s or pk is None or time.monotonic() - self._frame_kept_at < self.frame_every_s:
            return
        self._frame_kept_at = time.monotonic()
        try:
            # lazy: vision.services imports Django models; the worker imports without Django set up (offline video)
            from .services import camera_frame_publish

            camera_frame_publish(camera_id=pk, image=frame.image, tracks=ft, t=ft.t)
        except Exception as exc:  # the cache down or an odd frame must not stop tracking
            self._problem(f"recent frame not kept: {exc}")

    def _publish_stream(self, obs: TrackObservations, t_last: float) -> None:
        hooks.publish_observations(self.camera.store.code, f"camera:{self.camera.name}", obs, t_last=t_last)

    def _publish_frames_stream(self, frames: list[FrameTracks], t_last: float) -> None:
        hooks.publish_frames(self.camera.store.code, self.camera.name, frames, t_last)

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
        self._warm_up()
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
            # a session of this opening's own: raw ids restart at 1 and must not name tracks of an earlier run
            session = f"{self.session}.{uuid.uuid4().hex[:8]}"
            self.tracker.start_session(session)
            self.stats.sessions.append(session)
            log.info("camera %s: tracking as session %s", self.camera.name, session)
            self._run_source(source, max_frames)
            if once or (max_frames is not None and self.stats.frames >= max_frames):
                break
            self._problem(f"the stream ended or dropped after {self.stats.frames} frames; reopening")
            self.stats.reconnects += 1
            if self.stop.wait(self.retry_s):
                break
        return self.stats

    def _warm_up(self) -> None:
        """Load the detector's model(s) on a blank frame before the source's clock starts: a first frame that
        took the model's loading time would leave a realtime source seconds behind (its frames then skipped)."""
        det = getattr(self.tracker, "detector", None)
        if det is None or not hasattr(det, "track"):
            return
        try:
            det.track(np.full((self.camera.height or 360, self.camera.width or 640, 3), 114, np.uint8))
        except Exception as exc:  # the first real frame will say what is wrong
            self._problem(f"warm-up failed: {exc}")

    def process(self, frame: Frame) -> FrameTracks | None:
        """One frame read from the camera's source, as :meth:`run` handles it: counted; skipped when closer than
        ``1/Camera.fps`` to the last one processed, or black or frozen (:meth:`usable`); else tracked (detection,
        tracking, floor projection, wrists: the tracker's ``step``), kept in the clip ring and for the camera page.
        Returns its :class:`vision.tracking.FrameTracks`, or None for a frame that carries no evidence. For a
        caller that reads the source itself (``StoreCameras``: a store's recorded cameras played in step)."""
        self.stats.frames += 1
        if frame.t < self._t_next - 1e-6:
            self.stats.skipped += 1
            return None
        period = 1.0 / self.camera.fps if self.camera.fps and self.camera.fps > 0 else 0.0
        self._t_next = frame.t + period
        if not self.usable(frame):
            return None  # no evidence: publish nothing, so the store worker sees this camera go silent
        ft = self.tracker.step(frame)
        self._keep_hand_crops(frame, ft)  # before the frame's observations go out: the loop finds them stored
        self._keep_frame(frame, ft)
        self._clips_step(frame.t)
        if ft is not None:
            self._keep_recent_frame(frame, ft)
        return ft

    def _run_source(self, source: FrameSource, max_frames: int | None) -> None:
        batch: list = []  # TrackObservations per frame, or (join) the FrameTracks, boxes dropped
        batch_t0 = batch_t_last = None
        wall0 = time.monotonic()
        period = 1.0 / self.camera.fps if self.camera.fps and self.camera.fps > 0 else 0.0
        self._t_next = -float("inf")
        for frame in source:
            if self.stop.is_set() or (max_frames is not None and self.stats.frames >= max_frames):
                break
            if self.realtime and not source.live and frame.t >= self._t_next - 1e-6:
                ahead = (frame.t - source.t0) - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
                elif ahead < -max(period, 1.0 / source.fps):
                    self.stats.frames += 1
                    self.stats.skipped += 1  # too slow for it: a live camera's frame would be gone by now
                    continue
            ft = self.process(frame)
            if ft is None:
                continue
            batch.append(replace(ft, xyxy=np.zeros((len(ft), 4), np.float32)) if self.join
                         else frame_observations(ft))
            batch_t_last = ft.t
            batch_t0 = ft.t if batch_t0 is None else batch_t0
            if ft.t - batch_t0 >= self.batch_s:
                self._flush(batch, ft.t)
                batch, batch_t0 = [], None
        if batch:  # the last frame's time (camera clock offset applied), even when nobody was in it
            self._flush(batch, batch_t_last)

    def _flush(self, parts: list, t_last: float) -> None:
        if self.join:
            self.publish_frames(parts, t_last)
            self.stats.records += 1
            return
        parts = [p for p in parts if len(p)] or [TrackObservations.empty()]
        obs = parts[0] if len(parts) == 1 else TrackObservations(*(np.concatenate([getattr(p, f) for p in parts])
                                                                   for f in ("track_id", "t", "keypoint", "xyz",
                                                                             "score")))
        self.publish(obs, t_last)
        self.stats.records += 1


@dataclass(frozen=True)
class VideoCamera:
    """The fields of a camera that a :class:`CameraWorker` reads, for a camera with no ``vision.models.Camera`` row
    (a recording's camera played by the device emulator): ``name``, ``source`` (its file), ``fps`` (frames processed
    a second; 0: every frame the source gives), ``width``/``height`` pixels (0: unknown). Without a row there are
    no review clips and no camera page (``pk`` None)."""

    name: str
    source: str
    fps: float = 0.0
    width: int = 0
    height: int = 0
    pk: None = None
    store_id: None = None


class StoreCameras:
    """The cameras of one store played together, frame time by frame time, into one
    :class:`vision.shoppers.ShopperStream` (multi-camera association, triangulated wrists, single-view wrist rays:
    the replay's own path), whose shopper observations go to ``publish(obs, t_last)`` (the emulator's: the store's
    ``obs`` stream, as one source for all the cameras): what a store whose cameras are recorded files needs, as the device emulator
    plays them (``carts.offline.emulator``), with the live camera path per camera (:meth:`CameraWorker.process`).

    ``workers``: one :class:`CameraWorker` per camera (its ``tracker`` a ``vision.tracking.CameraTracker``);
    ``sources``: camera name → its opened :class:`vision.tracking.FrameSource` (``t0``: frame 0 on the recording's clock);
    ``stream``: the ShopperStream the cameras feed; ``threads``: cameras tracked at once (ONNX Runtime and the pose
    interpreter release the GIL); ``t_shift`` (s): added to every frame's time (the emulator plays a recording as
    if it started now; may be set until the first :meth:`play`). Loads every camera's models at once (a blank
    frame), then starts its tracker afresh. :meth:`play` reads every camera up to a time; a camera whose file has ended
    sees nobody from then on (its clock goes on, as a real camera's would)."""

    def __init__(self, workers: list[CameraWorker], sources: dict, stream, *,
                 publish: Callable[[TrackObservations, float], None], threads: int = 2, t_shift: float = 0.0) -> None:
        self.workers = {w.camera.name: w for w in workers}
        missing = set(self.workers) - set(sources)
        if missing:
            raise ValueError(f"no source for camera(s) {', '.join(sorted(missing))}")
        self.sources = sources
        self._frames = {name: iter(sources[name]) for name in self.workers}
        self._next: dict[str, Frame | None] = {}
        self.stream = stream
        self.publish = publish
        self.threads = max(1, int(threads))
        self.t_shift = float(t_shift)
        self._pool = None
        self.t_played = -float("inf")
        self.records = 0
        #: problem lines of the cameras left out before they got here (the caller's: no video, no calibration)
        self.skipped: list[str] = []
        for w in self._map(lambda w: w._warm_up() or w, list(self.workers.values())):
            w.tracker.start_session(w.tracker.session)  # the models are loaded; tracking starts afresh
            w.stats.sessions.append(w.tracker.session)

    def _peek(self, name: str) -> Frame | None:
        if name not in self._next:
            self._next[name] = next(self._frames[name], None)
        return self._next[name]

    def _camera_until(self, name: str, t: float) -> list[FrameTracks]:
        """Track ``name``'s frames before ``t``; their FrameTracks (frames with no evidence left out)."""
        out = []
        w = self.workers[name]
        while True:
            frame = self._peek(name)
            if frame is None or frame.t + self.t_shift >= t:
                return out
            del self._next[name]
            ft = w.process(Frame(frame.index, frame.t + self.t_shift, frame.image) if self.t_shift else frame)
            if ft is not None:
                out.append(ft)

    def play(self, t: float) -> TrackObservations:
        """Every camera's frames before ``t`` (s, the store's clock) tracked and given to the stream; the shopper
        observations it can now write published (with ``t_last``: how far they go) and returned."""
        names = list(self.workers)
        results = self._map(lambda n: self._camera_until(n, t), names)
        for name, fts in zip(names, results):
            for ft in fts:
                self.stream.add(ft)
            self.stream.reached(name, t)
        self.t_played = t
        obs = self.stream.advance()
        if math.isfinite(self.stream.t_written):
            self.publish(obs, self.stream.t_written)
            self.records += 1
        return obs

    def _map(self, fn, items: list) -> list:
        """``[fn(x) for x in items]``, on :attr:`threads` threads at once."""
        if self.threads <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=min(self.threads, len(self.workers)),
                                            thread_name_prefix="camera")
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        """Stop the tracking threads and let each tracker report a run of blank frames still open (idempotent)."""
        for w in self.workers.values():
            if hasattr(w.tracker, "finish"):
                w.tracker.finish()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def problems(self) -> list[str]:
        """What the sources, the trackers and the stream noticed."""
        out = []
        for name, w in self.workers.items():
            out += getattr(self.sources[name], "problems", [])
            out += getattr(w.tracker, "problems", [])
        return out + list(self.stream.problems)
