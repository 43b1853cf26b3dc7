"""The decision function (pure): who caused a shelf event and what they took, from hands, weights and carts."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from carts.fusion import decide_event, eligible_tracks, identity_jumps
from carts.fusion_config import BinGeometry, FusionConfig
from carts.fusion_hands import hand_evidence
from carts.fusion_options import party_holdings
from sensors import weight
from store.recording import TrackObservations

# one shelf along x at y = 0.2 (front edge y = 0), four 0.1 m plates: A and B face P (300 g), C faces Q (300 g),
# D faces R (180 g)
BINS = BinGeometry(codes=("A", "B", "C", "D"),
                   centre=np.array([[1.0, 0.2, 1.0], [1.1, 0.2, 1.0], [1.2, 0.2, 1.0], [1.3, 0.2, 1.0]]),
                   half_size=np.full((4, 2), [0.05, 0.2]), yaw=np.zeros(4))
PRODUCTS = weight.ProductWeights(np.array(["P", "Q", "R"], dtype=object), np.array([300.0, 300.0, 180.0]),
                                 np.array([3.0, 3.0, 2.0]))
PLANOGRAM = weight.Planogram(bin_codes=("A", "B", "C", "D"), facings={"A": ("P",), "B": ("P",), "C": ("Q",),
                                                                       "D": ("R",)},
                             products=PRODUCTS, neighbours={"A": ("B",), "B": ("A", "C"), "C": ("B", "D"),
                                                            "D": ("C",)})
T = np.round(np.arange(0.0, 6.0, 0.1), 3)


def event(bins, delta, t0=2.0, t1=3.0, noise=1.0):
    facing = sorted({p for b in bins for p in PLANOGRAM.facings[b]})
    hyps = weight.explain_change(delta, noise, PRODUCTS.select(facing))
    return weight.ShelfEvent(tuple(bins), t0, t1, delta, noise, tuple(hyps))


def reach(track, x, t_in=1.8, t_out=3.2, rest_y=-0.6):
    """A right wrist that rests 0.6 m in front of the shelf and reaches to x (0.1 m in front of the edge)."""
    y = np.where((T >= t_in) & (T <= t_out), -0.1, rest_y)
    n = T.size
    return TrackObservations(np.array([track] * n, dtype=object), T.copy(), np.array(["r_wrist"] * n, dtype=object),
                             np.c_[np.full(n, x), y, np.full(n, 1.1)], np.full(n, 0.9))


def still(track, x, y=-0.15):
    n = T.size
    return TrackObservations(np.array([track] * n, dtype=object), T.copy(), np.array(["l_wrist"] * n, dtype=object),
                             np.c_[np.full(n, x), np.full(n, y), np.full(n, 1.0)], np.full(n, 0.9))


def cat(*obs):
    return TrackObservations(*(np.concatenate([getattr(o, f) for o in obs])
                               for f in ("track_id", "t", "keypoint", "xyz", "score")))


def decide(ev, hands, carts=None, **kw):
    return decide_event(ev, hands, BINS, PLANOGRAM, carts=carts or {}, **kw)


def test_a_lone_pick_is_confident_and_explained():
    d = decide(event(["A"], -301.0), reach("a", 1.0))
    assert (d.track_id, d.charge_track, d.barcode, d.quantity, d.review) == ("a", "a", "P", 1, False)
    assert d.confidence > 0.9 and d.shares == (("a", 1),)
    ev = d.evidence()
    assert ev["candidates"][0]["track_id"] == "a" and ev["candidates"][0]["hand_xyz"] is not None
    assert ev["options"][0]["barcode"] == "P"


def test_nobody_near_goes_to_review():
    d = decide(event(["A"], -301.0), reach("a", 3.0))
    assert d.review and d.shares == () and "no eligible" in d.reason


def test_reaching_across_a_shopper_who_stands_at_the_shelf():
    # b stands right in front of bin A with a hand resting near it; a reaches from the side, in and out
    hands = cat(still("b", 1.0, y=-0.12), reach("a", 1.0))
    d = decide(event(["A"], -301.0), hands)
    assert d.track_id == "a" and not d.review
    ev = hand_evidence(event(["A"], -301.0), hands, BINS)
    motion = dict(zip(ev.track_id, ev.motion_m))
    assert motion["a"] > 0.3 and motion["b"] < 0.05


def test_two_shoppers_reaching_into_one_bin_at_once_is_not_guessed():
    hands = cat(reach("a", 1.0), reach("b", 1.02, t_in=1.9))
    d = decide(event(["A"], -301.0), hands)
    assert d.review and d.confidence < 0.6


def test_a_put_back_returns_only_what_the_shoppers_party_holds():
    ev = event(["A"], +299.0)
    assert decide(ev, reach("a", 1.0), carts={"a": {"P": 1}}).shares == (("a", -1),)
    nothing = decide(ev, reach("a", 1.0), carts={"a": {}})
    assert nothing.review
    # b of a's party puts back what a took: a's cart gives it back
    d = decide(ev, reach("b", 1.0), carts={"a": {"P": 1}, "b": {}}, party_of={"a": "a", "b": "a"})
    assert (d.track_id, d.charge_track, d.quantity, d.review) == ("b", "a", -1, False)
    assert party_holdings("b", {"a": {"P": 1}, "b": {"R": 2}}, {"a": "a", "b": "a"}) == {"P": 1, "R": 2}


def test_a_put_back_into_the_wrong_bin_is_explained_by_the_cart():
    # +180 g on bin A (faces P, 300 g): only R, held by the shopper, fits
    d = decide(event(["A"], +180.5), reach("a", 1.0), carts={"a": {"R": 1, "P": 1}})
    assert (d.barcode, d.quantity, d.charge_track, d.review) == ("R", -1, "a", False)
    assert decide(event(["A"], +180.5), reach("a", 1.0), carts={"a": {"P": 1}}).review


def test_where_the_hand_was_tells_equal_weight_products_apart():
    # an event over B (P) and C (Q), both 300 g: the hand at C means Q
    d = decide(event(["B", "C"], -300.0), reach("a", 1.2))
    assert d.barcode == "Q"
    d = decide(event(["B", "C"], -300.0), reach("a", 1.1))
    assert d.barcode == "P"


def test_two_shoppers_side_by_side_share_a_merged_event_or_it_goes_to_review():
    hands = cat(reach("a", 1.0, t_in=1.8, t_out=2.6), reach("b", 1.1, t_in=2.4, t_out=3.2))
    d = decide(event(["A", "B"], -600.0, t0=2.0, t1=3.0), hands)
    assert d.quantity == 2
    assert d.review or sorted(d.shares) == [("a", 1), ("b", 1)]
    assert d.shares and len(d.shares) == 2


def test_an_unexplained_change_goes_to_review():
    d = decide(event(["A"], -123.0), reach("a", 1.0))
    assert d.review and d.barcode is None


def test_the_threshold_trades_review_for_automation():
    hands = cat(reach("a", 1.0), still("b", 1.15, y=-0.2))
    ev = event(["A"], -301.0)
    low = decide(ev, hands, review_confidence=0.1)
    high = decide(ev, hands, review_confidence=0.999)
    assert not low.review and high.review and low.confidence == high.confidence


def test_eligible_tracks_keep_a_shopper_who_left_while_the_plate_settled():
    ev = event(["A"], -301.0, t0=100.0, t1=104.0)
    entries = {"a": 10.0, "b": 20.0, "c": 200.0}
    assert eligible_tracks(entries, {"a": 98.5}, ev, now=106.0, settle_s=3.0) == ["a", "b"]
    assert eligible_tracks(entries, {"a": 90.0}, ev, now=106.0, settle_s=3.0) == ["b"]


def test_config_is_validated():
    with pytest.raises(ValueError, match="sigma_m"):
        FusionConfig(sigma_m=0)
    with pytest.raises(ValueError, match="misplaced_prior"):
        FusionConfig(misplaced_prior=1.5)
    assert math.isfinite(FusionConfig().nobody_m)


def test_an_identity_jump_sends_the_event_to_review_when_the_check_is_on():
    n = T.size
    x = np.where(T < 2.5, 1.0, 1.5)  # the neck of "a" jumps 0.5 m between two frames: an id switch
    necks = TrackObservations(np.array(["a"] * n, dtype=object), T.copy(), np.array(["neck"] * n, dtype=object),
                              np.c_[x, np.full(n, -0.5), np.full(n, 1.45)], np.full(n, 0.9))
    on = FusionConfig(id_jump_speed_m_s=2.5)
    assert identity_jumps(necks, ["a"], 0.0, 6.0, on) == ["a"]
    assert identity_jumps(necks, ["a"], 3.0, 6.0, on) == []
    d = decide(event(["A"], -301.0), reach("a", 1.0), bodies=necks, config=on)
    assert d.review and "jumped" in d.reason
    assert not decide(event(["A"], -301.0), reach("a", 1.0), bodies=necks).review  # off by default


def merged(parts, noise=1.0):
    """A merged event from per-change (bin, Δ grams, t_start, t_end) parts, explained whole as the sensors do."""
    parts = [weight.BinChange(b, t0, t1, d, noise) for b, d, t0, t1 in parts]
    delta = sum(p.delta_g for p in parts)
    total_noise = math.sqrt(len(parts)) * noise
    facing = sorted({p for q in parts for p in PLANOGRAM.facings[q.code]})
    hyps = weight.explain_change(delta, total_noise, PRODUCTS.select(facing))
    return weight.ShelfEvent(tuple(dict.fromkeys(p.code for p in parts)), min(p.t_start for p in parts),
                             max(p.t_end for p in parts), delta, total_noise, tuple(hyps), parts=tuple(parts))


def test_two_shoppers_taking_two_products_side_by_side_are_told_apart():
    # a takes P from B while b takes R from D, at the same moment: C moved nothing, B and D merged with it
    # through the neighbour rule into one 480 g event that fits no product whole
    hands = cat(reach("a", 1.1, t_in=1.8, t_out=3.0), reach("b", 1.3, t_in=1.9, t_out=3.1))
    ev = merged([("B", -300.5, 2.0, 2.9), ("C", 0.4, 2.2, 2.3), ("D", -179.6, 2.1, 3.0)])
    whole = decide(dataclasses.replace(ev, parts=()), hands)  # without its parts it cannot be cut
    d = decide(ev, hands)
    assert whole.review and not whole.parts
    assert not d.review and len(d.parts) == 2 and "side by side" in d.reason
    assert sorted(d.changes) == [("a", "P", 1), ("b", "R", 1)]
    assert d.evidence()["parts"][0]["decision"]["barcode"] in ("P", "R")


def test_two_shoppers_taking_from_one_plate_one_after_the_other_get_one_unit_each():
    # a takes P from A; 0.6 s after A settled, b takes another P from A: the two changes merged into one 2 × P
    # event (their intervals widened by the merge gap overlap), which a cut in time gives back as two takes
    hands = cat(reach("a", 1.0, t_in=1.8, t_out=2.6), reach("b", 1.0, t_in=3.0, t_out=3.9))
    ev = merged([("A", -300.8, 2.0, 2.4), ("A", -299.5, 3.0, 3.6)])
    assert ev.bin_codes == ("A",) and len(ev.parts) == 2
    d = decide(ev, hands)
    assert not d.review and len(d.parts) == 2 and "one after the other" in d.reason
    assert sorted(d.changes) == [("a", "P", 1), ("b", "P", 1)]
    # one shopper taking two, one after the other, keeps both
    d = decide(ev, cat(reach("a", 1.0, t_in=1.8, t_out=3.9)))
    assert sorted(d.changes) in ([("a", "P", 2)], [("a", "P", 1), ("a", "P", 1)])


def test_one_shopper_taking_two_products_at_once_gets_both_lines():
    ev = merged([("C", -300.2, 2.0, 2.8), ("D", -180.3, 2.1, 2.9)])
    d = decide(ev, reach("a", 1.25, t_in=1.8, t_out=3.1))
    assert not d.review and sorted(d.changes) == [("a", "Q", 1), ("a", "R", 1)]


def test_two_shoppers_reaching_into_one_bin_as_two_units_go_get_one_each():
    # a and b both reach into A while 2 × P leave it: two takes, not one shopper grabbing two while the other's
    # reach took nothing
    ev = event(["A"], -600.9)
    d = decide(ev, cat(reach("a", 1.0), reach("b", 1.02, t_in=1.9, t_out=3.1)))
    assert not d.review and sorted(d.shares) == [("a", 1), ("b", 1)] and d.barcode == "P"
    # one shopper alone taking two keeps both
    alone = decide(ev, reach("a", 1.0))
    assert alone.shares == (("a", 2),)
    # without the "others took nothing" term the two readings tie and it went to people
    assert decide(ev, cat(reach("a", 1.0), reach("b", 1.02, t_in=1.9, t_out=3.1)),
                  config=FusionConfig(touch_prior=1.0)).confidence < d.confidence


def test_a_weak_event_is_a_take_only_where_a_hand_reached_in():
    ev = dataclasses.replace(event(["D"], -178.0, noise=6.0), weak=True)
    took = decide(ev, reach("a", 1.3))
    assert not took.noise and took.changes == (("a", "R", 1),)
    nobody = decide(ev, still("b", 0.5, y=-0.6))  # a shopper stands half a metre off, hands down
    assert nobody.noise and not nobody.review and nobody.changes == () and "noise" in nobody.reason
    assert not decide(dataclasses.replace(ev, weak=False), still("b", 0.5, y=-0.6)).noise  # a full change: review


def test_two_lookalike_products_taken_at_once_are_one_of_each_not_two_of_one():
    # P (B) and Q (C) both weigh 300 g: the merged 600 g fits "2 × P" and "2 × Q" as well as "P + Q", but half
    # of it left a plate that does not face P (or Q), so it is one of each
    ev = merged([("B", -300.6, 2.0, 2.8), ("C", -299.1, 2.1, 2.9)])
    d = decide(ev, reach("a", 1.15, t_in=1.8, t_out=3.1))
    assert not d.review and sorted(d.changes) == [("a", "P", 1), ("a", "Q", 1)]
    two = {(o.barcode, o.quantity): o.posterior for o in d.options}
    blind = {(o.barcode, o.quantity): o.posterior for o in decide(
        ev, reach("a", 1.15, t_in=1.8, t_out=3.1), config=FusionConfig(foreign_prior=1.0)).options}
    assert two[("P", 2)] < 0.2 * blind[("P", 2)] and two[("Q", 2)] < 0.2 * blind[("Q", 2)]
    # an item of P standing mostly on A with a sliver on B is still P (both face P)
    ev = merged([("A", -240.3, 2.0, 2.8), ("B", -60.2, 2.0, 2.8)])
    assert decide(ev, reach("a", 1.05)).changes == (("a", "P", 1),)


def test_a_merged_event_of_one_item_across_plates_is_not_cut():
    # P standing across A and B (half on each): neither half is a unit, so the whole event stands
    ev = merged([("A", -150.3, 2.0, 2.9), ("B", -150.1, 2.0, 2.9)])
    d = decide(ev, reach("a", 1.05))
    assert not d.parts and d.changes == (("a", "P", 1),)


def _switched(swap_from: float, swap_to: float) -> tuple[TrackObservations, TrackObservations]:
    """a stands at x = 1.0, b at x = 1.4 (0.4 m apart); a reaches to A at 2.0–3.0 s, but the tracker swapped
    their ids from ``swap_from`` to ``swap_to`` s, so the reaching hand is labelled b. Returns (hands, bodies)."""
    n = T.size
    body_x = {"a": 1.0, "b": 1.4}
    label = {k: np.array([k] * n, dtype=object) for k in body_x}
    swap = (T >= swap_from) & (T < swap_to)
    label["a"][swap], label["b"][swap] = "b", "a"
    hands, bodies = [], []
    for who, x in body_x.items():
        rng = np.random.default_rng(len(who) + int(10 * x))
        y = np.where((T >= 2.0) & (T <= 3.0) & (who == "a"), -0.1, -0.6)
        hx = np.where(who == "a", np.where((T >= 2.0) & (T <= 3.0), 1.0, x), x)
        hands.append(TrackObservations(label[who], T.copy(), np.array(["r_wrist"] * n, dtype=object),
                                       np.c_[hx, y, np.full(n, 1.1)], np.full(n, 0.9)))
        xy = np.c_[np.full(n, x), np.full(n, -0.7)] + rng.normal(0, 0.03, (n, 2))
        bodies.append(TrackObservations(label[who], T.copy(), np.array(["neck"] * n, dtype=object),
                                        np.c_[xy, np.full(n, 1.45)], np.full(n, 0.9)))
    return cat(*hands), cat(*bodies)


def test_an_id_switch_around_the_event_is_undone_before_reading_the_hands():
    hands, bodies = _switched(1.5, 3.5)
    ev = event(["A"], -300.4, t0=2.2, t1=2.8)
    assert decide(ev, hands).charge_track == "b"  # without the body tracks the switch cannot be seen
    d = decide(ev, hands, bodies=bodies)
    assert d.charge_track == "a" and not d.review
    off = decide(ev, hands, bodies=bodies, config=FusionConfig(repair_id_switches=False))
    assert off.charge_track == "b"


def test_a_switch_whose_end_is_not_seen_yet_goes_to_people_when_it_decides_the_cart():
    # the ids flip at 1.5 s and have not flipped back by the time the event is decided (its end + 1.5 s): the
    # flip may be a switch beginning (a reached) or the end of one whose start was missed (b reached)
    hands, bodies = _switched(1.5, 99.0)
    d = decide(event(["A"], -300.4, t0=2.2, t1=2.8), hands, bodies=bodies)
    assert d.review and "may have switched ids" in d.reason and d.charge_track == "a"
    # a hand of neither at the bin's event: the flip changes nothing, so it is no reason for review
    far = decide(event(["D"], -180.2, t0=2.2, t1=2.8), cat(hands, reach("c", 1.3)), bodies=bodies)
    assert far.charge_track == "c" and not far.review


def test_a_put_back_of_an_item_whose_pick_is_in_review_waits_for_that_review():
    # a put P back into A; her cart does not hold P yet: the pick is still in review, with her a candidate
    ev = event(["A"], +300.2)
    d = decide(ev, reach("a", 1.0), carts={"a": {}}, pending={"a": {"P": 1}})
    assert d.awaits_review and not d.review and d.changes == (("a", "P", -1),)
    assert "awaits review" in d.reason
    alone = decide(ev, reach("a", 1.0), carts={"a": {}})
    assert alone.review and not alone.awaits_review  # without the pending pick it is a second review
    held = decide(ev, reach("a", 1.0), carts={"a": {"P": 1}}, pending={"a": {"P": 1}})
    assert not held.awaits_review and not held.review  # held already: applies at once


def test_a_disturbance_of_two_shoppers_side_by_side_is_cut_apart_or_reviewed():
    # more plates moved together than one item spans: never one product, but two shoppers' takes can be cut apart
    hands = cat(reach("a", 1.1, t_in=1.8, t_out=3.0), reach("b", 1.3, t_in=1.9, t_out=3.1))
    ev = merged([("A", 0.6, 2.0, 2.9), ("B", -300.5, 2.0, 2.9), ("C", 0.4, 2.2, 2.3), ("D", -179.6, 2.1, 3.0)])
    ev = dataclasses.replace(ev, disturbance=True, hypotheses=(weight.Hypothesis("", 0, 1.0, ev.delta_g),))
    d = decide(ev, hands)
    assert not d.review and sorted(d.changes) == [("a", "P", 1), ("b", "R", 1)]
    lean = dataclasses.replace(ev, parts=())  # without the per-plate parts it cannot be cut: people look
    assert decide(lean, hands).review


def test_disturbances_go_to_fusion_restocks_do_not():
    from sensors.models import ShelfEvent as Row

    assert Row(kind="disturbance").for_fusion and Row(kind="shopper").for_fusion and not Row(kind="restock").for_fusion
