"""The AiFi NanoStore as both AutoCheckout layouts describe it (``carts.offline.autocheckout`` for BENCHMARK test
cases, ``carts.offline.autocheckout_cps`` for cps-test sessions): its layout from ``store_meta/``, unit-weight
spreads from AIM3S weighings, bin codes, and the JSON readers both use.

- Store metadata positions are **metres**, nested gondola → world, shelf → gondola, plate → shelf, each a
  translation plus a Rodrigues rotation vector (store_meta/README_source.md). We compose them into world (store)
  coordinates with ``scipy.spatial.transform.Rotation.from_rotvec``.
- A plate is a box ``dim_x`` (along the shelf) × ``dim_y`` (into the shelf) whose origin is its front-left corner
  in the shelf frame; the bin centre we write is the centre of that rectangle on the shelf surface.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

#: Relative unit-weight spread used when a product has no repeated weighings: the median sd/mean of the 78
#: products with ≥ 2 real weighings in AIM3S ``product_info.json`` (measured: 0.0130; quartiles 0.007–0.029).
DEFAULT_RELATIVE_WEIGHT_SD = 0.013
#: Weight plate capacity, grams (datasets README: "20 kg plates").
PLATE_CAPACITY_G = 20000.0


class AutoCheckoutError(ValueError):
    """The AutoCheckout input is missing a file or holds something unreadable (a malformed record, a bad file). The
    message names the file and place; ``path``, ``line`` (1-based, 0 if unknown) and ``field`` locate it where known."""

    def __init__(self, message: str, *, path: str = "", line: int = 0, field: str = "") -> None:
        self.path = path
        self.line = line
        self.field = field
        where = f"{path}:{line}" if path and line else (path or (f"line {line}" if line else ""))
        prefix = f"{where}: " if where else ""
        suffix = f" (field {field})" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")


def load_json(path: Path):
    """The JSON document in ``path``. Raises AutoCheckoutError naming the file (and line) when it is missing, not
    UTF-8 or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutoCheckoutError(f"{path}: missing file") from None
    except UnicodeDecodeError:
        raise AutoCheckoutError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise AutoCheckoutError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def json_lines(path: Path, problems: list[str]) -> list[tuple[int, dict]]:
    """(line number, document) of a JSON-lines file; unreadable lines are skipped and reported in ``problems``."""
    if not path.exists():
        raise AutoCheckoutError(f"{path}: missing file")
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{i}: not valid JSON ({exc.msg}); line skipped")
                continue
            if not isinstance(doc, dict):
                problems.append(f"{path}:{i}: not a JSON object; line skipped")
                continue
            out.append((i, doc))
    return out


@dataclass(frozen=True)
class _Pose:
    R: Rotation
    t: np.ndarray

    def __matmul__(self, other: "_Pose") -> "_Pose":
        return _Pose(self.R * other.R, self.t + self.R.apply(other.t))

    def apply(self, p) -> np.ndarray:
        return self.t + self.R.apply(np.asarray(p, dtype=np.float64))


def _pose(transform: dict) -> _Pose:
    tr, rot = transform.get("translation", {}), transform.get("rotation", {})
    t = np.array([tr.get("x", 0.0), tr.get("y", 0.0), tr.get("z", 0.0)], dtype=np.float64)
    r = np.array([rot.get("x", 0.0), rot.get("y", 0.0), rot.get("z", 0.0)], dtype=np.float64)
    return _Pose(Rotation.from_rotvec(r), t)


def _yaw(R: Rotation) -> float:
    x_axis = R.apply([1.0, 0.0, 0.0])
    return float(math.atan2(x_axis[1], x_axis[0]))


def bin_code(gondola: int, shelf: int, plate: int) -> str:
    """The Walkout bin code of an AutoCheckout plate: ``"<gondola>-<shelf>-<plate>"``."""
    return f"{gondola}-{shelf}-{plate}"


def convert_layout(store_meta: Path) -> list[dict]:
    """Gondolas, shelves and bins of ``store_meta/`` in store coordinates (metres), as ``store.json`` wants them."""
    gondolas = load_json(store_meta / "Gondolas.json")["gondolas"]
    shelves = load_json(store_meta / "Shelves.json")["shelves"]
    plates = load_json(store_meta / "Plates.json")["plates"]
    g_pose: dict[int, _Pose] = {}
    out: dict[int, dict] = {}
    for g in gondolas:
        gid = int(g["id"]["id"])
        c = g["coordinates"]
        pose = _pose(c["transform"])
        g_pose[gid] = pose
        out[gid] = {"number": gid, "x": round(float(pose.t[0]), 4), "y": round(float(pose.t[1]), 4),
                    "yaw_rad": round(_yaw(pose.R), 6), "width_m": round(c["dim_x"], 4),
                    "depth_m": round(c["dim_y"], 4), "height_m": round(c["dim_z"], 4), "shelves": []}
    s_pose: dict[tuple[int, int], _Pose] = {}
    s_out: dict[tuple[int, int], dict] = {}
    for s in shelves:
        gid, sid = int(s["id"]["gondola_id"]["id"]), int(s["id"]["shelf_index"])
        pose = g_pose[gid] @ _pose(s["coordinates"]["transform"])
        s_pose[gid, sid] = pose
        shelf = {"number": sid, "z": round(float(pose.t[2]), 4), "bins": []}
        s_out[gid, sid] = shelf
        out[gid]["shelves"].append(shelf)
    for p in plates:
        sid_ = p["id"]["shelf_id"]
        gid, sid, pid = int(sid_["gondola_id"]["id"]), int(sid_["shelf_index"]), int(p["id"]["plate_index"])
        c = p["coordinates"]
        pose = s_pose[gid, sid] @ _pose(c["transform"])
        centre = pose.apply([c["dim_x"] / 2.0, c["dim_y"] / 2.0, 0.0])
        s_out[gid, sid]["bins"].append({
            "number": pid, "code": bin_code(gid, sid, pid), "x": round(float(centre[0]), 4),
            "y": round(float(centre[1]), 4), "z": round(float(centre[2]), 4), "width_m": round(c["dim_x"], 4),
            "depth_m": round(c["dim_y"], 4), "yaw_rad": round(_yaw(pose.R), 6), "capacity_g": PLATE_CAPACITY_G,
        })
    for g in out.values():
        g["shelves"].sort(key=lambda s: s["number"])
        for s in g["shelves"]:
            s["bins"].sort(key=lambda b: b["number"])
    return [out[k] for k in sorted(out)]


def weight_spreads(product_info: Path | None) -> tuple[dict[str, float], float]:
    """Per-barcode unit-weight sd (g) from AIM3S repeated weighings, and the median relative sd (sd/mean).

    Returns ({barcode: sd_g}, relative_sd); without the file, ({}, DEFAULT_RELATIVE_WEIGHT_SD).
    """
    if product_info is None or not product_info.exists():
        return {}, DEFAULT_RELATIVE_WEIGHT_SD
    products = load_json(product_info)["products"]
    sds, rel = {}, []
    for p in products:
        w = np.asarray(p.get("weights", []), dtype=np.float64)
        if w.size >= 2 and w.mean() > 0:
            sds[str(p["barcode"])] = float(w.std(ddof=1))
            rel.append(float(w.std(ddof=1) / w.mean()))
    return sds, (float(np.median(rel)) if rel else DEFAULT_RELATIVE_WEIGHT_SD)
