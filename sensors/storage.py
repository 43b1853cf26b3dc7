"""Raw-sample retention: every controller's samples kept as compact files for a while, so any shelf event can be
re-examined (pure Python + NumPy; no Django: the shell passes the folder and the retention).

Layout: ``<root>/<store>/<controller>/<YYYYMMDD>/<HHMM>[-<k>].npz``, one file per controller per UTC minute
(a second part ``-1``, ``-2``… when a worker restarts within a minute), each a compressed NumPy archive with
``t`` (n,) float64 s UTC (the server timeline, clock offset applied), ``grams`` (n, B) float32 grams (NaN =
missing; float32 keeps 2 mg resolution at 20 kg), ``bin_codes`` (B,) str and ``rate_hz`` () float64. At 72 plates
× 60 Hz a minute is ≈ 1 MB raw and 0.5–0.9 MB compressed (noise does not compress much). The database never holds
samples (DESIGN.md: high-rate data stays out of row-per-sample tables). Live ingestion writes in the background
(``background=True``, in a thread of lower priority): compressing a minute of a few thousand plates takes seconds,
which must not hold up messages.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_FILE = re.compile(r"^(\d{4})(?:-(\d+))?\.npz$")
#: What a write that failed half-way leaves (:meth:`RawSampleStore._write_file` writes ``.tmp``, then renames it)
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d+))?\.tmp$")

#: zlib level of the files (1–9): on bench_live's samples (972 plates × 60 Hz, 14 MB a minute) level 1 takes half
#: the CPU of numpy's 6 for a file 6 % larger (docs/store-worker-load.md, thirteenth pass); still ordinary ``.npz``.
ZLIB_LEVEL = 1
#: Nice increment of the background writer thread (Linux sets a thread's priority by its id): compressing the
#: minute's files is never urgent, the messages the ingesting thread handles meanwhile are.
WRITER_NICE = 10


@dataclass(frozen=True)
class RawSamples:
    """Samples read back: ``t`` (n,) float64 s UTC, ``grams`` (n, B) float64 grams (NaN = missing),
    ``bin_codes`` (B,) the columns. Raises ``ValueError`` on inconsistent shapes."""

    t: np.ndarray
    grams: np.ndarray
    bin_codes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.t.ndim != 1 or self.grams.shape != (self.t.shape[0], len(self.bin_codes)):
            raise ValueError(f"RawSamples: t {self.t.shape}, grams {self.grams.shape}, {len(self.bin_codes)} bins")


def _writer_nice() -> None:
    """Lower the calling thread's CPU priority by :data:`WRITER_NICE` (Linux: ``setpriority`` on a thread id acts on
    that thread alone); elsewhere, or where it is refused, the thread keeps the process's priority (elsewhere the id
    would be taken for a process id: another process's, by chance, would be reniced). The kernel clamps a nice past
    19 to 19."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICE)
    except (AttributeError, OSError) as exc:  # pragma: no cover - a sandbox that forbids it
        log.debug("raw samples: the writer thread keeps its priority (%s)", exc)


def _minute(t: float) -> int:
    return int(math.floor(t / 60.0))


class RawSampleStore:
    """Writes and reads the raw-sample files under ``root``; files older than ``retention_h`` hours are removed
    by :meth:`prune`. Buffers the current minute of each controller in memory and writes it when a sample of a
    later minute arrives (or on :meth:`flush`). Not thread-safe (one thread calls its methods). Raises
    ``ValueError`` for a non-positive retention or ``max_pending`` and for store/controller names that are not safe
    path components.

    ``background``: each ended minute is compressed and written by a writer thread of its own, not by the caller
    (zlib releases the GIL, so another core does it): at 7 650 plates (bench_live's 200 shoppers) the minute's files
    held the MQTT ingestion worker for 5–7 s at every minute's end, every controller's messages waiting meanwhile.
    Then :meth:`append` returns no paths, a file that cannot be written is logged and counted (:meth:`take_failures`)
    instead of raised — when its result is collected: as the next file is queued, or at :meth:`flush` — and
    :meth:`flush` waits for every file. ``max_pending``: files queued for the writer at most;
    beyond it the caller waits for the oldest (memory stays bounded when the disk is slow)."""

    def __init__(self, root: str | Path, *, retention_h: float, background: bool = False,
                 max_pending: int = 256) -> None:
        if not (math.isfinite(retention_h) and retention_h > 0):
            raise ValueError(f"retention_h must be a positive number of hours, got {retention_h!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be ≥ 1, got {max_pending!r}")
        self.root = Path(root)
        self.retention_h = float(retention_h)
        self._buf: dict[tuple[str, str], tuple[int, tuple[str, ...], float, list[np.ndarray], list[np.ndarray]]] = {}
        self._writer = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-writer", initializer=_writer_nice)
                        if background else None)
        self._pending: collections.deque[Future] = collections.deque()
        self.max_pending = int(max_pending)
        self._failures = 0

    def append(self, *, store: str, controller: str, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray,
               rate_hz: float) -> list[Path]:
        """Add a block (``t`` (n,) s UTC increasing, ``grams`` (n, B)); returns the files written (minutes that
        ended; none in the background, where the writer writes them later). A change of ``bin_codes`` for a
        controller closes its current file first. Raises ``ValueError`` for bad shapes or names, ``OSError`` when a
        file cannot be written (not in the background: there it is counted, :meth:`take_failures`)."""
        for name in (store, controller):
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a safe file name (letters, digits, . _ -)")
        t = np.asarray(t, dtype=np.float64)
        grams = np.asarray(grams)
        if grams.shape != (t.shape[0], len(bin_codes)):
            raise ValueError(f"grams must be (n, B) = {(t.shape[0], len(bin_codes))}, got {grams.shape}")
        written: list[Path] = []
        key = (store, controller)
        minutes = np.floor(t / 60.0).astype(np.int64)
        start = 0
        while start < t.shape[0]:
            m = int(minutes[start])
            end = int(np.searchsorted(minutes, m, side="right"))
            cur = self._buf.get(key)
            if cur is not None and (cur[0] != m or cur[1] != tuple(bin_codes)):
                written.extend(self._write(key))
                cur = None
            if cur is None:
                cur = self._buf[key] = (m, tuple(bin_codes), float(rate_hz), [], [])
            cur[3].append(t[start:end])
            cur[4].append(np.asarray(grams[start:end], dtype=np.float32))
            start = end
        return written

    def flush(self) -> list[Path]:
        """Write every buffered minute (at shutdown) and, in the background, wait until the writer has written
        every file queued. Returns the files written (in the background: those this call waited for)."""
        out: list[Path] = []
        for key in list(self._buf):
            out.extend(self._write(key))
        while self._pending:
            out.extend(self._reap(self._pending.popleft()))
        return out

    def take_failures(self) -> int:
        """Files the background writer could not write since the last call (each logged when it failed)."""
        n, self._failures = self._failures, 0
        return n

    def close(self) -> None:
        """:meth:`flush`, then stop the writer thread (the store can no longer write in the background)."""
        self.flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)

    def _write(self, key: tuple[str, str]) -> list[Path]:
        m, codes, rate, ts, gs = self._buf.pop(key)
        if not ts:
            return []
        if self._writer is None:
            return [self._write_file(key, m, codes, rate, ts, gs)]
        while self._pending and self._pending[0].done():  # what was written meanwhile: its failures counted
            self._reap(self._pending.popleft())
        if len(self._pending) >= self.max_pending:  # the disk is behind: wait for the oldest file
            self._reap(self._pending.popleft())
        self._pending.append(self._writer.submit(self._write_file, key, m, codes, rate, ts, gs))
        return []

    def _reap(self, done: Future) -> list[Path]:
        try:
            return [done.result()]
        except (OSError, ValueError) as exc:  # a full disk must not stop ingestion
            self._failures += 1
            log.error("raw samples: a file could not be written: %s", exc)
            return []

    def _write_file(self, key: tuple[str, str], m: int, codes: tuple[str, ...], rate: float, ts: list[np.ndarray],
                    gs: list[np.ndarray]) -> Path:
        day = datetime.fromtimestamp(m * 60, tz=timezone.utc)
        folder = self.root / key[0] / key[1] / f"{day:%Y%m%d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{day:%H%M}.npz"
        k = 0
        while path.exists():
            k += 1
            path = folder / f"{day:%H%M}-{k}.npz"
        tmp = path.with_suffix(".tmp")
        arrays = {"t": np.concatenate(ts), "grams": np.concatenate(gs), "bin_codes": np.array(codes, dtype=str),
                  "rate_hz": np.float64(rate)}
        # what np.savez_compressed writes, at ZLIB_LEVEL (numpy's own writer takes no level)
        with tmp.open("wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED,
                                                   compresslevel=ZLIB_LEVEL) as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
        os.replace(tmp, path)
        return path

    def files(self, *, store: str, controller: str) -> list[Path]:
        """The controller's files, oldest first."""
        base = self.root / store / controller
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob("*/*.npz") if _FILE.match(p.name))

    def read(self, *, store: str, controller: str, t0: float, t1: float) -> RawSamples:
        """Samples of ``controller`` with ``t0 <= t <= t1`` (s UTC) from the files (not the unwritten buffer).

        Columns are those of the first file in the span; a file with other bins is skipped with a warning.
        Returns empty arrays when nothing is kept. Raises ``ValueError`` if ``t1 < t0``."""
        if t1 < t0:
            raise ValueError(f"t1 ({t1}) < t0 ({t0})")
        ts: list[np.ndarray] = []
        gs: list[np.ndarray] = []
        codes: tuple[str, ...] | None = None
        lo, hi = _minute(t0), _minute(t1)
        for path in self.files(store=store, controller=controller):
            day = datetime.strptime(path.parent.name + path.name[:4], "%Y%m%d%H%M").replace(tzinfo=timezone.utc)
            if not lo <= _minute(day.timestamp()) <= hi:
                continue
            with np.load(path, allow_pickle=False) as z:
                file_codes = tuple(str(c) for c in z["bin_codes"])
                if codes is None:
                    codes = file_codes
                elif file_codes != codes:
                    log.warning("%s: bins differ from the first file of the span; skipped", path)
                    continue
                t = z["t"]
                sel = (t >= t0) & (t <= t1)
                ts.append(t[sel])
                gs.append(z["grams"][sel].astype(np.float64))
        if codes is None:
            return RawSamples(np.zeros(0), np.zeros((0, 0)), ())
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return RawSamples(t[order], np.concatenate(gs)[order], codes)

    def prune(self, *, now: float | None = None) -> int:
        """Delete files whose minute ended more than ``retention_h`` hours before ``now`` (s UTC, default the
        clock) — with them what a write that failed half-way left (``.tmp``) — and empty day folders. Returns the
        number of files deleted."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_h * 3600.0
        removed = 0
        if not self.root.is_dir():
            return 0
        for day_dir in sorted(self.root.glob("*/*/*")):
            if not day_dir.is_dir():
                continue
            for path in day_dir.iterdir():
                if not (_FILE.match(path.name) or _PARTIAL.match(path.name)):
                    continue
                try:
                    start = datetime.strptime(day_dir.name + path.name[:4], "%Y%m%d%H%M")
                except ValueError:
                    continue
                if start.replace(tzinfo=timezone.utc).timestamp() + 60.0 <= cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
            # an empty day folder goes only once its whole day is past the retention: the background writer may
            # have just made today's for a file it is about to write
            try:
                day_end = datetime.strptime(day_dir.name, "%Y%m%d").replace(tzinfo=timezone.utc).timestamp() + 86400.0
            except ValueError:
                continue
            if day_end <= cutoff and not any(day_dir.iterdir()):
                shutil.rmtree(day_dir, ignore_errors=True)
        if removed:
            log.info("raw samples: %d file(s) older than %.1f h removed under %s", removed, self.retention_h,
                     self.root)
        return removed
