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


VIDEO_MARKS = HERE / "aifi_video_marks.json"
#: Cameras fitted from the video marks (:func:`fit_video_marks`): no still of theirs has floor marks.
VIDEO_MARKED = ("cam3", "cam7")
#: Starting poses for the fit (camera centre, a store point it looks at), read off the frames: cam3 hangs near the
#: back of the aisle looking at the TV ledge, cam7 above the ledge looking down the aisle.
START = {"cam3": ((3.2, -0.1, 2.45), (0.3, -0.5, 0.6)), "cam7": ((0.2, -0.6, 2.45), (3.0, -0.3, 0.0))}


def _look_at(C, target) -> np.ndarray:
    z = np.asarray(target, np.float64) - np.asarray(C, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def fit_video_marks(name: str, marks: dict, K: np.ndarray, *, height_m: float, height_sd_m: float,
                    start: tuple | None = None) -> PoseFit:
    """Fit the pose of camera ``name`` (intrinsics ``K`` (3, 3) px fixed) to the marks of ``aifi_video_marks.json``:
    ``points`` (pixel ↔ store metres), ``lines`` (pixels on a known store line: point, direction), ``verticals``
    (two pixels on one vertical edge: the vertical vanishing point) and ``parallels`` (two pixels on an edge
    parallel to a known ``direction``, e.g. a shelf front along x), with the camera height as a prior
    (``height_m`` ± ``height_sd_m``). Robust least squares (SciPy). ``error_px`` lists every mark's residual in
    pixels (points: distance; lines: across the line; verticals and parallels: the second pixel off the line
    through the first and the vanishing point); ``error_cm`` the floor points' distance on the floor. Raises CalibrationError with
    fewer constraints than unknowns (6) or when the fit fails."""
    import cv2
    from scipy.optimize import least_squares

    pts = [(np.asarray(p["uv"], np.float64), np.asarray(p["xyz"], np.float64)) for p in marks.get("points", [])]
    lines = [(np.asarray(uv, np.float64), np.asarray(ln["point"], np.float64), np.asarray(ln["direction"], np.float64))
             for ln in marks.get("lines", []) for uv in ln["uv"]]
    verts = [(np.asarray(v["uv"], np.float64), np.array([0.0, 0.0, 1.0])) for v in marks.get("verticals", [])]
    verts += [(np.asarray(v["uv"], np.float64), np.asarray(v["direction"], np.float64))
              for v in marks.get("parallels", [])]
    if 2 * len(pts) + len(lines) + len(verts) + 1 < 6:
        raise CalibrationError(f"camera {name}: too few marks for a pose (points {len(pts)}, line pixels "
                               f"{len(lines)}, verticals {len(verts)})")
    C0, target = start or START.get(name, ((2.0, -0.5, height_m), (2.0, -0.5, 0.0)))
    x0 = np.r_[cv2.Rodrigues(np.ascontiguousarray(_look_at(C0, target).T))[0].ravel(), C0]

    def project(x, P):
        Xc = (np.asarray(P, np.float64).reshape(-1, 3) - x[3:]) @ cv2.Rodrigues(x[:3])[0].T
        h = K @ Xc.T
        return (h[:2] / h[2]).T

    def residuals(x):
        r = [project(x, X)[0] - uv for uv, X in pts]
        r = [np.concatenate(r)] if r else []
        out = []
        for uv, P0, D in lines:
            a, b = project(x, [P0, P0 + D])
            t = (b - a) / np.linalg.norm(b - a)
            out.append(np.array([-t[1], t[0]]) @ (uv - a))
        R_cw = cv2.Rodrigues(x[:3])[0]
        for (p1, p2), direction in verts:
            ln = np.cross([*p1, 1.0], K @ (R_cw @ direction))  # through p1 and the direction's vanishing point
            out.append((ln @ [*p2, 1.0]) / math.hypot(ln[0], ln[1]))
        return np.concatenate(r + [np.asarray(out), [(x[5] - height_m) / height_sd_m]])

    sol = least_squares(residuals, x0)
    if not sol.success:
        raise CalibrationError(f"camera {name}: the pose fit did not converge ({sol.message})")
    R_cw = cv2.Rodrigues(sol.x[:3])[0]
    model = CameraModel(name=name, width=WIDTH, height=HEIGHT, fps=10.0, K=K, dist=np.zeros(5), R=R_cw.T,
                        C=sol.x[3:].copy())
    res = residuals(sol.x)[:-1]
    n = 2 * len(pts)
    err_px = np.r_[np.linalg.norm(res[:n].reshape(-1, 2), axis=1), np.abs(res[n:])]
    floor = [(uv, X) for uv, X in pts if abs(X[2]) < 1e-6]
    err_cm = np.array([100 * np.linalg.norm(model.image_to_floor(uv[None])[0] - X[:2]) for uv, X in floor])
    return PoseFit(model, err_px, err_cm)


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
    if VIDEO_MARKS.exists():
        vm = json.loads(VIDEO_MARKS.read_text(encoding="utf-8"))
        for video in VIDEO_MARKED:
            if video in vm["cameras"]:
                out[video] = fit_video_marks(video, vm["cameras"][video], K, height_m=vm["prior_height_m"],
                                             height_sd_m=vm["prior_height_sd_m"])
    return out


def write(path: Path = OUTPUT) -> dict[str, PoseFit]:
    """Fit every camera and write the calibration file (``{"cameras": [{"video", "calibration", …}]}``)."""
    fits = fit_all()
    cams = []
    for video, fit in sorted(fits.items()):
        cams.append({"video": video, "still": (f"camera_stills/{video.replace('cam', 'camera_')}.png"
                                               if video not in VIDEO_MARKED else None),
                     "marks": len(fit.error_px), "rms_px": round(fit.rms_px, 2), "rms_cm": round(fit.rms_cm, 1) if len(fit.error_cm) else None,
                     "max_px": round(float(fit.error_px.max()), 2), "calibration": fit.model.to_dict()})
    out = {
        "description": "Full camera models of the AiFi NanoStore ceiling cameras for the cps-test videos "
                       "(cps-test-01-nodepth-camN.mp4), written by `python -m vision.aifi_cameras` "
                       "(vision/aifi_cameras.py says how). Marks: autocheckout_stills.json (the stills are frames "
                       "of these cameras).",
        "model": f"K: f = {FOCAL_PX:g} px at the image centre, no distortion (rectilinear frames); pose by solvePnP",
        "marks": {"cam1": "autocheckout_stills.json still 1 (floor marks, solvePnP)",
                  "cam5": "autocheckout_stills.json still 5 (floor marks, solvePnP)",
                  "cam3": "aifi_video_marks.json (room corners, ledge and glass-wall lines, verticals, height prior)",
                  "cam7": "aifi_video_marks.json (red tape, glass-wall line, verticals, height prior)"},
        "cameras": cams,
    }
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return fits


if __name__ == "__main__":
    for video, fit in write().items():
        C = fit.model.C
        cm = f"{fit.rms_cm:.1f} cm on the floor ({len(fit.error_cm)} floor marks)" if len(fit.error_cm) else "no floor mark"
        print(f"{video}: {len(fit.error_px)} marks, rms {fit.rms_px:.2f} px (max {fit.error_px.max():.2f}), "
              f"{cm}; centre ({C[0]:.2f}, {C[1]:.2f}, {C[2]:.2f}) m")
