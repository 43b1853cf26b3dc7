"""Person detection (and per-camera tracking) behind one small interface, backed by ultralytics.

:class:`PersonDetector` loads a model by path or name (``yolo11n.pt``, ``yolo11n-pose.pt`` download through
ultralytics on a machine with internet; here the ONNX files in ``../shared/models/``) and returns
:class:`Detections` of the person class (COCO class 0) only. One instance owns one tracker state (ultralytics
ByteTrack or BoT-SORT through ``model.track(persist=True, stream=True)``), so keep **one detector per camera**
and call :meth:`PersonDetector.reset_tracker` between recordings.

Hands (wrist pixels) come, in order of preference, from:

- ``"pose-model"``: the model itself is a pose model (COCO-17 keypoints; 9 = left wrist, 10 = right wrist);
- ``"blazepose"``: the pose stage (``pose=`` a BlazePose landmark ``.tflite``, :mod:`vision.pose`) on a square crop
  around each person box: MediaPipe's wrists (15 left, 16 right), score = the wrist's visibility. A person whose
  crop gives no pose (pose-presence < 0.5) gets the box approximation instead, and the frame's source reads
  ``"blazepose+approx-box"``;
- ``"approx-box"``: a documented approximation when no pose stage is configured (or it cannot load): each wrist at one side of the
  person box, 55 % of the box height from its top (a standing person's wrists hang at ≈ 48 % of stature above the
  floor: Winter, *Biomechanics and Motor Control of Human Movement*, segment-length table), with score 0.2 so fusion
  weighs it low. In overhead views this is only a coarse guess at where the hands are.

``Detections.hands_source`` says which one produced the wrists.

CPU threads (ONNX models): the deployment is one worker process per camera, and those processes together already
keep every core busy, so each ONNX Runtime session runs single-threaded without spin-waiting (``threads=1``, the
default of :class:`PersonDetector`; see :func:`onnx_session_options`). ``threads=0`` keeps ONNX Runtime's own
default (an intra-op pool of one thread per core that spin-waits between operators).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store.checks import check_array, check_rows

from . import yolo_environment
from .pose import BlazePoseLandmarks, PoseError

log = logging.getLogger(__name__)

PERSON = 0
APPROX_WRIST_FROM_TOP = 0.55
APPROX_WRIST_SCORE = 0.2
TRACKERS = {"bytetrack": "bytetrack.yaml", "botsort": "botsort.yaml"}


class DetectorError(RuntimeError):
    """The model cannot be loaded or run (missing file, unknown tracker, frame of the wrong type)."""


@dataclass(frozen=True)
class Detections:
    """People found in one frame.

    ``xyxy`` (n, 4) float64 pixels (x1, y1, x2, y2) of the full frame; ``confidence`` (n,) float64 in [0, 1];
    ``tracker_id`` (n,) int64 raw tracker ids (per tracker instance; −1 where untracked); ``wrists`` (n, 2, 2)
    float64 pixels of the [left, right] wrist (NaN where unknown); ``wrist_score`` (n, 2) float64 in [0, 1];
    ``hands_source`` ``"pose-model"``, ``"blazepose"``, ``"blazepose+approx-box"`` (some people fell back to the
    box), ``"approx-box"`` or ``"none"``; ``ankles`` (n, 2) float64 pixels, the midpoint of the two ankles where the
    pose model saw both (NaN elsewhere), or None without a pose stage: the foot point of a person whose box is
    widened by a reaching arm.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    tracker_id: np.ndarray
    wrists: np.ndarray
    wrist_score: np.ndarray
    hands_source: str = "none"
    ankles: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, _ = check_array("Detections.xyxy", self.xyxy, (None, 4))
        check_rows(self, ("confidence", "tracker_id", "wrists:2x2", "wrist_score:2") + (
            ("ankles:2",) if self.ankles is not None else ()), n)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, mask: Any) -> "Detections":
        return Detections(self.xyxy[mask], self.confidence[mask], self.tracker_id[mask], self.wrists[mask],
                          self.wrist_score[mask], self.hands_source,
                          None if self.ankles is None else self.ankles[mask])

    @classmethod
    def empty(cls, hands_source: str = "none") -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 2, 2)), np.zeros((0, 2)),
                   hands_source)

    @property
    def foot(self) -> np.ndarray:
        """Foot points (n, 2) pixels: the ankles' midpoint where the pose model saw both ankles, else the bottom
        centre of the box (which a reaching arm pulls sideways)."""
        box = np.column_stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]])
        if self.ankles is None:
            return box
        ok = np.isfinite(self.ankles).all(axis=1)
        box[ok] = self.ankles[ok]
        return box

    @classmethod
    def from_ultralytics(cls, result: Any, *, approximate_hands: bool = True) -> "Detections":
        """From one ``ultralytics.engine.results.Results``: person boxes only, tracker ids when the result was
        tracked (``boxes.is_track``), wrists from ``result.keypoints`` when present, else the box approximation
        (``approximate_hands``)."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty("pose-model" if getattr(result, "keypoints", None) is not None else
                             ("approx-box" if approximate_hands else "none"))
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        conf = boxes.conf.cpu().numpy().astype(np.float64)
        cls_ = boxes.cls.cpu().numpy().astype(np.int64)
        ids = (boxes.id.cpu().numpy().astype(np.int64) if getattr(boxes, "is_track", False) and boxes.id is not None
               else np.full(xyxy.shape[0], -1, np.int64))
        kp = getattr(result, "keypoints", None)
        if kp is not None and kp.xy is not None and kp.xy.shape[1] >= 11:
            xy = kp.xy.cpu().numpy().astype(np.float64)
            sc = (kp.conf.cpu().numpy().astype(np.float64) if kp.conf is not None
                  else np.ones(xy.shape[:2]))
            wrists, wscore, source = xy[:, 9:11, :], sc[:, 9:11], "pose-model"
            wrists = np.where(wscore[..., None] > 0, wrists, np.nan)
        elif approximate_hands:
            wrists, wscore, source = approximate_wrists(xyxy), np.full((xyxy.shape[0], 2), APPROX_WRIST_SCORE), \
                "approx-box"
        else:
            wrists, wscore, source = np.full((xyxy.shape[0], 2, 2), np.nan), np.zeros((xyxy.shape[0], 2)), "none"
        keep = cls_ == PERSON
        return cls(xyxy, conf, ids, wrists, wscore, source)[keep]


def with_blazepose(det: Detections, frame: np.ndarray, pose: Any, *, approximate_hands: bool = True,
                   min_score: float = 0.5) -> Detections:
    """``det`` with its wrists from the BlazePose landmark model ``pose`` (a :class:`vision.pose.BlazePoseLandmarks`)
    run on ``frame`` (H, W, 3) BGR around each box: [left, right] wrist pixels of the frame, score = visibility in
    [0, 1]. People whose pose-presence score is below ``min_score`` keep the box approximation (score
    ``APPROX_WRIST_SCORE``; NaN without ``approximate_hands``)."""
    n = len(det)
    if n == 0:
        return Detections.empty("blazepose")
    wrists = np.full((n, 2, 2), np.nan)
    score = np.zeros((n, 2))
    found = np.zeros(n, bool)
    ankles = np.full((n, 2), np.nan)
    for i, p in enumerate(pose.poses(frame, det.xyxy)):
        if p.score >= min_score:
            wrists[i], score[i], found[i] = p.wrists, p.wrist_score, True
            if hasattr(p, "ankles") and p.ankle_score.min() >= min_score:
                ankles[i] = p.ankles
    if not found.all() and approximate_hands:
        wrists[~found] = approximate_wrists(det.xyxy[~found])
        score[~found] = APPROX_WRIST_SCORE
    source = ("blazepose" if found.all() else "blazepose+approx-box" if found.any() and approximate_hands else
              "blazepose" if found.any() else "approx-box" if approximate_hands else "none")
    return Detections(det.xyxy, det.confidence, det.tracker_id, wrists, score, source, ankles)


def approximate_wrists(xyxy: np.ndarray) -> np.ndarray:
    """The documented box approximation of wrist pixels: (n, 4) xyxy → (n, 2, 2) [image-left, image-right] wrists
    at the box's sides, ``APPROX_WRIST_FROM_TOP`` of its height below its top."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    y = xyxy[:, 1] + APPROX_WRIST_FROM_TOP * (xyxy[:, 3] - xyxy[:, 1])
    return np.stack([np.column_stack([xyxy[:, 0], y]), np.column_stack([xyxy[:, 2], y])], axis=1)


def onnx_session_options(threads: int) -> Any:
    """``onnxruntime.SessionOptions`` for ``threads`` intra-op threads (≥ 1) with spin-waiting off
    (``session.intra_op.allow_spinning = "0"``: idle pool threads sleep instead of burning CPU) and one inter-op
    thread (the sequential executor does not use that pool)."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1 here, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _threaded_predictor(base: type, threads: int) -> type:
    """A subclass of the ultralytics predictor class ``base`` whose ONNX Runtime session uses
    :func:`onnx_session_options` (``threads``).

    Why this way: ultralytics 8.4 builds the session in ``ONNXBackend.load_model`` from the backend's
    ``session_options`` attribute (its constructor takes ``session_options=``, which ultralytics' own benchmark
    uses), but neither ``YOLO(...)``, ``AutoBackend`` nor ``predict``/``track`` arguments pass options through. A
    custom predictor class (``Model.predict(predictor=...)``, the documented way to customise prediction) is the
    one public hook: after the stock ``setup_model`` builds the backend, this one sets ``session_options`` on the
    ONNX backend and reloads it with them (once per predictor; ultralytics rebuilds the predictor only when a setup
    argument changes, and then through this class again). Anything else (PyTorch weights, OpenCV DNN, a backend
    without ``session_options`` in another ultralytics version) is left as ultralytics made it, with a log line.
    """

    class ThreadedPredictor(base):  # type: ignore[misc, valid-type]
        onnx_threads = threads

        def setup_model(self, model: Any, verbose: bool = True) -> None:
            super().setup_model(model, verbose)
            backend = getattr(self.model, "backend", None)
            weight = model if isinstance(model, (str, Path)) else getattr(self.args, "model", None)
            if (type(backend).__name__ != "ONNXBackend" or getattr(backend, "format", "") != "onnx"
                    or not hasattr(backend, "session_options") or not hasattr(backend, "load_model") or not weight):
                log.info("threads=%d not applied: %s is not an ONNX Runtime backend with session options",
                         self.onnx_threads, type(backend).__name__)
                return
            backend.session_options = onnx_session_options(self.onnx_threads)
            backend.load_model(str(weight))

    ThreadedPredictor.__name__ = ThreadedPredictor.__qualname__ = f"Threaded{base.__name__}"
    return ThreadedPredictor


def onnx_input_size(path: str | Path) -> int | None:
    """The square input size of an ONNX model (from the Ultralytics ``imgsz`` metadata or the fixed input shape),
    or None when dynamic/unknown."""
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), onnx_session_options(1), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure is reported by ultralytics later with detail
        log.debug("cannot read ONNX input size of %s: %s", path, exc)
        return None
    meta = sess.get_modelmeta().custom_metadata_map
    if "imgsz" in meta:
        try:
            vals = [int(v) for v in meta["imgsz"].strip("[]() ").split(",") if v.strip()]
            if vals:
                return max(vals)
        except ValueError:
            pass
    shape = sess.get_inputs()[0].shape
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return max(shape[2], shape[3])
    return None


class PersonDetector:
    """A person detector and one tracker state, backed by ultralytics.

    ``model``: a path (``.onnx``, ``.pt``) or an ultralytics model name; ``imgsz`` the network input size in
    pixels (default: the ONNX model's fixed size, else 640); ``conf`` the detection threshold; ``tracker``
    ``"bytetrack"`` or ``"botsort"``; ``approximate_hands``: give box-approximated wrists when the model is not a
    pose model (and as the fallback of the pose stage); ``pose``: a BlazePose landmark ``.tflite`` path (or a
    :class:`vision.pose.BlazePoseLandmarks`) for wrists on person crops, ignored for pose models; when it cannot be
    loaded (missing file, ``ai-edge-litert`` absent) the detector logs why, keeps it in ``pose_problem`` and uses the
    box approximation. ``hands_source`` (property) names the wrist source in use.

    ``threads`` (ONNX models only; ignored for others): ONNX Runtime intra-op threads of this detector's session,
    with spin-waiting off; ``0`` = ONNX Runtime's default (one thread per core, spin-waiting). The default, 1, is
    the recommended deployment: **one worker process per camera, one thread each**. Measured on the 2-core
    development machine (yolo11n_int8.onnx, imgsz 320, ``track`` on store_aisle_overhead.mp4, 140 timed frames,
    frames pre-decoded, frames per CPU-second of the process, 6 runs each, other jobs on the machine):
    threads=0 25.9–33.8 (33.8, 33.8, 28.6, 33.8, 28.3, 25.9), threads=1 63.3–70.9 (70.9, 69.9, 63.3, 69.1, 66.8,
    68.5), about 2.1× less CPU per frame; ``bench/bench_vision.py`` (decode + track + projection) gives 59–61 vs
    31–32 for bare ultralytics defaults, i.e. ≈ 119 fps on 2 cores against the 40 fps goal. Boxes are identical
    either way (``tests/test_vision_detector_threads.py``). ``threads_applied`` (property) says whether the running
    session has the setting.

    Raises DetectorError if the model file is missing, the tracker unknown or ``threads`` negative. Not
    thread-safe.
    """

    def __init__(self, model: str | Path, *, imgsz: int | None = None, conf: float = 0.25,
                 tracker: str = "bytetrack", approximate_hands: bool = True, device: str = "cpu",
                 pose: Any = None, threads: int = 1):
        yolo_environment()
        if tracker not in TRACKERS:
            raise DetectorError(f"tracker must be one of {', '.join(TRACKERS)}, not {tracker!r}")
        if int(threads) < 0:
            raise DetectorError(f"threads must be 0 (ONNX Runtime default) or a positive count, not {threads}")
        model = str(model)
        is_path = os.sep in model or model.endswith(".onnx")
        if is_path and not Path(model).exists():
            raise DetectorError(f"model file {model} does not exist")
        from ultralytics import YOLO

        task = None
        if model.endswith(".onnx"):
            task = "pose" if "pose" in Path(model).name else "detect"
        try:
            self.model = YOLO(model, task=task) if task else YOLO(model)
        except Exception as exc:  # noqa: BLE001 - ultralytics raises many types; the message says which file
            raise DetectorError(f"cannot load model {model}: {exc}") from exc
        self.model_name = model
        self.threads = int(threads)
        # the ultralytics predictor class to pass to predict/track (None: ultralytics' own, i.e. threads=0 or
        # not ONNX); one class per detector, since ultralytics rebuilds the predictor when the class changes
        self._predictor = (_threaded_predictor(self.model.task_map[self.model.task]["predictor"], self.threads)
                           if self.threads and model.endswith(".onnx") else None)
        self.imgsz = int(imgsz or (onnx_input_size(model) if model.endswith(".onnx") else None) or 640)
        self.conf = float(conf)
        self.tracker = tracker
        self.approximate_hands = approximate_hands
        self.device = device
        self.is_pose = getattr(self.model, "task", "") == "pose"
        self.pose = None
        self.pose_problem = ""
        if pose is not None and not self.is_pose:
            if isinstance(pose, (str, Path)):
                try:
                    pose = BlazePoseLandmarks(pose)
                except PoseError as exc:
                    self.pose_problem = f"{exc}; wrists fall back to the box approximation"
                    log.warning("%s", self.pose_problem)
                    pose = None
            self.pose = pose

    @property
    def hands_source(self) -> str:
        """Where wrists come from: ``"pose-model"``, ``"blazepose"`` (falling back per person to the box),
        ``"approx-box"`` or ``"none"``."""
        if self.is_pose:
            return "pose-model"
        if self.pose is not None:
            return "blazepose"
        return "approx-box" if self.approximate_hands else "none"

    @property
    def onnx_session(self) -> Any:
        """The ONNX Runtime ``InferenceSession`` in use (None before the first frame, or when not ONNX Runtime)."""
        predictor = getattr(self.model, "predictor", None)
        backend = getattr(getattr(predictor, "model", None), "backend", None)
        return getattr(backend, "session", None)

    @property
    def threads_applied(self) -> bool | None:
        """Whether the running ONNX Runtime session has this detector's ``threads`` setting (read back from the
        session's options); None before the first frame, for non-ONNX models or with ``threads=0``."""
        session = self.onnx_session
        if session is None or not self.threads:
            return None
        opts = session.get_session_options()
        return (opts.intra_op_num_threads == self.threads
                and opts.get_session_config_entry("session.intra_op.allow_spinning") == "0")

    def _hands(self, det: Detections, frame: np.ndarray) -> Detections:
        if self.pose is None or self.is_pose:
            return det
        return with_blazepose(det, frame, self.pose, approximate_hands=self.approximate_hands)

    def _check(self, frame: Any) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
            shape = getattr(frame, "shape", None)
            raise DetectorError(f"frame must be an (H, W, 3) BGR image, got {type(frame).__name__} {shape}")
        return frame

    def detect(self, frame: np.ndarray) -> Detections:
        """People in one BGR frame (H, W, 3) uint8, without tracking (``tracker_id`` −1)."""
        frame = self._check(frame)
        result = self.model.predict(frame, imgsz=self.imgsz, conf=self.conf, classes=[PERSON], verbose=False,
                                    device=self.device, predictor=self._predictor)[0]
        return self._hands(Detections.from_ultralytics(result, approximate_hands=self.approximate_hands), frame)

    def track(self, frame: np.ndarray) -> Detections:
        """People in one BGR frame (H, W, 3) uint8, tracked by this detector's tracker (``persist=True``): raw
        ``tracker_id`` ≥ 1 for confirmed tracks; detections the tracker has not (yet) confirmed are dropped."""
        frame = self._check(frame)
        results = self.model.track(frame, persist=True, stream=True, tracker=TRACKERS[self.tracker],
                                   imgsz=self.imgsz, conf=self.conf, classes=[PERSON], verbose=False,
                                   device=self.device, predictor=self._predictor)
        result = next(iter(results))
        det = Detections.from_ultralytics(result, approximate_hands=self.approximate_hands)
        return self._hands(det[det.tracker_id >= 0], frame)

    def reset_tracker(self) -> None:
        """Forget every track (a new recording or a reconnected stream starts with a fresh tracker)."""
        predictor = getattr(self.model, "predictor", None)
        for tracker in getattr(predictor, "trackers", None) or []:
            tracker.reset()
