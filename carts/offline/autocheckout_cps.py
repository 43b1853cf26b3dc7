"""Convert a cps-test session of the CPS-IoT Week 2020 AutoCheckout data (``cps-test-01/README.md``) into a Walkout
recording: ``weights/gondola_G_shelf_S_plate_P.csv`` per plate, ``video/*camN.mp4`` per camera, ``products.csv``
(names joined to barcodes through ``BENCHMARK-1/products.json``), ``truth_events.json``. It becomes a recording with
cameras (``cameras.json``, videos referenced where they are, our own calibrations) and no keypoints. Called through
``carts.offline.autocheckout.import_case``.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path

import numpy as np

from carts.offline.autocheckout_store import AutoCheckoutError, bin_code, convert_layout, json_lines, load_json, \
    weight_spreads
from store.recording import GateScan, RecordedCamera, ShelfSamples, TruthLine, TruthReceipt, write_recording


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
    for _, doc in json_lines(products_json, []):
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
    data = load_json(path)
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
    data = load_json(path)
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
