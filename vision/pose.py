"""MediaPipe BlazePose landmarks on person crops, run through the TFLite interpreter of ``ai-edge-litert`` (pure: no
Django, no ``mediapipe`` package, which conflicts with opencv 5 here).

The person detector (:mod:`vision.detector`) finds the people; this module runs the BlazePose *landmark* model
(``pose_landmark_lite.tflite`` / ``pose_landmark_full.tflite`` of MediaPipe, Apache-2.0) on one square crop around
each person box, as MediaPipe's own two-stage pipeline does after its pose detector.

Model contract, read from the model files (``Interpreter.get_input_details()/get_output_details()``) and from
MediaPipe's graphs ``mediapipe/modules/pose_landmark/pose_landmark_by_roi_cpu.pbtxt`` and
``tensors_to_pose_landmarks_and_segmentation.pbtxt`` (github.com/google-ai-edge/mediapipe; landmark names in the
Pose Landmarker guide, ai.google.dev/mediapipe/solutions/vision/pose_landmarker, and the BlazePose paper,
arXiv:2006.10204):

- input ``[1, 256, 256, 3]`` float32, RGB in [0, 1] (``ImageToTensorCalculator`` with ``output_tensor_float_range
  {0, 1}``) of a square region of interest (MediaPipe's ROI: person centred, square on the long side, enlarged
  by :data:`ROI_SCALE`);
- output 0 ``[1, 195]`` = 39 landmarks × (x, y, z, visibility, presence): x, y in input pixels (0..256), z relative
  depth, visibility and presence as *logits* (MediaPipe applies a sigmoid). Landmarks 0..32 are the body, 33..38
  auxiliary (ROI points);
- output 1 ``[1, 1]`` pose-presence score, already a probability (MediaPipe thresholds it at 0.5 with no
  activation);
- outputs 2..4: segmentation ``[1, 256, 256, 1]``, heatmap ``[1, 64, 64, 39]``, world landmarks ``[1, 117]``
  (unused here; MediaPipe's optional heatmap refinement of x, y is not applied).

Topology (MediaPipe pose): 0 nose, 11/12 left/right shoulder, 13/14 elbow, **15 left wrist, 16 right wrist**, 23/24
hips, ... "Left" is the *person's* left: for a person facing the camera it is on the image's right.

What this does not do: MediaPipe's ROI is rotated so the body is upright (from the detector's hip/shoulder
keypoints); a person box gives no rotation, so crops are axis-aligned (fine for standing shoppers, weaker for
people bending far over or seen from straight above).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_SIZE = 256
NUM_LANDMARKS = 33
LEFT_WRIST, RIGHT_WRIST = 15, 16
LEFT_ANKLE, RIGHT_ANKLE = 27, 28
#: The square crop's side over the person box's longer side. MediaPipe enlarges its ROI (built from the pose
#: detector's hip-centre and body-radius points, ``pose_detection_to_roi.pbtxt``, ``square_long``) by 1.25-1.5
#: depending on the release; around a tight YOLO person box, 1.25 found the most poses on the real images of the
#: tests (measured: 71-75 % of 52 boxes at 1.25 vs 58-63 % at 1.1, 67-77 % at 1.5, fewer wrists in the box at 1.5).
ROI_SCALE = 1.25
#: MediaPipe's pose-presence threshold (``ThresholdingCalculator`` ``threshold: 0.5``).
PRESENCE_THRESHOLD = 0.5

NAMES = ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
         "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
         "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
         "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
         "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index")


class PoseError(RuntimeError):
    """The pose model cannot be loaded (missing file, ``ai-edge-litert`` not installed, unexpected model)."""


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise PoseError("the BlazePose stage needs ai-edge-litert (pip install -e '.[vision]')") from exc
    return Interpreter


def litert_available() -> bool:
    """True where the ``ai-edge-litert`` TFLite interpreter imports."""
    try:
        _interpreter_class()
    except PoseError:
        return False
    return True


@dataclass(frozen=True)
class Pose:
    """BlazePose landmarks of one person crop, in frame coordinates.

    ``keypoints`` (33, 3) float64: x, y pixels of the full frame and visibility in [0, 1] (sigmoid of the model's
    visibility logit: the likelihood the point is visible, not occluded); ``presence`` (33,) float64 in [0, 1]
    (likelihood the point is inside the crop); ``score`` the model's pose-presence probability; ``roi`` (4,) the
    square crop (x1, y1, x2, y2) pixels, which may extend past the frame.
    """

    keypoints: np.ndarray
    presence: np.ndarray
    score: float
    roi: np.ndarray

    @property
    def found(self) -> bool:
        """MediaPipe's own test: pose-presence score ≥ 0.5."""
        return self.score >= PRESENCE_THRESHOLD

    @property
    def wrists(self) -> np.ndarray:
        """(2, 2) pixels of the [left, right] wrist (the person's left and right)."""
        return self.keypoints[[LEFT_WRIST, RIGHT_WRIST], :2]

    @property
    def wrist_score(self) -> np.ndarray:
        """(2,) visibility of the [left, right] wrist in [0, 1]."""
        return self.keypoints[[LEFT_WRIST, RIGHT_WRIST], 2]

    @property
    def ankles(self) -> np.ndarray:
        """(2,) pixels: the midpoint of the two ankles (the person's foot point on the floor, ~8 cm up)."""
        return self.keypoints[[LEFT_ANKLE, RIGHT_ANKLE], :2].mean(axis=0)

    @property
    def ankle_score(self) -> np.ndarray:
        """(2,) visibility of the [left, right] ankle in [0, 1]."""
        return self.keypoints[[LEFT_ANKLE, RIGHT_ANKLE], 2]


def square_roi(box: np.ndarray, scale: float = ROI_SCALE) -> np.ndarray:
    """The square crop (x1, y1, x2, y2) pixels around a person box (x1, y1, x2, y2): same centre, side ``scale`` ×
    the box's longer side (MediaPipe's ``square_long`` ROI enlarged 1.25×)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = scale * max(x2 - x1, y2 - y1, 1.0) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class BlazePoseLandmarks:
    """The BlazePose landmark model (lite or full ``.tflite``) on person crops.

    ``model_path`` the ``.tflite`` file; ``num_threads`` interpreter threads (None: the runtime's default);
    ``roi_scale`` the crop enlargement around a person box. Raises :class:`PoseError` when the file is missing,
    ``ai-edge-litert`` is not installed or the model's tensors are not BlazePose's. Not thread-safe (one
    interpreter); keep one instance per worker/camera.
    """

    def __init__(self, model_path: str | Path, *, num_threads: int | None = None, roi_scale: float = ROI_SCALE):
        path = Path(model_path)
        if not path.is_file():
            raise PoseError(f"pose model file {path} does not exist")
        Interpreter = _interpreter_class()
        try:
            kw = {"num_threads": int(num_threads)} if num_threads else {}
            self._it = Interpreter(model_path=str(path), **kw)
            self._it.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError with the detail
            raise PoseError(f"cannot load pose model {path}: {exc}") from exc
        inp = self._it.get_input_details()
        if len(inp) != 1 or list(inp[0]["shape"]) != [1, INPUT_SIZE, INPUT_SIZE, 3] or inp[0]["dtype"] != np.float32:
            raise PoseError(f"{path.name} is not a BlazePose landmark model (input {inp[0]['shape']})")
        self._in = inp[0]["index"]
        by_size = {int(np.prod(d["shape"])): d["index"] for d in self._it.get_output_details()}
        if 195 not in by_size or 1 not in by_size:
            raise PoseError(f"{path.name} is not a BlazePose landmark model (outputs {sorted(by_size)})")
        self._landmarks, self._flag = by_size[195], by_size[1]
        self.model_path = path
        self.name = path.stem
        self.roi_scale = float(roi_scale)

    def crop(self, frame_bgr: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model input for one person: ((1, 256, 256, 3) float32 RGB in [0, 1], roi (4,) pixels). Parts of the
        square ROI outside the frame are black (MediaPipe pads the same way)."""
        import cv2

        roi = square_roi(box, self.roi_scale)
        s = INPUT_SIZE / (roi[2] - roi[0])
        m = np.array([[s, 0.0, -s * roi[0]], [0.0, s, -s * roi[1]]])
        patch = cv2.warpAffine(frame_bgr, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        return rgb[None], roi

    def __call__(self, frame_bgr: np.ndarray, box: np.ndarray) -> Pose:
        """Landmarks of the person in ``box`` (x1, y1, x2, y2 pixels) of ``frame_bgr`` ((H, W, 3) uint8 BGR)."""
        tensor, roi = self.crop(frame_bgr, np.asarray(box, dtype=np.float64))
        self._it.set_tensor(self._in, tensor)
        self._it.invoke()
        raw = self._it.get_tensor(self._landmarks).reshape(39, 5)[:NUM_LANDMARKS].astype(np.float64)
        score = float(self._it.get_tensor(self._flag).reshape(-1)[0])
        k = (roi[2] - roi[0]) / INPUT_SIZE
        kp = np.column_stack([roi[0] + raw[:, 0] * k, roi[1] + raw[:, 1] * k, _sigmoid(raw[:, 3])])
        return Pose(keypoints=kp, presence=_sigmoid(raw[:, 4]), score=score, roi=roi)

    def poses(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> list[Pose]:
        """One :class:`Pose` per box of ``boxes`` (n, 4) pixels."""
        return [self(frame_bgr, b) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]
