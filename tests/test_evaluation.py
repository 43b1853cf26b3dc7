"""AutoCheckout item-level scoring."""
import pytest

from carts.evaluation import score_receipts


def test_perfect_session():
    s = score_receipts({"a": {"x": 1}}, {"a": {"x": 1}})
    assert (s.precision, s.recall, s.f1, s.exact) == (1.0, 1.0, 1.0, 1)


def test_wrong_shopper_counts_twice():
    s = score_receipts({"b": {"x": 1}}, {"a": {"x": 1}})
    assert s.true_positives == 0 and s.precision == 0 and s.recall == 0 and s.f1 == 0 and s.exact == 0


def test_quantity_and_product_errors():
    s = score_receipts({"a": {"x": 3, "y": 1}}, {"a": {"x": 2, "z": 1}})
    # TP = min(3, 2) = 2; billed 4, true 3
    assert s.true_positives == 2 and s.billed_items == 4 and s.true_items == 3
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_empty_session_and_zero_lines():
    assert score_receipts({}, {}).f1 == 1.0
    assert score_receipts({"a": {"x": 0}}, {"a": {}}).exact == 1
    assert score_receipts({"a": {}}, {"a": {"x": 1}}).f1 == 0.0
    with pytest.raises(ValueError, match="negative"):
        score_receipts({"a": {"x": -1}}, {})


def test_events_taken_for_noise_do_not_dilute_the_review_rate():
    from carts.evaluation import Decisions

    dec = Decisions.from_rows([
        (("1-1-1",), 10.0, 10.5, "cart", "a", (("x", 1),), 0.97),
        (("1-1-2",), 20.0, 20.5, "review", "", (), 0.40),
        (("1-1-3",), 30.0, 30.4, "none", "", (), 0.0),   # a weak change nobody reached for
    ])
    assert dec.events() == 2 and dec.review_rate == pytest.approx(0.5)
