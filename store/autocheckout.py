"""Convert an AiFi AutoCheckout test case (CPS-IoT Week 2020 competition data) into a Walkout recording.

Input layout (see ../shared/datasets/README.md): a test case folder (e.g. ``BENCHMARK-1/``: ``plate_data.json``,
``full_targets.json``, ``products.json``, ``planogram.json``, optionally ``truth_receipt.json``) and the store's
``store_meta/`` folder (``Gondolas.json``, ``Shelves.json``, ``Plates.json``), by default beside the test case.

Units and frames, converted explicitly:
- Store metadata positions are **metres**, nested gondola → world, shelf → gondola, plate → shelf, each a
  translation plus a Rodrigues rotation vector (store_meta/README_source.md). We compose them into world (store)
  coordinates with ``scipy.spatial.transform.Rotation.from_rotvec``.
- ``full_targets.json`` keypoints are in **inches** in the same world frame (the head of a standing shopper is at
  z ≈ 66 in ≈ 1.68 m; a hand taking from gondola 1 shelf 5 sits 0.1–0.2 m in front of that shelf once converted).
  We multiply by ``INCH_M = 0.0254`` (exact, by definition of the international inch).
- Plate samples are float32 **grams**, not zeroed, 60 Hz; ``sensors.autocheckout`` decodes them.
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
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from sensors.autocheckout import PlateBlock, read_plate_file

from .recording import GateScan, ShelfSamples, TrackObservations, TruthLine, TruthReceipt, write_recording

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
    meta = Path(store_meta) if store_meta else case.parent / "store_meta"
    info = Path(product_info) if product_info else case.parent / "aim3s" / "product_info.json"
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
        "source": f"AiFi AutoCheckout competition test case {case.name} (converted by store.autocheckout)",
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
