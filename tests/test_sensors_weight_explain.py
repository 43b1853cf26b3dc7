"""Product explanation of a weight change (sensors.weight): the catalogue's unit weights, the ranked and
normalised hypotheses, put-backs, several units, and the unexplained. Pure pytest, no database."""
from __future__ import annotations


import numpy as np
import pytest

from sensors.weight import (
    UNEXPLAINED,
    Hypothesis,
    ProductWeights,
    explain_change,
)

def test_product_weights_validation():
    with pytest.raises(ValueError, match="unique"):
        ProductWeights(np.array(["a", "a"], dtype=object), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match=r"mean_g must have shape \(2,\)"):
        ProductWeights(np.array(["a", "b"], dtype=object), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="'b' has -1.0"):
        ProductWeights(np.array(["a", "b"], dtype=object), np.array([1.0, -1.0]), np.ones(2))
    p = ProductWeights(np.array(["a", "b", "c"], dtype=object), np.array([1.0, 2.0, 3.0]), np.ones(3))
    assert p.select(["c", "a", "c"]).barcode.tolist() == ["c", "a"]
    assert p[p.mean_g > 1].barcode.tolist() == ["b", "c"]
    with pytest.raises(KeyError):
        p.select(["z"])


# ================================================================================================ explanation
PRODUCTS_3 = ProductWeights(np.array(["WATER", "CHIPS", "CANDY"], dtype=object), np.array([621.67, 180.0, 45.0]),
                            np.array([18.7, 3.0, 2.0]))


def test_explain_ranks_and_normalises():
    hyps = explain_change(-622.0, 0.5, PRODUCTS_3)
    assert (hyps[0].barcode, hyps[0].quantity) == ("WATER", 1)
    assert hyps[0].residual_g == pytest.approx(-622.0 + 621.67)
    assert sum(h.likelihood for h in hyps) == pytest.approx(1.0)
    assert sum(h.likelihood for h in hyps if not h.unexplained) <= 1.0
    assert [h.likelihood for h in hyps] == sorted((h.likelihood for h in hyps), reverse=True)
    assert any(h.unexplained and h.barcode == UNEXPLAINED and h.quantity == 0 for h in hyps)


def test_explain_put_back_and_multi_unit():
    assert (explain_change(+90.5, 0.5, PRODUCTS_3)[0].barcode, explain_change(+90.5, 0.5, PRODUCTS_3)[0].quantity) \
        == ("CANDY", -2)
    h = explain_change(-540.0, 0.5, PRODUCTS_3)[0]
    assert (h.barcode, h.quantity) == ("CHIPS", 3)


def test_explain_unexplained_when_nothing_fits():
    # 2 × 45 g = 90 ± 3.7 g (two units' sd, the level noise, the plate's 2.5 % gain): 12 g off is > 3 sd but < 5 sd
    hyps = explain_change(-102.0, 0.5, PRODUCTS_3)
    assert hyps[0].unexplained and hyps[1].barcode == "CANDY" and hyps[1].quantity == 2
    assert explain_change(-95.0, 0.5, PRODUCTS_3)[0].quantity == 2  # 1.7 sd off: still the best
    hyps = explain_change(-450.0, 0.5, PRODUCTS_3)  # between 2 × 180 g and 3 × 180 g: > 5 sd from both
    assert len(hyps) == 1 and hyps[0].unexplained and hyps[0].likelihood == 1.0
    assert explain_change(-300.0, 0.5, PRODUCTS_3[np.zeros(3, bool)]) == [Hypothesis(UNEXPLAINED, 0, 1.0, -300.0)]
    with pytest.raises(ValueError):
        explain_change(float("nan"), 1.0, PRODUCTS_3)
    with pytest.raises(ValueError):
        explain_change(-10.0, 1.0, PRODUCTS_3, max_quantity=0)


def test_explain_catalogue_sd_of_zero_is_not_exact():
    # the real BENCHMARK-1 change (−623.1 g, level noise 0.25 g) against the catalogue weight with sd 0
    exact = ProductWeights(np.array(["071142008582"], dtype=object), np.array([621.67]), np.array([0.0]))
    best = explain_change(-623.1, 0.25, exact)[0]
    assert (best.barcode, best.quantity) == ("071142008582", 1) and best.likelihood > 0.9


def test_explain_variance_grows_with_quantity():
    # 6 units of 45 ± 2 g: expected 270 g, sd ≈ √(2·0.25 + 6·4) ≈ 4.9 g. 12 g off is inside 5 σ only thanks to q·σ²
    hyps = explain_change(-282.0, 0.5, PRODUCTS_3[np.array([2])])
    assert hyps[0].unexplained or hyps[0].quantity == 6
    assert any(h.quantity == 6 for h in hyps)
