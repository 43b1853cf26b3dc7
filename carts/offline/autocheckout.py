"""Convert an AiFi AutoCheckout test case (CPS-IoT Week 2020 competition data) into a Walkout recording.

Input layouts (see ../shared/datasets/README.md). BENCHMARK: a test case folder (e.g. ``BENCHMARK-1/``: ``plate_data.json``,
``full_targets.json``, ``products.json``, ``planogram.json``, optionally ``truth_receipt.json``) and the store's
``store_meta/`` folder (``Gondolas.json``, ``Shelves.json``, ``Plates.json``), by default beside the test case.
cps-test (``cps-test-01/README.md``): ``weights/gondola_G_shelf_S_plate_P.csv`` per plate, ``video/*camN.mp4`` per
camera, ``products.csv`` (names joined to barcodes through ``BENCHMARK-1/products.json``), ``truth_events.json``;
it becomes a recording with cameras (``cameras.json``, videos referenced where they are) and no keypoints.

Units and frames, converted explicitly:
- Store metadata positions are **metres**, nested gondola → world, shelf → gondola, plate → shelf, each a
  translation plus a Rodrigues rotation vector (store_meta/README_source.md). We compose them into world (store)
  coordinates with ``scipy.spatial.transform.Rotation.from_rotvec``.
- ``full_targets.json`` keypoints are in **inches** in the same world frame (the head of a standing shopper is at
  z ≈ 66 in ≈ 1.68 m; a hand taking from gondola 1 shelf 5 sits 0.1–0.2 m in front of that shelf once converted).
  We multiply by ``INCH_M = 0.0254`` (exact, by definition of the international inch).
- Plate samples are float32 **grams**, not zeroed, 60 Hz; ``carts.offline.autocheckout_plates`` decodes them.
- Times are ISO-8601 UTC strings; we write seconds since epoch UTC.

A plate is a box ``dim_x`` (along the shelf) × ``dim_y`` (into the shelf) whose origin is its front-left corner in
the shelf frame; the bin centre we write is the centre of that rectangle on the shelf surface.
The test case has no gate scans: entry is placed at each target's first sighting and exit at its last
(``source=inferred`` in ``gates.csv``), as the AutoCheckout store admitted shoppers by their first track.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from carts.offline.autocheckout_plates import PlateBlock, read_plate_file

from store.recording import GateScan, RecordedCamera, ShelfSamples, TrackObservations, TruthLine, TruthReceipt, write_recording

log = logging.getLogger(__name__)

INCH_M = 0.0254
#: Relative unit-weight spread used when a product has no repeated weighings: the median sd/mean of the 78
#: products with ≥ 2 real weighings in AIM3S ``product_info.json`` (measured: 0.0130; quartiles 0.007–0.029).
DEFAULT_RELATIVE_WEIGHT_SD = 0.013
#: Weight plate capacity, grams (datasets README: "20 kg plates").
PLATE_CAPACITY_G = 20000.0
TARGET_KEYPOINTS = ("head", "neck", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist")


class AutoCheckoutError(ValueError):
    """The AutoCheckout input is missing a file or holds something unreadable; the message names file and place."""


def parse_time(value: str) -> float:
    """ISO-8601 UTC string (``2020-04-22T05:06:36.859Z``) → seconds since epoch. Raises ValueError if malformed."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutoCheckoutError(f"{path}: missing file") from None
    except UnicodeDecodeError:
        raise AutoCheckoutError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise AutoCheckoutError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _json_lines(path: Path, problems: list[str]) -> list[tuple[int, dict]]:
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
    gondolas = _load_json(store_meta / "Gondolas.json")["gondolas"]
    shelves = _load_json(store_meta / "Shelves.json")["shelves"]
    plates = _load_json(store_meta / "Plates.json")["plates"]
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
    products = _load_json(product_info)["products"]
    sds, rel = {}, []
    for p in products:
        w = np.asarray(p.get("weights", []), dtype=np.float64)
        if w.size >= 2 and w.mean() > 0:
            sds[str(p["barcode"])] = float(w.std(ddof=1))
            rel.append(float(w.std(ddof=1) / w.mean()))
    return sds, (float(np.median(rel)) if rel else DEFAULT_RELATIVE_WEIGHT_SD)


def convert_catalogue(case: Path, product_info: Path | None,
                      problems: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Products (price from ``metadata.price``, a placeholder in this data set; weight ± spread) and facings.
    Skipped entries are reported in ``problems``."""
    problems = [] if problems is None else problems
    sds, rel = weight_spreads(product_info)
    products = {}
    unweighed = []
    for line, doc in _json_lines(case / "products.json", problems):
        try:
            barcode = str(doc["product_id"]["id"])
            meta = doc["metadata"]
            if "weight" not in meta:
                unweighed.append(line)
                continue
            weight = float(meta["weight"])
            price = Decimal(str(meta.get("price", 0))).quantize(Decimal("0.01"))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            problems.append(f"{case / 'products.json'}:{line}: product skipped ({exc!r})")
            continue
        if not barcode or not math.isfinite(weight) or weight <= 0 or price < 0:
            problems.append(f"{case / 'products.json'}:{line}: product {barcode!r} skipped (weight {weight} g, "
                            f"price {price})")
            continue
        products[barcode] = {"barcode": barcode, "name": str(meta.get("name", barcode))[:200], "price": str(price),
                             "unit_weight_g": round(weight, 2),
                             "unit_weight_sd_g": round(sds.get(barcode, rel * weight), 2)}
    if unweighed:
        log.info("%s: %d products have no weight (a weight-sensing store cannot sell them) and were skipped, "
                 "lines %s", case / "products.json", len(unweighed), ", ".join(map(str, unweighed[:10]))
                 + (" …" if len(unweighed) > 10 else ""))
    facings = []
    for line, doc in _json_lines(case / "planogram.json", problems):
        barcode = str((doc.get("planogram_product_id") or {}).get("id", ""))
        if barcode not in products:
            problems.append(f"{case / 'planogram.json'}:{line}: planogram product {barcode!r} is not a weighed "
                            "product of products.json; skipped")
            continue
        try:
            for pid in doc.get("plate_ids", []):
                code = bin_code(pid["shelf_id"]["gondola_id"]["id"], pid["shelf_id"]["shelf_index"],
                                pid["plate_index"])
                facings.append({"bin": code, "barcode": barcode})
        except (KeyError, TypeError) as exc:
            problems.append(f"{case / 'planogram.json'}:{line}: malformed plate id ({exc!r}); rest of line skipped")
    return list(products.values()), facings


def convert_plates(case: Path, bins: set[str]) -> tuple[list[ShelfSamples], list[str]]:
    """Plate messages → one ShelfSamples per gondola (its controller). Returns (samples, problems).

    Bad messages are skipped by ``read_plate_file`` and reported; a gondola's blocks are concatenated in time order.
    """
    if not (case / "plate_data.json").is_file():
        raise AutoCheckoutError(f"{case / 'plate_data.json'}: missing file")
    try:
        blocks, errors = read_plate_file(case / "plate_data.json")
    except UnicodeDecodeError:
        raise AutoCheckoutError(f"{case / 'plate_data.json'}: not UTF-8 text (is it a BSON export?)") from None
    problems = [str(e) for e in errors]
    per_gondola: dict[int, list[PlateBlock]] = {}
    for b in blocks:
        per_gondola.setdefault(b.gondola, []).append(b)
    out = []
    for gid in sorted(per_gondola):
        bl = sorted(per_gondola[gid], key=lambda b: b.t[0])
        t = np.concatenate([b.t for b in bl])
        n_shelves = max(b.grams.shape[1] for b in bl)
        n_plates = max(b.grams.shape[2] for b in bl)
        grams = np.full((t.shape[0], n_shelves, n_plates), np.nan)
        row = 0
        for b in bl:
            n, s, p = b.grams.shape
            grams[row:row + n, :s, :p] = b.grams
            row += n
        keep = np.concatenate([[True], np.diff(t) > 0])
        if not keep.all():
            problems.append(f"{case / 'plate_data.json'}: gondola {gid}: {int((~keep).sum())} overlapping samples dropped")
        codes, cols = [], []
        for s in range(n_shelves):
            for p in range(n_plates):
                code = bin_code(gid, s + 1, p + 1)
                if code in bins:
                    codes.append(code)
                    cols.append(grams[keep, s, p])
        if codes:
            out.append(ShelfSamples(t=t[keep], bin_codes=tuple(codes), grams=np.stack(cols, axis=1)))
    return out, problems


def convert_targets(case: Path, problems: list[str] | None = None) -> TrackObservations:
    """``full_targets.json`` → keypoint observations in metres (inches × 0.0254), time = the message's t_origin.
    Skipped messages are reported in ``problems``."""
    problems = [] if problems is None else problems
    tid, ts, kp, xyz, sc = [], [], [], [], []
    for line, doc in _json_lines(case / "full_targets.json", problems):
        try:
            t = parse_time(doc["document"]["header"]["t_origin"])
            targets = doc["document"].get("targets", {}).get("targets", [])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{case / 'full_targets.json'}:{line}: targets message skipped ({exc!r})")
            continue
        for target in targets:
            track = str(target.get("target_id", {}).get("id", ""))
            if not track:
                continue
            for name in TARGET_KEYPOINTS:
                k = target.get(name)
                if not k or "point" not in k:
                    continue
                p = k["point"]
                tid.append(track)
                ts.append(t)
                kp.append(name)
                xyz.append((p.get("x", math.nan) * INCH_M, p.get("y", math.nan) * INCH_M, p.get("z", math.nan) * INCH_M))
                sc.append(float(k.get("score", 0.0)))
    if not ts:
        return TrackObservations.empty()
    arr = np.asarray(xyz, dtype=np.float64)
    ok = np.isfinite(arr).all(axis=1)
    return TrackObservations(np.array(tid, dtype=object)[ok], np.asarray(ts)[ok], np.array(kp, dtype=object)[ok],
                             arr[ok], np.asarray(sc)[ok])


def convert_truth(case: Path) -> list[TruthReceipt] | None:
    """``truth_receipt.json`` (present for BENCHMARK-1) → true receipts keyed by target id; None when absent."""
    path = case / "truth_receipt.json"
    if not path.exists():
        return None
    data = _load_json(path)
    try:
        return [TruthReceipt(track=str(r["target_id"]),
                             lines=tuple(TruthLine(str(p["barcode"]), int(p["quantity"])) for p in r["products"]))
                for r in data["receipts"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise AutoCheckoutError(f"{path}: malformed receipt ({exc})") from None


def import_case(case: str | Path, dest: str | Path, *, store_meta: str | Path | None = None,
                product_info: str | Path | None = None) -> tuple[Path, list[str]]:
    """Convert the test case folder ``case`` into a recording at ``dest``. Returns (dest, problems).

    ``store_meta`` defaults to ``case/../store_meta``; ``product_info`` (AIM3S weighings, for unit-weight spreads)
    to ``case/../aim3s/product_info.json`` when present. Raises AutoCheckoutError for a missing required file.
    """
    case = Path(case)
    if not case.is_dir():
        raise AutoCheckoutError(f"{case}: not a test case folder")
    if not is_cps_case(case) and not any((case / f).exists() for f in ("plate_data.json", "full_targets.json",
                                                                        "products.json")):
        raise AutoCheckoutError(f"{case}: not a test case folder (none of plate_data.json, full_targets.json, "
                                f"products.json, products.csv, weights/); pass a case folder such as .../autocheckout/BENCHMARK-1 or "
                                f".../autocheckout/cps-test-01")
    meta = Path(store_meta) if store_meta else case.parent / "store_meta"
    info = Path(product_info) if product_info else case.parent / "aim3s" / "product_info.json"
    if is_cps_case(case):
        return import_cps_case(case, Path(dest), store_meta=meta, product_info=info if info.exists() else None)
    gondolas = convert_layout(meta)
    bins = {b["code"] for g in gondolas for s in g["shelves"] for b in s["bins"]}
    problems: list[str] = []
    products, facings = convert_catalogue(case, info if info.exists() else None, problems)
    shelves, plate_problems = convert_plates(case, bins)
    problems += plate_problems
    if not shelves:
        problems.append(f"{case / 'plate_data.json'}: no plate samples could be read; no shelf events will be found")
    tracks = convert_targets(case, problems)
    gates = []
    for track in tracks.track_ids():
        t0, t1 = tracks.span(track)
        gates.append(GateScan(t=t0, track=track, kind="entry", source="inferred"))
        gates.append(GateScan(t=t1, track=track, kind="exit", source="inferred"))
    starts = [s.t[0] for s in shelves] + ([float(tracks.t.min())] if len(tracks) else [])
    ends = [s.t[-1] for s in shelves] + ([float(tracks.t.max())] if len(tracks) else [])
    if not starts:
        raise AutoCheckoutError(f"{case}: no plate samples and no targets could be read")
    store = {
        "store": {"code": "aifi-nanostore", "name": "AiFi NanoStore (AutoCheckout 2020)", "currency": "usd"},
        "zones": [],
        "gondolas": gondolas,
        "products": products,
        "facings": facings,
    }
    manifest = {
        "name": case.name,
        "source": f"AiFi AutoCheckout competition test case {case.name} (converted by carts.offline.autocheckout)",
        "t_start": float(min(starts)),
        "t_end": float(max(ends)),
        "time": "seconds since 1970-01-01 UTC",
        "units": {"length": "m", "weight": "g"},
        "problems": problems,
    }
    try:
        write_recording(dest, manifest=manifest, store=store, shelves=shelves, tracks=tracks, gates=gates,
                        truth=convert_truth(case))
    except OSError as exc:
        raise AutoCheckoutError(f"{dest}: cannot write the recording there ({exc.strerror})") from None
    return Path(dest), problems


# ----------------------------------------------------------------------------------------- the cps-test layout
#: ``weights/gondola_G_shelf_S_plate_P.csv`` of a CPS-IoT Week 2020 test session (cps-test-01/README.md).
_PLATE_CSV = re.compile(r"^gondola_(\d+)_shelf_(\d+)_plate_(\d+)\.csv$")
#: ``video/<anything>camN.mp4``. The README says file camN holds camera id N + 1, but frames of cam1, cam3 and cam5 are
#: pixel for pixel the stills camera_1, camera_3 and camera_5 (``vision.aifi_cameras.same_view``), so cameras are
#: named by their file (``cam1``) and calibrated under that name.
_CAMERA_FILE = re.compile(r"cam(\d+)\.(mp4|avi|mkv)$")
#: Two plates share a controller (one time grid) when their sample times agree to this, seconds.
_SAME_GRID_S = 1e-3
#: Our own calibration of the AiFi store's ceiling cameras for these videos (vision/calibrations/README.md).
#: The shop floor of the AiFi NanoStore, metres (vision/calibrations/autocheckout_stills.json ``store``: the TV
#: ledge at x = 0, the back wall near x = 4.95 m, the gondola row's backs at y = 0.49 m, the glass wall near
#: y = -1.55 m). People whose feet are outside it are seen through the glass and are not shoppers.
SHOP_FLOOR = ((0.0, -1.55), (4.95, -1.55), (4.95, 0.49), (0.0, 0.49))
CPS_CALIBRATIONS = Path(__file__).resolve().parents[2] / "vision" / "calibrations" / "aifi_video_cameras.json"


def is_cps_case(case: str | Path) -> bool:
    """True when ``case`` has the cps-test layout (``weights/`` of per-plate CSVs and ``products.csv``) rather than
    the BENCHMARK one (``plate_data.json``)."""
    case = Path(case)
    return (case / "weights").is_dir() or (case / "products.csv").is_file()


def read_plate_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One plate's ``unix time (s), grams`` CSV (no header) → (t (T,) s UTC, grams (T,), problems).

    A malformed row, or a time that is not after the previous one, is skipped and reported with its line number.
    Raises AutoCheckoutError for a file that cannot be read or holds no sample at all."""
    problems: list[str] = []
    ts, gs = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AutoCheckoutError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise AutoCheckoutError(f"{path}: cannot read ({exc.strerror})") from None
    last = -math.inf
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != 2:
                raise ValueError(f"expected 2 fields, got {len(parts)}")
            t, g = float(parts[0]), float(parts[1])
            if not (math.isfinite(t) and t > 1e9):
                raise ValueError(f"time {parts[0].strip()!r} is not seconds since 1970")
        except ValueError as exc:
            problems.append(f"{path}:{i}: row skipped ({exc})")
            continue
        if t <= last:
            problems.append(f"{path}:{i}: time {t:.6f} is not after the previous row's; row skipped")
            continue
        last = t
        ts.append(t)
        gs.append(g if math.isfinite(g) else math.nan)
    if not ts:
        raise AutoCheckoutError(f"{path}: no readable samples")
    return np.asarray(ts), np.asarray(gs), problems


def convert_plate_csvs(folder: Path, bins: set[str]) -> tuple[list[ShelfSamples], list[str]]:
    """``weights/`` → ShelfSamples, one per gondola controller (plates of a gondola whose sample times agree within
    1 ms share a grid; a plate on a grid of its own becomes a controller of its own, reported). Returns
    (samples, problems); an unreadable plate file is reported and left out. Raises AutoCheckoutError when the folder
    is missing or holds no plate file."""
    if not folder.is_dir():
        raise AutoCheckoutError(f"{folder}: missing folder (per-plate weight CSVs)")
    problems: list[str] = []
    groups: dict[int, list[tuple[np.ndarray, list[tuple[str, np.ndarray]]]]] = {}
    files = sorted(p for p in folder.iterdir() if p.suffix == ".csv")
    if not files:
        raise AutoCheckoutError(f"{folder}: no gondola_G_shelf_S_plate_P.csv files")
    for path in files:
        m = _PLATE_CSV.match(path.name)
        if not m:
            problems.append(f"{path}: not named gondola_G_shelf_S_plate_P.csv; skipped")
            continue
        g, s, p = (int(x) for x in m.groups())
        code = bin_code(g, s, p)
        if code not in bins:
            problems.append(f"{path}: plate {code} is not in the store layout; skipped")
            continue
        try:
            t, grams, file_problems = read_plate_csv(path)
        except AutoCheckoutError as exc:
            problems.append(f"{exc}; plate skipped")
            continue
        problems += file_problems
        for grid, members in groups.setdefault(g, []):
            if grid.shape == t.shape and np.max(np.abs(grid - t)) <= _SAME_GRID_S:
                members.append((code, grams))
                break
        else:
            groups[g].append((t, [(code, grams)]))
    out = []
    for g in sorted(groups):
        grids = sorted(groups[g], key=lambda gm: -len(gm[1]))
        for k, (t, members) in enumerate(grids):
            if k:
                problems.append(f"{folder}: gondola {g}: plates {', '.join(c for c, _ in members)} are on a time grid "
                                f"of their own; read as a separate controller")
            members.sort(key=lambda cm: [int(x) for x in cm[0].split("-")])
            out.append(ShelfSamples(t=t, bin_codes=tuple(c for c, _ in members),
                                    grams=np.stack([gr for _, gr in members], axis=1)))
    return out, problems


def _barcodes_by_name(products_json: Path) -> dict[str, str]:
    """``metadata.name`` → ``product_id.id`` of a BENCHMARK ``products.json`` (JSON lines)."""
    out: dict[str, str] = {}
    for _, doc in _json_lines(products_json, []):
        try:
            out.setdefault(str(doc["metadata"]["name"]).strip(), str(doc["product_id"]["id"]))
        except (KeyError, TypeError):
            continue
    return out


def convert_products_csv(path: Path, names: dict[str, str], bins: set[str], product_info: Path | None,
                         problems: list[str]) -> tuple[list[dict], list[dict]]:
    """``products.csv`` (``Name, Gondola, Shelf, Plate, Weight (g), Price, Image URL``; −1 = not on a shelf) →
    (products, facings). Names are joined to barcodes through ``names`` (``metadata.name`` → barcode of the
    BENCHMARK catalogue); a name without a barcode, a bad weight or a plate not in the layout is reported with its
    line and skipped. Raises AutoCheckoutError when the file is missing or has no header."""
    import csv as _csv

    if not path.is_file():
        raise AutoCheckoutError(f"{path}: missing file")
    sds, rel = weight_spreads(product_info)
    products: dict[str, dict] = {}
    facings: list[dict] = []
    try:
        rows = list(_csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError:
        raise AutoCheckoutError(f"{path}: not UTF-8 text") from None
    if not rows or [h.strip().lower() for h in rows[0][:5]] != ["name", "gondola", "shelf", "plate", "weight"]:
        raise AutoCheckoutError(f"{path}:1: header must start Name,Gondola,Shelf,Plate,Weight")
    unknown: dict[str, int] = {}
    for line, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        try:
            name = row[0].strip()
            g, s, p = int(row[1]), int(row[2]), int(row[3])
            weight = float(row[4])
            price = Decimal(row[5].strip() or "0").quantize(Decimal("0.01")) if len(row) > 5 else Decimal("0.00")
        except (IndexError, ValueError, ArithmeticError) as exc:
            problems.append(f"{path}:{line}: row skipped ({exc!r})")
            continue
        barcode = names.get(name)
        if barcode is None:
            unknown.setdefault(name, line)
            continue
        if not math.isfinite(weight) or weight <= 0 or price < 0:
            problems.append(f"{path}:{line}: {name!r} skipped (weight {weight} g, price {price})")
            continue
        products.setdefault(barcode, {"barcode": barcode, "name": name[:200], "price": str(price),
                                      "unit_weight_g": round(weight, 2),
                                      "unit_weight_sd_g": round(sds.get(barcode, rel * weight), 2)})
        if g < 0:
            continue
        code = bin_code(g, s, p)
        if code not in bins:
            problems.append(f"{path}:{line}: plate {code} of {name!r} is not in the store layout; facing skipped")
            continue
        facings.append({"bin": code, "barcode": barcode})
    for name, line in unknown.items():
        problems.append(f"{path}:{line}: product {name!r} has no barcode in the catalogue's products.json; skipped")
    return list(products.values()), facings


def convert_truth_events(path: Path) -> list[TruthReceipt] | None:
    """``truth_events.json`` (AutoCheckout labels: events with ``observation.target_id``, ``products[].id`` and
    ``putback``) → each target's net receipt; None when the file is absent. Raises AutoCheckoutError when
    malformed."""
    if not path.exists():
        return None
    data = _load_json(path)
    receipts: dict[str, dict[str, int]] = {}
    try:
        for ev in data["events"]:
            obs = ev["observation"]
            track = str(obs["target_id"])
            sign = -1 if int(ev.get("putback", 0) or 0) else 1
            lines = receipts.setdefault(track, {})
            for prod in obs["products"]:
                code = str(prod["id"])
                lines[code] = lines.get(code, 0) + sign
    except (KeyError, TypeError, ValueError) as exc:
        raise AutoCheckoutError(f"{path}: malformed event ({exc!r})") from None
    return [TruthReceipt(track=t, lines=tuple(TruthLine(c, q) for c, q in sorted(lines.items()) if q > 0))
            for t, lines in receipts.items()]


def cps_calibrations(path: Path | None = None) -> dict[str, dict]:
    """Our calibrations of the AiFi store's ceiling cameras (video camera name ``camN`` → ``CameraModel.to_dict``
    form), or {} when the file is absent."""
    path = path or CPS_CALIBRATIONS
    if not path.exists():
        return {}
    data = _load_json(path)
    return {str(c["video"]): c["calibration"] for c in data.get("cameras", [])}


def convert_videos(folder: Path, t_start: float, problems: list[str], *, fps: float = 10.0,
                   calibrations: dict[str, dict] | None = None) -> list[RecordedCamera]:
    """``video/*camN.mp4`` → cameras ``camN`` referencing the files where
    they are (never copied), frame 0 at ``t_start`` (the videos carry no timestamps: the replay fits each camera's
    clock offset, ``carts.offline.clock``), with our calibration where we have one. A file OpenCV cannot open, or with no
    frame, is reported and left out; a missing folder is reported (the recording then has no cameras)."""
    import cv2

    if not folder.is_dir():
        problems.append(f"{folder}: missing folder; the recording has no cameras")
        return []
    calibrations = cps_calibrations() if calibrations is None else calibrations
    out = []
    for path in sorted(folder.iterdir()):
        m = _CAMERA_FILE.search(path.name)
        if not m:
            continue
        cam_id = f"cam{int(m.group(1))}"
        cap = cv2.VideoCapture(str(path))
        frames = int(cap.get(7)) if cap.isOpened() else 0
        ok = cap.isOpened() and cap.grab()
        cap.release()
        if not ok or frames <= 0:
            problems.append(f"{path}: not a video OpenCV can decode (or no frames); camera {cam_id} skipped")
            continue
        calib = dict(calibrations.get(cam_id, {}))
        if not calib:
            problems.append(f"{path}: camera {cam_id} has no calibration in {CPS_CALIBRATIONS.name}; its people "
                            "cannot be placed")
        out.append(RecordedCamera(name=cam_id, video=path.resolve(), t_start=float(t_start), fps=fps,
                                  calibration=calib))
    if not out:
        problems.append(f"{folder}: no readable camN.mp4 video; the recording has no cameras")
    return out


def import_cps_case(case: Path, dest: Path, *, store_meta: Path, product_info: Path | None,
                    catalogue: Path | None = None) -> tuple[Path, list[str]]:
    """Convert a cps-test session (``weights/``, ``video/``, ``products.csv``, ``truth_events.json``) into a
    recording with cameras and no keypoints. ``catalogue``: the ``products.json`` whose names give barcodes
    (default ``case/../BENCHMARK-1/products.json``). Returns (dest, problems). Raises AutoCheckoutError for a
    missing required file (weights, products.csv, the catalogue)."""
    gondolas = convert_layout(store_meta)
    bins = {b["code"] for g in gondolas for s in g["shelves"] for b in s["bins"]}
    catalogue = catalogue or case.parent / "BENCHMARK-1" / "products.json"
    problems: list[str] = []
    products, facings = convert_products_csv(case / "products.csv", _barcodes_by_name(catalogue), bins,
                                             product_info, problems)
    shelves, plate_problems = convert_plate_csvs(case / "weights", bins)
    problems += plate_problems
    if not shelves:
        raise AutoCheckoutError(f"{case / 'weights'}: no plate samples could be read")
    t0 = float(min(s.t[0] for s in shelves))
    t1 = float(max(s.t[-1] for s in shelves))
    cameras = convert_videos(case / "video", t0, problems)
    truth = convert_truth_events(case / "truth_events.json")
    # The session has no gate scans: each labelled shopper is admitted at the start and leaves at the end
    # (inferred). The video's shopper bound to the scan takes the scan's track id (carts.offline.video.apply_video), so
    # the true receipt and the billed one name the same shopper.
    gates = []
    for r in truth or []:
        gates += [GateScan(t=t0, track=r.track, kind="entry", source="inferred"),
                  GateScan(t=t1, track=r.track, kind="exit", source="inferred")]
    store = {
        "store": {"code": "aifi-nanostore", "name": "AiFi NanoStore (AutoCheckout 2020)", "currency": "usd"},
        "zones": [{"name": "shop floor", "kind": "floor", "polygon": [list(p) for p in SHOP_FLOOR]}],
        "gondolas": gondolas, "products": products, "facings": facings,
    }
    manifest = {
        "name": case.name,
        "source": f"AiFi AutoCheckout CPS-IoT Week 2020 session {case.name} with camera video "
                  "(converted by carts.offline.autocheckout)",
        "t_start": t0, "t_end": t1, "time": "seconds since 1970-01-01 UTC", "units": {"length": "m", "weight": "g"},
        "problems": problems,
    }
    try:
        write_recording(dest, manifest=manifest, store=store, shelves=shelves, tracks=None, gates=gates,
                        truth=truth, cameras=cameras)
    except OSError as exc:
        raise AutoCheckoutError(f"{dest}: cannot write the recording there ({exc.strerror})") from None
    return Path(dest), problems
