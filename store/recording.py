"""Recordings: the folder format that holds one store session, for replay and evaluation (DESIGN.md "Recordings").

Pure Python + NumPy (no Django): read by ``replay``/``evaluate``, written by ``import_autocheckout`` and the
simulator. The format is documented for people in ``docs/recording-format.md``; this module is its reference
implementation. Every reader error is a :class:`RecordingError` naming the file and the line or field.

Units: time in seconds since the Unix epoch, UTC; lengths in metres in store coordinates; weights in grams;
prices as decimal strings in the store's currency.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "walkout-recording"
VERSION = 1
MANIFEST = "recording.json"
STORE = "store.json"
SHELVES = "shelves.csv"
#: The binary form of the shelf samples (a folder): one ``.npy`` pair per shelf controller and :data:`SHELVES_INDEX`.
SHELVES_NPY = "shelves"
#: The binary form's index file, inside :data:`SHELVES_NPY`.
SHELVES_INDEX = "index.json"
#: Forms the shelf samples can be written in (:func:`write_shelves`): ``csv`` (``shelves.csv``) or ``npy``
#: (``shelves/``).
SHELF_FORMS = ("csv", "npy")
TRACKS = "tracks.csv"
GATES = "gates.csv"
TRUTH = "truth.json"
CAMERAS = "cameras.json"
#: Files a recording must hold; the shelf samples may be ``shelves.csv`` or the folder ``shelves/`` instead.
REQUIRED = (MANIFEST, STORE, SHELVES)

#: Keypoints that count as a hand for fusion (wrists are what pose models give; "hand" where a system has it).
HAND_KEYPOINTS = ("l_wrist", "r_wrist", "l_hand", "r_hand")
#: A wrist seen by one camera only, whose depth along the camera's ray is unknown: the two ends of the stretch of
#: that ray where the wrist can be (within an arm's reach of the body), as two rows of one track at one time, the
#: ``…_ray_a`` row before its ``…_ray_b`` row (several cameras' stretches at one time pair up in row order).
#: Wrist name → (end a, end b). Fusion reads such a stretch as the point of it nearest to an event's bins
#: (``carts.fusion_hands.wrist_ray_hands``): a depth-free lower bound of the hand's distance. The video path writes them
#: (``carts.offline.video``); keypoint sources with 3-D hands never do.
WRIST_RAY_KEYPOINTS = {"l_wrist": ("l_wrist_ray_a", "l_wrist_ray_b"), "r_wrist": ("r_wrist_ray_a", "r_wrist_ray_b")}
#: Every keypoint name of :data:`WRIST_RAY_KEYPOINTS`.
RAY_KEYPOINTS = tuple(k for ends in WRIST_RAY_KEYPOINTS.values() for k in ends)
#: Keypoint names a track may carry: the AutoCheckout/Walkout body set, the COCO-17 pose set (as ``l_``/``r_``), hands,
#: single-view wrist rays (:data:`WRIST_RAY_KEYPOINTS`) and ``floor`` (a bare floor position, z = 0).
KEYPOINTS = frozenset({
    "head", "neck", "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hand", "r_hand", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "floor",
    *RAY_KEYPOINTS,
})
#: Keypoints whose floor projection (x, y) gives a person's floor position, in order of preference.
BODY_KEYPOINTS = ("neck", "head", "l_shoulder", "r_shoulder", "floor")


_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RecordingError(ValueError):
    """A recording is missing a file or holds a malformed entry; the message names the file and place."""


# --------------------------------------------------------------------------------------------- typed containers
@dataclass(frozen=True)
class ShelfSamples:
    """Raw load-cell samples of the bins read by one shelf controller (bins sharing one clock and time grid).

    ``t`` (T,) float64 seconds since epoch UTC, increasing; ``bin_codes`` (B,) bin codes; ``grams`` (T, B) float64
    raw readings (not zeroed; NaN where a sample is missing).
    """

    t: np.ndarray
    bin_codes: tuple[str, ...]
    grams: np.ndarray

    def __post_init__(self) -> None:
        if self.t.ndim != 1:
            raise ValueError(f"t must be (T,), got {self.t.shape}")
        if self.grams.shape != (self.t.shape[0], len(self.bin_codes)):
            raise ValueError(f"grams must be (T, B) = {(self.t.shape[0], len(self.bin_codes))}, got {self.grams.shape}")

    @property
    def rate_hz(self) -> float:
        """Median sample rate, Hz (0 when fewer than two samples)."""
        if self.t.shape[0] < 2:
            return 0.0
        return float(1.0 / np.median(np.diff(self.t)))


@dataclass(frozen=True)
class TrackObservations:
    """Keypoint observations of shopper tracks in store coordinates (the vision → carts contract).

    ``track_id`` (n,) object array of str; ``t`` (n,) float64 s UTC; ``keypoint`` (n,) object array of str
    (``head``, ``neck``, ``l_wrist``, ``r_wrist``, …, or ``floor`` for a bare floor position with z = 0);
    ``xyz`` (n, 3) float64 metres; ``score`` (n,) float64 in [0, 1].
    """

    track_id: np.ndarray
    t: np.ndarray
    keypoint: np.ndarray
    xyz: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        for name in ("track_id", "keypoint", "score"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")
        if self.xyz.shape != (n, 3):
            raise ValueError(f"xyz must be ({n}, 3), got {self.xyz.shape}")

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def __getitem__(self, mask: Any) -> "TrackObservations":
        return TrackObservations(self.track_id[mask], self.t[mask], self.keypoint[mask], self.xyz[mask],
                                 self.score[mask])

    @classmethod
    def empty(cls) -> "TrackObservations":
        return cls(np.array([], dtype=object), np.zeros(0), np.array([], dtype=object), np.zeros((0, 3)), np.zeros(0))

    def hands(self) -> "TrackObservations":
        """Only the hand keypoints (``HAND_KEYPOINTS``) and single-view wrist rays (``RAY_KEYPOINTS``), in order."""
        return self[np.isin(self.keypoint, HAND_KEYPOINTS + RAY_KEYPOINTS)]

    def track_ids(self) -> list[str]:
        """Distinct track ids, in order of first observation."""
        order = np.argsort(self.t, kind="stable")
        seen: dict[str, None] = {}
        for tid in self.track_id[order]:
            seen.setdefault(str(tid), None)
        return list(seen)

    def span(self, track_id: str) -> tuple[float, float]:
        """(first, last) observation time of ``track_id``, s UTC. Raises KeyError if it has none."""
        ts = self.t[self.track_id == track_id]
        if ts.size == 0:
            raise KeyError(track_id)
        return float(ts.min()), float(ts.max())

    def between(self, t0: float, t1: float) -> "TrackObservations":
        """Observations with ``t0 <= t <= t1``."""
        return self[(self.t >= t0) & (self.t <= t1)]


def member(values: np.ndarray, allowed: Iterable) -> np.ndarray:
    """(n,) bool: which of ``values`` (n,) (track ids, keypoint names: object arrays) are in ``allowed``. The same
    answer as ``np.isin``, which on object arrays compares every value with every allowed one."""
    allowed = allowed if isinstance(allowed, (set, frozenset)) else set(allowed)
    return np.fromiter((v in allowed for v in values.tolist()), dtype=bool, count=len(values))


@dataclass(frozen=True)
class GateScan:
    """A gate event: ``kind`` entry or exit, at ``t`` (s UTC), for shopper ``track``; ``account`` an e-mail or "";
    ``source`` ``scanned`` (a real scan) or ``inferred`` (an importer placed it at the track's first/last sighting)."""

    t: float
    track: str
    kind: str
    account: str = ""
    source: str = "scanned"


@dataclass(frozen=True)
class TruthLine:
    """One line of a true receipt: ``quantity`` net units (put-backs already cancel picks) of ``barcode``."""

    barcode: str
    quantity: int


@dataclass(frozen=True)
class TruthReceipt:
    """The true receipt of one shopper track."""

    track: str
    lines: tuple[TruthLine, ...]


@dataclass(frozen=True)
class RecordedCamera:
    """One camera's video in a recording (``cameras.json``): ``name`` unique in the recording; ``video`` the file
    (resolved against the recording folder when relative); ``t_start`` s UTC of frame 0; ``fps`` the frame rate
    (None: the container's); ``calibration`` the camera model as plain JSON (``vision.geometry.CameraModel.to_dict``
    form: ``K`` 3×3 pixels, ``dist``, ``R`` 3×3 and ``C`` metres camera-to-store, and/or ``H`` 3×3 pixel → floor
    metres, ``width``, ``height``, ``clock_offset_s``)."""

    name: str
    video: Path
    t_start: float
    fps: float | None = None
    calibration: dict = field(default_factory=dict)


@dataclass
class Recording:
    """A recording folder, read and validated. ``store`` is the parsed ``store.json`` (see docs)."""

    path: Path
    manifest: dict
    store: dict
    shelves: list[ShelfSamples]
    tracks: TrackObservations
    gates: list[GateScan]
    truth: list[TruthReceipt] | None
    problems: list[str] = field(default_factory=list)
    cameras: list[RecordedCamera] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def t_start(self) -> float:
        return float(self.manifest["t_start"])

    @property
    def t_end(self) -> float:
        return float(self.manifest["t_end"])


# ------------------------------------------------------------------------------------------------------ reading
def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing file") from None
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise RecordingError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot be read ({exc.strerror})") from None


def _finite(value: Any, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RecordingError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise RecordingError(f"{where}: {value!r} is not finite")
    return x


def _rows(path: Path, columns: tuple[str, ...], problems: list[str]) -> Iterable[tuple[int, list[str]]]:
    """Yield (line number, fields) of a recording CSV file whose header must start with ``columns``.

    Recording CSVs hold plain fields (codes, numbers, e-mails) and never quote, so a line is split on commas as it
    is: a stray quote cannot swallow the lines after it and line numbers stay exact. A line that is not UTF-8 is
    skipped and reported in ``problems``. Raises RecordingError if the file is missing or its header is wrong.
    """
    try:
        f = path.open(encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot be read ({exc.strerror})") from None
    with f:
        header = [h.strip() for h in f.readline().rstrip("\r\n").split(",")]
        if tuple(header[: len(columns)]) != columns:
            raise RecordingError(f"{path}:1: header must be {','.join(columns)}, got {','.join(header)!r}")
        for line_no, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\ufffd" in line:
                problems.append(f"{path}:{line_no}: not UTF-8 text; row skipped")
                continue
            yield line_no, line.split(",")


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


def read_shelves(path: Path, bin_codes: set[str], problems: list[str]) -> list[ShelfSamples]:
    """Read ``shelves.csv`` (t, bin, grams) into one :class:`ShelfSamples` per shelf controller.

    Bins sampled on one time grid share a controller (one clock); a sample missing from a bin's series is a NaN
    gap on that grid. A malformed row (bad number,
    unknown bin, infinite value) is skipped and reported in ``problems`` with its line; an empty or ``nan`` grams
    field is a missing sample (NaN) and is kept as a gap. Raises RecordingError if the file is missing or its
    header is wrong.
    """
    per_bin: dict[str, tuple[list[float], list[float]]] = {}
    for line, row in _rows(path, ("t", "bin", "grams"), problems):
        where = f"{path}:{line}"
        if len(row) < 3:
            problems.append(f"{where}: expected 3 fields, got {len(row)}; row skipped")
            continue
        try:
            t = _finite(row[0], where)
        except RecordingError as exc:
            problems.append(f"{exc}; row skipped")
            continue
        code = row[1].strip()
        if code not in bin_codes:
            problems.append(f"{where}: unknown bin {code!r}; row skipped")
            continue
        g_raw = row[2].strip()
        if g_raw == "" or g_raw.lower() == "nan":
            grams = math.nan
        else:
            try:
                grams = float(g_raw)
            except ValueError:
                problems.append(f"{where}: grams {g_raw!r} is not a number; row skipped")
                continue
            if math.isinf(grams):
                problems.append(f"{where}: grams {g_raw!r} is infinite; row skipped")
                continue
        ts, gs = per_bin.setdefault(code, ([], []))
        ts.append(t)
        gs.append(grams)

    # Bins of one controller share its time grid. A skipped row leaves that bin without one sample; it must not
    # split the controller, so bins join a group when ≥ 90 % of their times are on its grid, and gaps become NaN.
    series = []
    for code, (ts, gs) in per_bin.items():
        t_arr = np.asarray(ts, dtype=np.float64)
        g_arr = np.asarray(gs, dtype=np.float64)
        backwards = int((np.diff(t_arr) < 0).sum())
        if backwards:
            problems.append(f"{path}: bin {code}: {backwards} sample(s) out of time order; sorted by time")
        order = np.argsort(t_arr, kind="stable")
        t_arr, g_arr = t_arr[order], g_arr[order]
        dup = np.concatenate([[False], np.diff(t_arr) == 0])
        if dup.any():
            problems.append(f"{path}: bin {code}: {int(dup.sum())} duplicated sample time(s); later ones dropped")
            t_arr, g_arr = t_arr[~dup], g_arr[~dup]
        series.append((code, t_arr, g_arr))
    if not series:
        problems.append(f"{path}: no samples; no shelf events can be detected")
    series.sort(key=lambda m: (-m[1].size, m[0]))
    groups: list[tuple[np.ndarray, list[tuple[str, np.ndarray, np.ndarray]]]] = []
    for code, t_arr, g_arr in series:
        for k, (grid, members) in enumerate(groups):
            if np.isin(t_arr, grid, assume_unique=True).sum() >= 0.9 * t_arr.size:
                members.append((code, t_arr, g_arr))
                groups[k] = (np.union1d(grid, t_arr), members)
                break
        else:
            groups.append((t_arr, [(code, t_arr, g_arr)]))
    out = []
    for grid, members in groups:
        members.sort(key=lambda m: m[0])
        block = np.full((grid.size, len(members)), np.nan)
        for j, (_, t_arr, g_arr) in enumerate(members):
            block[np.searchsorted(grid, t_arr), j] = g_arr
        out.append(ShelfSamples(t=grid, bin_codes=tuple(m[0] for m in members), grams=block))
    out.sort(key=lambda s: s.bin_codes[0])
    return out


#: Rows of ``grams`` scanned at once for infinite values when reading the binary form (bounded memory).
_SCAN_BYTES = 64 * 2**20


def _npy_array(path: Path, where: str) -> np.ndarray:
    """``path`` loaded memory-mapped (``np.load(mmap_mode="r")``: nothing is read until used), as float64. Raises
    RecordingError when it is missing, not a ``.npy`` file, or not little-endian float64."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise RecordingError(f"{where}: missing file {path.name}") from None
    except (ValueError, OSError) as exc:
        raise RecordingError(f"{where}: {path.name} is not a NumPy .npy array ({exc})") from None
    if arr.dtype != np.dtype("<f8"):
        raise RecordingError(f"{where}: {path.name} must hold float64 (little-endian), got {arr.dtype.str}")
    return arr


def _count_infinite(path: Path, arr: np.ndarray) -> int:
    """Infinite values in the ``.npy`` file ``path`` whose memory map is ``arr``, read in bounded chunks through
    the file (not the map: a scanned map would stay resident in the reader's memory)."""
    n = int(arr.size)
    chunk = max(1, _SCAN_BYTES // 8)
    count = 0
    with path.open("rb") as f:
        f.seek(int(getattr(arr, "offset", 0)))
        while n > 0:
            k = min(n, chunk)
            count += int(np.isinf(np.fromfile(f, dtype="<f8", count=k)).sum())
            n -= k
    return count


def read_shelves_npy(path: Path, bin_codes: set[str], problems: list[str]) -> list[ShelfSamples]:
    """Read the binary form of the shelf samples (the folder ``shelves/``, docs/recording-format.md) into one
    :class:`ShelfSamples` per shelf controller, its arrays memory-mapped (read when used; nothing is copied).

    ``index.json`` is ``{"controllers": [{"bins": [code, …], "t": "<file>.npy", "grams": "<file>.npy"}]}``; ``t``
    (T,) float64 s UTC, finite and strictly increasing; ``grams`` (T, B) float64 raw grams, B = len(bins), NaN
    where a sample is missing. A bin that is not in ``store.json`` (``bin_codes``) is left out of its controller and
    reported in ``problems`` (as the CSV reader skips its rows). Raises RecordingError naming the controller for a
    missing or malformed index or file, a shape that does not match, a ``t`` not finite or not increasing, a bin
    listed twice, or an infinite gram value. Blocks are returned ordered by their first bin code, as
    :func:`read_shelves` does; bins keep their stored order."""
    index = path / SHELVES_INDEX
    data = _load_json(index)
    entries = data.get("controllers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RecordingError(f"{index}: needs a list \"controllers\"")
    seen: set[str] = set()
    out = []
    for k, entry in enumerate(entries):
        where = f"{index}: controllers[{k}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("bins"), list) \
                or not all(isinstance(c, str) and c for c in entry["bins"]):
            raise RecordingError(f"{where}: needs \"bins\", a list of bin codes")
        files = {}
        for key in ("t", "grams"):
            name = entry.get(key)
            if not isinstance(name, str) or not name.endswith(".npy") or Path(name).name != name:
                raise RecordingError(f"{where}.{key} must name a .npy file in {path.name}/, got {name!r}")
            files[key] = path / name
        codes = list(entry["bins"])
        counts: dict[str, int] = {}
        for c in codes:
            counts[c] = counts.get(c, 0) + 1
        twice = sorted({c for c, m in counts.items() if m > 1} | (set(codes) & seen))
        if twice:
            raise RecordingError(f"{where}: bin(s) {', '.join(twice)} listed twice")
        seen.update(codes)
        t = _npy_array(files["t"], where)
        grams = _npy_array(files["grams"], where)
        if t.ndim != 1:
            raise RecordingError(f"{where}: {files['t'].name} must be (T,), got shape {t.shape}")
        if grams.shape != (t.shape[0], len(codes)):
            raise RecordingError(f"{where}: {files['grams'].name} must be (T, B) = {(t.shape[0], len(codes))} "
                                 f"(T samples of t, B bins), got shape {grams.shape}")
        t = np.array(t)  # (T,): small, read whole
        if not np.isfinite(t).all():
            raise RecordingError(f"{where}: {files['t'].name} holds {int((~np.isfinite(t)).sum())} time(s) that are "
                                 "not finite")
        back = np.flatnonzero(np.diff(t) <= 0)
        if back.size:
            raise RecordingError(f"{where}: {files['t'].name} must increase strictly; sample {int(back[0]) + 1} "
                                 f"({t[back[0] + 1]:.6f}) is not after the one before ({t[back[0]]:.6f})")
        inf = _count_infinite(files["grams"], grams)
        if inf:
            raise RecordingError(f"{where}: {files['grams'].name} holds {inf} infinite value(s) (a missing sample "
                                 "is NaN)")
        unknown = [c for c in codes if c not in bin_codes]
        if unknown:
            problems.append(f"{where}: unknown bin(s) {', '.join(unknown)}; their samples skipped")
            keep = [j for j, c in enumerate(codes) if c in bin_codes]
            if not keep:
                continue
            # a run of columns stays a view of the map; scattered ones are copied (only here)
            cols: Any = slice(keep[0], keep[-1] + 1) if keep == list(range(keep[0], keep[-1] + 1)) else keep
            grams, codes = grams[:, cols], [codes[j] for j in keep]
        if t.size == 0:
            continue
        out.append(ShelfSamples(t=t, bin_codes=tuple(codes), grams=grams))
    if not out:
        problems.append(f"{path}: no samples; no shelf events can be detected")
    out.sort(key=lambda s: s.bin_codes[0])
    return out


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


def _one_block_per_clock(shelves: Iterable[ShelfSamples]) -> list[ShelfSamples]:
    """``shelves`` as the CSV form reads back: blocks on the very same time grid joined into one controller, its
    bins sorted by code, blocks ordered by their first code (a block already so is passed as it is, not copied)."""
    groups: list[tuple[np.ndarray, list[ShelfSamples]]] = []
    for block in shelves:
        for t, members in groups:
            if t.shape == block.t.shape and np.array_equal(t, block.t):
                members.append(block)
                break
        else:
            groups.append((np.asarray(block.t), [block]))
    out = []
    for t, members in groups:
        codes = [c for b in members for c in b.bin_codes]
        order = sorted(range(len(codes)), key=codes.__getitem__)
        if len(members) == 1 and order == list(range(len(codes))):
            out.append(members[0])
            continue
        grams = np.concatenate([np.asarray(b.grams, dtype=np.float64) for b in members], axis=1)[:, order]
        out.append(ShelfSamples(t=t, bin_codes=tuple(codes[j] for j in order), grams=grams))
    out.sort(key=lambda b: b.bin_codes[0] if b.bin_codes else "")
    return out


def write_shelves(path: str | Path, shelves: Iterable[ShelfSamples], *, form: str = "csv") -> Path:
    """Write the shelf samples of the recording folder ``path`` in ``form`` (:data:`SHELF_FORMS`): ``csv`` →
    ``shelves.csv`` (t, bin, grams rows; grams to 0.01 g, t to 1 µs); ``npy`` → ``shelves/``: per controller ``c<k>-t.npy``
    (T,) float64 and ``c<k>-grams.npy`` (T, B) float64, lossless, and ``index.json`` naming each one's bins; as
    the CSV form reads back, blocks on the very same time grid are one controller (joined, bins sorted by code), so
    both forms read as the same samples. The
    other form is removed from ``path`` (a reader refuses a recording holding both). Returns the file or folder
    written. Raises ValueError for an unknown ``form``, or (``npy``) a block whose t is not finite and strictly
    increasing or whose grams hold an infinite value: what the reader would refuse."""
    import shutil

    if form not in SHELF_FORMS:
        raise ValueError(f"form must be one of {', '.join(SHELF_FORMS)}, got {form!r}")
    root = Path(path)
    if form == "csv":
        if (root / SHELVES_NPY).is_dir():
            shutil.rmtree(root / SHELVES_NPY)
        with (root / SHELVES).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["t", "bin", "grams"])
            for block in shelves:
                for i, t in enumerate(block.t):
                    ts = f"{t:.6f}"
                    for code, g in zip(block.bin_codes, block.grams[i]):
                        w.writerow([ts, code, "" if math.isnan(g) else f"{g:.2f}"])
        return root / SHELVES
    (root / SHELVES).unlink(missing_ok=True)
    folder = root / SHELVES_NPY
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    entries = []
    for k, block in enumerate(_one_block_per_clock(shelves)):
        t = np.ascontiguousarray(block.t, dtype="<f8")
        if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
            raise ValueError(f"shelf block {k} ({block.bin_codes[:1]}…): t must be finite and strictly increasing")
        grams = np.asarray(block.grams, dtype="<f8")
        if np.isinf(grams).any():
            raise ValueError(f"shelf block {k} ({block.bin_codes[:1]}…): grams hold an infinite value (missing: NaN)")
        np.save(folder / f"c{k}-t.npy", t, allow_pickle=False)
        np.save(folder / f"c{k}-grams.npy", np.ascontiguousarray(grams), allow_pickle=False)
        entries.append({"bins": list(block.bin_codes), "t": f"c{k}-t.npy", "grams": f"c{k}-grams.npy"})
    (folder / SHELVES_INDEX).write_text(json.dumps({"controllers": entries}, indent=1) + "\n", encoding="utf-8")
    return folder
