"""Evaluation beyond F1 (parties, exact receipts, review rate, scenarios) and accuracy floors of the offline
pipeline on small seeded simulated sessions."""
from __future__ import annotations

import numpy as np
import pytest

from carts.offline.evaluation import (
    Decisions,
    evaluate_session,
    match_events,
    merge_parties,
    offline_replay,
    oracle_answers,
    score_receipts,
)
from carts.offline.simulation import simulate
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store
from carts.offline.simulation_truth import TruthEvents
from conftest import shared_file


def truth_events(rows):
    obj = lambda v: np.array(v + [None], dtype=object)[:-1]  # noqa: E731  (keeps tuples as objects)
    return TruthEvents(np.array([r[0] for r in rows], float), np.array([r[0] - 0.3 for r in rows], float),
                       np.array([r[0] + 0.3 for r in rows], float), obj([r[1] for r in rows]),
                       obj([r[2] for r in rows]), obj([r[3] for r in rows]), obj([r[4] for r in rows]),
                       obj([r[5] for r in rows]))


def test_party_receipts_are_scored_together():
    party = {"a": "a", "b": "a", "c": "c"}
    billed = {"a": {"x": 1}, "b": {"y": 1}, "c": {}}
    truth = {"a": {"x": 1, "y": 1}, "b": {}, "c": {}}
    assert merge_parties(billed, party) == {"a": {"x": 1, "y": 1}, "c": {}}
    assert score_receipts(billed, truth).exact == 1  # per track, a and b are wrong…
    rep = evaluate_session(billed, truth, party_of=party, decisions=Decisions.from_rows([]))
    assert rep.score.exact == 2 and rep.score.receipts == 2 and rep.score.f1 == 1.0  # …but the party is right


def test_breakdown_review_rate_and_oracle():
    tev = truth_events([(10.0, "a", "a", ("A",), (("x", 1),), ("pick",)),
                        (20.0, "b", "b", ("B",), (("y", 1),), ("pick", "crowded")),
                        (30.0, "a", "a", ("A",), (("x", -1),), ("put-back",)),
                        (40.0, "b", "b", ("C",), (("z", 1),), ("pick",))])
    dec = Decisions.from_rows([(("A",), 9.8, 10.4, "cart", "a", (("x", 1),), 0.97),
                               (("B",), 19.9, 20.5, "review", "", (), 0.4),
                               (("A",), 29.7, 30.2, "cart", "b", (("x", -1),), 0.8),
                               (("D",), 50.0, 50.5, "review", "", (), 0.2)])
    assert match_events(dec, tev) == {0: 0, 1: 1, 2: 2}
    rep = evaluate_session({"a": {}, "b": {"y": 1, "z": 1}}, {"a": {}, "b": {"y": 1, "z": 1}},
                           party_of={}, decisions=dec, truth_events=tev)
    rows = {r.name: r for r in rep.scenarios}
    assert (rows["pick"].events, rows["pick"].right, rows["pick"].reviewed, rows["pick"].missed) == (3, 1, 1, 1)
    assert (rows["put-back"].wrong, rows["crowded"].reviewed) == (1, 1)
    assert rep.review_rate == pytest.approx(0.5)
    assert oracle_answers(dec, tev) == {1: [("b", (("y", 1),))], 3: []}


@pytest.fixture(scope="module")
def store():
    return load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])


@pytest.mark.parametrize("level, seed, floor_exact, floor_f1, max_review", [
    ("default", 31, 0.8, 0.96, 0.2),   # measured: 9/10 exact, F1 0.987, review 0.123 (8/10, 0.975, 0.175 before)
    ("hard", 32, 0.75, 0.95, 0.2),     # measured: 9/9 exact, F1 1.000, review 0.102 (8/9, 0.955, 0.204 before)
])
def test_accuracy_floors_on_small_seeded_sessions(store, level, seed, floor_exact, floor_f1, max_review):
    sim = simulate(store, SimConfig.at(level, shoppers=12, minutes=4.0, seed=seed))
    res = offline_replay(sim, truth_events=sim.events)
    truth = {r.track: {x.barcode: x.quantity for x in r.lines} for r in sim.truth}
    rep = evaluate_session(res.billed, truth, party_of=res.party_of, decisions=res.decisions,
                           truth_events=sim.events)
    assert rep.score.exact_share >= floor_exact
    assert rep.score.f1 >= floor_f1
    assert rep.review_rate <= max_review
    wrong = sum(r.wrong for r in rep.scenarios if r.name == "pick")
    assert wrong <= 1
    # without the oracle the reviewed events are missing from the receipts: the floors above are not free (on
    # the hard session 3 receipts depend on reviews; on the default one the reviews happen not to change one)
    bare = offline_replay(sim, events=res.events)
    alone = evaluate_session(bare.billed, truth, party_of=bare.party_of, decisions=bare.decisions).score
    assert alone.f1 <= rep.score.f1 and alone.exact <= rep.score.exact
    if level == "hard":
        assert alone.exact < rep.score.exact and alone.f1 < rep.score.f1
