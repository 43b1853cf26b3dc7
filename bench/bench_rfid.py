"""RFID exit lanes on a simulated session: precision and recall of the tagged items put on receipts (charged, or
confirming a unit charged by weight) against what each shopper really carried out, under the simulator's miss and
ghost-read rates (``carts.offline.rfid_simulation.RfidSimConfig``: 2 % of tags missed per portal pass, after published item-level read
rates of 98 % and better; 10 % per shelf inventory cycle; half a stray read per pass), items paid on an earlier
visit charged again (must be 0), and the speed of SGTIN-96 decoding through ``epcpy`` on one core.

Plain script: ``.venv/bin/python bench/bench_rfid.py [--shoppers 2000] [--seeds 5]``. Also run with the stray-read
defences off (every exit read counts) and with doubled miss and ghost rates, to show what the defences buy.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carts.offline.rfid_simulation import RfidSimConfig, bench_exit_lanes, simulate_exits  # noqa: E402
from sensors.rfid import ExitLaneConfig, decode_sgtin96, encode_sgtin96  # noqa: E402


def run(label: str, shoppers: int, seeds: int, sim: RfidSimConfig, lane: ExitLaneConfig) -> None:
    tot = {"tp": 0, "fp": 0, "fn": 0, "charged_twice": 0, "ambiguous": 0}
    for seed in range(seeds):
        r = bench_exit_lanes(simulate_exits(shoppers=shoppers, seed=seed, config=sim), lane)
        for k in tot:
            tot[k] += r[k]
    p = tot["tp"] / max(1, tot["tp"] + tot["fp"])
    rc = tot["tp"] / max(1, tot["tp"] + tot["fn"])
    print(f"{label:<34} precision {p:.4f}  recall {rc:.4f}  F1 {2 * p * rc / max(1e-9, p + rc):.4f}  "
          f"tp {tot['tp']} fp {tot['fp']} fn {tot['fn']} ambiguous {tot['ambiguous']} "
          f"charged_twice {tot['charged_twice']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shoppers", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    sim = RfidSimConfig()
    lane = ExitLaneConfig()
    print(f"simulated exit lane: {args.shoppers} shoppers × {args.seeds} seeds, 0–5 tagged items each, mean gap 20 s; "
          f"miss {sim.exit_miss:.0%}/pass, {sim.exit_reads:g} reads/pass, ghosts {sim.ghost_per_exit:g}/pass at "
          f"{sim.ghost_rssi_dbm:g} dBm; rules: ≥{lane.min_reads} reads or ≥{lane.strong_rssi_dbm:g} dBm, "
          f"window −{lane.before_s:g}/+{lane.after_s:g} s, tie {lane.tie_s:g} s")
    run("default rates, defences on", args.shoppers, args.seeds, sim, lane)
    run("default rates, every read counts", args.shoppers, args.seeds, sim,
        ExitLaneConfig(min_reads=1, strong_rssi_dbm=-120.0))
    run("2× miss and ghost rates", args.shoppers, args.seeds,
        replace(sim, exit_miss=2 * sim.exit_miss, ghost_per_exit=2 * sim.ghost_per_exit), lane)
    epcs = [encode_sgtin96("05012345678900", k) for k in range(5000)]
    t0 = time.process_time()
    for e in epcs:
        decode_sgtin96(e)
    dt = time.process_time() - t0
    print(f"SGTIN-96 decoding (epcpy): {len(epcs) / dt:,.0f} EPCs/s on one core ({1e6 * dt / len(epcs):.1f} µs each)")


if __name__ == "__main__":
    main()
