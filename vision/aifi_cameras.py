"""Full camera models (K, distortion, pose) of the AiFi NanoStore ceiling cameras for the cps-test videos.

Why: the published ``store_meta/calibration.json`` does not register with the videos (its plates land in the middle
of the floor), and the floor homographies of ``vision/calibrations/autocheckout_stills.json`` give floor points only.
Hands in 3-D need the whole camera. The stills ``camera_stills/camera_N.png`` are frames of the same cameras as the
videos ``cps-test-01-nodepth-camN.mp4`` for N = 1, 3, 5 (same viewpoint pixel for pixel: :func:`same_view`); their
hand-marked floor points (pixel ↔ store metres, surveyed as that file's ``method`` says) are reused here.

Model (the marks file's finding, kept): the frames are rectilinear with focal length 340 px at the image centre
(vanishing points), so ``K = [[340, 0, 320], [0, 340, 180], [0, 0, 1]]`` for 640×360 and no distortion; the pose
(R, C) is fitted to the marks with OpenCV ``solvePnP`` (SQPnP, then Levenberg–Marquardt). Errors are reported per
camera in pixels (reprojection) and centimetres (the marked pixel's ray on the floor vs the surveyed point).

Pure NumPy + OpenCV; no Django. ``python -m vision.aifi_cameras`` rewrites ``aifi_video_cameras.json`` and prints
the error table.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import CalibrationError, CameraModel

HERE = Path(__file__).resolve().parent / "calibrations"
MARKS = HERE / "autocheckout_stills.json"
OUTPUT = HERE / "aifi_video_cameras.json"
#: Focal length in pixels of the 640×360 frames (autocheckout_stills.json ``pixels``: vanishing points).
FOCAL_PX = 340.0
WIDTH, HEIGHT = 640, 360
#: Video file camN ↔ still camera_N: the same camera (checked by :func:`same_view`). Still 3 shows no floor mark
#: (its marks were not made), camera 7 has no still.
VIDEO_OF_STILL = {"1": "cam1", "3": "cam3", "5": "cam5"}


@dataclass(frozen=True)
class PoseFit:
    """A camera fitted from marks: ``model`` (:class:`CameraModel`), ``error_px`` (N,) reprojection error of each
    mark in pixels, ``error_cm`` (N,) distance on the floor (z = 0 marks) between the surveyed point and the marked
    pixel's ray, centimetres."""

    model: CameraModel
    error_px: np.ndarray
    error_cm: np.ndarray

    @property
    def rms_px(self) -> float:
        return float(np.sqrt(np.mean(self.error_px ** 2)))

    @property
    def rms_cm(self) -> float:
        return float(np.sqrt(np.mean(self.error_cm ** 2)))


def intrinsics(width: int = WIDTH, height: int = HEIGHT, focal_px: float = FOCAL_PX) -> np.ndarray:
    """(3, 3) pinhole intrinsics in pixels, principal point at the image centre."""
    return np.array([[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]])


def fit_pose(name: str, uv, xyz, K: np.ndarray, dist: np.ndarray | None = None, *, width: int = WIDTH,
             height: int = HEIGHT) -> PoseFit:
    """Fit the pose of a camera with known intrinsics ``K`` (3, 3) px and ``dist`` from ≥ 4 marks: ``uv`` (N, 2)
    pixels, ``xyz`` (N, 3) store metres. Raises CalibrationError with fewer than 4 marks or when no pose fits."""
    import cv2

    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    if uv.shape[0] < 4 or uv.shape[0] != xyz.shape[0]:
        raise CalibrationError(f"camera {name}: a pose needs ≥ 4 marks with store points, got {uv.shape[0]}")
    d = np.zeros(5) if dist is None else np.asarray(dist, np.float64)
    ok, rvec, tvec = cv2.solvePnP(xyz, uv, K, d, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise CalibrationError(f"camera {name}: solvePnP found no pose")
    ok, rvec, tvec = cv2.solvePnP(xyz, uv, K, d, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    R_cw = cv2.Rodrigues(rvec)[0]
    C = (-R_cw.T @ tvec).ravel()
    model = CameraModel(name=name, width=width, height=height, fps=10.0, K=K, dist=d, R=R_cw.T, C=C)
    err_px = np.linalg.norm(model.project(xyz) - uv, axis=1)
    on_floor = np.abs(xyz[:, 2]) < 1e-6
    err_cm = np.full(uv.shape[0], np.nan)
    if on_floor.any():
        err_cm[on_floor] = 100 * np.linalg.norm(model.image_to_floor(uv[on_floor]) - xyz[on_floor, :2], axis=1)
    return PoseFit(model, err_px, err_cm[np.isfinite(err_cm)])


def same_view(still: np.ndarray, frame: np.ndarray) -> float:
    """Median absolute difference (grey levels, 0–255) between a still and a video frame of the same size after
    blurring (people move; the room does not): below ~20 the two are one camera at one pose."""
    import cv2

    a = cv2.GaussianBlur(cv2.cvtColor(still, cv2.COLOR_BGR2GRAY), (9, 9), 0).astype(np.float64)
    b = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (9, 9), 0).astype(np.float64)
    return float(np.median(np.abs(a - b)))


def fit_all(marks: Path = MARKS) -> dict[str, PoseFit]:
    """Video camera name → its fit, for every still with marks whose camera recorded video."""
    doc = json.loads(marks.read_text(encoding="utf-8"))
    out = {}
    K = intrinsics()
    for still, video in VIDEO_OF_STILL.items():
        cam = doc["cameras"].get(still)
        if cam is None:
            continue
        uv = [[p["u"], p["v"]] for p in cam["points"]]
        xyz = [[p["x"], p["y"], 0.0] for p in cam["points"]]
        out[video] = fit_pose(video, uv, xyz, K)
    return out


def write(path: Path = OUTPUT) -> dict[str, PoseFit]:
    """Fit every camera and write the calibration file (``{"cameras": [{"video", "calibration", …}]}``)."""
    fits = fit_all()
    doc = json.loads(MARKS.read_text(encoding="utf-8"))
    cams = []
    for video, fit in sorted(fits.items()):
        cams.append({"video": video, "still": f"camera_stills/{video.replace('cam', 'camera_')}.png",
                     "marks": len(fit.error_px), "rms_px": round(fit.rms_px, 2), "rms_cm": round(fit.rms_cm, 1),
                     "max_px": round(float(fit.error_px.max()), 2), "calibration": fit.model.to_dict()})
    out = {
        "description": "Full camera models of the AiFi NanoStore ceiling cameras for the cps-test videos "
                       "(cps-test-01-nodepth-camN.mp4), written by `python -m vision.aifi_cameras` "
                       "(vision/aifi_cameras.py says how). Marks: autocheckout_stills.json (the stills are frames "
                       "of these cameras).",
        "model": f"K: f = {FOCAL_PX:g} px at the image centre, no distortion (rectilinear frames); pose by solvePnP",
        "not_calibrated": {"cam3": doc["not_calibrated"].get("3", "no marks"),
                           "cam7": "no still and no marks yet"},
        "cameras": cams,
    }
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return fits


if __name__ == "__main__":
    for video, fit in write().items():
        C = fit.model.C
        print(f"{video}: {len(fit.error_px)} marks, rms {fit.rms_px:.2f} px (max {fit.error_px.max():.2f}), "
              f"{fit.rms_cm:.1f} cm on the floor; centre ({C[0]:.2f}, {C[1]:.2f}, {C[2]:.2f}) m")
