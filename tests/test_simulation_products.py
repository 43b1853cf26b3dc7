"""Product recognition in the simulator and the store loop (carts.offline.simulation_products): look-alike weights on
neighbouring facings are split only with the image evidence."""
from __future__ import annotations

import numpy as np
import pytest

from carts.offline.evaluation import MemorySink
from carts.loop import StoreLoop
from carts.loop_config import LoopConfig
from carts.offline.simulation_products import (
    LOOKALIKE, ProductEvidence, RecognitionModel, draw_likelihood, lookalike_products, lookalikes, product_likelihoods,
    with_lookalike_label,
)
from carts.offline.simulation_truth import TruthEvents
from tests.test_fusion_decide import BINS, PLANOGRAM, event, reach


def loop_decides(ev, hands, likelihood=None, **config):
    """The store loop (as the offline bench runs it) deciding one event, with the sink's recogniser answering
    ``likelihood`` (a callable, a mapping, or None: no recogniser)."""
    sink = MemorySink(["a"])
    if likelihood is not None:
        sink.product_likelihood = likelihood if callable(likelihood) else (lambda e, d: likelihood)
    loop = StoreLoop(planogram=PLANOGRAM, bins=BINS, sink=sink, config=LoopConfig(**config))
    loop.on_entry(track="a", t=0.0)
    loop.on_observations(hands)
    loop.on_events([ev])
    loop.advance(20.0)
    loop.finish()
    return sink, loop


def test_lookalikes_on_neighbouring_facings_are_split_only_with_the_image():
    ev = event(["B", "C"], -301.0)            # P faces B, Q faces C, both 300 g; the hand between them
    hands = reach("a", 1.15)
    sink, _ = loop_decides(ev, hands)
    assert [r[3] for r in sink.rows] == ["review"] and sink.carts["a"] == {}
    for seen, other in (("P", "Q"), ("Q", "P")):
        sink, loop = loop_decides(ev, hands, {seen: 0.8, other: 0.1, "R": 0.1})
        assert [(r[3], r[4], r[5]) for r in sink.rows] == [("cart", "a", ((seen, 1),))]
        assert loop.stats.problems == []


def test_a_recogniser_as_often_wrong_as_ours_cannot_overrule_the_weight():
    # plate D faces R (180 g): a 181 g loss there is R whatever a confident but wrong image says
    sink, _ = loop_decides(event(["D"], -181.0), reach("a", 1.3), {"P": 0.9, "Q": 0.05, "R": 0.05})
    assert [(r[3], r[5]) for r in sink.rows] == [("cart", (("R", 1),))]


def test_a_bad_likelihood_is_refused_counted_and_the_decision_stands():
    sink, loop = loop_decides(event(["B", "C"], -301.0), reach("a", 1.15), {"P": -1.0, "Q": 0.5})
    assert [r[3] for r in sink.rows] == ["review"]
    assert len(loop.stats.problems) == 1 and "refused" in loop.stats.problems[0]
    with pytest.raises(ValueError, match="image_mix"):
        LoopConfig(image_mix=1.5)


def test_the_confusion_model_has_the_measured_top1_and_top5():
    cat = [f"p{i}" for i in range(300)]
    rng = np.random.default_rng(1)
    model = RecognitionModel()
    top1 = top5 = 0
    n = 4000
    for _ in range(n):
        lik = draw_likelihood("p7", cat, model, rng)
        assert abs(sum(lik.values()) - 1.0) < 1e-9 and min(lik.values()) > 0
        ranked = sorted(lik, key=lambda b: -lik[b])
        top1 += ranked[0] == "p7"
        top5 += "p7" in ranked[:5]
    assert abs(top1 / n - model.top1) < 0.03 and abs(top5 / n - model.top5) < 0.03
    with pytest.raises(ValueError, match="not in the recogniser's catalogue"):
        draw_likelihood("zz", cat, model, rng)
    with pytest.raises(ValueError, match="top5"):
        RecognitionModel(top1=0.9, top5=0.8)


def test_takes_with_a_lookalike_neighbour_are_labelled_and_get_evidence(tmp_path):
    # P on B is next to Q on C (both 300 g); A is next to B only (P again); R (180 g) matches nothing
    assert lookalikes(PLANOGRAM) == {"B": {"P"}, "C": {"Q"}}

    def obj(values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    truth = TruthEvents(np.array([2.5, 8.0, 12.0]), np.array([1.8, 7.5, 11.5]), np.array([3.2, 8.5, 12.5]),
                        obj(["a", "a", "a"]), obj(["a", "a", "a"]), obj([("B",), ("D",), ("C",)]),
                        obj([(("P", 1),), (("R", 1),), (("Q", -1),)]), obj([("pick",), ("pick",), ("put-back",)]))
    labelled = with_lookalike_label(truth, PLANOGRAM)
    assert [LOOKALIKE in s for s in labelled.scenarios] == [True, False, False]
    liks = product_likelihoods(truth, ["P", "Q", "R"], seed=3)
    assert liks[0] is not None and liks[1] is not None and liks[2] is None      # takes only
    assert product_likelihoods(truth, ["P", "Q", "R"], seed=3) == liks            # deterministic
    hook = ProductEvidence(truth, liks)
    ev = event(["B", "C"], -301.0)
    decided_a = type("D", (), {"track_id": "a"})()
    decided_b = type("D", (), {"track_id": "b"})()
    assert hook(ev, decided_a) is liks[0] and hook(ev, decided_b) is None       # only the taking hand's crops
    assert (hook.asked, hook.given) == (2, 1)


def test_a_wrong_guess_goes_to_a_lookalike_as_often_as_the_model_says():
    cat = [f"p{i}" for i in range(300)]
    rng = np.random.default_rng(2)
    model = RecognitionModel()
    wrong = to_sibling = 0
    for _ in range(3000):
        lik = draw_likelihood("p7", cat, model, rng, siblings=["p8"])
        top = max(lik, key=lik.get)
        wrong += top != "p7"
        to_sibling += top == "p8"
    assert abs(to_sibling / wrong - model.sibling_share) < 0.05

    assert lookalike_products(PLANOGRAM) == {"P": {"Q"}, "Q": {"P"}}
