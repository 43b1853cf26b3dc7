"""Load benchmark of the live store in the production profile (``make bench-live``; loopback only, bounded in time).

Plain script: ``.venv/bin/python bench/bench_live.py [--sizes 10,50,200] [--minutes M] [--timeout S] [--rooms R]
[--quick]``.

For each size N it simulates a session (``carts.offline.simulation``, the AutoCheckout store: 306 plates at 60 Hz, keypoints
at 15 Hz per shopper) whose N shoppers arrive within ``--minutes`` − 80 s and stay long enough (``--events``
actions each) that nearly all are inside at once (the measured peak is printed), then runs the production stack
on the local services, every process separate, as ``tests/test_live_production.py`` does: a fresh PostgreSQL
database, ``daphne``, ``ingest_mqtt`` (its own subscription and client id), a Celery billing worker (the checkouts
the store loop queues, four at a time: ``--pool=prefork --concurrency=4`` as in the README; receipt e-mails as files
in the work folder), one ``run_store`` (Redis Streams under
a prefix of its own, Redis db 12). Before the session every shopper account the emulator will scan is created and
logged in, and a **real WebSocket client** per account (aiohttp, own process) holds ``/ws/shopper/`` open with the
session cookie and an Origin header, stamping every message with its receive time. Then ``manage.py
emulate_store REC --url http://127.0.0.1:PORT --speed 1`` plays the devices in real time (shelf blocks over MQTT,
keypoints to the tracker adapter, passes at the gate) and waits until every visit is billed.

Printed per size:

* event → phone: from each fusion cart event (``CartEvent.created_at``, in ``run_store``) and from the end of its
  shelf event (``ShelfEvent.t_end`` on the devices' clock, which includes the loop's deliberate wait for hand data,
  ``fusion.pad_s`` + the hold) to the first WebSocket snapshot of that visit whose lines show it; p50/p95/p99;
* exit → receipt: ``Visit.exited_at`` (the exit scan's time; for a party, billed together, its last member's) to
  the first snapshot carrying the receipt, and to the capture's ``PaymentAttempt.created_at``; p50/p95; visits held
  for review are not counted (people bill them); and **by stage** (p50/p95/max): the settle time, the loop's
  step past it, what held the checkout after it (``carts.loop_billing.BILL_WAITS``), how far the loop ran behind the wall
  clock (the slowest source's lag, its step), the billing queue, the billing task, and the receipt's way to the
  phone (the store worker's and the billing worker's "checkout queued"/"picked up" log lines); the store worker's
  slow steps (its "slow step" lines: wall against its own CPU, read, apply, advance);
* CPU (% of one core over the session) and peak RSS of every process, the shared services' CPU (PostgreSQL,
  Redis, Mosquitto: shared with anything else on the machine), the streams' backlog (``XINFO GROUPS`` lag: records
  not yet read by the store worker) and how far the devices' newest record on each stream is behind the wall clock;
* F1 of the receipts the live store billed (``evaluate`` with the oracle reviewer, the emulator's last line) against
  the offline run of the same session (``carts.offline.evaluation.offline_replay`` + ``evaluate_session``), and whether they
  are equal;
* the saturating process: the one with the highest CPU share, and whether a backlog grew.

Then (``--hour-minutes``, default 60) the **store worker's memory over an hour of store time**: a feeder process
publishes simulated sessions back to back (``--hour-shoppers`` per 5-minute chunk, gate scans through the gate
services) onto the Redis streams faster than real time, paced by the stream lag, while a real ``run_store`` process
consumes them; its RSS is printed at 10, 30 and 60 minutes of store time (flat is the point).

``--rooms R`` (default 1, the NanoStore) plays the sizes in a larger store (``SimConfig.rooms``: the NanoStore's floor
tiled, ~20 m² and 306 plates per room); ``R`` = ``auto`` sizes the store for each size at about 0.4 shoppers per m²
at the busiest moment (``ceil(N / 8)`` rooms), the density of the default simulated session. The memory phase
keeps the NanoStore.

Every process runs in its own process group and is killed on every exit path; the database is dropped and the
Redis keys of the run deleted. Needs PostgreSQL, Redis and Mosquitto on 127.0.0.1 and
../shared/datasets/autocheckout. The machine is whatever it is: on a shared 2-core machine the figures are noisy.
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from live_analysis import _ingest_backlog, analyse, exit_stages, print_table, slow_steps
from live_clients import clients
from live_hour import feed, run_hour
from live_sampler import Sampler
from live_session import DATA, offline_all, prepare, simulate_session
from bench_args import sizes_arg
from live_stack import (
    BIN,
    STORE,
    Procs,
    _sigterm,
    free_port,
    manage,
    production_env,
    reachable,
    redis_cleanup,
    say,
)

ROOT = Path(__file__).resolve().parents[1]
#: ``--rooms auto``: shoppers per NanoStore room (~20.5 m²) at the busiest moment: ~0.4 per m²
SHOPPERS_PER_ROOM = 8
#: one bench-live at a time per machine (:func:`main` waits for this lock): concurrent runs share the broker's
#: topics and the channel layer's Redis database, and each would measure the other
LOCK_PATH = Path(tempfile.gettempdir()) / "walkout-bench-live.lock"
sys.path.insert(0, str(ROOT))


def run_size(n: int, args, work: Path) -> dict:
    """One size: simulate, run the stack, emulate in real time, measure. Returns the row of the table."""
    say(f"\n=== {n} shoppers ===")
    seed = args.seed + n
    rec = work / f"sim-n{n}"
    t = time.monotonic()
    rooms = max(1, math.ceil(n / SHOPPERS_PER_ROOM)) if args.rooms == "auto" else int(args.rooms)
    info = simulate_session(n, args.minutes, args.events, seed, rec, rooms, args.shelves)
    say(f"simulated in {time.monotonic() - t:.0f} s: {info['length_s']:.0f} s of store time in {rooms} room(s), peak "
        f"{info['peak_inside']} inside at once (median visit {info['visit_median_s']:.0f} s), {info['accounts']} "
        f"accounts, {info['events']} shelf interactions, {info['plates']} plates, {info['keypoints']} keypoints")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    logs = work / f"logs-n{n}"
    logs.mkdir(exist_ok=True)
    procs = Procs(logs)
    row = {"n": n, **info}
    sampler = None
    try:
        from tests.services import postgres_database  # the repository root is on sys.path (above)

        with postgres_database("walkout_bench") as url:
            env = production_env(url, prefix, work / f"raw-n{n}")
            manage(["migrate", "-v0"], env)
            manage(["load_store", str(rec)], env)
            sessions_file = work / f"sessions-n{n}.json"
            done = subprocess.run([sys.executable, __file__, "--_prepare", str(rec), str(sessions_file)], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"preparing the shoppers failed:\n{done.stderr[-3000:]}")
            port = free_port()
            py = [sys.executable, "manage.py"]
            procs.start("daphne", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                   "store.asgi:application"], env)
            # a client id of its own each run, so its persistent session is kept a minute, not a day: the broker
            # held every past run's (570 MB after a dozen runs)
            procs.start("ingest", py + ["ingest_mqtt", "--client-id", f"bench-live-{uuid.uuid4().hex[:8]}",
                                        "--subscription", f"walkout/{STORE}/shelf/+/weights", "--progress", "1",
                                        "--session-expiry", "60"],
                        env)
            prof = work / f"run_store-n{n}.prof"
            procs.start("run_store", ([sys.executable, "-m", "cProfile", "-o", str(prof), "manage.py"] if args.profile
                                      else py) + ["run_store", STORE], env)
            # as the README runs it: four checkouts at once, so a burst of exits does not queue behind one capture (a
            # checkout mostly waits on PostgreSQL and the channel layer: with two, 15 exits a second at 200 shoppers
            # queued up to 3 s)
            procs.start("billing", [str(BIN / "celery"), "-A", "store", "worker", "--pool=prefork", "--concurrency=4",
                                    "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"], env)
            procs.wait_log("run_store", "is active", 60)
            procs.wait_log("ingest", "subscribed", 60)
            procs.wait_log("billing", "ready", 120)
            t_end = time.monotonic() + 60
            while not reachable(port):
                if time.monotonic() > t_end or procs.procs["daphne"].poll() is not None:
                    raise RuntimeError(f"daphne never listened:\n{procs.log('daphne')[-2000:]}")
                time.sleep(0.2)
            ws_out = work / f"ws-n{n}.jsonl"
            procs.start("ws_clients", [sys.executable, __file__, "--_clients", str(sessions_file), str(port),
                                       str(ws_out), str(args.timeout)], env)
            procs.wait_log("ws_clients", "connected", 120)
            say(procs.log("ws_clients").strip().splitlines()[-1])
            names = ["daphne", "ingest", "run_store", "billing", "emulator", "ws_clients"]
            sampler = Sampler(procs, prefix, names)
            sampler.start()
            t0 = time.monotonic()
            settle = max(60.0, min(300.0, args.timeout - info["length_s"] - 30))
            emu = procs.start("emulator", py + ["emulate_store", str(rec), "--url", f"http://127.0.0.1:{port}",
                                                "--speed", "1", "--settle-timeout", f"{settle:.0f}"], env)
            deadline = t0 + args.timeout
            last_note = t0
            while emu.poll() is None and time.monotonic() < deadline:
                time.sleep(1.0)
                if time.monotonic() - last_note >= 30 and sampler.series:
                    last_note = time.monotonic()
                    s = sampler.series[-1]
                    say(f"  t {s['t']:.0f} s: lag shelf {s.get('lag_shelf', '-')} obs {s.get('lag_obs', '-')} "
                        f"records, newest record age shelf {s.get('age_shelf', '-')} s obs {s.get('age_obs', '-')} s,"
                        f" cpu " + " ".join(f"{k} {sampler.cpu.get(k, 0) / max(1e-9, s['t']) * 100:.0f}%"
                                            for k in names))
            timed_out = emu.poll() is None
            row["wall_s"] = time.monotonic() - t0
            time.sleep(3.0)  # the last snapshots
            sampler.stop()
            procs.stop("ws_clients", grace=20)
            procs.stop("run_store", grace=60)  # its profile is written on the way out
            procs.stop_all()
            if args.profile and prof.exists():
                import io
                import pstats

                buf = io.StringIO()
                pstats.Stats(str(prof), stream=buf).sort_stats("tottime").print_stats(25)
                say(f"run_store profile (by own time), {prof}:\n" + "\n".join(buf.getvalue().splitlines()[:45]))
            emu_out = procs.log("emulator")
            lines = [ln for ln in emu_out.strip().splitlines() if ln.startswith("F1 ")]
            row["f1_live"] = float(lines[-1].split()[1]) if lines else math.nan
            row["timed_out"] = timed_out
            row["emulator_rc"] = emu.returncode
            if not lines:
                say(f"emulator gave no F1 (rc {emu.returncode}{', timed out' if timed_out else ''}):\n"
                    + "\n".join(emu_out.strip().splitlines()[-8:]))
            messages = []
            if ws_out.exists():
                for line in ws_out.read_text().splitlines():
                    recv, who, data = json.loads(line)
                    messages.append((recv, who, data))
            exits = {r["track"]: float(r["t"]) for r in csv.DictReader((rec / "gates.csv").open())
                     if r["kind"] == "exit"}
            row.update(analyse(url, messages, exits))
            row["stages"] = exit_stages(procs.log("run_store"), procs.log("billing"), row.pop("billed_times"))
            row["slow_steps"] = slow_steps(procs.log("run_store"))
            wall = max(1e-9, sampler.t1 - sampler.t0)
            row["cpu"] = {k: sampler.cpu.get(k, 0.0) / wall for k in names}
            row["rss_peak"] = dict(sampler.rss_peak)
            row["svc_cpu"] = {k: v / wall for k, v in sampler.svc_cpu.items()}
            row["series"] = sampler.series
            row["ingest_backlog_max"] = _ingest_backlog(procs.log("ingest"))
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.halt.set()
        procs.stop_all()
        try:
            redis_cleanup(prefix)
        except Exception as exc:  # noqa: BLE001 — report, the run's numbers stand
            say(f"(could not clean Redis keys {prefix}:*: {exc})")
    row["rec"] = str(rec)
    row["load"] = os.getloadavg()  # the machine's load when the size ended (other work on a shared machine)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sizes", type=sizes_arg, default="10,50,200", help="shoppers in the store at once, comma-separated")
    ap.add_argument("--minutes", type=float, default=2.5,
                    help="store minutes per session: arrivals spread over minutes − 80 s (2.5: over 70 s)")
    ap.add_argument("--events", type=float, default=16.0,
                    help="mean actions per shopper (long visits: most shoppers are inside at once)")
    ap.add_argument("--timeout", type=float, default=420.0, help="wall seconds per size for the emulation")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--offline-timeout", type=float, default=300.0,
                    help="wall seconds for the offline runs of all sizes (two at a time)")
    ap.add_argument("--hour-minutes", type=float, default=60.0, help="store minutes of the memory phase (0: skip)")
    ap.add_argument("--hour-shoppers", type=int, default=30, help="shoppers per 5-minute chunk of the memory phase")
    ap.add_argument("--hour-timeout", type=float, default=480.0, help="wall seconds for the memory phase")
    ap.add_argument("--rooms", default="1", help="store size in NanoStore rooms (SimConfig.rooms), or 'auto': "
                    "about 0.4 shoppers per m² at each size (default 1)")
    ap.add_argument("--shelves", choices=("npy", "csv"), default="npy",
                    help="form of the simulated sessions' shelf samples (docs/recording-format.md): npy, the binary "
                         "folder (default), or csv (gigabytes at 200 shoppers, read for minutes)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 shoppers, a short session, 10 store minutes")
    ap.add_argument("--json", default=None, help="write the measurements here")
    ap.add_argument("--profile", action="store_true", help="run run_store under cProfile and print its hot spots")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="work in DIR and keep it (recordings, logs, WebSocket messages, profiles)")
    ap.add_argument("--_prepare", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_clients", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--_feed", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rooms != "auto" and not (args.rooms.isdigit() and int(args.rooms) >= 1):
        ap.error("--rooms: a positive integer or 'auto'")
    if args._prepare or args._clients or args._feed:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
        if args._prepare:
            prepare(*args._prepare)
        elif args._clients:
            clients(*args._clients)
        else:
            signal.signal(signal.SIGTERM, _sigterm)
            feed(float(args._feed[0]), int(args._feed[1]), int(args._feed[2]), args._feed[3])
        return 0
    if args.quick:
        args.sizes, args.minutes, args.events, args.timeout = [10], 1.8, 8.0, 240.0
        args.hour_minutes, args.hour_shoppers, args.hour_timeout = 10.0, 20, 240.0
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379), ("Mosquitto", 1883)):
        if not reachable(port):
            say(f"bench-live needs {name} on 127.0.0.1:{port}")
            return 2
    if not DATA.is_dir():
        say(f"bench-live needs {DATA}")
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    # one bench-live at a time on a machine: two share the broker's topics (walkout/walkout-sim/...) and the Redis
    # database of the channel layer, so each would ingest the other's shelf blocks and push to the other's phones
    lock = open(LOCK_PATH, "a+")  # noqa: SIM115 — held (and closed) by the process until it exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"bench-live: another bench-live is running on this machine (lock {LOCK_PATH}); waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    sizes = list(args.sizes)
    say(f"bench-live: sizes {sizes}, {args.minutes:g} store minutes each, {args.events:g} actions per shopper, "
        f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f}")
    rows: list[dict] = []
    hour = None
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            for n in sizes:
                try:
                    rows.append(run_size(n, args, work))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    say(f"{n} shoppers failed: {exc}")
                    rows.append({"n": n, "error": str(exc).splitlines()[0][:200]})
            done = [r for r in rows if "error" not in r and not math.isnan(r.get("f1_live", math.nan))]
            if done:  # after the live runs (they would load the live stack), two at a time, bounded in time
                t = time.monotonic()
                offline_all(done, args.offline_timeout)
                say(f"\noffline runs of the same sessions in {time.monotonic() - t:.0f} s")
            if rows:
                print_table(rows)
            if args.hour_minutes > 0:
                hour = run_hour(args, work)
        except KeyboardInterrupt:
            say("interrupted: processes stopped, databases dropped")
            return 130
    if hour is not None:
        m = hour["marks"]
        say(f"\nstore worker (run_store) RSS: start {hour['rss0'] / 2**20:.0f} MB; "
            + "; ".join(f"{k:g} min {v['rss'] / 2**20:.0f} MB" for k, v in sorted(m.items()))
            + f"; {hour['cpu_s']:.0f} CPU s in {hour['wall_s']:.0f} s wall"
            + (f" ({max(m) * 60 / hour['wall_s']:.1f}× real time)" if m else ""))
    say(f"\nbench-live took {time.monotonic() - t_all:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": rows, "hour": hour}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
