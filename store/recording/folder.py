"""A recording folder as a whole: reading each of its files (store, tracks, gates, truth, cameras; the shelf
samples through ``store.recording.shelves``) into a :class:`~store.recording.contract.Recording`, and writing one
(``destination_prepare``, ``write_recording``). Every reader error is a ``RecordingError`` naming the file and the
line or field; what a reader had to skip is listed in the recording's ``problems``.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .contract import (
    CAMERAS, FORMAT, GATES, GateScan, KEYPOINTS, MANIFEST, REQUIRED, RecordedCamera, Recording, RecordingError,
    SHELVES, SHELVES_NPY, STORE, ShelfSamples, TRACKS, TRUTH, TrackObservations, TruthLine, TruthReceipt, VERSION,
    _ID_OK,
)
from .shelves import read_shelves, read_shelves_npy, write_shelves
from .text import _finite, _load_json, _rows

log = logging.getLogger(__name__)

def read_store(path: Path) -> dict:
    """Read and validate ``store.json``. Raises RecordingError naming the field at fault."""
    data = _load_json(path)
    where = str(path)
    for key in ("store", "gondolas", "products", "facings"):
        if key not in data:
            raise RecordingError(f"{where}: missing key {key!r}")
    for key in ("code", "name", "currency"):
        if not data["store"].get(key):
            raise RecordingError(f"{where}: store.{key} is missing")
    codes: set[str] = set()
    for gi, g in enumerate(data["gondolas"]):
        for key in ("number", "x", "y", "yaw_rad", "width_m", "depth_m", "height_m", "shelves"):
            if key not in g:
                raise RecordingError(f"{where}: gondolas[{gi}].{key} is missing")
        for si, s in enumerate(g["shelves"]):
            for bi, b in enumerate(s.get("bins", [])):
                for key in ("number", "code", "x", "y", "z", "width_m", "depth_m", "yaw_rad"):
                    if key not in b:
                        raise RecordingError(f"{where}: gondolas[{gi}].shelves[{si}].bins[{bi}].{key} is missing")
                if b["code"] in codes:
                    raise RecordingError(f"{where}: bin code {b['code']!r} appears twice")
                codes.add(b["code"])
    barcodes: set[str] = set()
    for pi, p in enumerate(data["products"]):
        for key in ("barcode", "name", "price", "unit_weight_g"):
            if key not in p:
                raise RecordingError(f"{where}: products[{pi}].{key} is missing")
        if not isinstance(p["barcode"], str) or not p["barcode"].strip():
            raise RecordingError(f"{where}: products[{pi}].barcode must be a non-empty string")
        if p["barcode"] in barcodes:
            raise RecordingError(f"{where}: products[{pi}].barcode {p['barcode']!r} appears twice")
        for key, low in (("unit_weight_g", 0.0), ("unit_weight_sd_g", 0.0)):
            if key not in p:
                continue
            value = p[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (key == "unit_weight_g" and value <= 0):
                raise RecordingError(f"{where}: products[{pi}].{key} must be a "
                                     f"{'positive' if key == 'unit_weight_g' else 'non-negative'} number of grams, "
                                     f"got {value!r}")
        try:
            price = Decimal(str(p["price"]))
        except InvalidOperation:
            raise RecordingError(f"{where}: products[{pi}].price {p['price']!r} is not a decimal") from None
        if price < 0 or not price.is_finite():
            raise RecordingError(f"{where}: products[{pi}].price must be ≥ 0")
        barcodes.add(p["barcode"])
    for fi, fc in enumerate(data["facings"]):
        if fc.get("bin") not in codes:
            raise RecordingError(f"{where}: facings[{fi}].bin {fc.get('bin')!r} is not a bin of this store")
        if fc.get("barcode") not in barcodes:
            raise RecordingError(f"{where}: facings[{fi}].barcode {fc.get('barcode')!r} is not in products")
    return data



def read_tracks(path: Path, problems: list[str]) -> TrackObservations:
    """Read ``tracks.csv`` (t, track, keypoint, x, y, z, score). Missing file → no tracks (a problem is noted).

    Malformed rows are skipped and reported in ``problems`` with their line.
    """
    if not path.exists():
        problems.append(f"{path}: missing file; the recording has no shopper tracks")
        return TrackObservations.empty()
    tid, ts, kp, xyz, sc = [], [], [], [], []
    for line, row in _rows(path, ("t", "track", "keypoint", "x", "y", "z", "score"), problems):
        where = f"{path}:{line}"
        if len(row) < 7:
            problems.append(f"{where}: expected 7 fields, got {len(row)}; row skipped")
            continue
        try:
            t = _finite(row[0], where)
            p = (_finite(row[3], where), _finite(row[4], where), _finite(row[5], where))
            s = _finite(row[6], where)
        except RecordingError as exc:
            problems.append(f"{exc}; row skipped")
            continue
        if not row[1].strip() or not row[2].strip():
            problems.append(f"{where}: empty track or keypoint; row skipped")
            continue
        if not _ID_OK.match(row[1].strip()):
            problems.append(f"{where}: track id {row[1].strip()!r} is not of letters, digits and ._:-; row skipped")
            continue
        if row[2].strip() not in KEYPOINTS:
            problems.append(f"{where}: unknown keypoint {row[2].strip()!r}; row skipped")
            continue
        if not 0.0 <= s <= 1.0:
            problems.append(f"{where}: score {s} is outside [0, 1]; row skipped")
            continue
        tid.append(row[1].strip())
        ts.append(t)
        kp.append(row[2].strip())
        xyz.append(p)
        sc.append(s)
    if not ts:
        return TrackObservations.empty()
    return TrackObservations(np.array(tid, dtype=object), np.asarray(ts, dtype=np.float64),
                             np.array(kp, dtype=object), np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
                             np.asarray(sc, dtype=np.float64))


def read_gates(path: Path, problems: list[str]) -> list[GateScan]:
    """Read ``gates.csv`` (t, track, kind, account, source). Missing file → no scans (noted in ``problems``)."""
    if not path.exists():
        problems.append(f"{path}: missing file; no gate scans")
        return []
    scans = []
    for line, row in _rows(path, ("t", "track", "kind"), problems):
        where = f"{path}:{line}"
        try:
            t = _finite(row[0], where)
        except RecordingError as exc:
            problems.append(f"{exc}; row skipped")
            continue
        kind = row[2].strip() if len(row) > 2 else ""
        if kind not in {"entry", "exit"}:
            problems.append(f"{where}: kind must be entry or exit, got {kind!r}; row skipped")
            continue
        scans.append(GateScan(t=t, track=row[1].strip(), kind=kind,
                              account=row[3].strip() if len(row) > 3 else "",
                              source=(row[4].strip() if len(row) > 4 else "") or "scanned"))
    scans.sort(key=lambda s: s.t)
    return scans


def read_truth(path: Path) -> list[TruthReceipt] | None:
    """Read ``truth.json`` ({"receipts": [{"track", "lines": [{"barcode", "quantity"}]}]}); None if absent."""
    if not path.exists():
        return None
    data = _load_json(path)
    out = []
    for ri, r in enumerate(data.get("receipts", [])):
        try:
            lines = tuple(TruthLine(str(x["barcode"]), int(x["quantity"])) for x in r["lines"])
            out.append(TruthReceipt(track=str(r["track"]), lines=lines))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{path}: receipts[{ri}] is malformed ({exc})") from None
    return out


def read_cameras(path: Path, problems: list[str]) -> list[RecordedCamera]:
    """Read ``cameras.json`` (``{"cameras": [{"name", "video", "t_start", "fps"?, "calibration"?}]}``); absent →
    no cameras. A camera whose video file is missing is kept and reported in ``problems`` (replay skips it).
    Raises RecordingError for malformed JSON or a camera without name, video or t_start."""
    if not path.exists():
        return []
    data = _load_json(path)
    out = []
    names: set[str] = set()
    for ci, c in enumerate(data.get("cameras", []) if isinstance(data, dict) else []):
        where = f"{path}: cameras[{ci}]"
        if not isinstance(c, dict) or not c.get("name") or not c.get("video"):
            raise RecordingError(f"{where}: needs a name and a video")
        if c["name"] in names:
            raise RecordingError(f"{where}: camera name {c['name']!r} appears twice")
        names.add(c["name"])
        t0 = _finite(c.get("t_start"), f"{where}.t_start")
        fps = _finite(c["fps"], f"{where}.fps") if c.get("fps") is not None else None
        video = Path(c["video"])
        video = video if video.is_absolute() else path.parent / video
        if not video.exists():
            problems.append(f"{where}: video {video} is missing; that camera is skipped")
        calib = c.get("calibration", {})
        if not isinstance(calib, dict):
            raise RecordingError(f"{where}.calibration must be an object")
        out.append(RecordedCamera(name=str(c["name"]), video=video, t_start=t0, fps=fps, calibration=calib))
    return out


def cameras_shift(path: str | Path, offsets: Mapping[str, float]) -> list[str]:
    """Move the clocks of the recording's cameras at ``path`` onto the shelves' clock: each camera named in
    ``offsets`` (s, shelf time − camera time, ``carts.offline.clock``) gets ``t_start`` + its offset in ``cameras.json``, and
    the total moved so far in ``clock_shift_s``. Every reader of the recording (the replay and the live video path
    of ``emulate_store`` alike) then plays that camera on the shelves' clock. Returns the names moved. Raises
    RecordingError for a recording without ``cameras.json`` or a camera it does not have."""
    root = Path(path)
    file = root / CAMERAS
    if not file.exists():
        raise RecordingError(f"{file}: missing file; the recording has no cameras")
    data = _load_json(file)
    cams = {c.get("name"): c for c in data.get("cameras", []) if isinstance(c, dict)}
    unknown = sorted(set(offsets) - set(cams))
    if unknown:
        raise RecordingError(f"{file}: no camera named {', '.join(unknown)}")
    for name, off in offsets.items():
        off = _finite(off, f"offset of camera {name}")
        cam = cams[name]
        cam["t_start"] = _finite(cam.get("t_start"), f"{file}: {name}.t_start") + off
        cam["clock_shift_s"] = round(float(cam.get("clock_shift_s", 0.0)) + off, 6)
    file.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return sorted(offsets)


def read_recording(path: str | Path) -> Recording:
    """Read a recording folder. Raises RecordingError if a required file is missing or malformed.

    Recoverable problems (a malformed row, an optional file absent) are logged and listed in
    ``Recording.problems``; the rest of the recording is still read.
    """
    root = Path(path)
    if not root.is_dir():
        raise RecordingError(f"{root}: not a recording folder (no such directory)")
    for name in (MANIFEST, STORE):
        if not (root / name).exists():
            raise RecordingError(f"{root / name}: missing file (a recording needs {', '.join(REQUIRED)})")
    csv_form, npy_form = (root / SHELVES).exists(), (root / SHELVES_NPY).is_dir()
    if not csv_form and not npy_form:
        raise RecordingError(f"{root / SHELVES}: missing file (a recording needs {', '.join(REQUIRED)}; the shelf "
                             f"samples may be the folder {SHELVES_NPY}/ instead)")
    if csv_form and npy_form:
        raise RecordingError(f"{root}: holds the shelf samples twice, {SHELVES} and {SHELVES_NPY}/, which may "
                             "differ; keep one of them")
    manifest = _load_json(root / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise RecordingError(f"{root / MANIFEST}: format must be {FORMAT!r}, got {manifest.get('format')!r}")
    if int(manifest.get("version", 0)) != VERSION:
        raise RecordingError(f"{root / MANIFEST}: unsupported version {manifest.get('version')!r} (this reads {VERSION})")
    for key in ("t_start", "t_end"):
        _finite(manifest.get(key), f"{root / MANIFEST}: {key}")
    if float(manifest["t_start"]) > float(manifest["t_end"]):
        raise RecordingError(f"{root / MANIFEST}: t_start {manifest['t_start']} is after t_end {manifest['t_end']}")
    store = read_store(root / STORE)
    bin_codes = {b["code"] for g in store["gondolas"] for s in g["shelves"] for b in s.get("bins", [])}
    problems: list[str] = []
    shelves = (read_shelves_npy(root / SHELVES_NPY, bin_codes, problems) if npy_form
               else read_shelves(root / SHELVES, bin_codes, problems))
    cameras = read_cameras(root / CAMERAS, problems)
    if cameras and not (root / TRACKS).exists():
        tracks = TrackObservations.empty()  # a recording with video: its shoppers come from the cameras
    else:
        tracks = read_tracks(root / TRACKS, problems)
    gates = read_gates(root / GATES, problems)
    truth = read_truth(root / TRUTH)
    for p in problems:
        log.warning("%s", p)
    return Recording(path=root, manifest=manifest, store=store, shelves=shelves, tracks=tracks, gates=gates,
                     truth=truth, problems=problems, cameras=cameras)


# ------------------------------------------------------------------------------------------------------ writing
def destination_prepare(path: str | Path, *, force: bool = False) -> Path:
    """Make ``path`` ready for a new recording and return it: a missing or empty folder is fine; a non-empty one
    is refused unless ``force``, because writing into it would keep files of its earlier content that the new
    recording does not write (a ``truth_events.json`` of an earlier simulation makes ``evaluate`` score against
    the wrong truth). With ``force`` the folder is emptied first, but only when it is a recording folder (it
    holds ``recording.json``): anything else is never deleted. Raises :class:`RecordingError` with the reason
    (also for a path that is a file)."""
    import shutil

    root = Path(path)
    if root.exists() and not root.is_dir():
        raise RecordingError(f"{root}: is a file, not a folder; choose another destination")
    if not root.exists() or not any(root.iterdir()):
        return root
    if not force:
        raise RecordingError(f"{root}: the folder is not empty; choose a new folder, or pass --force to clear it "
                             "first (files of its earlier content would otherwise stay beside the new recording)")
    if not (root / MANIFEST).is_file():
        raise RecordingError(f"{root}: not a recording folder (no {MANIFEST}); --force only clears a recording, so "
                             "empty or remove it yourself, or choose a new folder")
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    log.info("%s: cleared for a new recording", root)
    return root


def write_recording(path: str | Path, *, manifest: dict, store: dict, shelves: Iterable[ShelfSamples],
                    tracks: TrackObservations | None = None, gates: Iterable[GateScan] = (),
                    truth: Iterable[TruthReceipt] | None = None,
                    cameras: Iterable[RecordedCamera] | None = None, shelves_form: str = "csv") -> Path:
    """Write a recording folder (created if needed; files overwritten). Returns the folder path.

    ``manifest`` gets ``format``/``version`` filled in. ``shelves_form``: ``csv`` (``shelves.csv``, the
    interchange form) or ``npy`` (the binary folder ``shelves/``; :func:`write_shelves`). In CSV, grams are written
    with 0.01 g resolution, positions with 0.1 mm, times with 1 µs; the binary form keeps the float64 values.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "version": VERSION, **manifest}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (root / STORE).write_text(json.dumps(store, indent=1) + "\n", encoding="utf-8")
    write_shelves(root, shelves, form=shelves_form)
    if tracks is not None:
        with (root / TRACKS).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["t", "track", "keypoint", "x", "y", "z", "score"])
            for i in np.argsort(tracks.t, kind="stable"):
                x, y, z = tracks.xyz[i]
                w.writerow([f"{tracks.t[i]:.6f}", tracks.track_id[i], tracks.keypoint[i], f"{x:.4f}", f"{y:.4f}",
                            f"{z:.4f}", f"{tracks.score[i]:.3f}"])
    with (root / GATES).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["t", "track", "kind", "account", "source"])
        for g in sorted(gates, key=lambda g: g.t):
            w.writerow([f"{g.t:.6f}", g.track, g.kind, g.account, g.source])
    if truth is not None:
        data = {"receipts": [{"track": r.track, "lines": [{"barcode": x.barcode, "quantity": x.quantity}
                                                          for x in r.lines]} for r in truth]}
        (root / TRUTH).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if cameras is not None:
        cams = [{"name": c.name, "video": str(c.video), "t_start": c.t_start,
                 **({"fps": c.fps} if c.fps is not None else {}), "calibration": c.calibration} for c in cameras]
        (root / CAMERAS).write_text(json.dumps({"cameras": cams}, indent=1) + "\n", encoding="utf-8")
    return root
