"""Error messages answer the input that was given (issue #15, item 10)."""
from __future__ import annotations

import pytest

from store.accounts.forms import DummyCardForm
from store.inventory.forms import AdjustmentForm
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db


def _errors(form) -> str:
    form.is_valid()
    return " ".join(e for errs in form.errors.values() for e in errs)


def test_stock_adjustment_messages_match_what_was_given():
    w = make_world()
    only_bad = AdjustmentForm({"quantity": "two", "reason": "broken"}, product=w.cola)
    assert "not both" not in _errors(only_bad) and "whole number" in _errors(only_bad)
    assert "not both" in _errors(AdjustmentForm({"quantity": "-2", "counted": "5", "reason": "x"}, product=w.cola))
    assert "not both" not in _errors(AdjustmentForm({}, product=w.cola))
    assert AdjustmentForm({"counted": "5"}, product=w.cola).is_valid()


def test_card_expiry_message_names_the_problem():
    def expiry_error(text):
        return _errors(DummyCardForm({"number": "4242424242424242", "expiry": text, "cvc": "123"}))
    assert "no month 13" in expiry_error("13/30")
    assert "MM/YY" in expiry_error("soon")
