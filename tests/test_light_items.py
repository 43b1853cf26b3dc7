"""Light items the detector cannot see: the reach-triggered look at the plates' levels (``carts.reach_look``).

Synthetic plates (the simulator's noise model before issue #18's change 9, harder than real plates: white noise and a
0.5 s AR(1) wander) with a hand reaching in,
and a generated case from a default tuning seed of ``bench/bench_accuracy.py`` (never its reporting seeds)."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.signal import lfilter

from carts.fusion import decide_event
from carts.fusion_config import BinGeometry, FusionConfig
from carts.loop import StoreLoop
from carts.loop_config import LoopConfig
from carts.offline.evaluation import MemorySink, offline_replay
from carts.offline.simulation import simulate
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store
from carts.reach_look import ReachLook, ReachLookConfig
from sensors import weight
from store.recording import GateScan, ShelfSamples, TrackObservations

CODES = ("1-1-1", "1-1-2", "1-1-3")
RATE = 60.0


def planogram() -> weight.Planogram:
    products = weight.ProductWeights(np.array(["P30"], dtype=object), np.array([30.0]), np.array([0.5]))
    return weight.Planogram(CODES, {c: ("P30",) for c in CODES}, products,
                            {"1-1-1": ("1-1-2",), "1-1-2": ("1-1-1", "1-1-3"), "1-1-3": ("1-1-2",)})


def geometry() -> BinGeometry:
    """Three plates side by side along x, fronts at y = 0, 0.9 m up; shoppers stand at y < 0."""
    return BinGeometry(CODES, np.array([[0.1016 * i, 0.2032, 0.9] for i in range(3)]),
                       np.tile([0.0508, 0.2032], (3, 1)), np.zeros(3))


def plates(seconds: float, sd: float, seed: int, steps: list[tuple[float, str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(t (n,), grams (n, 3)): 60 Hz levels with white noise and a 0.5 s AR(1) wander (each sd/√2, as
    ``carts.offline.simulation``), plus ``steps`` (t, bin, grams) as 0.12 s ramps."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = 1.7e9 + np.arange(n) / RATE
    a = math.exp(-1.0 / (0.5 * RATE))
    x = rng.normal(size=(n, 3)) * sd / math.sqrt(2)
    x += lfilter([math.sqrt(1 - a * a)], [1, -a], rng.normal(size=(n, 3)), axis=0) * sd / math.sqrt(2)
    x += np.array([900.0, 1200.0, 700.0])
    for ts, code, g in steps:
        x[:, CODES.index(code)] += g * np.clip((t - (t[0] + ts)) / 0.12, 0, 1)
    return t, np.round(x / 0.24) * 0.24


def hand(t0: float, reaches: list[tuple[float, float, float]]) -> TrackObservations:
    """Track "7"'s right wrist at 10 Hz: resting 0.45 m in front of the shelf, reaching to x at ``(start, end, x)``
    (seconds from ``t0``, metres) 0.1 m in front of the plates."""
    ts = t0 + np.arange(0, 70, 0.1)
    xyz = np.tile([0.1, -0.5, 0.85], (ts.size, 1))
    for s, e, x in reaches:
        m = (ts >= t0 + s) & (ts <= t0 + e)
        xyz[m] = [x, -0.1, 0.95]
    n = ts.size
    return TrackObservations(np.full(n, "7", dtype=object), ts, np.full(n, "r_wrist", dtype=object), xyz,
                             np.full(n, 0.9))


def run(t: np.ndarray, grams: np.ndarray, hands: TrackObservations, holdings=None) -> tuple[list, list]:
    """Feed the look and a detector as the store loop does; (the look's events, the detector's shelf events)."""
    look = ReachLook(planogram(), geometry())
    det = weight.WeightEventDetector(3, RATE)
    changes, events = [], []
    for k in range(0, t.size, 12):
        look.on_samples(CODES, t[k:k + 12], grams[k:k + 12])
        changes.append(det.push(t[k:k + 12], grams[k:k + 12]))
        now = float(t[min(k + 12, t.size - 1)])
        look.on_hands(hands[(hands.t > now - 0.2) & (hands.t <= now)])
        events += look.scan(now, settled=lambda c: det.settled_until(),
                            holdings=lambda tracks: holdings or {})
    changes.append(det.flush())
    detected = weight.shelf_events_from_changes(weight.WeightChanges.concat(changes), planogram())
    return events, detected


def test_a_light_item_across_two_noisy_plates_is_found_after_the_reach():
    # a 30 g item standing half on each of two plates with 5 g of noise: each 15 g share is below the detector's
    # gate (max(10 g, 5 σ) ≈ 21 g, weak 3 σ ≈ 13 g: a weak share alone is dropped), so no shelf event exists
    t, grams = plates(60, 5.0, seed=3, steps=[(40.5, "1-1-2", -15.0), (40.5, "1-1-3", -15.0)])
    events, detected = run(t, grams, hand(t[0], [(40.0, 41.2, 0.1016 * 1.5)]))
    assert not detected, detected
    assert len(events) == 1, events
    e = events[0]
    assert set(e.bin_codes) == {"1-1-2", "1-1-3"} and e.weak and -40 < e.delta_g < -20
    assert e.best is not None and (e.best.barcode, e.best.quantity) == ("P30", 1)
    assert e.t_start <= t[0] + 40.5 <= e.t_end


def test_a_put_back_of_a_held_item_that_does_not_face_the_plate_is_found_misplaced():
    products = weight.ProductWeights(np.array(["P30", "Q40"], dtype=object), np.array([30.0, 40.0]),
                                     np.array([0.5, 0.5]))
    t, grams = plates(60, 5.0, seed=4, steps=[(40.5, "1-1-2", 40.0)])
    look = ReachLook(replace(planogram(), products=products), geometry())
    hands = hand(t[0], [(40.0, 41.2, 0.1016)])
    out = []
    for k in range(0, t.size, 12):
        look.on_samples(CODES, t[k:k + 12], grams[k:k + 12])
        now = float(t[min(k + 12, t.size - 1)])
        look.on_hands(hands[(hands.t > now - 0.2) & (hands.t <= now)])
        out += look.scan(now, settled=lambda c: math.inf,
                         holdings=lambda tracks: {"7": {"Q40": 1}})
    assert len(out) == 1 and out[0].delta_g > 0 and out[0].misplaced, out


@pytest.mark.parametrize("seed", range(6))
def test_reaches_that_took_nothing_make_no_event(seed):
    # ten reaches into noisy plates (8 g: the simulator's 90th percentile) that took nothing
    t, grams = plates(70, 8.0, seed=100 + seed, steps=[])
    events, _ = run(t, grams, hand(t[0], [(12.0 + 5 * k, 13.0 + 5 * k, 0.1016 * (k % 3)) for k in range(10)]))
    assert events == []


def test_a_reach_over_a_change_the_detector_found_is_left_to_the_detector():
    t, grams = plates(60, 1.0, seed=5, steps=[(40.5, "1-1-2", -30.0)])
    look = ReachLook(planogram(), geometry())
    det = weight.WeightEventDetector(3, RATE)
    hands = hand(t[0], [(40.0, 41.2, 0.1016)])
    out, stored = [], []
    for k in range(0, t.size, 12):
        look.on_samples(CODES, t[k:k + 12], grams[k:k + 12])
        for e in weight.shelf_events_from_changes(det.push(t[k:k + 12], grams[k:k + 12]), planogram()):
            look.on_event(e)
            stored.append(e)
        now = float(t[min(k + 12, t.size - 1)])
        look.on_hands(hands[(hands.t > now - 0.2) & (hands.t <= now)])
        out += look.scan(now, settled=lambda c: det.settled_until(),
                         holdings=lambda tracks: {})
    assert len(stored) == 1 and out == [] and look.stats.blocked == 1


def test_config_is_checked():
    with pytest.raises(ValueError):
        ReachLookConfig(gate_k=0)
    with pytest.raises(ValueError):
        ReachLookConfig(nothing_prior=1.0)


# ------------------------------------------------------------------------------------ a generated case
@pytest.fixture(scope="module")
def session():
    from conftest import shared_file

    store = load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])
    # the case was found on the simulator's plates as they were before issue #18's change 9 (half the noise variance
    # a slow wander, more than real plates show); on the measured plates the detector sees this take by itself,
    # and the look is kept for plates that noisy; and before gates admitted one shopper per turnstile cycle
    return simulate(store, SimConfig.at("default", shoppers=58, seed=3100, minutes=2.0 + 58 * 0.25,
                                        wander_share=0.5, gate_cycle_s=0.0))


def window(sim, t0: float, t1: float):
    """The session cut to ``[t0, t1]`` (s UTC): every plate, every track, entries of the tracks inside."""
    shelves = [ShelfSamples(t=b.t[(b.t >= t0) & (b.t <= t1)], bin_codes=b.bin_codes,
                            grams=b.grams[(b.t >= t0) & (b.t <= t1)]) for b in sim.shelves]
    tracks = sim.tracks[(sim.tracks.t >= t0) & (sim.tracks.t <= t1)]
    inside = {g.track for g in sim.gates if g.kind == "entry" and g.t <= t1} - {
        g.track for g in sim.gates if g.kind == "exit" and g.t < t0}
    gates = [GateScan(t=t0, track=tr, kind="entry", account=f"{tr}@walkout.test", source="scanned")
             for tr in sorted(inside)]
    return SimpleNamespace(store=sim.store, shelves=shelves, tracks=tracks, gates=gates, t_start=t0, t_end=t1)


@pytest.mark.parametrize("look", [False, True])
def test_a_30_g_take_across_two_noisy_plates_is_charged_to_the_reaching_shopper(session, look):
    # default tuning seed 3100: 1042 takes a 30 g 028400040037 standing across plates 4-3-3 and 4-3-4 (level
    # noise 6–9 g) at 673.0 s; the shares (−13 g, −17 g) pass no gate of the detector and the take was never
    # charged. With the look (default config) it is charged to 1042; without it (look=False) it is not
    sim = session
    t = sim.manifest["t_start"] + 673.0
    rec = window(sim, t - 45.0, t + 12.0)
    cfg = LoopConfig() if look else LoopConfig(reach_look=ReachLookConfig(enabled=False))
    res = offline_replay(rec, loop_config=cfg)
    near = [e for e in res.events if {"4-3-3", "4-3-4"} & set(e.bin_codes) and abs(e.t_start - t) < 3]
    taken = res.billed.get("1042", {}).get("028400040037", 0)
    if not look:
        assert near == [] and taken == 0, (near, taken)  # the failure before: no event, nothing charged
        return
    assert len(near) == 1 and near[0].weak
    assert taken == 1, res.billed.get("1042")
    # nobody else was charged a unit of it in the window, and the detector's own events are the same as without
    off = offline_replay(rec, loop_config=LoopConfig(reach_look=ReachLookConfig(enabled=False)))
    assert sorted((e.bin_codes, e.t_start) for e in off.events) == sorted(
        (e.bin_codes, e.t_start) for e in res.events if e not in near)
    others = {tr: c for tr, c in res.billed.items() if tr != "1042" and c != off.billed.get(tr, {})}
    assert others == {}, others


def test_a_change_far_from_every_unit_makes_no_event_and_no_error():
    # a 300 g loss where only a 30 g product faces fits no unit (a blind detector's matter), and where "nothing"
    # and the unit both fit so badly that their likelihoods underflow, the odds are still read
    look = ReachLook(planogram(), geometry())
    assert look._unit(("1-1-2",), -300.0, 1.0, set()) is None
    assert look._unit(("1-1-2",), -3000.0, 1.0, set()) is None
    barcode, post, odds = look._unit(("1-1-2",), -29.0, 1.0, set())
    assert barcode == "P30" and post > 0.99 and math.isfinite(odds)


# ------------------------------------------------------------------------------------ billing and the look
def _track(name: str, t0: float, t1: float, neck, hands, *, swap: tuple[float, float, str] | None = None
           ) -> TrackObservations:
    """Track ``name`` at 10 Hz over ``[t0, t1]`` (s): its neck at ``neck(t)`` (x, y) 1.5 m up and its right wrist at
    ``hands(t)`` (x, y, z) (m); ``swap`` = (from, to, partner): the tracker gives it the partner's place then."""
    ts = np.round(np.arange(t0, t1 + 1e-9, 0.1), 6)
    rows = []
    for t in ts:
        x, y = neck(t)
        rows.append((name, t, "neck", (x, y, 1.5)))
        rows.append((name, t, "r_wrist", hands(t)))
    n = len(rows)
    return TrackObservations(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows]),
                             np.array([r[2] for r in rows], dtype=object), np.array([r[3] for r in rows]),
                             np.full(n, 0.9))


def test_billing_waits_for_a_look_only_where_its_event_could_name_the_party():
    """Another shopper ("7") reaches into the plates from 30 to 33 s; the look at them is made ~2 s after the hand
    leaves (35 s), after the deadline (exit + 3 s) of three parties that left meanwhile: "body" stood 1.2 m from the
    plates (within hidden-hands reach of its body) with its hands 1.35 m away, "far" switched ids with "far2"
    10 m away during the reach's hand window, "near" stood beside the reach with its hand 0.7 m from the plates,
    and "own" reached in itself at 30–31 s. The look's event is decided on seen hands within ``weak_reach_m``
    (fusion reads no hidden hands for a weak event, no hand farther than that, and an id switch only relabels a
    hand near the bins), so "body", "far" and "near" are billed at their settle time, while "own" waits for the
    look. Before, "body" and "far" waited for it (~1.5 s) too, and before ``weak_reach_m`` "near" did."""
    t, grams = plates(45, 1.0, seed=8, steps=[])
    t0 = float(t[0])
    at = lambda s: t0 + s  # noqa: E731
    rest = lambda x, y: (lambda s: (x, y, 0.85))  # noqa: E731
    x_mid = 0.1016
    tracks = [
        # "7": reaching into the middle plate from 30 to 33 s (0.1 m in front of it), else 0.5 m away
        _track("7", at(20), at(40), lambda s: (x_mid, -0.45),
               lambda s: (x_mid, -0.1, 0.95) if at(30.8) <= s <= at(33) else (x_mid, -0.5, 0.85)),
        # "own": its hand in the same reach at 30–31 s, gone at 31 s (deadline 34 s, the look at ~35 s)
        _track("own", at(20), at(31), lambda s: (x_mid + 0.3, -0.45),
               lambda s: (x_mid + 0.05, -0.1, 0.95) if at(30) <= s <= at(31) else (x_mid + 0.3, -0.5, 0.85)),
        # "body": standing 1.2 m from the plates' front, its hands 1.35 m away, gone at 28.5 s (deadline 31.5 s)
        _track("body", at(20), at(28.5), lambda s: (-0.2, -1.2), rest(-0.2, -1.35)),
        # "far" and "far2", 10 m away, 0.5 m apart: the tracker exchanges their ids from 28.5 to 30 s; "far" gone at
        # 31 s (deadline 34 s)
        _track("far", at(20), at(31), lambda s: (10.5, -1.0) if at(28.5) <= s < at(30) else (10.0, -1.0),
               lambda s: (10.5, -1.2, 0.9) if at(28.5) <= s < at(30) else (10.0, -1.2, 0.9)),
        _track("far2", at(20), at(40), lambda s: (10.0, -1.0) if at(28.5) <= s < at(30) else (10.5, -1.0),
               lambda s: (10.0, -1.2, 0.9) if at(28.5) <= s < at(30) else (10.5, -1.2, 0.9)),
        # "near": beside the reach, its hand 0.7 m in front of the plates (within 2 · reach_m, beyond weak_reach_m),
        # gone at 31 s (deadline 34 s)
        _track("near", at(20), at(31), lambda s: (x_mid + 0.3, -0.9), rest(x_mid + 0.3, -0.7)),
    ]
    obs = TrackObservations(*(np.concatenate([getattr(o, f) for o in tracks])
                              for f in ("track_id", "t", "keypoint", "xyz", "score")))
    obs = obs[np.argsort(obs.t, kind="stable")]
    names = ["7", "own", "body", "far", "far2", "near"]
    sink = MemorySink(names)
    loop = StoreLoop(planogram=planogram(), bins=geometry(), sink=sink)
    for name in names:
        loop.on_entry(track=name, t=at(20))
    exits = {"own": at(31), "body": at(28.5), "far": at(31), "near": at(31)}
    step = 0.2
    for k in range(int(44 / step)):
        lo, hi = at(k * step), at((k + 1) * step)
        m = (t >= lo) & (t < hi)
        loop.on_samples(bin_codes=CODES, t=t[m], grams=grams[m], rate_hz=RATE)
        loop.on_observations(obs[(obs.t >= lo) & (obs.t < hi)])
        for name, te in exits.items():
            if lo <= te < hi:
                loop.on_exit(track=name, t=te)
        loop.advance(hi)
    timings = {w.track: w for w in loop.bill_timings}
    assert set(timings) == set(exits), timings
    cfg = FusionConfig()
    near_hand = obs[(obs.track_id == "near") & (obs.keypoint == "r_wrist")].xyz[:1]
    d_near = float(geometry().distance(near_hand, "1-1-2", cfg.clearance_m, cfg.sigma_m / cfg.along_sigma_m)[0])
    assert cfg.weak_reach_m < d_near < 2 * cfg.reach_m, d_near  # a candidate of a full event, not of a weak one
    for name in ("body", "far", "near"):
        w = timings[name]
        assert w.waited == {} and w.now - w.deadline <= step + 1e-6, w  # billed at its settle time
    own = timings["own"]
    assert own.waited.get("reach", 0) >= 0.6 and own.now >= at(35), own  # its own hand made the reach
    # the rule holds because fusion names a weak event's seen hands only: the look's event, had it found a unit,
    # would not name "body" (hidden hands would: a body 1.2 m from the plates, no hand seen during the change)
    event = weight.ShelfEvent(("1-1-2",), at(30.8), at(33), -30.0, 1.0,
                              tuple(weight.explain_change(-30.0, 1.0, planogram().products.select(["P30"]),
                                                          max_quantity=1)), weak=True)
    hands, bodies = obs.hands(), obs[obs.keypoint == "neck"]
    named = {c.track_id for c in decide_event(event, hands, geometry(), planogram(), carts={}, bodies=bodies,
                                              eligible=names).candidates}
    assert "7" in named and not {"body", "far", "near"} & named, named
