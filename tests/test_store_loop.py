"""The store loop (carts.loop.StoreLoop) as the live store runs it: gate scans bound to the track that appeared at the
gate, exits seen from the tracks, memory bounded over a long session, and a loop restored from a checkpoint in the
middle of a session deciding exactly what an uninterrupted one does."""
from __future__ import annotations

import pickle

import pytest

from carts.evaluation import MemorySink, offline_replay, planogram_from_store
from carts.fusion import BinGeometry
from carts.loop import LoopConfig, StoreLoop, recording_steps
from carts.simulation import SimConfig, load_store, simulate
from conftest import shared_file


@pytest.fixture(scope="module")
def store():
    return load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])


@pytest.fixture(scope="module")
def sim(store):
    return simulate(store, SimConfig.at("default", shoppers=8, minutes=4.0, seed=77))


def live_loop(sim, sink, **config) -> StoreLoop:
    return StoreLoop(planogram=planogram_from_store(sim.store), bins=BinGeometry.from_store(sim.store), sink=sink,
                     config=LoopConfig(infer_exits=True, **config))


def play_live(sim, loop, steps, *, visit_of_track):
    """Feed ``steps`` as the live store gets them: scans name visits, never tracks; nobody reports exits."""
    for step in steps:
        for g in step.gates:
            if g.kind == "entry":
                loop.on_gate_entry(visit=visit_of_track[g.track], t=g.t)
        loop.on_observations(step.tracks)
        for codes, t, grams, rate in step.shelves:
            loop.on_samples(bin_codes=codes, t=t, grams=grams, rate_hz=rate)
        loop.advance(step.t_next)


def test_scans_bind_the_track_at_the_gate_and_exits_are_seen(sim):
    entries = [g for g in sim.gates if g.kind == "entry"]
    visit_of_track = {g.track: 1000 + i for i, g in enumerate(entries)}
    sink = MemorySink([])
    loop = live_loop(sim, sink)
    play_live(sim, loop, recording_steps(sim, step_s=0.2), visit_of_track=visit_of_track)
    for _ in range(40):  # the devices go on after the recording: time passes, nothing new is seen
        loop.advance(loop.now + 0.5)
    # every scan found its own shopper's track (the simulator's tracks are named after the shoppers)
    assert {v: t for t, v in sink.bound.items()} == {v: t for t, v in visit_of_track.items()}
    # every shopper was seen leaving, within a second of the true exit, and billed
    exits = {g.track: g.t for g in sim.gates if g.kind == "exit"}
    assert set(sink.exited) == set(exits)
    assert all(abs(sink.exited[t] - exits[t]) < 1.0 for t in exits)
    assert set(sink.checkouts) == set(exits)
    # and the carts are those of the recording's own gate file (the replay's way)
    offline = offline_replay(sim)
    assert {t: {c: q for c, q in cart.items() if q} for t, cart in sink.carts.items()} == \
        {t: {c: q for c, q in cart.items() if q} for t, cart in offline.billed.items()}


def test_a_scan_with_nobody_at_the_gate_is_reported_unbound(sim):
    sink = MemorySink([])
    loop = live_loop(sim, sink)
    loop.on_gate_entry(visit=1, t=sim.gates[0].t - 100.0)  # nobody appears around this scan
    play_live(sim, loop, list(recording_steps(sim, step_s=0.5))[:40], visit_of_track={
        g.track: 2000 + i for i, g in enumerate(sim.gates)})
    assert any(kind == "unbound" and "no shopper track appeared" in msg for kind, msg in sink.alerts)
    assert 1 not in sink.bound.values()


def test_memory_stays_bounded_and_visits_are_forgotten(store):
    sim = simulate(store, SimConfig.at("default", shoppers=30, minutes=12.0, seed=78))
    entries = [g for g in sim.gates if g.kind == "entry"]
    sink = MemorySink([])
    loop = live_loop(sim, sink)
    peak = 0
    spans = []
    visit_of_track = {g.track: i for i, g in enumerate(entries)}
    for step in recording_steps(sim, step_s=0.5):
        play_live(sim, loop, [step], visit_of_track=visit_of_track)
        if len(loop.hands):
            spans.append(loop.now - loop.hands.t_min)
        peak = max(peak, len(loop.hands))
    for _ in range(400):
        loop.advance(loop.now + 1.0)
    # the hand window never reaches further back than the oldest undecided event needs (lookback + hold + pad)
    assert max(spans) < LoopConfig.lookback_s + LoopConfig.hold_max_s + 30
    assert len(sim.tracks.hands()) > 3 * peak  # the session holds far more than the loop ever kept
    assert loop.stats.late_evidence == 0
    # 120 s after the last exit nothing of the visits is left in the loop
    assert not loop.entries and not loop.visit_of and not loop.exits
    assert len(sink.checkouts) == len(entries)


def test_a_loop_restored_from_a_checkpoint_decides_what_an_uninterrupted_one_does(sim):
    entries = [g for g in sim.gates if g.kind == "entry"]
    visit_of_track = {g.track: 1000 + i for i, g in enumerate(entries)}
    steps = list(recording_steps(sim, step_s=0.2))
    whole = MemorySink([])
    loop = live_loop(sim, whole)
    play_live(sim, loop, steps, visit_of_track=visit_of_track)
    loop.finish()

    first = MemorySink([])
    loop = live_loop(sim, first)
    cut = len(steps) // 2
    play_live(sim, loop, steps[:cut], visit_of_track=visit_of_track)
    data = loop.snapshot()
    assert len(data) < 50_000_000
    # the worker dies here; a new one restores the checkpoint (its sink is the same store, so it continues it)
    restored = StoreLoop.restore(data, sink=first, planogram=planogram_from_store(sim.store),
                                 bins=BinGeometry.from_store(sim.store))
    play_live(sim, restored, steps[cut:], visit_of_track=visit_of_track)
    restored.finish()
    assert first.rows == whole.rows
    assert first.carts == whole.carts
    with pytest.raises(Exception):
        StoreLoop.restore(b"not a checkpoint", sink=first, planogram=restored.planogram, bins=restored.bins)
    assert pickle.loads(data)["now"] == steps[cut - 1].t_next
