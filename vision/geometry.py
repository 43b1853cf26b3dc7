"""Camera geometry: the camera model, the floor homography, projection to the floor and to 3-D, calibration.

Pure NumPy + OpenCV (no Django). Conventions:

- **Store coordinates**: metres, x and y on the floor, z up (docs/recording-format.md).
- **Pixels**: (u, v) with u to the right and v down, origin at the top-left pixel corner of the full frame.
- **Pose**: ``R`` (3, 3) and ``C`` (3,) are camera-to-store: ``R`` holds the camera axes (OpenCV: x right, y down,
  z forward) as columns in store coordinates and ``C`` is the camera centre in metres. A store point ``X`` is at
  ``R.T @ (X - C)`` in the camera frame.
- **Floor homography** ``H`` (3, 3): *undistorted* pixel (u, v, 1) → floor (x, y, 1) up to scale. Where a camera has
  lens distortion, pixels are undistorted with ``K``/``dist`` (``cv2.undistortPoints``) before ``H``.

Sources: Hartley & Zisserman, *Multiple View Geometry*, §8.1 (plane-induced homography ``K [r1 r2 t]``);
OpenCV ``findHomography`` (RANSAC) and ``undistortPoints``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

INCH_M = 0.0254


class CalibrationError(ValueError):
    """A calibration cannot be computed or read (too few points, degenerate geometry, malformed file)."""


def _cv2():
    import cv2

    return cv2


def _as_points(pts: Any, dim: int = 2, name: str = "points") -> np.ndarray:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, dim)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must be (N, {dim}), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class CameraModel:
    """One camera: where its frames come from and how its pixels map to the store.

    ``name`` unique in the store; ``source`` a file path, an RTSP/HTTP URL or a device index as a string;
    ``fps`` frames per second (nominal; file timestamps come from the container where it has them);
    ``width``, ``height`` pixels of the full frame; ``clock_offset_s`` seconds added to the camera's own frame
    times to get store UTC; ``K`` (3, 3) intrinsics in pixels or None; ``dist`` (k,) OpenCV distortion
    coefficients (k ∈ {4, 5, 8, 12, 14}) or None; ``R`` (3, 3) and ``C`` (3,) camera-to-store pose (metres) or None;
    ``H`` (3, 3) undistorted pixel → floor metres homography or None (derived from K, R, C when absent).
    """

    name: str
    source: str = ""
    fps: float = 0.0
    width: int = 0
    height: int = 0
    clock_offset_s: float = 0.0
    K: np.ndarray | None = None
    dist: np.ndarray | None = None
    R: np.ndarray | None = None
    C: np.ndarray | None = None
    H: np.ndarray | None = None
    H_inv: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, shape in (("K", (3, 3)), ("R", (3, 3)), ("C", (3,)), ("H", (3, 3))):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float64)
                if v.shape != shape:
                    raise ValueError(f"camera {self.name}: {name} must be {shape}, got {v.shape}")
                object.__setattr__(self, name, v)
        if self.dist is not None:
            d = np.asarray(self.dist, dtype=np.float64).ravel()
            object.__setattr__(self, "dist", d if np.any(d) else None)
        if self.H is None and self.K is not None and self.R is not None and self.C is not None:
            object.__setattr__(self, "H", floor_homography_from_pose(self.K, self.R, self.C))
        if self.H is not None:
            if abs(np.linalg.det(self.H)) < 1e-15:
                raise ValueError(f"camera {self.name}: floor homography is singular")
            object.__setattr__(self, "H_inv", np.linalg.inv(self.H))

    # ------------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_autocheckout(cls, name: str, entry: dict, *, width: int, height: int, source: str = "",
                          fps: float = 0.0, unit_m: float = INCH_M) -> "CameraModel":
        """A camera of the AiFi AutoCheckout ``calibration.json`` (``{"K", "Tw", "dist_coeffs"}``).

        ``K`` there is normalised by the image size (``fx/W``, ``cx/W``, ``fy/H``, ``cy/H``); ``Tw`` (4, 4) is
        camera-to-world with the translation in inches (``unit_m`` converts; the camera axes point at ``look_at``).
        Raises CalibrationError for a malformed entry.
        """
        try:
            Kn = np.asarray(entry["K"], dtype=np.float64)
            Tw = np.asarray(entry["Tw"], dtype=np.float64)
            dist = np.asarray(entry.get("dist_coeffs", []), dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"camera {name}: malformed AutoCheckout calibration ({exc})") from None
        if Kn.shape != (3, 3) or Tw.shape != (4, 4):
            raise CalibrationError(f"camera {name}: K must be 3×3 and Tw 4×4, got {Kn.shape}, {Tw.shape}")
        K = Kn * np.array([[width], [height], [1.0]])
        return cls(name=name, source=source, fps=fps, width=width, height=height, K=K,
                   dist=dist if dist.size else None, R=Tw[:3, :3], C=Tw[:3, 3] * unit_m)

    def to_dict(self) -> dict:
        """Plain-JSON form (what ``cameras.json`` and ``--calibration FILE`` hold); inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {"name": self.name, "source": self.source, "fps": self.fps, "width": self.width,
                               "height": self.height, "clock_offset_s": self.clock_offset_s}
        for key in ("K", "dist", "R", "C", "H"):
            v = getattr(self, key)
            if v is not None:
                out[key] = np.asarray(v).tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "CameraModel":
        """Read the form written by :meth:`to_dict`. Raises CalibrationError naming the bad field."""
        if not isinstance(data, dict) or not data.get("name"):
            raise CalibrationError(f"a camera needs a name, got {data!r:.80}")
        kwargs: dict[str, Any] = {"name": str(data["name"])}
        try:
            for key, conv in (("source", str), ("fps", float), ("width", int), ("height", int),
                              ("clock_offset_s", float)):
                if key in data and data[key] is not None:
                    kwargs[key] = conv(data[key])
            for key in ("K", "dist", "R", "C", "H"):
                if data.get(key) is not None:
                    kwargs[key] = np.asarray(data[key], dtype=np.float64)
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"camera {data.get('name')}: {exc}") from None

    def with_size(self, width: int, height: int) -> "CameraModel":
        """The same camera with frame size set (intrinsics unchanged)."""
        return replace(self, width=int(width), height=int(height), H_inv=None)

    # ------------------------------------------------------------------------------------------- projection
    @property
    def has_floor(self) -> bool:
        """True when pixels can be mapped to the floor (a homography is known)."""
        return self.H is not None

    @property
    def has_pose(self) -> bool:
        """True when the full pose (K, R, C) is known: rays, heights and 3-D points are available."""
        return self.K is not None and self.R is not None and self.C is not None

    def undistort(self, uv: Any) -> np.ndarray:
        """Pixels (N, 2) → undistorted pixels (N, 2) (identity without K/dist)."""
        uv = _as_points(uv, name="uv")
        if self.K is None or self.dist is None or uv.shape[0] == 0:
            return uv.copy()
        cv2 = _cv2()
        return cv2.undistortPoints(uv.reshape(-1, 1, 2), self.K, self.dist, P=self.K).reshape(-1, 2)

    def image_to_floor(self, uv: Any) -> np.ndarray:
        """Pixels (N, 2) → floor points (N, 2) metres, store coordinates. NaN rows where the pixel's ray does not
        reach the floor in front of the camera (above the horizon). Raises CalibrationError without a homography."""
        if self.H is None:
            raise CalibrationError(f"camera {self.name} has no floor calibration")
        und = self.undistort(uv)
        xy = apply_homography(self.H, und)
        if self.has_pose and und.shape[0]:
            d = self.rays(uv, undistorted=und)
            xy[d[:, 2] >= -1e-9] = np.nan  # a ray that does not go down never meets the floor
        return xy

    def floor_to_image(self, xy: Any) -> np.ndarray:
        """Floor points (N, 2) metres → pixels (N, 2) (distortion applied where known). NaN behind the camera."""
        xy = _as_points(xy, name="xy")
        if self.has_pose:
            return self.project(np.column_stack([xy, np.zeros(xy.shape[0])]))
        if self.H_inv is None:
            raise CalibrationError(f"camera {self.name} has no floor calibration")
        return apply_homography(self.H_inv, xy)

    def project(self, xyz: Any) -> np.ndarray:
        """Store points (N, 3) metres → pixels (N, 2), distortion applied; NaN for points behind the camera.
        Raises CalibrationError without a full pose."""
        if self.K is None or self.R is None or self.C is None:
            raise CalibrationError(f"camera {self.name} has no pose (K, R, C)")
        xyz = _as_points(xyz, 3, "xyz")
        out = np.full((xyz.shape[0], 2), np.nan)
        if xyz.shape[0] == 0:
            return out
        Xc = (xyz - self.C) @ self.R  # (R.T @ (X - C)).T
        front = Xc[:, 2] > 1e-6
        if front.any():
            cv2 = _cv2()
            rvec = cv2.Rodrigues(np.ascontiguousarray(self.R.T))[0]
            tvec = -self.R.T @ self.C
            pts, _ = cv2.projectPoints(xyz[front].reshape(-1, 1, 3), rvec, tvec, self.K,
                                       self.dist if self.dist is not None else np.zeros(5))
            out[front] = pts.reshape(-1, 2)
        return out

    def rays(self, uv: Any, undistorted: np.ndarray | None = None) -> np.ndarray:
        """Unit viewing rays (N, 3) in store coordinates through pixels (N, 2). Needs the full pose."""
        if self.K is None or self.R is None or self.C is None:
            raise CalibrationError(f"camera {self.name} has no pose (K, R, C)")
        und = self.undistort(uv) if undistorted is None else undistorted
        n = np.linalg.solve(self.K, np.column_stack([und, np.ones(und.shape[0])]).T).T
        d = n @ self.R.T
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def image_to_plane(self, uv: Any, point: Any, normal: Any) -> np.ndarray:
        """Pixels (N, 2) → 3-D points (N, 3) metres where their rays meet the plane through ``point`` (3,) with
        ``normal`` (3,) (or (N, 3) each, one plane per pixel). NaN where the ray is parallel or the plane is behind
        the camera. Needs the full pose."""
        d = self.rays(uv)
        if self.C is None:
            raise CalibrationError(f"camera {self.name} has no pose (K, R, C)")
        p0 = np.broadcast_to(np.asarray(point, dtype=np.float64), d.shape)
        nrm = np.broadcast_to(np.asarray(normal, dtype=np.float64), d.shape)
        den = np.einsum("ij,ij->i", d, nrm)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.einsum("ij,ij->i", p0 - self.C, nrm) / den
        s[(np.abs(den) < 1e-9) | (s <= 0)] = np.nan
        return self.C + d * s[:, None]

    def body_plane_points(self, uv: Any, foot_xy: Any) -> np.ndarray:
        """Pixels (N, 2) of body parts of people standing at ``foot_xy`` (N, 2) metres → 3-D points (N, 3).

        Each ray meets the vertical plane through the person's foot point that faces the camera (normal along the
        camera's horizontal viewing direction to that person). This puts a wrist at the body's depth: the error
        is the hand's reach towards or away from the camera (≤ ~0.6 m), which a second camera or the shelf-face
        plane (:meth:`image_to_plane`) reduces. Needs the full pose.
        """
        foot = _as_points(foot_xy, name="foot_xy")
        pts = np.column_stack([foot, np.zeros(foot.shape[0])])
        horiz = pts - self.C
        horiz[:, 2] = 0.0
        norm = np.linalg.norm(horiz, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            normal = horiz / norm
        return self.image_to_plane(uv, pts, normal)


def apply_homography(H: np.ndarray, pts: Any) -> np.ndarray:
    """Apply a 3×3 homography to points (N, 2) → (N, 2). NaN where the point maps to infinity."""
    pts = _as_points(pts)
    if pts.shape[0] == 0:
        return pts.copy()
    ph = np.column_stack([pts, np.ones(pts.shape[0])]) @ np.asarray(H, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ph[:, :2] / ph[:, 2:3]
    out[np.abs(ph[:, 2]) < 1e-12] = np.nan
    return out


def floor_homography_from_pose(K: np.ndarray, R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Undistorted pixel → floor (z = 0) homography (3, 3) from intrinsics ``K`` (3, 3) pixels and the
    camera-to-store pose ``R`` (3, 3), ``C`` (3,) metres. Floor → image is ``K [r1 r2 t]`` with ``R_cw = R.T``,
    ``t = -R_cw C`` (Hartley & Zisserman §8.1); this returns its inverse, normalised so ``H[2, 2] = 1``."""
    R_cw = np.asarray(R, dtype=np.float64).T
    t = -R_cw @ np.asarray(C, dtype=np.float64)
    G = np.asarray(K, dtype=np.float64) @ np.column_stack([R_cw[:, 0], R_cw[:, 1], t])
    H = np.linalg.inv(G)
    return H / H[2, 2]


@dataclass(frozen=True)
class FloorCalibration:
    """The result of calibrating a camera's floor homography from marked points.

    ``H`` (3, 3) undistorted pixel → floor metres; ``inliers`` (N,) bool (RANSAC); ``error_px`` (N,) reprojection
    error of each point in pixels (floor point mapped into the image vs the marked pixel); ``error_m`` (N,) the
    error on the floor in metres (marked pixel mapped to the floor vs the surveyed point). ``rmse_px``/``rmse_cm``
    over the inliers.
    """

    H: np.ndarray
    inliers: np.ndarray
    error_px: np.ndarray
    error_m: np.ndarray

    @property
    def rmse_px(self) -> float:
        e = self.error_px[self.inliers]
        return float(np.sqrt(np.mean(e ** 2))) if e.size else math.nan

    @property
    def rmse_cm(self) -> float:
        e = self.error_m[self.inliers]
        return float(100.0 * np.sqrt(np.mean(e ** 2))) if e.size else math.nan

    def summary(self) -> str:
        """One line: inliers, RMS error in pixels and centimetres, worst point."""
        return (f"inliers {int(self.inliers.sum())}/{self.inliers.size} reprojection rms {self.rmse_px:.2f} px "
                f"{self.rmse_cm:.1f} cm (worst {float(np.nanmax(self.error_px)):.2f} px, "
                f"{100 * float(np.nanmax(self.error_m)):.1f} cm)")


def calibrate_floor(image_points: Any, floor_points: Any, *, K: np.ndarray | None = None,
                    dist: np.ndarray | None = None, ransac_px: float = 3.0) -> FloorCalibration:
    """Compute the floor homography from ≥ 4 marked floor points.

    ``image_points`` (N, 2) pixels where the marks are seen; ``floor_points`` (N, 2) metres, store coordinates of
    the same marks; with ``K``/``dist`` the pixels are undistorted first. Uses ``cv2.findHomography`` with RANSAC
    (threshold ``ransac_px`` pixels) on floor → image, then inverts. Raises CalibrationError with fewer than 4
    points, non-finite values, collinear marks or when no homography fits.
    """
    img = _as_points(image_points, name="image_points")
    flr = _as_points(floor_points, name="floor_points")
    if img.shape[0] != flr.shape[0]:
        raise CalibrationError(f"{img.shape[0]} image points but {flr.shape[0]} floor points")
    if img.shape[0] < 4:
        raise CalibrationError(f"a floor homography needs at least 4 marked points, got {img.shape[0]}")
    if not (np.isfinite(img).all() and np.isfinite(flr).all()):
        raise CalibrationError("calibration points must be finite numbers")
    for name, pts in (("image", img), ("floor", flr)):
        distinct = len(np.unique(np.round(pts, 3), axis=0))
        if distinct < 4:
            raise CalibrationError(f"a floor homography needs 4 distinct {name} points, got {distinct} (the same "
                                   f"point marked twice adds nothing)")
    centred = flr - flr.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    if sv[-1] < 1e-3 * max(sv[0], 1e-12):
        raise CalibrationError("the floor points are (nearly) collinear: mark points spread over the floor")
    cv2 = _cv2()
    und = img
    if K is not None and dist is not None and np.any(dist):
        und = cv2.undistortPoints(img.reshape(-1, 1, 2), K, np.asarray(dist, float), P=K).reshape(-1, 2)
    G, mask = cv2.findHomography(flr.reshape(-1, 1, 2), und.reshape(-1, 1, 2), cv2.RANSAC, ransac_px)
    if G is None or abs(np.linalg.det(G)) < 1e-15:
        raise CalibrationError("no homography fits these points (check that each pixel matches its floor point)")
    H = np.linalg.inv(G)
    H /= H[2, 2]
    inliers = mask.ravel().astype(bool) if mask is not None else np.ones(img.shape[0], bool)
    err_px = np.linalg.norm(apply_homography(G, flr) - und, axis=1)
    err_m = np.linalg.norm(apply_homography(H, und) - flr, axis=1)
    return FloorCalibration(H=H, inliers=inliers, error_px=err_px, error_m=err_m)


def read_calibration_points(path: str | Path, still: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read marked points: a JSON list ``[{"u", "v", "x", "y"}, ...]`` (or ``{"points": [...]}``), a per-camera
    JSON ``{"cameras": {KEY: {"points": [...]}, ...}}`` (``vision/calibrations/autocheckout_stills.json``) with
    ``still`` = the KEY to read, or a CSV with header ``u,v,x,y`` (pixels, metres). Returns (image (N, 2),
    floor (N, 2)). Raises CalibrationError, also for a per-camera file without a valid ``still`` (naming its keys)
    and a ``still`` given for a file of one camera."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"{p}: cannot read ({exc.strerror})") from None
    rows: list[tuple[float, float, float, float]] = []
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
            cameras = data.get("cameras") if isinstance(data, dict) else None
            if isinstance(cameras, dict):
                if still not in cameras:
                    raise CalibrationError(f"{p} holds the points of several cameras: pick one with --still KEY, "
                                           f"KEY one of {', '.join(cameras)}"
                                           + (f" (there is no {still!r})" if still else ""))
                data = cameras[still]
            elif still is not None:
                raise CalibrationError(f"{p}: --still {still} is for a per-camera file "
                                       '({"cameras": {KEY: {"points": [...]}}}); this one holds one camera\'s points')
            data = data.get("points", data) if isinstance(data, dict) else data
            rows = [(float(r["u"]), float(r["v"]), float(r["x"]), float(r["y"])) for r in data]
        else:
            if still is not None:
                raise CalibrationError(f"{p}: --still {still} is for a per-camera JSON file, not a CSV")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
            if not lines or [h.strip() for h in lines[0].split(",")][:4] != ["u", "v", "x", "y"]:
                raise CalibrationError(f"{p}:1: header must be u,v,x,y")
            for i, ln in enumerate(lines[1:], 2):
                parts = ln.split(",")
                if len(parts) < 4:
                    raise CalibrationError(f"{p}:{i}: expected 4 fields, got {len(parts)}")
                rows.append(tuple(float(x) for x in parts[:4]))  # type: ignore[arg-type]
    except CalibrationError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{p}: malformed calibration points ({exc}); expected a JSON list of "
                               '{"u", "v", "x", "y"}, {"points": [...]}, {"cameras": {KEY: {"points": [...]}}} '
                               "with --still KEY, or a CSV u,v,x,y") from None
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return arr[:, :2], arr[:, 2:]


def read_cameras_file(path: str | Path) -> list[CameraModel]:
    """Read a camera calibration file: ``{"cameras": [CameraModel.to_dict(), ...]}`` or one camera's dict.
    Raises CalibrationError for a missing or malformed file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CalibrationError(f"{p}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    items = data.get("cameras", [data]) if isinstance(data, dict) else data
    return [CameraModel.from_dict(c) for c in items]


def spread_m(points: Any) -> float:
    """Spread of floor points (N, 2) metres: the largest distance of a point from their median (0 for < 2)."""
    pts = _as_points(points)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] < 2:
        return 0.0
    return float(np.linalg.norm(pts - np.median(pts, axis=0), axis=1).max())


def triangulate(centres: Any, directions: Any) -> tuple[np.ndarray, float]:
    """The 3-D point nearest (least squares) to k ≥ 2 rays, and how well they meet.

    ``centres`` (k, 3) metres, ray origins (camera centres); ``directions`` (k, 3) ray directions (any length).
    Returns (point (3,) metres, spread: the largest distance in metres from the point to any of the rays). NaN
    point and infinite spread when fewer than two rays are given or the rays are (nearly) parallel.
    """
    C = _as_points(centres, 3, "centres")
    D = _as_points(directions, 3, "directions")
    if C.shape != D.shape or C.shape[0] < 2:
        return np.full(3, np.nan), math.inf
    D = D / np.linalg.norm(D, axis=1, keepdims=True)
    P = np.eye(3)[None] - D[:, :, None] * D[:, None, :]          # (k, 3, 3) projectors orthogonal to each ray
    A = P.sum(axis=0)
    b = np.einsum("kij,kj->i", P, C)
    if np.linalg.cond(A) > 1e6:
        return np.full(3, np.nan), math.inf
    X = np.linalg.solve(A, b)
    off = np.einsum("kij,kj->ki", P, X[None] - C)
    return X, float(np.linalg.norm(off, axis=1).max())
