"""The memory phase of ``bench/bench_live.py``: the store worker's RSS over an hour of store time, fed by a
subprocess that publishes simulated sessions onto the Redis streams faster than real time."""
from __future__ import annotations

import math
import sys
import time
import uuid
from pathlib import Path

from live_session import DATA, TRACK_HZ, simulate_session
from live_stack import STORE, Procs, manage, production_env, redis_cleanup, say

from carts.offline.simulation_truth import parties_from_gates
from store.recording import TrackObservations
from carts.offline.steps import recording_steps
from carts.offline.simulation import simulate
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store

#: the entry point, which runs :func:`feed` as a subprocess (``--_feed``)
ENTRY = str(Path(__file__).resolve().with_name("bench_live.py"))


def run_hour(args, work: Path) -> dict:
    """The store worker's RSS over ``--hour-minutes`` of store time, fed faster than real time."""
    say(f"\n=== store worker memory over {args.hour_minutes:g} min of store time ===")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    logs = work / "logs-hour"
    logs.mkdir(exist_ok=True)
    procs = Procs(logs)
    marks: dict[float, dict] = {}
    try:
        import psutil

        from tests.services import postgres_database  # the repository root is on sys.path (bench_live.py)

        with postgres_database("walkout_bench") as url:
            env = production_env(url, prefix, work / "raw-hour")
            rec = work / "sim-hour-store"
            simulate_session(2, 1.5, 1.0, args.seed, rec)  # only its store.json is loaded
            manage(["migrate", "-v0"], env)
            manage(["load_store", str(rec)], env)
            py = [sys.executable, "manage.py"]
            store_p = procs.start("run_store", py + ["run_store", STORE], env)
            procs.wait_log("run_store", "is active", 60)
            worker = psutil.Process(store_p.pid)
            rss0 = worker.memory_info().rss
            feeder = procs.start("feeder", [sys.executable, ENTRY, "--_feed", str(args.hour_minutes),
                                            str(args.hour_shoppers), str(args.seed), prefix], env,
                                 stdout_to_log=False)
            t0 = time.monotonic()
            deadline = t0 + args.hour_timeout
            peak = rss0
            cpu0 = sum(worker.cpu_times()[:2])
            while time.monotonic() < deadline:
                line = feeder.stdout.readline()
                if not line:
                    break
                line = line.strip()
                if line.startswith("mark "):
                    _, minute, _, done = line.split()[:4]
                    rss = worker.memory_info().rss
                    peak = max(peak, rss)
                    m = float(minute)
                    marks[m] = {"rss": rss, "wall_s": time.monotonic() - t0, "extra": f"({done} records fed)"}
                    say(f"  {m:>5.0f} min of store time after {marks[m]['wall_s']:.0f} s: run_store RSS "
                        f"{rss / 2**20:.0f} MB {marks[m]['extra']}")
                elif line:
                    (logs / "feeder.log").open("a").write(line + "\n")
            cpu = sum(worker.cpu_times()[:2]) - cpu0
            timed_out = feeder.poll() is None
            if timed_out:
                say(f"  stopped after {args.hour_timeout:.0f} s (--hour-timeout)")
            procs.stop_all()
            return {"marks": marks, "rss0": rss0, "cpu_s": cpu, "wall_s": time.monotonic() - t0,
                    "timed_out": timed_out}
    finally:
        procs.stop_all()
        try:
            redis_cleanup(prefix)
        except Exception as exc:  # noqa: BLE001
            say(f"(could not clean Redis keys {prefix}:*: {exc})")


def feed(minutes: float, shoppers: int, seed: int, prefix: str) -> None:
    """Subprocess: publish ``minutes`` of simulated store time (5-minute sessions back to back) onto the store's
    Redis streams as fast as the store worker takes them (its lag under a few hundred records), gate scans through
    the gate services; prints ``mark <store minute> <wall s> <records>`` at 10, 30, 60 … minutes once the worker
    has read everything before that moment."""
    import django

    django.setup()
    from concurrent.futures import ProcessPoolExecutor
    from datetime import datetime, timezone as dt_timezone

    import numpy as np

    # lazy: these import Django models, so they load after django.setup() above
    from carts.bus import bus as store_bus
    from carts.offline.emulator_devices import register
    from carts.records import obs_record, shelf_record
    from store.accounts.demo import demo_shopper_ensure
    from store.gates.services import GateRefusal, pass_issue, visit_enter, visit_exit_scan
    from store.layout.models import Store

    bus = store_bus()
    store = Store.objects.get(code=STORE)
    Store.objects.filter(pk=store.pk).update(capacity=100_000)
    store.refresh_from_db()
    gate = register(store).gate
    chunk_min = 5.0
    n_chunks = max(1, int(math.ceil(minutes / chunk_min)))
    marks = [m for m in (10.0, 30.0, 60.0, 120.0, 240.0) if m <= minutes] or [minutes]
    if marks[-1] < minutes:
        marks.append(minutes)
    base = time.time() - minutes * 60.0 - 60.0  # the store's clock ends about now: within the gate API's day
    t_start = time.monotonic()
    records = 0

    def lag() -> int:
        total = 0
        for kind in ("shelf", "obs", "gate"):
            try:
                total += sum(int(g.get("lag") or 0) for g in bus.redis.xinfo_groups(bus.key(STORE, kind)))
            except Exception:  # not created yet
                pass
        return total

    def wait_drained(limit: int) -> None:
        t_end = time.monotonic() + 120
        while lag() > limit and time.monotonic() < t_end:
            time.sleep(0.05)

    pool = ProcessPoolExecutor(1)
    futures = [pool.submit(_sim_chunk, shoppers, chunk_min, seed * 1000 + k) for k in range(min(2, n_chunks))]
    tokens: dict[str, str] = {}
    users: dict[str, object] = {}
    try:
        for k in range(n_chunks):
            sim = futures[k].result()
            if k + 2 < n_chunks:
                futures.append(pool.submit(_sim_chunk, shoppers, chunk_min, seed * 1000 + k + 2))
            off = base + k * chunk_min * 60.0 - sim["t_start"]
            party_of = parties_from_gates(sim["gates"], within_s=10.0)
            guests = {lead: sum(1 for m, lead_of in party_of.items() if lead_of == lead and m != lead)
                      for lead in set(party_of.values())}
            tag = f"c{k}-"

            class _Rec:  # what recording_steps needs
                pass

            r = _Rec()
            r.gates, r.tracks, r.shelves = sim["gates"], sim["tracks"], sim["shelves"]
            r.t_start, r.t_end = sim["t_start"], sim["t_start"] + chunk_min * 60.0
            for step in recording_steps(r, step_s=0.5):
                t_store = (step.t + off - base) / 60.0
                while marks and t_store >= marks[0]:
                    wait_drained(0)
                    time.sleep(2.5)  # the worker's next checkpoint
                    print(f"mark {marks[0]:g} {time.monotonic() - t_start:.1f} {records} records", flush=True)
                    marks.pop(0)
                for g in step.gates:
                    at = datetime.fromtimestamp(g.t + off, dt_timezone.utc)
                    user = users.get(g.account) or users.setdefault(g.account, demo_shopper_ensure(g.account))
                    try:
                        if g.kind == "entry":
                            lead = party_of.get(g.track, g.track)
                            if lead != g.track and tag + lead in tokens:
                                token = tokens[tag + lead]
                            else:
                                token = pass_issue(shopper=user, store=store, guests=guests.get(g.track, 0))[1]
                                tokens[tag + g.track] = token
                            visit_enter(token=token, gate=gate, at=at)
                        else:
                            visit_exit_scan(token=pass_issue(shopper=user, store=store)[1], gate=gate, at=at)
                    except GateRefusal:
                        pass  # a party's exit scan exits the whole party at once
                    records += 1
                obs = step.tracks
                if len(obs):
                    obs = TrackObservations(np.array([f"tracker:{tag}{x}" for x in obs.track_id], dtype=object),
                                            obs.t + off, obs.keypoint, obs.xyz, obs.score)
                bus.publish(STORE, "obs", obs_record(source="tracker:emulator", obs=obs,
                                                             t_last=step.t_next + off))
                records += 1
                for j, (codes, t, grams, rate) in enumerate(step.shelves):
                    bus.publish(STORE, "shelf", shelf_record(controller=f"emulator-{j}", bin_codes=codes,
                                                                     t=t + off, grams=grams, rate_hz=rate))
                    records += 1
                if records % 50 < 10:
                    wait_drained(300)
            tokens = {k2: v for k2, v in tokens.items() if k2.startswith(tag)}
            futures[k] = None
        while marks:
            wait_drained(0)
            time.sleep(2.5)
            print(f"mark {marks[0]:g} {time.monotonic() - t_start:.1f} {records} records", flush=True)
            marks.pop(0)
    finally:
        pool.shutdown(cancel_futures=True)


def _sim_chunk(shoppers: int, minutes: float, seed: int) -> dict:
    """One simulated session (in a pool process): what the feeder needs."""
    sim = simulate(load_store(DATA), SimConfig.at("default", shoppers=shoppers, minutes=minutes, seed=seed,
                                                  track_hz=TRACK_HZ))
    return {"t_start": sim.manifest["t_start"], "gates": sim.gates, "tracks": sim.tracks,
            "shelves": [s for s in sim.shelves]}
