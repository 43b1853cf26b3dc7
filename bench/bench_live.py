"""Load benchmark of the live store in the production profile (``make bench-live``; loopback only, bounded in time).

Plain script: ``.venv/bin/python bench/bench_live.py [--sizes 10,50,200] [--minutes M] [--timeout S] [--rooms R]
[--quick]``.

For each size N it simulates a session (``carts.offline.simulation``, the AutoCheckout store: 306 plates at 60 Hz, keypoints
at 15 Hz per shopper) whose N shoppers arrive within ``--minutes`` − 80 s and stay long enough (``--events``
actions each) that nearly all are inside at once (the measured peak is printed), then runs the production stack
on the local services, every process separate, as ``tests/test_live_production.py`` does: a fresh PostgreSQL
database, ``daphne``, ``ingest_mqtt`` (its own subscription and client id), a Celery billing worker (the checkouts
the store loop queues), one ``run_store`` (Redis Streams under
a prefix of its own, Redis db 12). Before the session every shopper account the emulator will scan is created and
logged in, and a **real WebSocket client** per account (aiohttp, own process) holds ``/ws/shopper/`` open with the
session cookie and an Origin header, stamping every message with its receive time. Then ``manage.py
emulate_store REC --url http://127.0.0.1:PORT --speed 1`` plays the devices in real time (shelf blocks over MQTT,
keypoints to the tracker adapter, passes at the gate) and waits until every visit is billed.

Printed per size:

* event → phone: from each fusion cart event (``CartEvent.created_at``, in ``run_store``) and from the end of its
  shelf event (``ShelfEvent.t_end`` on the devices' clock, which includes the loop's deliberate wait for hand data,
  ``fusion.pad_s`` + the hold) to the first WebSocket snapshot of that visit whose lines show it; p50/p95/p99;
* exit → receipt: ``Visit.exited_at`` (the exit scan's time) to the first snapshot carrying the receipt, and to the
  capture's ``PaymentAttempt.created_at``; p50/p95; and **by stage** (p50/p95/max): the settle time, the loop's
  step past it, what held the checkout after it (``carts.loop_billing.BILL_WAITS``), how far the loop ran behind the wall
  clock (the slowest source's lag, its step), the billing queue, the billing task, and the receipt's way to the
  phone (the store worker's and the billing worker's "checkout queued"/"picked up" log lines);
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
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ``--rooms auto``: shoppers per NanoStore room (~20.5 m²) at the busiest moment: ~0.4 per m²
SHOPPERS_PER_ROOM = 8
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("WALKOUT_SHARED", ROOT.parent / "shared")) / "datasets" / "autocheckout"
BIN = Path(sys.executable).parent
STORE = "walkout-sim"  # the simulated store's code (carts.offline.simulation.load_store)
REDIS_DB = 12
TRACK_HZ = 15.0
GOAL_PHONE_P95_S = 1.0
GOAL_RECEIPT_P95_S = 5.0
_T_LAST = re.compile(rb'"t_last": ?(-?[0-9.eE+-]+)')
SERVICES = {"postgres": ("postgres",), "redis": ("redis-server",), "mosquitto": ("mosquitto",)}


def say(msg: str = "") -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Procs:
    """Child processes, each in its own process group (``start_new_session``), all killed by :meth:`stop_all`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict, *, stdout_to_log: bool = True) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log if stdout_to_log else subprocess.PIPE,
                             stderr=log if stdout_to_log else subprocess.STDOUT, start_new_session=True,
                             text=not stdout_to_log)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, text: str, timeout: float) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if text in self.log(name):
                return
            p = self.procs[name]
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) before saying {text!r}:\n{self.log(name)[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} never said {text!r} in {timeout:.0f} s:\n{self.log(name)[-2000:]}")

    def stop(self, name: str, grace: float = 10.0) -> None:
        p = self.procs.get(name)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        try:  # whatever the group left behind (daphne's children)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for name in list(self.procs)[::-1]:
            self.stop(name)


def _sigterm(*_):
    raise KeyboardInterrupt("SIGTERM")


@contextmanager
def postgres_database():
    """A fresh PostgreSQL database (trust auth, user postgres), dropped afterwards (tests/services.py)."""
    import psycopg

    name = f"walkout_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(database_url: str, prefix: str, raw_dir: Path) -> dict[str, str]:
    """The production profile on the local services (tests/services.py:production_env) with the store loop on."""
    env = dict(os.environ)
    env.update({
        "WALKOUT_PROFILE": "production",
        "DJANGO_SECRET_KEY": f"bench-{uuid.uuid4().hex}",
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "WALKOUT_PAYMENT_PROVIDER": "dummy",
        "PYTHONUNBUFFERED": "1",
        "WALKOUT_STORE_LOOP": "on",
        "WALKOUT_STREAM_PREFIX": prefix,
        "WALKOUT_RAW_SAMPLES_DIR": str(raw_dir),
        "DJANGO_SETTINGS_MODULE": "store.settings",
    })
    return env


def manage(args: list[str], env: dict, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def redis_cleanup(prefix: str) -> None:
    """Delete the run's stream keys and the Celery messages its checkouts queued (db 12 is the bench's own)."""
    import redis

    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}")
    keys = list(r.scan_iter(f"{prefix}:*", count=1000))
    keys += [k for k in r.scan_iter("*", count=1000) if k.startswith((b"celery", b"_kombu", b"unacked"))]
    if keys:
        r.delete(*keys)


# ------------------------------------------------------------------------------------------------ sampling
class Sampler(threading.Thread):
    """Every second: CPU seconds and RSS of each child process (with its children), CPU of the shared services,
    the streams' lag for the store worker and the age of the newest record on each stream."""

    def __init__(self, procs: Procs, prefix: str, names: list[str]) -> None:
        super().__init__(daemon=True)
        import psutil
        import redis

        self.psutil = psutil
        self.procs, self.prefix, self.names = procs, prefix, names
        self.redis = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}", socket_timeout=5)
        self.halt = threading.Event()
        self.cpu0: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss_peak: dict[str, int] = {}
        self.rss_last: dict[str, int] = {}
        self.series: list[dict] = []
        self.t0 = self.t1 = time.monotonic()
        self._svc: dict[str, list] = {}
        self._svc_cpu: dict[int, float] = {}
        self.svc_cpu: dict[str, float] = {k: 0.0 for k in SERVICES}
        self._dead: dict[str, tuple[float, int]] = {}

    def _find_services(self) -> None:
        self._svc = {k: [] for k in SERVICES}
        for p in self.psutil.process_iter(["name"]):
            for k, names in SERVICES.items():
                if (p.info.get("name") or "") in names:
                    self._svc[k].append(p)

    def _proc_totals(self, name: str) -> tuple[float, int] | None:
        p = self.procs.procs.get(name)
        if p is None:
            return None
        try:
            root = self.psutil.Process(p.pid)
            members = [root] + root.children(recursive=True)
        except self.psutil.Error:
            return self._dead.get(name)
        cpu = rss = 0
        for m in members:
            try:
                t = m.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += m.memory_info().rss
            except self.psutil.Error:
                pass
        self._dead[name] = (cpu, rss)
        return cpu, rss

    def _streams(self) -> dict:
        out = {}
        now = time.time()
        for kind in ("shelf", "obs", "gate"):
            key = f"{self.prefix}:{STORE}:{kind}"
            try:
                groups = self.redis.xinfo_groups(key)
                out[f"lag_{kind}"] = int(sum((g.get("lag") or 0) for g in groups))
                out[f"xlen_{kind}"] = int(self.redis.xlen(key))
                if kind != "gate":
                    last = self.redis.xrevrange(key, count=1)
                    found = _T_LAST.search(last[0][1][b"r"]) if last else None
                    if found:  # not json.loads: an observation record is ~200 kB at 200 shoppers
                        out[f"age_{kind}"] = round(now - float(found.group(1)), 3)
            except Exception:  # the stream does not exist yet
                pass
        return out

    def run(self) -> None:
        self._find_services()
        k = 0
        while not self.halt.wait(1.0):
            self.sample()
            k += 1
            if k % 10 == 0:
                self._find_services()

    def sample(self) -> None:
        row = {"t": round(time.monotonic() - self.t0, 1)}
        for name in self.names:
            got = self._proc_totals(name)
            if got is None:
                continue
            cpu, rss = got
            self.cpu0.setdefault(name, cpu)
            self.cpu[name] = cpu - self.cpu0[name]
            self.rss_peak[name] = max(self.rss_peak.get(name, 0), rss)
            self.rss_last[name] = rss
            row[f"cpu_{name}"] = round(self.cpu[name], 2)
            row[f"rss_{name}"] = rss
        for svc, plist in self._svc.items():
            total = 0.0
            for p in plist:
                try:
                    t = p.cpu_times()
                    c = t.user + t.system
                except self.psutil.Error:
                    continue
                prev = self._svc_cpu.get(p.pid)
                self._svc_cpu[p.pid] = c
                if prev is not None:
                    total += max(0.0, c - prev)
            self.svc_cpu[svc] += total
        emu = self.procs.procs.get("emulator")
        row["emulating"] = emu is not None and emu.poll() is None
        row.update(self._streams())
        try:
            row["load1"] = os.getloadavg()[0]
        except OSError:
            pass
        self.series.append(row)
        self.t1 = time.monotonic()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.sample()


# ------------------------------------------------------------------------------------------------ the session
def simulate_session(n: int, minutes: float, events: float, seed: int, out: Path, rooms: int = 1,
                     shelves: str = "npy") -> dict:
    """Simulate and write the session of ``n`` shoppers in a store of ``rooms`` NanoStore rooms; returns what it
    is (peak occupancy, visit lengths). A session written before with the same arguments (``--keep`` DIR run
    again) is reused: the simulation is deterministic, and takes minutes at 50 shoppers on a busy machine.
    ``shelves``: the form of its shelf samples (``store.recording.SHELF_FORMS``; ``npy``, the binary folder, is read
    by the emulator and the offline run at once, where ``csv`` takes minutes at 50 shoppers)."""
    import numpy as np

    from carts.offline.simulation import SimConfig, load_store, simulate, write_simulation

    done = out / "bench-session.json"
    key = {"n": n, "minutes": minutes, "events": events, "seed": seed, "rooms": rooms, "shelves": shelves}
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("key") == key:
            return saved["info"]
    cfg = SimConfig.at("default", shoppers=n, minutes=minutes, seed=seed, track_hz=TRACK_HZ,
                       events_per_shopper=events, rooms=rooms)
    sim = simulate(load_store(DATA), cfg)
    write_simulation(sim, out, shelves_form=shelves)
    ent = {g.track: g.t for g in sim.gates if g.kind == "entry"}
    ex = {g.track: g.t for g in sim.gates if g.kind == "exit"}
    grid = np.arange(sim.manifest["t_start"], sim.manifest["t_end"], 0.5)
    inside = [sum(1 for k in ent if ent[k] <= t <= ex.get(k, math.inf)) for t in grid]
    dur = [ex[k] - ent[k] for k in ent if k in ex]
    info = {"shoppers": n, "rooms": rooms, "peak_inside": int(max(inside)), "visit_median_s": float(np.median(dur)),
            "length_s": float(sim.manifest["t_end"] - sim.manifest["t_start"]), "events": len(sim.events),
            "plates": sum(len(s.bin_codes) for s in sim.shelves), "keypoints": len(sim.tracks),
            "accounts": len({g.account for g in sim.gates if g.kind == "entry"})}
    done.write_text(json.dumps({"key": key, "info": info}))
    return info


def offline_f1(rec_path: Path) -> float:
    """F1 of the offline run of the recording (the store loop in memory, the oracle reviewer)."""
    from carts.offline.evaluation import evaluate_session, offline_replay
    from carts.offline.simulation import read_truth_events
    from store.recording import read_recording

    rec = read_recording(rec_path)
    te = read_truth_events(rec_path)
    res = offline_replay(rec, truth_events=te)
    truth = {r.track: {x.barcode: x.quantity for x in r.lines} for r in rec.truth}
    return evaluate_session(res.billed, truth, party_of=res.party_of, decisions=res.decisions,
                            truth_events=te).score.f1


def _offline_child(rec: str, out: str) -> None:
    Path(out).write_text(json.dumps(offline_f1(Path(rec))))


def offline_all(rows: list[dict], timeout: float) -> None:
    """``f1_offline`` of each row, two processes at a time; NaN for a run not done within ``timeout`` s."""
    import multiprocessing as mp

    todo = list(rows)
    running: list[tuple[dict, mp.Process, Path]] = []
    t_end = time.monotonic() + timeout
    while todo or running:
        while todo and len(running) < 2:
            r = todo.pop(0)
            out = Path(r["rec"]) / "offline-f1.json"
            p = mp.Process(target=_offline_child, args=(r["rec"], str(out)), daemon=True)
            p.start()
            running.append((r, p, out))
        time.sleep(0.5)
        for item in list(running):
            r, p, out = item
            if not p.is_alive() or time.monotonic() > t_end:
                if p.is_alive():
                    p.kill()
                p.join(10)
                r["f1_offline"] = json.loads(out.read_text()) if out.exists() else math.nan
                running.remove(item)


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else math.nan


def analyse(url: str, messages: list[tuple[float, str, dict]]) -> dict:
    """Latencies from the database and the WebSocket messages (recv wall time, account, message)."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        visits = conn.execute(
            "SELECT v.id, u.username, v.state, extract(epoch FROM v.exited_at) FROM gates_visit v "
            "JOIN auth_user u ON u.id = v.shopper_id").fetchall()
        events = conn.execute(
            "SELECT e.id, e.visit_id, extract(epoch FROM e.created_at), e.quantity, p.barcode, "
            "extract(epoch FROM s.t_end), e.source FROM carts_cartevent e JOIN inventory_product p "
            "ON p.id = e.product_id LEFT JOIN sensors_shelfevent s ON s.id = e.shelf_event_id ORDER BY e.id").fetchall()
        captures = dict(conn.execute(
            "SELECT visit_id, extract(epoch FROM min(created_at)) FROM billing_paymentattempt "
            "WHERE kind = 'capture' AND status = 'succeeded' GROUP BY visit_id").fetchall())
        reviews = conn.execute("SELECT count(*) FROM carts_reviewitem").fetchone()[0]
        held = {v for (v,) in conn.execute("SELECT DISTINCT visit_id FROM gates_visittransition "
                                             "WHERE to_state = 'under_review'")}
    snaps: dict[int, list[tuple[float, dict]]] = {}
    gaps = 0
    last_seq: dict[int, int] = {}
    for recv, _, msg in messages:
        if msg.get("type") != "snapshot":
            continue
        v = int(msg["visit"])
        snaps.setdefault(v, []).append((recv, msg))
        if v in last_seq and msg["seq"] > last_seq[v] + 1:
            gaps += 1
        last_seq[v] = max(last_seq.get(v, 0), msg["seq"])
    by_visit: dict[int, list] = {}
    for row in events:
        by_visit.setdefault(row[1], []).append(row)
    lat_db, lat_shelf, missing = [], [], 0
    for v, rows in by_visit.items():
        state: dict[str, int] = {}
        after = []
        for row in rows:
            state[row[4]] = state.get(row[4], 0) + row[3]
            after.append(frozenset((k, q) for k, q in state.items() if q > 0))
        got = snaps.get(v, [])
        for i, row in enumerate(rows):
            if row[6] != "fusion":
                continue
            wanted = set(after[i:])
            created = float(row[2])
            hit = next((recv for recv, msg in got if recv >= created and
                        frozenset((ln["barcode"], ln["quantity"]) for ln in msg.get("lines", [])) in wanted), None)
            if hit is None:
                missing += 1
                continue
            lat_db.append(hit - created)
            if row[5] is not None:
                lat_shelf.append(hit - float(row[5]))
    exit_ws, exit_cap, no_receipt = [], [], 0
    billed: dict[int, dict] = {}  # visit → exit, capture and receipt-on-the-phone times (wall s)
    for vid, _, _state, exited in visits:
        if exited is None or vid in held:  # billed once people decided its reviews (here: the oracle, at the end)
            continue
        exited = float(exited)
        hit = next((recv for recv, msg in snaps.get(vid, []) if msg.get("receipt")), None)
        if hit is None:
            no_receipt += 1
        else:
            exit_ws.append(hit - exited)
        if vid in captures:
            exit_cap.append(float(captures[vid]) - exited)
            billed[vid] = {"exit": exited, "capture": float(captures[vid]), "phone": hit}
    states: dict[str, int] = {}
    for _, _, state, _ in visits:
        states[state] = states.get(state, 0) + 1
    return {"cart_events": sum(1 for r in events if r[6] == "fusion"), "matched": len(lat_db), "missing": missing,
            "phone_db": [pct(lat_db, q) for q in (50, 95, 99)],
            "phone_shelf": [pct(lat_shelf, q) for q in (50, 95, 99)],
            "receipt_ws": [pct(exit_ws, q) for q in (50, 95)], "receipt_capture": [pct(exit_cap, q) for q in (50, 95)],
            "receipts_seen": len(exit_ws), "no_receipt": no_receipt, "visits": len(visits), "states": states,
            "reviews": reviews, "under_review": len(held), "seq_gaps": gaps, "ws_messages": len(messages),
            "billed_times": billed}


#: the store worker's line; a loop or record ahead of the wall clock (devices faster than real time) is worded
#: "ahead of" / "early" with the magnitude, read back here as a negative lag
_QUEUED = re.compile(r"visit (\d+) checkout queued (\S+) s after its exit: settle (\S+) s, overshoot (\S+) s, "
                     r"waited (\S+) s \(([^)]*)\); the loop ran (\S+) s (behind|ahead of) the wall clock "
                     r"\(watermark (\S+) s: the newest record (\S+) s (late|early), the slowest source (\S+) (\S+) s "
                     r"behind it; step (\S+) s\)")
_PICKED = re.compile(r"visit (\d+): checkout picked up (\S+) s after it was queued")
#: the stages of exit → receipt, in order (``exit_stages``), with what each is
STAGES = (
    ("settle", "settle time (LoopConfig.settle_s)"),
    ("overshoot", "loop's step past the deadline"),
    ("w_shelves", "  wait: a shelf controller behind"),
    ("w_party", "  wait: party member inside/seen"),
    ("w_held", "  wait: held changes they may touch"),
    ("w_reach", "  wait: reach looks they may touch"),
    ("w_events", "  wait: undecided events of theirs"),
    ("waited", "waits past the settle, all"),
    ("devices", "loop behind: devices' newest record late"),
    ("slowest_wait", "loop behind: slowest source behind it"),
    ("step", "loop behind: its step until checkout"),
    ("queue", "queued → billing worker picks it up"),
    ("task", "picked up → capture recorded"),
    ("total", "= exit → capture"),
    ("phone", "capture → receipt on the phone"),
)


def exit_stages(store_log: str, billing_log: str, billed: dict[int, dict]) -> dict:
    """Where each visit's exit → capture time went (wall s), from the store worker's "checkout queued" lines
    (``carts.runtime.StoreWorker._log_checkouts``), the billing worker's "picked up" lines
    (``store.gates.tasks.visit_checkout_task``) and the capture's ``PaymentAttempt.created_at``. Returns
    {stage: [values]} over the visits found in both logs, plus ``slowest``: {source kind: checkouts}."""
    queued = {int(m.group(1)): m for m in _QUEUED.finditer(store_log)}
    picked = {int(m.group(1)): float(m.group(2)) for m in _PICKED.finditer(billing_log)}
    out: dict = {k: [] for k, _ in STAGES}
    out["slowest"] = {}
    for vid, times in billed.items():
        m = queued.get(vid)
        if m is None or vid not in picked:
            continue
        after_exit, settle, over, waited = (float(m.group(i)) for i in (2, 3, 4, 5))
        waits = dict((k, float(v)) for k, v in (w.split() for w in m.group(6).split(", ") if " " in w))
        out["settle"].append(settle)
        out["overshoot"].append(over)
        for k in ("shelves", "party", "held", "reach", "events"):
            out[f"w_{k}"].append(waits.get(k, 0.0))
        out["waited"].append(waited)
        out["devices"].append(float(m.group(10)) * (-1 if m.group(11) == "early" else 1))
        out["slowest_wait"].append(float(m.group(13)))
        out["step"].append(float(m.group(14)))
        out["queue"].append(picked[vid])
        out["task"].append(times["capture"] - times["exit"] - after_exit - picked[vid])
        out["total"].append(times["capture"] - times["exit"])
        if times["phone"] is not None:
            out["phone"].append(times["phone"] - times["capture"])
        kind = m.group(12).split(":")[0]
        out["slowest"][kind] = out["slowest"].get(kind, 0) + 1
    return out


def print_stages(r: dict) -> None:
    st = r.get("stages") or {}
    n = len(st.get("total", []))
    if not n:
        say("  exit → capture by stage: no checkout found in both the store worker's and the billing worker's logs")
        return
    say(f"  exit → capture by stage, {n} visits billed without review (wall s, p50 / p95 / max; p95s do not add up):")
    for key, label in STAGES:
        v = st.get(key, [])
        if v:
            say(f"    {label:<40}{pct(v, 50):>7.2f} /{pct(v, 95):>6.2f} /{max(v):>6.2f}")
    say(f"    slowest source at the checkouts: {st.get('slowest')}")


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
        with postgres_database() as url:
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
            procs.start("ingest", py + ["ingest_mqtt", "--client-id", f"bench-live-{uuid.uuid4().hex[:8]}",
                                        "--subscription", f"walkout/{STORE}/shelf/+/weights", "--progress", "1"],
                        env)
            prof = work / f"run_store-n{n}.prof"
            procs.start("run_store", ([sys.executable, "-m", "cProfile", "-o", str(prof), "manage.py"] if args.profile
                                      else py) + ["run_store", STORE], env)
            procs.start("billing", [str(BIN / "celery"), "-A", "store", "worker", "--pool=solo", "--concurrency=1",
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
            row.update(analyse(url, messages))
            row["stages"] = exit_stages(procs.log("run_store"), procs.log("billing"), row.pop("billed_times"))
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


def _ingest_backlog(log: str) -> int:
    """Largest (received − handled) of ingest_mqtt's progress lines: messages it had taken and not yet handled."""
    worst = 0
    for line in log.splitlines():
        if line.startswith("progress "):
            parts = line.split()
            try:
                worst = max(worst, int(parts[parts.index("received") + 1]) - int(parts[parts.index("handled") + 1]))
            except (ValueError, IndexError):
                pass
    return worst


def saturation(row: dict) -> str:
    """Which process saturates and what shows it."""
    series = row.get("series") or []
    cpu = row.get("cpu", {})
    if not cpu:
        return "no measurement"
    top = max(cpu, key=cpu.get)
    notes = [f"{top} uses the most CPU ({cpu[top] * 100:.0f}% of a core)"]
    if series:
        live = [s for s in series if s.get("emulating")] or series
        for kind in ("shelf", "obs"):
            lags = [s.get(f"lag_{kind}", 0) for s in series]
            if lags and max(lags) > 500:
                notes.append(f"the store worker fell behind on {kind} (up to {max(lags)} unread records)")
            # p95, not max: after the recording the emulator scores the session and its devices fall silent
            ages = [s[f"age_{kind}"] for s in live if f"age_{kind}" in s and s.get("emulating")]
            if ages and pct(ages, 95) > 2.0:
                who = "emulator/daphne" if kind == "obs" else "emulator/mosquitto/ingest_mqtt"
                notes.append(f"{kind} records reach the stream {pct(ages, 95):.1f} s late (p95; {who} behind)")
    if row.get("ingest_backlog_max", 0) > 100:
        notes.append(f"ingest_mqtt had up to {row['ingest_backlog_max']} messages queued")
    busy = [k for k, v in cpu.items() if v > 0.85]
    if busy:
        notes.append("at the limit of one core (single-threaded): " + ", ".join(busy))
    return "; ".join(notes)


def print_table(rows: list[dict]) -> None:
    def ms(v: float) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.0f}"

    say("\n=== live store under load (production profile, loopback; figures in ms unless said) ===")
    say(f"{'shoppers':>8} {'peak in':>7} {'cart ev':>7} {'seen':>5}  {'event→phone p50/p95/p99':>24}  "
        f"{'shelf end→phone p50/p95/p99':>28}  {'exit→receipt(ws) p50/p95':>24}  {'exit→capture p50/p95':>20}  "
        f"{'F1 live':>7} {'F1 off':>7} {'equal':>5}")
    for r in rows:
        if "error" in r:
            say(f"{r['n']:>8}  failed: {r['error']}")
            continue
        f_live, f_off = r.get("f1_live", math.nan), r.get("f1_offline", math.nan)
        eq = "n/a" if math.isnan(f_live) or math.isnan(f_off) else ("yes" if abs(f_live - f_off) < 5e-4 else "NO")
        say(f"{r['n']:>8} {r['peak_inside']:>7} {r['cart_events']:>7} {r['matched']:>5}  "
            f"{'/'.join(ms(v) for v in r['phone_db']):>24}  {'/'.join(ms(v) for v in r['phone_shelf']):>28}  "
            f"{'/'.join(ms(v) for v in r['receipt_ws']):>24}  {'/'.join(ms(v) for v in r['receipt_capture']):>20}  "
            f"{f_live:>7.3f} {f_off:>7.3f} {eq:>5}")
    for r in rows:
        if "error" in r:
            continue
        say(f"\n{r['n']} shoppers in {r.get('rooms', 1)} room(s): wall {r['wall_s']:.0f} s for {r['length_s']:.0f} s "
            f"of store time (load average 1/5/15 min at its end: "
            f"{'/'.join(f'{x:.1f}' for x in r.get('load', ())) or '?'})"
            f"{' (TIMED OUT)' if r['timed_out'] else ''}; visits {r['visits']} {r['states']}; review items "
            f"{r['reviews']}; visits held for review {r['under_review']} (not in exit→receipt); receipts seen on the phone {r['receipts_seen']} (exited without one: {r['no_receipt']});"
            f" cart events not seen on the phone {r['missing']}; seq gaps {r['seq_gaps']}; WebSocket messages "
            f"{r['ws_messages']}")
        say(f"  {'process':<12}{'CPU % core':>11}{'peak RSS MB':>13}")
        for k, v in r["cpu"].items():
            say(f"  {k:<12}{v * 100:>11.0f}{r['rss_peak'].get(k, 0) / 2**20:>13.0f}")
        for k, v in r["svc_cpu"].items():
            say(f"  {k + ' *':<12}{v * 100:>11.0f}{'-':>13}")
        series = r["series"]
        lag = {k: max([s.get(f"lag_{k}", 0) for s in series] or [0]) for k in ("shelf", "obs", "gate")}
        age = {k: pct([s[f"age_{k}"] for s in series if s.get("emulating") and f"age_{k}" in s] or [0], 95)
               for k in ("shelf", "obs")}
        say(f"  (* shared services, whole machine.) stream lag max {lag} records; newest record age p95 "
            f"{ {k: round(v, 2) for k, v in age.items()} } s; ingest queue max {r['ingest_backlog_max']}; "
            f"load average max {max([s.get('load1', 0) for s in series] or [0]):.1f}")
        def verdict(v: float, goal: float) -> str:
            return "not measured" if math.isnan(v) else ("met" if v < goal else "MISSED")

        say(f"  goals: event→phone p95 < {GOAL_PHONE_P95_S:g} s {verdict(r['phone_db'][1], GOAL_PHONE_P95_S)} "
            f"(from the shelf event's end: {verdict(r['phone_shelf'][1], GOAL_PHONE_P95_S)}); exit→receipt p95 < "
            f"{GOAL_RECEIPT_P95_S:g} s {verdict(r['receipt_ws'][1], GOAL_RECEIPT_P95_S)}")
        say(f"  saturation: {saturation(r)}")
        print_stages(r)


# ------------------------------------------------------------------------------------------- the hour phase
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

        with postgres_database() as url:
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
            feeder = procs.start("feeder", [sys.executable, __file__, "--_feed", str(args.hour_minutes),
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

    from carts import runtime
    from carts.offline.emulator import register
    from carts.offline.replay import demo_shopper_ensure
    from carts.offline.simulation import parties_from_gates
    from store.gates.services import GateRefusal, pass_issue, visit_enter, visit_exit_scan
    from store.layout.models import Store
    from store.recording import TrackObservations

    bus = runtime.bus()
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
            from carts.offline.steps import recording_steps

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
                bus.publish(STORE, "obs", runtime.obs_record(source="tracker:emulator", obs=obs,
                                                             t_last=step.t_next + off))
                records += 1
                for j, (codes, t, grams, rate) in enumerate(step.shelves):
                    bus.publish(STORE, "shelf", runtime.shelf_record(controller=f"emulator-{j}", bin_codes=codes,
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
    from carts.offline.simulation import SimConfig, load_store, simulate

    sim = simulate(load_store(DATA), SimConfig.at("default", shoppers=shoppers, minutes=minutes, seed=seed,
                                                  track_hz=TRACK_HZ))
    return {"t_start": sim.manifest["t_start"], "gates": sim.gates, "tracks": sim.tracks,
            "shelves": [s for s in sim.shelves]}


# --------------------------------------------------------------------------------------------- subprocesses
def prepare(rec_path: str, out: str) -> None:
    """Subprocess: create and log in every shopper account the emulator will scan (``carts.offline.emulator``'s
    ``account_for``), let the store hold everyone (capacity), and write {account: session cookie}."""
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    # throwaway bench accounts: a fast hasher (PBKDF2 costs ~0.3 s per account on a busy 2-core machine)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    from carts.offline.replay import DEMO_SHOPPER, PARTY_WITHIN_S, demo_shopper_ensure
    from carts.offline.simulation import parties_from_gates
    from store.layout.models import Store
    from store.recording import GATES, read_gates

    # the gate scans only: the whole recording is 650 MB of shelf samples at 50 shoppers (minutes to read)
    gates = read_gates(Path(rec_path) / GATES, [])
    Store.objects.filter(code=STORE).update(capacity=100_000)  # default 50 would refuse
    party_of = parties_from_gates(gates, within_s=PARTY_WITHIN_S)
    accounts: dict[str, str] = {}
    for g in sorted(gates, key=lambda g: g.t):  # the emulator's account_for, in its order
        if g.kind != "entry" or party_of.get(g.track, g.track) != g.track or g.track in accounts:
            continue
        used = set(accounts.values())
        accounts[g.track] = g.account or (DEMO_SHOPPER if DEMO_SHOPPER not in used else
                                          f"shopper+{g.track}@walkout.test")
    cookies = {}
    for email in dict.fromkeys(accounts.values()):
        user = demo_shopper_ensure(email)
        c = Client()
        c.force_login(user)
        cookies[email] = c.cookies[settings.SESSION_COOKIE_NAME].value
    Path(out).write_text(json.dumps(cookies))


def clients(sessions_file: str, port: str, out: str, max_s: str) -> None:
    """Subprocess: one WebSocket per account on ``/ws/shopper/`` (session cookie, Origin), every message written
    with its receive time as ``[t, account, message]`` lines to ``out``; stops on SIGTERM or after ``max_s``."""
    import asyncio

    import aiohttp

    sessions = json.loads(Path(sessions_file).read_text())
    url = f"ws://127.0.0.1:{port}/ws/shopper/"
    origin = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    stats = {"connected": 0, "reconnects": 0, "failed": 0}

    async def one(http, email: str, sid: str, fh, ready: asyncio.Event) -> None:
        tries = 0
        first = True
        while not stop.is_set() and tries < 20:
            tries += 1
            try:
                async with http.ws_connect(url, headers={"Cookie": f"sessionid={sid}", "Origin": origin},
                                           max_msg_size=0, autoclose=True, autoping=True) as ws:
                    if first:
                        stats["connected"] += 1
                        first = False
                        if stats["connected"] == len(sessions):
                            ready.set()
                    else:
                        stats["reconnects"] += 1
                    async for msg in ws:
                        t = time.time()
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            fh.write(json.dumps([t, email, json.loads(msg.data)]) + "\n")
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
            if not stop.is_set():
                await asyncio.sleep(0.2)
        if first:
            stats["failed"] += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        with open(out, "w", buffering=1 << 16) as fh:
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as http:
                tasks = []
                for email, sid in sessions.items():
                    tasks.append(asyncio.create_task(one(http, email, sid, fh, ready)))
                    await asyncio.sleep(0.01)  # a few hundred phones opening the app, not one burst
                try:
                    await asyncio.wait_for(ready.wait(), 90)
                except asyncio.TimeoutError:
                    pass
                print(f"connected {stats['connected']}/{len(sessions)} shopper WebSockets", flush=True)
                try:
                    await asyncio.wait_for(stop.wait(), float(max_s))
                except asyncio.TimeoutError:
                    pass
                stop.set()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        print(f"closed: {stats}", flush=True)

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,50,200", help="shoppers in the store at once, comma-separated")
    ap.add_argument("--minutes", type=float, default=2.5,
                    help="store minutes per session: arrivals spread over minutes − 80 s (default 2.5: 70 s)")
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
        args.sizes, args.minutes, args.events, args.timeout = "10", 1.8, 8.0, 240.0
        args.hour_minutes, args.hour_shoppers, args.hour_timeout = 10.0, 20, 240.0
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379), ("Mosquitto", 1883)):
        if not reachable(port):
            say(f"bench-live needs {name} on 127.0.0.1:{port}")
            return 2
    if not DATA.is_dir():
        say(f"bench-live needs {DATA}")
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
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
