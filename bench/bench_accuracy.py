"""Accuracy benchmark of the whole decision chain on simulated sessions: one table (``make bench-accuracy``).

Plain script: ``.venv/bin/python bench/bench_accuracy.py [--shoppers 200] [--sessions 4] [--jobs 2]``.

For each difficulty level (``carts.simulation.DIFFICULTIES``: easy, default, hard) it simulates ``--shoppers``
shoppers split over ``--sessions`` sessions with fixed seeds (1000 + level × 100 + session; fusion's knobs were
chosen on seeds 101–102, 201–204 and 2000–2007, which this benchmark never uses), each session long enough for
~6 shoppers inside at once, in the real AutoCheckout store layout. Every session runs through the **pure offline
pipeline** (``carts.evaluation.offline_replay``: ``sensors.weight`` detection → shelf events →
``carts.fusion.decide_event`` → carts → receipts), the same decision function the Django pipeline calls; review
items are resolved by an oracle reviewer (the truth), as a manager would in the dashboard, so "exact receipts"
counts the errors fusion makes silently. The default level is also run at several review thresholds (the review-load / accuracy trade-off).

Columns: ``receipts`` (party receipts scored), ``exact`` (share of receipts exactly right), ``review`` (share of
detected shelf events sent to people), ``F1`` / ``P`` / ``R`` (AutoCheckout item-level), then per scenario the
events and the share fusion got wrong silently, sent to review, or never detected. Published item-identification
results on this store, for comparison: AIM3S 93.2 %, CMU 90.0 % F1 (its own cases).
Needs ../shared/datasets/autocheckout beside the checkout.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("WALKOUT_SHARED", ROOT.parent / "shared")) / "datasets" / "autocheckout"
LEVELS = ("easy", "default", "hard")
THRESHOLDS = (0.5, 0.6, 0.8, 0.9)
DEFAULT_THRESHOLD = 0.6  # settings.WALKOUT["REVIEW_CONFIDENCE"] default
PER_SESSION_MINUTES_PER_SHOPPER = 0.25  # 4 shoppers a minute ≈ 6 inside at once (visits last ~1.5 min)


def run_session(args: tuple[str, int, int]) -> dict:
    """Simulate and score one session at every threshold it needs; returns plain numbers (picklable)."""
    import logging

    logging.disable(logging.WARNING)
    from carts.evaluation import evaluate_session, offline_replay
    from carts.simulation import SimConfig, load_store, simulate

    level, seed, shoppers = args
    t0 = time.process_time()
    sim = simulate(load_store(DATA), SimConfig.at(level, shoppers=shoppers, seed=seed,
                                                  minutes=2.0 + shoppers * PER_SESSION_MINUTES_PER_SHOPPER))
    truth = {r.track: {x.barcode: x.quantity for x in r.lines} for r in sim.truth}
    out = {}
    events = None
    for thr in (THRESHOLDS if level == "default" else (DEFAULT_THRESHOLD,)):
        res = offline_replay(sim, review_confidence=thr, truth_events=sim.events, events=events)
        events = res.events
        rep = evaluate_session(res.billed, truth, party_of=res.party_of, decisions=res.decisions,
                               truth_events=sim.events)
        out[thr] = {"score": (rep.score.true_positives, rep.score.billed_items, rep.score.true_items,
                              rep.score.exact, rep.score.receipts),
                    "detected": rep.detected, "reviewed": rep.reviewed,
                    "scen": {r.name: (r.events, r.right, r.reviewed, r.wrong, r.missed) for r in rep.scenarios}}
    out["cpu_s"] = time.process_time() - t0
    out["store_s"] = sim.manifest["t_end"] - sim.manifest["t_start"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=200, help="shoppers per difficulty level")
    ap.add_argument("--sessions", type=int, default=4, help="sessions (seeds) per level")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--levels", default=",".join(LEVELS))
    a = ap.parse_args()
    if not (DATA / "store_meta" / "Plates.json").exists():
        print(f"needs {DATA} (the shared data folder beside the checkout)", file=sys.stderr)
        return 2
    from carts.evaluation import SCENARIOS, ReceiptScore

    levels = [x for x in a.levels.split(",") if x]
    per = [a.shoppers // a.sessions + (1 if k < a.shoppers % a.sessions else 0) for k in range(a.sessions)]
    jobs = [(lv, 1000 + 100 * LEVELS.index(lv) + k, n) for lv in levels for k, n in enumerate(per) if n]
    wall = time.monotonic()
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        results = list(pool.map(run_session, jobs))
    wall = time.monotonic() - wall
    by_level: dict[str, list[dict]] = {}
    for (lv, _, _), r in zip(jobs, results):
        by_level.setdefault(lv, []).append(r)

    scen_cols = [s for s in ("crowded", "put-back", "misplaced", "multi-unit", "party", "handoff", "reach-across",
                             "mixed", "exit-settle") if s in SCENARIOS]
    head = f"{'level':<8}{'thr':>5}{'receipts':>9}{'exact':>8}{'review':>8}{'F1':>8}{'P':>8}{'R':>8}"
    head += "".join(f"{s[:12]:>14}" for s in scen_cols)
    print("Accuracy benchmark — pure offline pipeline (detector → events → fusion.decide_event → receipts), "
          "oracle reviewer; scenario cells: events n / wrong % / review %")
    print(head)
    print("-" * len(head))
    for lv in levels:
        rs = by_level.get(lv, [])
        for thr in (THRESHOLDS if lv == "default" else (DEFAULT_THRESHOLD,)):
            score = ReceiptScore(0, 0, 0, 0, 0)
            det = rev = 0
            scen: dict[str, list[int]] = {}
            for r in rs:
                x = r[thr]
                score = score + ReceiptScore(*x["score"])
                det += x["detected"]
                rev += x["reviewed"]
                for name, v in x["scen"].items():
                    acc = scen.setdefault(name, [0, 0, 0, 0, 0])
                    for i, val in enumerate(v):
                        acc[i] += val
            row = (f"{lv:<8}{thr:>5.2f}{score.receipts:>9}{100 * score.exact_share:>7.1f}%"
                   f"{100 * (rev / det if det else 0):>7.1f}%{100 * score.f1:>7.1f}%{100 * score.precision:>7.1f}%"
                   f"{100 * score.recall:>7.1f}%")
            for s in scen_cols:
                n, right, revd, wrong, missed = scen.get(s, [0, 0, 0, 0, 0])
                cell = f"{n}/{100 * wrong / n:.0f}/{100 * revd / n:.0f}" if n else "-"
                row += f"{cell:>14}"
            print(row)
    cpu = sum(r["cpu_s"] for r in results)
    store = sum(r["store_s"] for r in results)
    print(f"{len(jobs)} sessions, {store / 60:.0f} min of store time, {cpu:.0f} s CPU, {wall:.0f} s wall "
          f"({a.jobs} processes). Published on this store: AIM3S 93.2 %, CMU 90.0 % F1.")
    missing = [lv for lv in levels if not by_level.get(lv)]
    return 1 if missing or math.isnan(cpu) else 0


if __name__ == "__main__":
    raise SystemExit(main())
