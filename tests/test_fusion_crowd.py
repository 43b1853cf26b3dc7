"""Who took it in a crowd: generated cases from the simulator (tuning seeds of ``bench/bench_accuracy.py``, never
its reporting seeds) where fusion gave a take to the wrong shopper silently, each decided alone as the store loop
decides it (the event detected from the session's own plate samples, the hands and bodies of the tracks inside)."""
from __future__ import annotations

import numpy as np
import pytest

from carts.offline.evaluation import planogram_from_store
from carts.fusion import decide_event
from carts.fusion_config import BinGeometry
from carts.loop import pending_holdings, pending_picks
from carts.loop_shelves import controller_planogram
from carts.offline.simulation import simulate
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store
from conftest import shared_file
from sensors import weight

CROWDED_MINUTES_PER_SHOPPER = (30 * 60 - 80) / 200 / 60  # bench_accuracy's crowded level: 200 shoppers in 30 min
#: the cases were found in sessions simulated before gates admitted one shopper per turnstile cycle (a shopper
#: arriving within 1.5 s of another at one gate now waits, and the session differs from then on): kept as they were
AS_FOUND = {"gate_cycle_s": 0.0}


@pytest.fixture(scope="module")
def store():
    return load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])


_SIMS: dict = {}


def crowded(store, seed, shoppers=58):
    key = (seed, shoppers)
    if key not in _SIMS:
        _SIMS[key] = simulate(store, SimConfig.at("default", shoppers=shoppers, seed=seed,
                                                  minutes=80 / 60 + shoppers * CROWDED_MINUTES_PER_SHOPPER, **AS_FOUND))
    return _SIMS[key]


def detect_truth_event(sim, track: str, t_rel: float):
    """The true event of ``track`` nearest ``t_rel`` (s from the session start), detected from the plate samples of
    its controller (20 s before to 8 s after). Returns (shelf event, the truth event's index)."""
    te, t0 = sim.events, sim.manifest["t_start"]
    i = min((k for k in range(len(te)) if te.track[k] == track), key=lambda k: abs(te.t[k] - t0 - t_rel))
    t = float(te.t[i])
    block = next(b for b in sim.shelves if te.bins[i][0] in b.bin_codes)
    m = (block.t >= t - 20) & (block.t <= t + 8)
    planogram = planogram_from_store(sim.store)
    changes = weight.detect_weight_changes(block.t[m], block.grams[m], block.rate_hz)
    events = weight.shelf_events_from_changes(changes, controller_planogram(planogram, block.bin_codes))
    event = min((e for e in events if set(te.bins[i]) & set(e.bin_codes)),
                key=lambda e: abs(0.5 * (e.t_start + e.t_end) - t))
    return event, i


def decide_truth_event(sim, track: str, t_rel: float, *, unknown: tuple[int, ...] = (), **kw):
    """The true event of ``track`` nearest ``t_rel`` (:func:`detect_truth_event`) decided by ``decide_event`` with
    the session's hands and bodies, the tracks inside then as the eligible ones and their true holdings as carts
    (less the truth events ``unknown``: picks the store did not put in a cart). Returns (decision, the truth
    event's index)."""
    te = sim.events
    event, i = detect_truth_event(sim, track, t_rel)
    t = float(te.t[i])
    inside = {g.track for g in sim.gates if g.kind == "entry" and g.t <= t} - {
        g.track for g in sim.gates if g.kind == "exit" and g.t < event.t_start - 3.0}
    carts: dict[str, dict[str, int]] = {x: {} for x in inside}
    for k in range(len(te)):
        if te.t[k] < event.t_start and te.track[k] in carts and k not in unknown:
            for code, q in te.lines[k]:
                carts[te.track[k]][code] = carts[te.track[k]].get(code, 0) + q
    bodies = sim.tracks[np.isin(sim.tracks.keypoint, ("neck", "head"))]
    d = decide_event(event, sim.tracks.hands(), BinGeometry.from_store(sim.store), planogram_from_store(sim.store),
                     carts=carts, eligible=sorted(inside), bodies=bodies, **kw)
    return d, i


def truth_strays(sim, before: float) -> dict[str, dict[str, int]]:
    """Items lying on bins that do not face them at ``before`` (s UTC), from the truth events: misplaced put-backs
    (on each of their bins, as the store loop keeps them) less the picks of those items there since."""
    facings: dict[str, set[str]] = {}
    for f in sim.store["facings"]:
        facings.setdefault(f["bin"], set()).add(f["barcode"])
    te, out = sim.events, {}
    for k in np.argsort(te.t):
        if te.t[k] >= before:
            break
        for code, q in te.lines[k]:
            if any(code in facings.get(c, ()) for c in te.bins[k]):
                continue
            for c in te.bins[k]:
                here = out.setdefault(c, {})
                here[code] = max(0, here.get(code, 0) - q)
    return {c: {b: q for b, q in v.items() if q} for c, v in out.items() if any(v.values())}


def test_a_take_during_an_id_switch_whose_end_was_not_seen_is_not_given_to_the_neighbour(store):
    # crowded seed 3300: 1046 and 1048 switch ids at 350.9 s for 1.1 s and switch back while standing 0.15 m
    # apart, which the body positions cannot show; the repair kept the swap for max_swap_s (to 355.9 s), so
    # 1048's take at 354.7 s was charged to 1046 with confidence 0.985
    sim = crowded(store, 3300)
    d, i = decide_truth_event(sim, "1048", 354.7)
    assert d.changes, d.reason
    assert d.review or {t for t, _, _ in d.changes} == {"1048"}, d.reason


def test_a_shopper_whose_hands_were_hidden_while_the_weight_moved_still_counts(store):
    # crowded seed 3300: 1049 (reaching across) and 1046 each take one 853923002220 from plates 5-1-2/5-1-3 within
    # 0.2 s; their changes merge into one event of two units. 1046's whole track is occluded from 371.9 to 374.2 s:
    # with no hand of 1046 in sight, fusion charged both units to 1049 (confidence 0.957)
    sim = crowded(store, 3300)
    d, i = decide_truth_event(sim, "1046", 372.9)
    assert d.review or ("1046", "853923002220", 1) in d.changes, (d.changes, d.reason)
    assert any(c.track_id == "1046" for c in d.candidates)


def test_two_takes_side_by_side_are_decided_together_and_one_reach_is_not_counted_for_both(store):
    # crowded seed 3300: 1037 reaches across to plate 3-5-4 (a 108 g take at 293.5 s) while 1036, hidden by the
    # crowd until 294.6 s, takes a 178 g item from the neighbouring plate 3-5-3. The two changes overlap in time;
    # the shelf grouping split them into two events, each decided alone, and 1037's one reach (0.06 m from 3-5-4,
    # 0.10 m from 3-5-3) won both: 1036's take was charged to 1037 with confidence 0.953
    sim = crowded(store, 3300)
    d, i = decide_truth_event(sim, "1036", 294.04)
    assert d.review or ("1036", "041419420058", 1) in d.changes, (d.changes, d.reason)
    assert ("1037", "041419420058", 1) not in d.changes, d.reason
    assert any(c.track_id == "1036" for c in d.candidates)


@pytest.mark.parametrize("seed, track, t_rel, stray, bin_code", [
    # default tuning seed 3101: 1012 put a 112 g 016000126060 back on plate 3-1-8 (facing 888109010119, 108 g) at
    # 276.0 s; 1027 picked it up at 429.5 s and was charged a 888109010119 (confidence 0.976)
    (3101, "1027", 429.51, "016000126060", "3-1-8"),
    # default tuning seed 3105: a 548 g 898999010007 lay misplaced on plate 3-5-2 (facing 041419420058, 183 g);
    # 1032 picked it up at 545.5 s and was charged three 041419420058 (confidence 0.865)
    (3105, "1032", 545.48, "898999010007", "3-5-2"),
])
def test_a_misplaced_item_picked_up_again_is_not_read_as_the_facing_product(store, seed, track, t_rel, stray,
                                                                            bin_code):
    sim = simulate(store, SimConfig.at("default", shoppers=58, seed=seed, minutes=2.0 + 58 * 0.25, **AS_FOUND))
    t = sim.manifest["t_start"] + t_rel
    strays = truth_strays(sim, t - 2.0)
    assert strays.get(bin_code, {}).get(stray), strays.get(bin_code)
    d, i = decide_truth_event(sim, track, t_rel, strays=strays)
    assert d.review or d.changes == ((track, stray, 1),), (d.changes, d.reason)


def test_a_hand_reaching_into_the_shelf_above_is_not_over_the_plate_below(store):
    # default tuning seed 3104: 1001 takes an 835143013156 from plates 5-3-4/5-3-5 at 38.6 s while 1002, beside
    # it, reaches into 5-4-6 on the shelf above (its own take at 39.0 s). Shelves stand 0.22–0.3 m apart, under
    # fusion's 0.35 m clearance: 1002's hand counted as 0.06 m from the plates below and won the take (0.601)
    sim = simulate(store, SimConfig.at("default", shoppers=58, seed=3104, minutes=2.0 + 58 * 0.25, **AS_FOUND))
    d, i = decide_truth_event(sim, "1001", 38.6)
    assert d.review or d.changes == (("1001", "835143013156", 1),), (d.changes, d.reason)


def test_a_neighbour_whose_hand_came_after_the_weight_began_to_move_did_not_take_it(store):
    # crowded tuning seed 3305: 1043 reaches across to plate 3-4-7 and takes a 024100204113 at 386.5 s (hand
    # there from 386.3 to 386.8 s, 0.12–0.2 m out); 1037, beside it, puts an item back on 3-4-6 next to it at
    # 387.2 s, its hand in the bin from 386.8 s on. The 0.8 s change's core read 1037's later hand as the nearer
    # for a good part of it, and the take went to 1037 (0.601)
    sim = crowded(store, 3305)
    d, i = decide_truth_event(sim, "1043", 386.5)
    assert d.review or d.changes == (("1043", "024100204113", 1),), (d.changes, d.reason)


def test_the_volume_over_a_plate_ends_at_the_plate_above():
    # two plates, one 0.25 m above the other: a hand 0.3 m over the lower plate is inside the upper one's volume,
    # 0.05 m above the lower plate's (0.35 m clearance capped at 0.25 m); the top plate keeps its whole clearance
    bins = BinGeometry(("low", "high"), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.25]]),
                       np.array([[0.05, 0.2], [0.05, 0.2]]), np.zeros(2))
    assert bins.headroom.tolist() == [0.25, np.inf]
    hand = np.array([[0.0, 0.0, 1.30]])
    assert bins.distance(hand, "low", 0.35)[0] == pytest.approx(0.05)
    assert bins.distance(hand, "high", 0.35)[0] == 0.0
    assert bins.distance(np.array([[0.0, 0.0, 1.62]]), "high", 0.35)[0] == pytest.approx(0.02)


def test_a_put_back_of_an_item_whose_pick_is_in_review_waits_for_it(store):
    # crowded tuning seed 3301: 1050 takes a 012000181153 from plates 4-1-5/4-1-6 at 401.3 s; the change merged
    # with the plate beside into a 635 g loss that fits nothing, and went to review with only poor options (none
    # of them 012000181153). At 405.5 s 1050 puts it back on 4-1-5 (a 0.98 fit of the facing product), but no
    # cart held it, and the put-back was read as the 120850 1050 held (fit 0.14 × misplaced) at 0.824
    sim = crowded(store, 3301)
    pick, k = decide_truth_event(sim, "1050", 401.3)
    assert pick.review, pick.reason
    assert "012000181153" not in {b for _, b, _ in pending_picks(pick)}  # the review's options alone
    event, _ = detect_truth_event(sim, "1050", 401.3)
    pending = pending_holdings({"review": pending_picks(pick, event, planogram_from_store(sim.store))}, ["1050"])
    d, i = decide_truth_event(sim, "1050", 405.5, unknown=(k,), pending=pending)
    assert sim.events.lines[i] == (("012000181153", -1),)
    assert d.review or (d.awaits_review and d.changes == (("1050", "012000181153", -1),)), (d.changes, d.reason)


def test_two_units_across_two_plates_taken_one_after_the_other_are_not_cut_plate_by_plate_for_the_first(store):
    # default tuning seed 3106: 1023 (reaching across) and then 1020 each take an 830 g 041508600811 standing
    # across plates 1-5-4/1-5-5 (312.4 s and 313.2 s); the two changes merge into one two-unit event. Cut plate by
    # plate, each plate's half read as one unit; read at its start (one unit moves at one moment), each half went
    # to 1023, whose hand was there first (0.961). The cuts of a several-unit event keep the whole reading
    sim = simulate(store, SimConfig.at("default", shoppers=58, seed=3106, minutes=2.0 + 58 * 0.25, **AS_FOUND))
    d, i = decide_truth_event(sim, "1020", 313.2)
    assert sorted(d.changes) != [("1023", "041508600811", 1), ("1023", "041508600811", 1)], d.reason
    assert d.review or sorted(d.changes) == [("1020", "041508600811", 1), ("1023", "041508600811", 1)], d.reason
