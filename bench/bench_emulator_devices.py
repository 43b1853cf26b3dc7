"""Device side of the emulator alone: how fast its shelf controllers' samples are read and encoded, no store.

Plain script: ``.venv/bin/python bench/bench_emulator_devices.py [--plates 7650] [--seconds 10] [--rate 60]``.

Writes ``--seconds`` of ``--plates`` plates at ``--rate`` Hz (random walk grams, gondolas of 51 plates: the tiled
AutoCheckout store's 306 plates per room, ×25 rooms = 7 650) in both forms of the recording format's shelf samples
(``shelves.csv`` and the binary ``shelves/``), then prints for each form the read time
(``store.recording.read_shelves`` / ``read_shelves_npy``) and the play rate: recording seconds per wall second of
what ``carts.offline.emulator.emulate`` does for the shelves per step (``controller_blocks`` into controllers of
≤ ``sensors.ingest.MAX_BINS`` plates, ``carts.loop.recording_steps`` slices of 0.2 s, ``encode_payload`` with the
controller's key), without publishing. ``--json-roundtrip`` adds the MQTT transport's former decode/re-encode of
each payload (to put its key in), for the figure before that was removed. One process, one core; a shared machine
makes the figures noisy: run it twice.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
import django  # noqa: E402

django.setup()  # the emulator's module imports the store's models (no database is used)

from carts.loop import recording_steps  # noqa: E402
from carts.offline.emulator_devices import controller_blocks  # noqa: E402
from sensors.ingest import encode_payload  # noqa: E402
from store.recording import (Recording, ShelfSamples, TrackObservations, read_shelves, read_shelves_npy,  # noqa: E402
                             write_shelves)

PLATES_PER_GONDOLA = 51


def samples(plates: int, seconds: float, rate: float) -> ShelfSamples:
    """One controller clock of ``plates`` plates (codes ``<gondola>-<shelf>-<bin>``), ``seconds`` at ``rate`` Hz."""
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    t = 1_767_225_600.0 + np.arange(n) / rate
    grams = 1000.0 + np.cumsum(rng.normal(0, 0.3, (n, plates)), axis=0)
    codes = tuple(f"{1 + j // PLATES_PER_GONDOLA}-{1 + (j % PLATES_PER_GONDOLA) // 17}-{1 + j % 17}"
                  for j in range(plates))
    return ShelfSamples(t, codes, grams)


def play(shelves: list[ShelfSamples], *, json_roundtrip: bool) -> tuple[float, int, int]:
    """(wall s, payloads, bytes) of encoding every controller block of ``shelves`` as the emulator does."""
    t0 = min(float(s.t[0]) for s in shelves)
    t1 = max(float(s.t[-1]) for s in shelves)
    rec = Recording(path=Path("."), manifest={"t_start": t0, "t_end": t1}, store={}, shelves=shelves,
                    tracks=TrackObservations.empty(), gates=[], truth=None)
    start = time.perf_counter()
    rec = controller_blocks(rec)
    count = size = 0
    seq = 0
    for step in recording_steps(rec, step_s=0.2):
        for _codes, t, grams, rate in step.shelves:
            seq += 1
            payload = encode_payload(controller="c", seq=seq, t0=float(t[0]), rate_hz=rate, grams=grams,
                                     key=None if json_roundtrip else "k" * 43)
            if json_roundtrip:
                doc = json.loads(payload)
                doc["key"] = "k" * 43
                payload = json.dumps(doc, separators=(",", ":")).encode()
            count += 1
            size += len(payload)
    return time.perf_counter() - start, count, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plates", type=int, default=7650)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--json-roundtrip", action="store_true", help="also time the former MQTT re-encoding")
    ap.add_argument("--skip-csv", action="store_true", help="binary form only (the CSV is slow to write and read)")
    args = ap.parse_args()
    block = samples(args.plates, args.seconds, args.rate)
    codes = set(block.bin_codes)
    print(f"{args.plates} plates at {args.rate:g} Hz, {args.seconds:g} s ({block.grams.size:,} samples)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-emu-") as tmp:
        root = Path(tmp)
        forms = ["npy"] + ([] if args.skip_csv else ["csv"])
        for form in forms:
            t = time.perf_counter()
            path = write_shelves(root, [block], form=form)
            wrote = time.perf_counter() - t
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            problems: list[str] = []
            shelves = (read_shelves_npy if form == "npy" else read_shelves)(path, codes, problems)
            read = time.perf_counter() - t
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"{form}: {size / 2**20:.0f} MB written in {wrote:.1f} s, read in {read:.2f} s "
                  f"({args.seconds / read:.2f} recording s per wall s; peak RSS +{(rss1 - rss0) / 1024:.0f} MB)",
                  flush=True)
            modes = [False, True] if args.json_roundtrip else [False]
            for rt in modes:
                wall, n, nbytes = play(shelves, json_roundtrip=rt)
                print(f"  play{' (+ JSON re-encode, before)' if rt else ''}: {n} payloads, {nbytes / 2**20:.0f} MB "
                      f"in {wall:.2f} s = {args.seconds / wall:.2f} recording s per wall s", flush=True)
            for p in ([path] if path.is_file() else list(path.iterdir()) + [path]):
                p.rmdir() if p.is_dir() else p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
