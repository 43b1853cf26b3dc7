"""The store worker alone (``make bench-store``): how much of one core ``run_store``'s loop needs per store-second at
N shoppers, and where that time goes.

Plain script: ``.venv/bin/python bench/bench_store.py [--shoppers 10,50] [--minutes 3] [--seed 11] [--rooms N] [--events E]
[--profile]`` (``BENCH_PROFILE_OUT=FILE`` also writes the whole profile there; ``BENCH_PROFILE_FROM=S``
profiles only the steps from S store seconds after the session's start, e.g. the exodus; ``BENCH_DUMP=FILE`` writes what the
worker stored and pushed, canonical JSON lines for a diff of two versions: :func:`_dump`; ``BENCH_OFF=S`` pins the
shift of the session's clock, so that two runs store the same times; ``BENCH_QUERY_SHAPES=N`` prints the worker's N
most frequent queries, by their SQL with IN lists folded, and how often each ran; with it, ``BENCH_QUERY_WHERE=PREFIX``
also counts where the queries whose SQL starts with PREFIX were run from: the three innermost frames of this repo).

For each size it simulates a session (``carts.offline.simulation``, the AutoCheckout store: 306 plates at 60 Hz, keypoints at
15 Hz per shopper, the default difficulty, shoppers arriving over ``--minutes``), loads its store into a throwaway
SQLite database (the embedded profile), and feeds it to one ``carts.runtime.StoreWorker`` on the in-process bus
exactly as the live store does (shelf blocks and observation records on the bus, gate scans through the gate
services), half a second of store time at a time, stepping the worker until it has read everything. It prints the
worker's CPU seconds (process time of the worker's steps and checkpoints only, so other load on the machine does not
count) per store second, the real-time factor that gives on one core, and the loop's counters; with ``--profile``,
the top functions by cumulative time; and the busiest :data:`PEAK_WINDOW_S` of store time (its CPU per store
second: a worker that needs more than a core there falls behind, e.g. at a simulated session's exodus). ``--rooms N`` simulates a store N times the NanoStore's floor
(``SimConfig.rooms``: its gondolas tiled N times side by side, 306·N plates, one gate pair per room, ~20 m² per room),
so that a large crowd has the floor a real store would give it. It also prints the share of shelf events that went
to review and exit → checkout in the loop (loop time when the loop hands the party's checkout on, minus the
party's last exit scan: the settle time plus the wait for the events that may be theirs; the bench steps the loop
every 0.5 s of store time, so these are rounded up to that). It also prints how many shoppers were in the store at once at most (gate
scans), the peak RSS of the bench process, the size of the loop's checkpoint at the end and the number of database
queries of the worker's steps. The figures are the
loop's own work (detection, fusion, the database writes of the embedded profile), without Redis, MQTT or
PostgreSQL round trips: ``make bench-live`` measures those.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from carts.offline.steps import recording_steps
from carts.offline.simulation import simulate
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store
from carts.offline.simulation_truth import parties_from_gates
from store.recording import TrackObservations

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_args import sizes_arg  # noqa: E402  (ROOT on the path above)
#: floor of one room (the NanoStore with its share of the front: ~6 m × 3.4 m,
#: carts.offline.simulation_config.ROOM_PITCH_M)
ROOM_M2 = 20.5
DATA = Path(os.environ.get("WALKOUT_SHARED", ROOT.parent / "shared")) / "datasets" / "autocheckout"


def run(shoppers: int, minutes: float, seed: int, profile: bool, rooms: int = 1, events: float | None = None) -> dict:
    """One size (module docstring). Returns its figures."""
    from datetime import datetime, timezone as dt_timezone

    import numpy as np
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # throwaway bench accounts
    call_command("migrate", verbosity=0)
    # lazy: these import Django models, so they load after django.setup() (this subprocess's) and migrate above
    from carts import runtime, runtime_publish
    from carts.offline.emulator_devices import door_gates, entry_doors, register
    from carts.records import obs_record, shelf_record
    from store.accounts.demo import demo_shopper_ensure
    from store.gates.services import GateRefusal, pass_issue, visit_enter, visit_exit_scan
    from store.inventory.services import catalogue_load
    from store.layout.models import Store
    from store.layout.services import layout_load

    more = {} if events is None else {"events_per_shopper": events}
    sim = simulate(load_store(DATA), SimConfig.at("default", shoppers=shoppers, minutes=minutes, seed=seed,
                                                  track_hz=15.0, rooms=rooms, **more))
    store = layout_load(data=sim.store, listed=False)  # a throwaway store: never offered to shoppers
    catalogue_load(store=store, products=sim.store["products"], facings=sim.store["facings"])
    Store.objects.filter(pk=store.pk).update(capacity=100_000)
    store.refresh_from_db()
    gate = register(store).gate
    # one gate per room's entry door, each shopper scanned at theirs (as the emulator plays them; a real store's bank
    # of turnstiles): scans at different doors a moment apart are never one gate's two scans
    doors = {zone: g for zone, (g, _) in door_gates(store, sim).items()}
    door_of = entry_doors(sim) if doors else {}
    worker = runtime.StoreWorker(store.code)
    runtime_publish.register_local(store.code, worker)  # this process steps it (no background thread takes the records)
    bus = worker.bus
    party_of = parties_from_gates(sim.gates, within_s=10.0)
    guests = {lead: sum(1 for m, lead_ in party_of.items() if lead_ == lead and m != lead)
              for lead in set(party_of.values())}
    # the store's clock ends about now (within the gate API's day), shifted by whole seconds: the 0.1 s body frames
    # of the id-switch repair fall on the same instants in every run, so two runs decide alike
    off = float(math.floor(time.time() - sim.manifest["t_end"] - 60.0))
    if os.environ.get("BENCH_OFF"):
        off = float(os.environ["BENCH_OFF"])
    pushed: list[str] = []
    if os.environ.get("BENCH_DUMP"):
        _record_pushes(pushed)
    queries = [0]
    shapes_wanted = int(os.environ.get("BENCH_QUERY_SHAPES", "0"))
    where_prefix = os.environ.get("BENCH_QUERY_WHERE", "")
    repo, venv = str(ROOT) + os.sep, str(ROOT / ".venv")
    shapes: Counter[str] = Counter()  # BENCH_QUERY_SHAPES: the worker's queries by their SQL, IN lists folded

    def counted(execute, sql, params, many, context):
        queries[0] += 1
        if shapes_wanted:
            shape = re.sub(r"\((?:%s, )+%s\)", "(…)", sql)[:160]
            shapes[shape] += 1
            if where_prefix and shape.startswith(where_prefix):
                where = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_stack()
                         if f.filename.startswith(repo) and not f.filename.startswith(venv)][-4:-1]
                shapes[" < ".join(reversed(where))] += 1
        return execute(sql, params, many, context)

    from django.db import connection
    tokens: dict[str, str] = {}
    users: dict[str, object] = {}
    prof = cProfile.Profile() if profile else None
    cpu = 0.0
    checkouts: dict[str, float] = {}  # party lead track → loop time when its checkout was handed on
    per_step: list[tuple[float, float, float]] = []  # (store s since the session's start at the step's start and
    # at its end, worker CPU s of the step)
    profile_from = float(os.environ.get("BENCH_PROFILE_FROM", "0"))

    def watch() -> None:  # record when the loop hands each checkout on (the sink is made at the first step)
        sink = worker.pipeline.loop.sink if worker.pipeline is not None else None
        if sink is None or getattr(sink, "_bench_watched", False):
            return
        handed = sink.checkout

        def checkout(track, t):
            checkouts.setdefault(str(track).removeprefix("tracker:"), worker.pipeline.loop.now)
            return handed(track, t)

        sink.checkout, sink._bench_watched = checkout, True

    class _Rec:  # what recording_steps needs
        gates, tracks, shelves = sim.gates, sim.tracks, sim.shelves
        t_start, t_end = sim.manifest["t_start"], sim.manifest["t_end"]

    for step in recording_steps(_Rec, step_s=0.5):
        for g in step.gates:
            at = datetime.fromtimestamp(g.t + off, dt_timezone.utc)
            account = g.account or f"shopper+{g.track}@walkout.test"
            user = users.get(account) or users.setdefault(account, demo_shopper_ensure(account))
            try:
                if g.kind == "entry":
                    lead = party_of.get(g.track, g.track)
                    if lead != g.track and lead in tokens:
                        token = tokens[lead]
                    else:
                        token = pass_issue(shopper=user, store=store, guests=guests.get(g.track, 0))[1]
                        tokens[g.track] = token
                    visit_enter(token=token, gate=doors.get(door_of.get(g.track, ""), gate), at=at)
                else:
                    visit_exit_scan(token=pass_issue(shopper=user, store=store)[1], gate=gate, at=at)
            except GateRefusal:
                pass  # a party's exit scan exits the whole party at once
        obs = step.tracks
        if len(obs):
            obs = TrackObservations(np.array([f"tracker:{x}" for x in obs.track_id], dtype=object), obs.t + off,
                                    obs.keypoint, obs.xyz, obs.score)
        bus.publish(store.code, "obs", obs_record(source="tracker:bench", obs=obs, t_last=step.t_next + off))
        for j, (codes, t, grams, rate) in enumerate(step.shelves):
            bus.publish(store.code, "shelf", shelf_record(controller=f"bench-{j}", bin_codes=codes,
                                                                  t=t + off, grams=grams, rate_hz=rate))
        t0 = time.process_time()
        profiling = prof is not None and step.t - _Rec.t_start >= profile_from
        if profiling:
            prof.enable()
        with connection.execute_wrapper(counted):
            while worker.step(block_ms=0):
                watch()
            if time.monotonic() - worker._last_checkpoint >= worker.checkpoint_due_s():
                worker.checkpoint()
        if profiling:
            prof.disable()
        cpu += time.process_time() - t0
        per_step.append((step.t - _Rec.t_start, step.t_next - _Rec.t_start, time.process_time() - t0))
    length = _Rec.t_end - _Rec.t_start
    moves = sorted((g.t, 1 if g.kind == "entry" else -1) for g in sim.gates)
    inside = np.cumsum([m for _, m in moves]) if moves else np.zeros(1)
    last_exit: dict[str, float] = {}
    for g in sim.gates:
        if g.kind == "exit":
            lead = party_of.get(g.track, g.track)
            last_exit[lead] = max(last_exit.get(lead, -np.inf), g.t + off)
    waits = np.array([checkouts[lead] - t for lead, t in last_exit.items() if lead in checkouts])
    out = {"peak": _peak(per_step, PEAK_WINDOW_S), "rooms": rooms, "exit_checkout_s": [float(x) for x in np.percentile(waits, [50, 95, 100])] if waits.size
           else None, "checkouts": int(waits.size), "parties": len(last_exit),
           "shoppers": shoppers, "store_s": length, "cpu_s": cpu, "stats": worker.pipeline.loop.stats,
           "at_once": int(inside.max()), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "checkpoint_mb": len(worker.pipeline.loop.snapshot()) / 1e6, "queries": queries[0], "offset_s": off,
           "query_shapes": shapes.most_common(shapes_wanted)}
    if os.environ.get("BENCH_DUMP"):
        _dump(os.environ["BENCH_DUMP"], off, pushed)
    if prof is not None:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        if os.environ.get("BENCH_PROFILE_OUT"):  # the whole profile, for pstats/snakeviz
            prof.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        out["profile"] = buf.getvalue()
    return out


#: s of store time: the window of the busiest stretch reported (the exodus of a simulated session: most shoppers
#: leave within ~13 s of each other, docs/store-worker-load.md)
PEAK_WINDOW_S = 10.0


def _peak(per_step: list[tuple[float, float, float]], window_s: float) -> tuple[float, float] | None:
    """The busiest ``window_s`` of store time: (its start, s since the session's start; the worker's CPU s in it
    per store s), from ``per_step`` (store s at the step's start and at its end, CPU s) in order: the steps that
    lie within ``window_s`` of one step's start; None for a session shorter than the window."""
    best = None
    j, acc = 0, 0.0
    eps = 1e-6  # store seconds are differences of UTC times: a 10 s window of 0.5 s steps may read 10.000000001
    for _, t1, c in per_step:
        acc += c
        while t1 - per_step[j][0] > window_s + eps:
            acc -= per_step[j][2]
            j += 1
        if t1 - per_step[0][0] >= window_s - eps and (best is None or acc / window_s > best[1]):
            best = (per_step[j][0], acc / window_s)
    return best


def _record_pushes(pushed: list[str]) -> None:
    """Keep every message the worker sends to a channels group (the in-process layer's ``group_send`` wrapped), as
    canonical JSON: the trip block's ``text`` and ``due_in_s`` left out (they say "in about N seconds" from the wall
    clock)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    send = layer.group_send

    async def group_send(group, message):
        m = json.loads(json.dumps(message, default=str))
        trip = (m.get("snapshot") or {}).get("trip")
        if isinstance(trip, dict):
            trip.pop("text", None)
            trip.pop("due_in_s", None)
        pushed.append(json.dumps([group, m], sort_keys=True))
        return await send(group, message)

    layer.group_send = group_send


def _dump(path: str, off: float, pushed: list[str]) -> None:
    """Write the rows the worker stored (shelf events, cart events, review items, carts, visits and their
    transitions, receipts, stock, restock tasks, alerts, payments: every field but ``created_at``/``updated_at``,
    datetimes as seconds less the session's clock shift ``off``) and the pushed messages, one canonical JSON line
    each, so that two versions of the worker can be diffed. Source times inside JSON fields (a shelf event's parts,
    the evidence's ``t_closest``, a review's reason) keep the shift: pin ``BENCH_OFF`` for both runs or subtract it;
    ``Visit.checkout_due_at`` is set from the wall clock (exit + settle) and differs run to run."""
    from datetime import datetime

    from django.apps import apps

    names = ["sensors.ShelfEvent", "carts.CartEvent", "carts.ReviewItem", "carts.Cart", "carts.StoreAlert",
             "gates.Visit", "gates.VisitTransition", "billing.Receipt", "billing.ReceiptLine", "billing.ReceiptTax",
             "billing.PaymentAttempt", "inventory.StockMovement", "inventory.RestockTask"]

    def plain(v):
        if isinstance(v, datetime):
            return round(v.timestamp() - off, 3)
        return v

    with open(path, "w") as f:
        for name in names:
            model = apps.get_model(name)
            fields = [fl.attname for fl in model._meta.concrete_fields if fl.name not in ("created_at", "updated_at")]
            for row in model.objects.order_by("pk").values(*fields):
                f.write(json.dumps([name, {k: plain(v) for k, v in row.items()}], sort_keys=True, default=str) + "\n")
        for line in pushed:
            f.write(line + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shoppers", type=sizes_arg, default="10,50", help="comma-separated sizes (default 10,50)")
    ap.add_argument("--minutes", type=float, default=3.0, help="simulated minutes per size (default 3)")
    ap.add_argument("--seed", type=int, default=11, help="the simulation's seed (default 11)")
    ap.add_argument("--rooms", type=int, default=1,
                    help="store size: the NanoStore's floor tiled N times (SimConfig.rooms; default 1, ~20 m² each)")
    ap.add_argument("--events", type=float, default=None,
                    help="shelf actions per shopper (SimConfig.events_per_shopper; default: the simulator's, from the "
                         "labelled AutoCheckout sessions; bench_live plays 16)")
    ap.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench-store needs {DATA} (../shared/datasets/autocheckout)")
    rows = []
    for n in args.shoppers:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"WALKOUT_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"), "WALKOUT_STORE_LOOP": "on",
                   "DJANGO_SETTINGS_MODULE": "store.settings", "WALKOUT_LOG_LEVEL": "ERROR"}
            code = ("import json, sys; sys.path.insert(0, %r); import django; django.setup(); "
                    "from bench.bench_store import run; r = run(%d, %r, %d, %r, %d, %r); "
                    "r['stats'] = vars(r['stats']); print('RESULT ' + json.dumps(r, default=str))"
                    % (str(ROOT), n, args.minutes, args.seed, args.profile, args.rooms, args.events))
            done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                                  capture_output=True, text=True)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"size {n} failed:\n{done.stderr[-3000:]}")
            r = json.loads(line[len("RESULT "):])
            rows.append(r)
            s = r["stats"]
            print(f"{n:>4} shoppers: {r['store_s']:.0f} s of store time in {r['cpu_s']:.1f} CPU s of the worker: "
                  f"{r['cpu_s'] / r['store_s']:.2f} core per store second, {r['store_s'] / r['cpu_s']:.1f}× real "
                  f"time on one core; {s['shelf_events']} shelf events, {s['cart_events']} cart events, "
                  f"{s['reviews']} reviews, {s['visits']} visits bound; at most {r['at_once']} shoppers in the "
                  f"store at once; peak RSS {r['rss_mb']:.0f} MB (the bench process, simulated session included), "
                  f"loop checkpoint {r['checkpoint_mb']:.1f} MB at the end; {r['rooms']} room(s), "
                  f"{r['at_once'] / (r['rooms'] * ROOM_M2):.2f} shoppers per m² at most; review share "
                  f"{s['reviews'] / max(s['shelf_events'], 1):.0%}; exit → checkout in the loop p50/p95/max "
                  + ("/".join(f"{x:.2f}" for x in r["exit_checkout_s"]) + " s" if r["exit_checkout_s"] else "n/a")
                  + f" ({r['checkouts']} of {r['parties']} parties handed on); {r['queries']} database queries "
                  f"in the worker's steps"
                  + (f"; busiest {PEAK_WINDOW_S:g} s from {r['peak'][0]:.0f} s: {r['peak'][1]:.2f} core per store "
                     f"second" if r.get("peak") else ""), flush=True)
            if r.get("profile"):
                print(r["profile"])
            for sql, k in r.get("query_shapes") or ():
                print(f"{k:>7}  {sql}")
    print("size  rooms  at-once  per-m2  core/store-s  x-realtime  review  exit->checkout-p50/p95-s  peak-RSS-MB")
    for r in rows:
        s = r["stats"]
        ec = "/".join(f"{x:.2f}" for x in r["exit_checkout_s"][:2]) if r["exit_checkout_s"] else "n/a"
        print(f"{r['shoppers']:>4}  {r['rooms']:>5}  {r['at_once']:>7}  {r['at_once'] / (r['rooms'] * ROOM_M2):>6.2f}  "
              f"{r['cpu_s'] / r['store_s']:>12.2f}  {r['store_s'] / r['cpu_s']:>10.1f}  "
              f"{s['reviews'] / max(s['shelf_events'], 1):>6.0%}  {ec:>24}  {r['rss_mb']:>11.0f}")


if __name__ == "__main__":
    main()
