"""The sessions of ``bench/bench_live.py``: simulate and write one (reused when written before), prepare the
shoppers' accounts and session cookies for the WebSocket clients (a subprocess), and the offline F1 of the same
recording to compare the live store's with."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from live_stack import ROOT, STORE

from carts.offline.simulation import simulate, write_simulation
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store
from carts.offline.evaluation import evaluate_session, offline_replay
from carts.offline.simulation_truth import read_truth_events, parties_from_gates
from store.recording import read_recording, GATES, read_gates

DATA = Path(os.environ.get("WALKOUT_SHARED", ROOT.parent / "shared")) / "datasets" / "autocheckout"
TRACK_HZ = 15.0


def simulate_session(n: int, minutes: float, events: float, seed: int, out: Path, rooms: int = 1,
                     shelves: str = "npy") -> dict:
    """Simulate and write the session of ``n`` shoppers in a store of ``rooms`` NanoStore rooms; returns what it
    is (peak occupancy, visit lengths). A session written before with the same arguments (``--keep`` DIR run
    again) is reused: the simulation is deterministic, and takes minutes at 50 shoppers on a busy machine.
    ``shelves``: the form of its shelf samples (``store.recording.SHELF_FORMS``; ``npy``, the binary folder, is read
    by the emulator and the offline run at once, where ``csv`` takes minutes at 50 shoppers)."""
    import numpy as np

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


def prepare(rec_path: str, out: str) -> None:
    """Subprocess: create and log in every shopper account the emulator will scan (``carts.offline.emulator``'s
    ``account_for``), let the store hold everyone (capacity), and write {account: session cookie}."""
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    # throwaway bench accounts: a fast hasher (PBKDF2 costs ~0.3 s per account on a busy 2-core machine)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    # lazy: these import Django models, so they load after django.setup() above
    from carts.offline.replay import PARTY_WITHIN_S
    from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure
    from store.layout.models import Store

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
