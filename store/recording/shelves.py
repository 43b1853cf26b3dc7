"""A recording's shelf samples on disk, in both forms: ``shelves.csv`` (one row per sample and bin, the interchange
form) and ``shelves/`` (one ``.npy`` pair per shelf controller and ``index.json``, memory-mapped: the form large
simulated sessions use). Both read back to the same ``ShelfSamples`` per controller (``docs/recording-format.md``).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .contract import RecordingError, SHELF_FORMS, SHELVES, SHELVES_INDEX, SHELVES_NPY, ShelfSamples
from .text import _finite, _load_json, _rows

log = logging.getLogger(__name__)

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
        counts = Counter(codes)
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
