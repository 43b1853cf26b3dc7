"""Image evidence in fusion (carts.fusion_products): look-alike weights on neighbouring facings are split by what
the camera saw in the taking hand."""
from __future__ import annotations

import math

import pytest

from carts.fusion_products import with_product_evidence
from tests.test_fusion_decide import decide, event, reach


def lookalike_take():
    """P (300 g) faces plates A and B, Q (300 g) faces C: an item lifted off the B|C seam, the hand between them."""
    return decide(event(["B", "C"], -301.0), reach("a", 1.15))


def test_weight_and_hand_alone_cannot_tell_the_lookalikes_apart():
    d = lookalike_take()
    assert d.track_id == "a" and d.review and d.barcode in {"P", "Q"}
    top = {o.barcode: o.posterior for o in d.options if o.quantity == 1}
    assert set(top) >= {"P", "Q"} and abs(top["P"] - top["Q"]) < 0.25 * max(top.values())


@pytest.mark.parametrize("seen", ["P", "Q"])
def test_the_image_of_the_held_item_splits_them(seen):
    d = lookalike_take()
    other = "Q" if seen == "P" else "P"
    out = with_product_evidence(d, {seen: 0.93, other: 0.05, "R": 0.02})
    assert (out.barcode, out.quantity, out.review) == (seen, 1, False)
    assert out.confidence >= 0.6 and out.confidence <= out.attribution + 1e-12
    assert out.shares == (("a", 1),) and out.changes == (("a", seen, 1),)
    assert "image of the held item" in out.reason and not out.reason.startswith("confidence")
    post = {o.barcode: o.posterior for o in out.options if o.quantity == 1}
    assert post[seen] > 5 * post[other]


def test_an_unsure_image_leaves_the_decision_to_people():
    d = lookalike_take()
    out = with_product_evidence(d, {"P": 0.5, "Q": 0.5})
    assert out.review and out.reason.startswith("confidence ")
    assert math.isclose(out.confidence, d.confidence, rel_tol=0.05)


def test_a_confident_wrong_image_cannot_overrule_clear_weight_evidence():
    # R weighs 180 g: a 301 g loss off plate D's neighbour C is Q whatever the image says (no R option at all)
    d = decide(event(["C"], -301.0), reach("a", 1.2))
    assert d.barcode == "Q" and not d.review
    out = with_product_evidence(d, {"R": 0.98, "Q": 0.01, "P": 0.01})
    assert out.barcode == "Q"


def test_no_evidence_or_a_put_back_changes_nothing():
    d = lookalike_take()
    assert with_product_evidence(d, {}) is d
    back = decide(event(["A"], +300.0), reach("a", 1.0), carts={"a": {"P": 1}})
    assert back.quantity < 0 and with_product_evidence(back, {"Q": 0.99, "P": 0.01}) is back


def test_bad_likelihoods_are_refused():
    with pytest.raises(ValueError):
        with_product_evidence(lookalike_take(), {"P": -0.1, "Q": 1.1})
    with pytest.raises(ValueError):
        with_product_evidence(lookalike_take(), {"P": float("nan")})
