"""The live store's inputs against the offline run, in memory: why a live receipt differs from the offline one.

Plain script: ``.venv/bin/python bench/bench_live_offline.py REC [--step 0.2] [--advance-max 1]
[--offline-step 0.2]`` (REC: a simulated recording with ``truth_events.json``, e.g. the ``sim-n200`` folder that
``bench/bench_live.py --keep DIR`` keeps).

``make bench-live`` compares the receipts the live store billed with ``offline_replay``'s on the same session, but
at 200 shoppers it takes the whole production stack and both cores for minutes. This runs the same store loop
(``carts.loop.StoreLoop``, in memory, the oracle reviewer) twice: as ``offline_replay`` feeds it (visits are the
recording's tracks, each exit its own scan) and with what the live store worker gets instead — each entry scan a
visit bound to a track through its door's entry zone (``carts.offline.emulator_devices.entry_doors``, one gate per
door as the emulator registers them), exits inferred from the tracks (``LoopConfig.infer_exits``) and the exit scans
as the gate sends them (``store.gates.services.visit_exit_scan``: every open visit of the pass's holder exits at
once; a later scan of the same pass finds none and is refused), the loop advanced every 1 to ``--advance-max`` steps
at random (the worker's steps vary). It prints both F1s, the bindings that went to another track, and every party
whose receipts differ (merged under the lead, as scored). What it leaves out: the database, the streams and the
wall clock (a worker that declares a source down because it fell behind, docs/store-worker-load.md).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def live_replay(rec, truth_events, *, step_s: float = 0.2, advance_max: int = 1, seed: int = 0):
    """The store loop fed ``rec`` (a ``store.recording.Recording``) as the live store worker is fed (module
    docstring), in steps of ``step_s`` s advanced every 1..``advance_max`` steps (random, ``seed``). Returns
    (billed: track → {barcode: quantity}, decisions, party_of: track → lead, loop)."""
    from carts.fusion_config import BinGeometry
    from carts.loop import StoreLoop
    from carts.loop_config import LoopConfig
    from carts.offline.emulator_devices import entry_doors
    from carts.offline.evaluation import MemorySink, planogram_from_store, sink_receipts
    from carts.offline.replay import PARTY_WITHIN_S
    from carts.offline.simulation_truth import parties_from_gates
    from carts.offline.steps import feed_live, recording_steps

    party_of = parties_from_gates(rec.gates, within_s=PARTY_WITHIN_S)
    door_of = entry_doors(rec)
    sink = MemorySink([])
    loop = StoreLoop(planogram=planogram_from_store(rec.store), bins=BinGeometry.from_store(rec.store), sink=sink,
                     config=replace(LoopConfig(), review_confidence=0.6, settle_s=3.0, infer_exits=True))
    zones = rec.store.get("zones", [])  # as carts.runtime.StoreWorker._zones loads them
    loop.entry_zones = [np.asarray(z["polygon"], float) for z in zones if z["kind"] == "entry"]
    loop.gate_zones = {z["name"]: np.asarray(z["polygon"], float) for z in zones if z["kind"] == "entry"}
    loop.exit_zones = [np.asarray(z["polygon"], float) for z in zones if z["kind"] == "exit"]
    inside: dict[str, list[str]] = {}  # account → its open visits (keyed by their recorded track)
    rng = random.Random(seed)
    wait = 1
    for step in recording_steps(rec, step_s=step_s):
        feed_live(loop, step, party_of=party_of, door_of=door_of, inside=inside)
        wait -= 1
        if wait <= 0:
            loop.advance(step.t_next)
            wait = rng.randint(1, advance_max)
    loop.finish()
    decisions, billed = sink_receipts(sink, party_of, truth_events)
    return billed, decisions, party_of, loop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rec", type=Path, help="a simulated recording folder (with truth_events.json)")
    ap.add_argument("--step", type=float, default=0.2, help="seconds of recording per step (the shelf blocks' length)")
    ap.add_argument("--advance-max", type=int, default=1, help="advance the live loop every 1..N steps (default 1)")
    ap.add_argument("--offline-step", type=float, default=0.2, help="offline_replay's step_s (default 0.2)")
    args = ap.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
    import django

    django.setup()  # entry_doors reads the gates' models module
    from carts.offline.evaluation import evaluate_session, merge_parties, offline_replay
    from carts.offline.simulation_truth import read_truth_events
    from store.recording import RecordingError, read_recording

    try:
        rec = read_recording(args.rec)
        te = read_truth_events(args.rec)
    except (RecordingError, OSError, ValueError) as exc:
        ap.exit(2, f"bench_live_offline: {exc}\n")
    truth = {r.track: {x.barcode: x.quantity for x in r.lines} for r in rec.truth}
    t0 = time.monotonic()
    off = offline_replay(rec, truth_events=te, step_s=args.offline_step)
    f_off = evaluate_session(off.billed, truth, party_of=off.party_of, decisions=off.decisions, truth_events=te)
    print(f"offline F1 {f_off.score.f1:.4f} ({time.monotonic() - t0:.0f} s)", flush=True)
    t0 = time.monotonic()
    billed, decisions, party_of, loop = live_replay(rec, te, step_s=args.step, advance_max=args.advance_max)
    f_live = evaluate_session(billed, truth, party_of=party_of, decisions=decisions, truth_events=te)
    print(f"live-inputs F1 {f_live.score.f1:.4f} ({time.monotonic() - t0:.0f} s)")
    wrong = {track: visit for track, visit in loop.visit_of.items() if track != visit}
    print(f"bindings {len(loop.visit_of)}, to another track: {wrong or 'none'}")
    a, b = merge_parties(off.billed, off.party_of), merge_parties(billed, party_of)

    def nonzero(lines):
        return {c: q for c, q in (lines or {}).items() if q}

    differ = sorted(k for k in set(a) | set(b) if nonzero(a.get(k)) != nonzero(b.get(k)))
    print(f"parties billed differently: {len(differ)} of {len(set(party_of.values()) | set(a))}")
    for k in differ:
        print(f"  {k}: offline {nonzero(a.get(k))}, live {nonzero(b.get(k))}, truth {nonzero(truth.get(k))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
