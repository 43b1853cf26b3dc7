"""Throughput of the weight-event detector (``sensors.weight``) on one core: 306 plates × 60 Hz, the size of the
AiFi NanoStore (5 gondolas × 6 shelves, store_meta/Plates.json).

Plain script: ``.venv/bin/python bench/bench_sensors.py [--seconds 600] [--block 12] [--bins 306]``.

The stream is synthetic but shaped like the real one: each plate gets a raw level (1–6 kg), white noise with a
per-plate sd drawn from 0.3–5 g (the quiet-plate range measured on BENCHMARK-1), a slow drift, and a pick or a
put-back on some plate every ~2 s of store time (so the state machine's active path is exercised, not only the
quiet one). Blocks of ``--block`` samples are pushed as a live feed would (12 = one AutoCheckout message).
Prints samples/s (one sample = one row of all plates), plate-samples/s, and the × real-time ratio; also the
decoding speed of the real BENCHMARK-1 plate file when it is present beside the checkout.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sensors.weight import WeightChanges, WeightEventDetector  # noqa: E402

PLATE_FILE = ROOT.parent / "shared" / "datasets" / "autocheckout" / "BENCHMARK-1" / "plate_data.json"


def synthetic_stream(seconds: float, n_bins: int, rate_hz: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(t (n,), grams (n, B), number of injected changes) — see the module docstring."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = 1.6e9 + np.arange(n) / rate_hz
    level = rng.uniform(1000, 6000, n_bins)
    sd = rng.uniform(0.3, 5.0, n_bins)
    drift = rng.normal(0, 2.0 / 900.0, n_bins)  # ~2 g per 15 min
    x = level + np.outer(np.arange(n) / rate_hz, drift) + rng.normal(size=(n, n_bins)) * sd
    n_events = 0
    for start in range(int(rate_hz), n - int(3 * rate_hz), int(2 * rate_hz)):
        b = int(rng.integers(n_bins))
        step = float(rng.choice([-1.0, 1.0]) * rng.uniform(50, 800))
        ramp = int(rng.integers(6, 20))
        x[start:start + ramp, b] += np.linspace(0, step, ramp) + rng.normal(0, 30, ramp)
        x[start + ramp:, b] += step
        n_events += 1
    return t, x, n_events


def bench_detector(seconds: float, n_bins: int, rate_hz: float, block: int) -> None:
    t, x, injected = synthetic_stream(seconds, n_bins, rate_hz)
    det = WeightEventDetector(n_bins, rate_hz)
    found = []
    t0 = time.process_time()
    for i in range(0, t.shape[0], block):
        found.append(det.push(t[i:i + block], x[i:i + block]))
    found.append(det.flush())
    cpu = time.process_time() - t0
    changes = WeightChanges.concat(found)
    n = t.shape[0]
    print(f"detector: {n_bins} bins × {rate_hz:g} Hz, {seconds:g} s of stream in blocks of {block}")
    print(f"  CPU time {cpu:.2f} s → {n / cpu:,.0f} samples/s per core ({n * n_bins / cpu:,.0f} plate-samples/s)")
    print(f"  × real time: {seconds / cpu:,.0f}")
    print(f"  changes found {len(changes)} of {injected} injected")


def bench_decode() -> None:
    if not PLATE_FILE.exists():
        print(f"decode: skipped, {PLATE_FILE} not found")
        return
    from sensors.autocheckout import blocks_by_gondola, read_plate_file

    t0 = time.process_time()
    blocks, errors = read_plate_file(PLATE_FILE)
    gondolas = blocks_by_gondola(blocks)
    cpu = time.process_time() - t0
    samples = sum(len(g) for g in gondolas.values())
    span = max(g.t[-1] for g in gondolas.values()) - min(g.t[0] for g in gondolas.values())
    print(f"decode: {len(blocks)} messages ({len(errors)} bad), {samples} gondola-samples, {span:.1f} s of store "
          f"time in {cpu * 1e3:.0f} ms CPU → × real time {span / cpu:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--bins", type=int, default=306)
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--block", type=int, default=12)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pid {os.getpid()}")
    bench_detector(args.seconds, args.bins, args.rate, args.block)
    bench_decode()


if __name__ == "__main__":
    main()
