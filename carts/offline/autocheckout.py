"""Convert an AiFi AutoCheckout test case (CPS-IoT Week 2020 competition data) into a Walkout recording.

Input layouts (see ../shared/datasets/README.md). BENCHMARK: a test case folder (e.g. ``BENCHMARK-1/``: ``plate_data.json``,
``full_targets.json``, ``products.json``, ``planogram.json``, optionally ``truth_receipt.json``) and the store's
``store_meta/`` folder (``Gondolas.json``, ``Shelves.json``, ``Plates.json``), by default beside the test case.
cps-test (``cps-test-01/README.md``): ``weights/gondola_G_shelf_S_plate_P.csv`` per plate, ``video/*camN.mp4`` per
camera, ``products.csv`` (names joined to barcodes through ``BENCHMARK-1/products.json``), ``truth_events.json``;
it becomes a recording with cameras (``cameras.json``, videos referenced where they are) and no keypoints.

The store itself (layout, weight spreads) is read by ``carts.offline.autocheckout_store`` and the cps-test layout
converted by ``carts.offline.autocheckout_cps``; :func:`import_case` takes either. Units and frames, converted
explicitly:
- Store metadata positions are **metres** (``carts.offline.autocheckout_store``).
- ``full_targets.json`` keypoints are in **inches** in the same world frame (the head of a standing shopper is at
  z ≈ 66 in ≈ 1.68 m; a hand taking from gondola 1 shelf 5 sits 0.1–0.2 m in front of that shelf once converted).
  We multiply by ``INCH_M = 0.0254`` (exact, by definition of the international inch).
- Plate samples are float32 **grams**, not zeroed, 60 Hz; ``carts.offline.autocheckout_plates`` decodes them.
- Times are ISO-8601 UTC strings; we write seconds since epoch UTC.

The test case has no gate scans: entry is placed at each target's first sighting and exit at its last
(``source=inferred`` in ``gates.csv``), as the AutoCheckout store admitted shoppers by their first track.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

from carts.offline.autocheckout_cps import import_cps_case, is_cps_case
from carts.offline.autocheckout_plates import PlateBlock, read_plate_file
from carts.offline.autocheckout_store import AutoCheckoutError, bin_code, convert_layout, json_lines, load_json, \
    weight_spreads
from store.recording import GateScan, ShelfSamples, TrackObservations, TruthLine, TruthReceipt, write_recording

log = logging.getLogger(__name__)

INCH_M = 0.0254
TARGET_KEYPOINTS = ("head", "neck", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist")


def parse_time(value: str) -> float:
    """ISO-8601 UTC string (``2020-04-22T05:06:36.859Z``) → seconds since epoch. Raises ValueError if malformed."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def convert_catalogue(case: Path, product_info: Path | None,
                      problems: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Products (price from ``metadata.price``, a placeholder in this data set; weight ± spread) and facings.
    Skipped entries are reported in ``problems``."""
    problems = [] if problems is None else problems
    sds, rel = weight_spreads(product_info)
    products = {}
    unweighed = []
    for line, doc in json_lines(case / "products.json", problems):
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
    for line, doc in json_lines(case / "planogram.json", problems):
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
    for line, doc in json_lines(case / "full_targets.json", problems):
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
    data = load_json(path)
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
