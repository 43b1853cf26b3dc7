"""Full camera models (K, distortion, pose) of the AiFi NanoStore ceiling cameras for the cps-test videos.

Why: the published ``store_meta/calibration.json`` does not register with the videos (its plates land in the middle
of the floor), and the floor homographies of ``vision/calibrations/autocheckout_stills.json`` give floor points only.
Hands in 3-D need the whole camera. The stills ``camera_stills/camera_N.png`` are frames of the same cameras as the
videos ``cps-test-01-nodepth-camN.mp4`` for N = 1, 3, 5 (same viewpoint pixel for pixel: :func:`same_view`); their
hand-marked floor points (pixel ↔ store metres, surveyed as that file's ``method`` says) are reused here.

Model (the marks file's finding, kept): the frames are rectilinear with focal length 340 px at the image centre
(vanishing points), so ``K = [[340, 0, 320], [0, 340, 180], [0, 0, 1]]`` for 640×360 and no distortion. cam1 and
cam5: pose from their stills' floor marks (:func:`fit_pose`, OpenCV solvePnP). cam3 and cam7 (no still with marks)
are fitted **together** with them (:func:`fit_joint`, a small bundle adjustment; :func:`joint_fit` holds cam1 and
cam5 at their stills fits): each camera's marks of ``aifi_video_marks.json`` (store points, points on known store
lines such as the TV ledge's foot and the shelf strip, vertical and along-the-aisle edges, the camera height as a
prior) and *ties*, floor features marked in two or more cameras whose position the fit places; the stills' floor
marks are ties whose surveyed positions (``autocheckout_stills.json``, ±0.15 m absolute by that survey's own
account) are priors. Why: fitted alone, cam7 sat 0.7 m in front of the shelves (misread door edges) and cam3's and
cam7's rays through the FIJI hand met 0.2 m in front of the shelf (issue #13). Freeing cam1 and cam5 as well
(``joint_fit(hold_stills=False)``) also puts the TV ledge where the layout has it (alone, cam1 draws its foot at
x = 0.43 m), but moves cam5's floor points enough to split cps-test-01's shopper in two: not in use
(docs/cps-test-video.md). Errors are reported per camera in pixels and centimetres (a floor mark's pixel ray on the
floor vs its store point).

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


@dataclass(frozen=True)
class PoseFit:
    """A camera fitted from marks: ``model`` (:class:`CameraModel`), ``error_px`` (N,) residual of each mark in
    pixels, ``error_cm`` (M,) distance on the floor between each floor mark's store point (surveyed, or placed by
    the joint fit for a tie) and the marked pixel's ray on the floor, centimetres."""

    model: CameraModel
    error_px: np.ndarray
    error_cm: np.ndarray

    @property
    def rms_px(self) -> float:
        return float(np.sqrt(np.mean(self.error_px ** 2)))

    @property
    def rms_cm(self) -> float:
        return float(np.sqrt(np.mean(self.error_cm ** 2)))


@dataclass(frozen=True)
class JointFit:
    """All cameras fitted at once (:func:`fit_joint`): ``fits`` camera name → :class:`PoseFit`; ``ties`` tie name →
    (2,) its floor position placed by the fit, metres; ``surveyed`` tie name → (2,) the survey's position where it
    has one (``autocheckout_stills.json`` features)."""

    fits: dict[str, PoseFit]
    ties: dict[str, np.ndarray]
    surveyed: dict[str, np.ndarray]


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


#: Video file camN ↔ still camera_N: the same camera (checked by :func:`same_view`). Still 3 shows no floor mark
#: (its marks were not made), camera 7 has no still.
VIDEO_OF_STILL = {"1": "cam1", "3": "cam3", "5": "cam5"}
VIDEO_MARKS = HERE / "aifi_video_marks.json"
#: The cameras of the cps-test videos, all fitted together by :func:`fit_joint`.
CAMERAS = ("cam1", "cam3", "cam5", "cam7")
#: Cameras with no still of their own (their marks come from their video frames only).
VIDEO_MARKED = ("cam3", "cam7")
#: Starting poses for the fit (camera centre, a store point it looks at), read off the frames: cam1 hangs at the back
#: of the aisle and cam3 a little nearer the TV, both looking at the TV ledge; cam5 (mid-aisle) and cam7 (above the
#: ledge) look down the aisle towards the back wall.
START = {"cam1": ((4.0, 0.0, 2.45), (1.5, -0.6, 0.0)), "cam3": ((3.2, -0.1, 2.45), (0.3, -0.5, 0.6)),
         "cam5": ((1.2, 0.0, 2.45), (3.5, -0.6, 0.0)), "cam7": ((0.2, -0.6, 2.45), (3.0, -0.3, 0.0))}
#: Robust loss scale of the joint fit, pixels (SciPy ``soft_l1``): a mark off by more counts less than squared.
LOSS_SCALE_PX = 4.0
#: The accuracy of one mark, pixels (the marks files' ``method``: about 2 px for points): priors (camera height, a
#: tie's surveyed position) enter the fit as (value - prior) / sd × this, so one sd weighs as much as a 2 px miss.
MARK_SD_PX = 2.0


def _look_at(C, target) -> np.ndarray:
    z = np.asarray(target, np.float64) - np.asarray(C, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def camera_marks(video_marks: dict, stills: dict) -> dict[str, dict]:
    """Camera name → its marks for :func:`fit_joint`: the video marks file's ``points``, ``lines``, ``verticals``,
    ``parallels`` and ``ties``, plus, for a camera with ``points_from_still``, that still's floor marks as ties named
    by their feature (their surveyed positions become priors)."""
    out = {}
    for name, cam in video_marks["cameras"].items():
        m = {k: list(cam.get(k, [])) for k in ("points", "lines", "verticals", "parallels", "ties")}
        still = cam.get("points_from_still")
        if still is not None:
            m["ties"] += [{"uv": [p["u"], p["v"]], "tie": p["feature"], "note": p.get("note", "")}
                          for p in stills["cameras"][still]["points"]]
        out[name] = m
    return out


def fit_joint(marks: dict[str, dict], K: np.ndarray, *, surveyed: dict[str, tuple[float, float]],
              survey_sd_m: float, height_m: float, height_sd_m: float,
              start: dict[str, tuple] | None = None, fixed: dict[str, CameraModel] | None = None) -> JointFit:
    """Fit the poses of several cameras with shared intrinsics ``K`` (3, 3) px together (a small bundle adjustment).

    ``marks`` camera name → {``points``: pixel ↔ store metres, ``lines``: pixels on a known store line (point,
    direction), ``verticals``: two pixels on one vertical edge, ``parallels``: two pixels on an edge along a known
    ``direction``, ``ties``: a pixel of a named floor feature (z = 0) whose position is unknown and shared between
    the cameras that mark it}. ``surveyed`` tie name → (x, y) metres, a prior of ``survey_sd_m`` on that tie's
    position; each camera's height has a prior ``height_m`` ± ``height_sd_m`` (priors weighted by :data:`MARK_SD_PX`).
    Robust least squares (SciPy, ``soft_l1`` at :data:`LOSS_SCALE_PX`). ``error_px`` lists each camera's marks in the order points, ties, line
    pixels, verticals, parallels (points and ties: reprojection distance; lines: across the line; verticals and
    parallels: the second pixel off the line through the first and the direction's vanishing point). ``fixed``:
    cameras whose pose is held as given (their marks still place the ties; no height prior). Raises
    CalibrationError when a tie is marked by one camera only and has no survey, when a camera has fewer constraints
    than its 6 unknowns, or when the fit fails."""
    import cv2
    from scipy.optimize import least_squares

    names = list(marks)
    fixed = dict(fixed or {})
    free = [c for c in names if c not in fixed]
    start = {**START, **(start or {})}
    seen: dict[str, int] = {}
    for m in marks.values():
        for t in m.get("ties", []):
            seen[t["tie"]] = seen.get(t["tie"], 0) + 1
    lonely = sorted(t for t, n in seen.items() if n < 2 and t not in surveyed)
    if lonely:
        raise CalibrationError(f"ties {', '.join(lonely)} are marked by one camera and have no survey")
    ties = sorted(seen)
    for name, m in marks.items():
        n = (2 * len(m.get("points", [])) + 2 * len(m.get("ties", [])) + sum(len(ln["uv"]) for ln in m.get("lines", []))
             + len(m.get("verticals", [])) + len(m.get("parallels", [])) + 1)
        if n < 6:
            raise CalibrationError(f"camera {name}: too few marks for a pose ({n} constraints)")

    def unpack(x):
        poses = {c: (cv2.Rodrigues(x[6 * i:6 * i + 3])[0], x[6 * i + 3:6 * i + 6]) for i, c in enumerate(free)}
        poses.update({c: (m.R.T, m.C) for c, m in fixed.items()})
        base = 6 * len(free)
        pts = {t: np.r_[x[base + 2 * j:base + 2 * j + 2], 0.0] for j, t in enumerate(ties)}
        return poses, pts

    def project(R_cw, C, X):
        h = K @ ((np.asarray(X, np.float64).reshape(-1, 3) - C) @ R_cw.T).T
        return (h[:2] / h[2]).T

    def camera_residuals(m, R_cw, C, pts):
        r = [project(R_cw, C, p["xyz"])[0] - np.asarray(p["uv"], np.float64) for p in m.get("points", [])]
        r += [project(R_cw, C, pts[t["tie"]])[0] - np.asarray(t["uv"], np.float64) for t in m.get("ties", [])]
        out = [np.concatenate(r)] if r else []
        across = []
        for ln in m.get("lines", []):
            P0, D = np.asarray(ln["point"], np.float64), np.asarray(ln["direction"], np.float64)
            a, b = project(R_cw, C, [P0, P0 + D])
            t = (b - a) / np.linalg.norm(b - a)
            across += [np.array([-t[1], t[0]]) @ (np.asarray(uv, np.float64) - a) for uv in ln["uv"]]
        for kind in ("verticals", "parallels"):
            for v in m.get(kind, []):
                p1, p2 = (np.asarray(q, np.float64) for q in v["uv"])
                direction = np.asarray(v.get("direction", [0.0, 0.0, 1.0]), np.float64)
                ln = np.cross([*p1, 1.0], K @ (R_cw @ direction))
                across.append((ln @ [*p2, 1.0]) / math.hypot(ln[0], ln[1]))
        return np.concatenate(out + [np.asarray(across, np.float64)])

    def residuals(x):
        poses, pts = unpack(x)
        r = [camera_residuals(marks[c], *poses[c], pts) for c in names]
        r.append(np.array([(poses[c][1][2] - height_m) / height_sd_m * MARK_SD_PX for c in free]))
        r.append(np.array([(pts[t][k] - surveyed[t][k]) / survey_sd_m * MARK_SD_PX
                           for t in ties if t in surveyed for k in (0, 1)]))
        return np.concatenate(r)

    x0 = []
    for c in free:
        C0, target = start.get(c, ((2.0, -0.5, height_m), (2.0, -0.5, 0.0)))
        x0 += [*cv2.Rodrigues(np.ascontiguousarray(_look_at(C0, target).T))[0].ravel(), *C0]
    for t in ties:
        x0 += list(surveyed.get(t, (2.0, -0.5)))
    sol = least_squares(residuals, np.asarray(x0, np.float64), loss="soft_l1", f_scale=LOSS_SCALE_PX)
    if not sol.success:
        raise CalibrationError(f"the joint camera fit did not converge ({sol.message})")
    poses, pts = unpack(sol.x)
    fits = {}
    for c in names:
        R_cw, C = (np.asarray(v, np.float64) for v in poses[c])
        model = CameraModel(name=c, width=WIDTH, height=HEIGHT, fps=10.0, K=K, dist=np.zeros(5), R=R_cw.T,
                            C=C.copy())
        m = marks[c]
        res = camera_residuals(m, R_cw, C, pts)
        n = 2 * (len(m.get("points", [])) + len(m.get("ties", [])))
        err_px = np.r_[np.linalg.norm(res[:n].reshape(-1, 2), axis=1), np.abs(res[n:])]
        floor = [(p["uv"], np.asarray(p["xyz"], np.float64)) for p in m.get("points", []) if abs(p["xyz"][2]) < 1e-6]
        floor += [(t["uv"], pts[t["tie"]]) for t in m.get("ties", [])]
        err_cm = np.array([100 * np.linalg.norm(model.image_to_floor(np.asarray([uv], np.float64))[0] - X[:2])
                           for uv, X in floor])
        fits[c] = PoseFit(model, err_px, err_cm)
    return JointFit(fits, {t: pts[t][:2].copy() for t in ties},
                    {t: np.asarray(surveyed[t], np.float64) for t in ties if t in surveyed})


def same_view(still: np.ndarray, frame: np.ndarray) -> float:
    """Median absolute difference (grey levels, 0–255) between a still and a video frame of the same size after
    blurring (people move; the room does not): below ~20 the two are one camera at one pose."""
    import cv2

    a = cv2.GaussianBlur(cv2.cvtColor(still, cv2.COLOR_BGR2GRAY), (9, 9), 0).astype(np.float64)
    b = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (9, 9), 0).astype(np.float64)
    return float(np.median(np.abs(a - b)))


def fit_all(marks: Path = MARKS, video_marks: Path = VIDEO_MARKS) -> dict[str, PoseFit]:
    """Video camera name → its fit: cam1 and cam5 from their stills' floor marks (:func:`fit_pose`), cam3 and cam7
    from :func:`joint_fit`."""
    jf = joint_fit(marks, video_marks)
    return {**still_fits(marks), **{c: jf.fits[c] for c in VIDEO_MARKED}}


def still_fits(marks: Path = MARKS) -> dict[str, PoseFit]:
    """cam1 and cam5 fitted alone to their stills' floor marks (``autocheckout_stills.json``; solvePnP)."""
    doc = json.loads(marks.read_text(encoding="utf-8"))
    out = {}
    for still, video in VIDEO_OF_STILL.items():
        cam = doc["cameras"].get(still)
        if cam is None:
            continue
        uv = [[p["u"], p["v"]] for p in cam["points"]]
        xyz = [[p["x"], p["y"], 0.0] for p in cam["points"]]
        out[video] = fit_pose(video, uv, xyz, intrinsics())
    return out


def joint_fit(marks: Path = MARKS, video_marks: Path = VIDEO_MARKS, *, hold_stills: bool = True) -> JointFit:
    """The four cps-test cameras fitted together from ``aifi_video_marks.json`` (with the stills' floor marks of
    ``autocheckout_stills.json`` as ties and their survey as a prior): :func:`fit_joint` at f = :data:`FOCAL_PX`.
    ``hold_stills``: cam1 and cam5 keep their stills fits (:func:`still_fits`) and only cam3 and cam7 move (the
    calibration in use: freeing cam1 and cam5 too puts the TV ledge where the layout has it but splits the shopper
    of cps-test-01 into two ids, docs/cps-test-video.md)."""
    stills = json.loads(marks.read_text(encoding="utf-8"))
    vm = json.loads(video_marks.read_text(encoding="utf-8"))
    surveyed = {k: (f["x"], f["y"]) for k, f in stills["features"].items()}
    fixed = {c: f.model for c, f in still_fits(marks).items()} if hold_stills else None
    return fit_joint(camera_marks(vm, stills), intrinsics(), surveyed=surveyed,
                     survey_sd_m=vm["feature_prior_sd_m"], height_m=vm["prior_height_m"],
                     height_sd_m=vm["prior_height_sd_m"], fixed=fixed)


def write(path: Path = OUTPUT) -> JointFit:
    """Fit every camera (:func:`joint_fit`) and write the calibration file (``{"cameras": [{"video",
    "calibration", …}], "ties": …}``)."""
    jf = joint_fit()
    fits = fit_all()
    cams = []
    for video, fit in sorted(fits.items()):
        cams.append({"video": video, "still": (f"camera_stills/{video.replace('cam', 'camera_')}.png"
                                               if video not in VIDEO_MARKED else None),
                     "marks": len(fit.error_px), "rms_px": round(fit.rms_px, 2),
                     "rms_cm": round(fit.rms_cm, 1) if len(fit.error_cm) else None,
                     "max_px": round(float(fit.error_px.max()), 2), "calibration": fit.model.to_dict()})
    out = {
        "description": "Full camera models of the AiFi NanoStore ceiling cameras for the cps-test videos "
                       "(cps-test-01-nodepth-camN.mp4), written by `python -m vision.aifi_cameras` "
                       "(vision/aifi_cameras.py says how). Marks: aifi_video_marks.json, with the floor marks of "
                       "autocheckout_stills.json (the stills are frames of cam1, cam3, cam5) as ties.",
        "model": f"K: f = {FOCAL_PX:g} px at the image centre, no distortion (rectilinear frames); the four poses and "
                 "the tied floor features fitted together (robust least squares, vision.aifi_cameras.fit_joint)",
        "ties": {t: {"xy": [round(float(v), 3) for v in xy],
                     "surveyed": ([round(float(v), 3) for v in jf.surveyed[t]] if t in jf.surveyed else None)}
                 for t, xy in sorted(jf.ties.items())},
        "cameras": cams,
    }
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return jf


if __name__ == "__main__":
    jf = write()
    for video, fit in sorted(fit_all().items()):
        C = fit.model.C
        print(f"{video}: {len(fit.error_px)} marks, rms {fit.rms_px:.2f} px (max {fit.error_px.max():.2f}), "
              f"{fit.rms_cm:.1f} cm on the floor ({len(fit.error_cm)} floor marks); "
              f"centre ({C[0]:.2f}, {C[1]:.2f}, {C[2]:.2f}) m")
    for t, xy in sorted(jf.ties.items()):
        s = jf.surveyed.get(t)
        moved = f", surveyed ({s[0]:.2f}, {s[1]:.2f}): moved {100 * np.linalg.norm(xy - s):.0f} cm" if s is not None else ""
        print(f"tie {t}: ({xy[0]:.2f}, {xy[1]:.2f}) m{moved}")
