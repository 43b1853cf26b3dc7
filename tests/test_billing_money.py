"""Money conversion and the typed receipt line: exact Decimal → minor units, no floats."""
from __future__ import annotations

from decimal import Decimal

import pytest

from store.billing.providers import ProviderResult, ResultStatus
from store.billing.services import ReceiptLineData, amount_log, currency_exponent, price_to_minor


@pytest.mark.parametrize(
    ("price", "currency", "expected"),
    [
        (Decimal("19.99"), "usd", 1999),
        (Decimal("0.005"), "usd", 1),  # half up
        (Decimal("0.0049"), "usd", 0),
        (Decimal("1.005"), "usd", 101),  # float(1.005) * 100 rounds to 100: Decimal does not
        (Decimal("2.675"), "eur", 268),  # another classic float trap
        (Decimal("0"), "usd", 0),
        (Decimal("12345678.90"), "usd", 1234567890),
        (Decimal("3"), "USD", 300),  # upper case accepted
        (3, "usd", 300),  # an int is an exact amount too
        (Decimal("120"), "jpy", 120),  # zero-decimal
        (Decimal("120.5"), "jpy", 121),
        (Decimal("120.49"), "krw", 120),
        (Decimal("1.2345"), "kwd", 1235),  # three-decimal
    ],
)
def test_price_to_minor_exact(price, currency, expected):
    result = price_to_minor(price, currency)
    assert result == expected
    assert type(result) is int


def test_price_to_minor_refuses_floats_and_bad_values():
    with pytest.raises(TypeError):
        price_to_minor(19.99, "usd")
    with pytest.raises(TypeError):
        price_to_minor("19.99", "usd")
    with pytest.raises(ValueError):
        price_to_minor(Decimal("-0.01"), "usd")
    with pytest.raises(ValueError):
        price_to_minor(Decimal("NaN"), "usd")
    with pytest.raises(ValueError):
        price_to_minor(Decimal("Infinity"), "usd")
    with pytest.raises(ValueError):
        price_to_minor(Decimal("1"), "dollars")


def test_currency_exponent():
    assert [currency_exponent(c) for c in ("usd", "jpy", "kwd", "EUR")] == [2, 0, 3, 2]


def test_receipt_line_data_validates():
    line = ReceiptLineData(product_id=1, barcode="0001", name="Tea", quantity=3, unit_price_minor=250)
    assert line.line_total_minor == 750
    with pytest.raises(ValueError):
        ReceiptLineData(product_id=1, barcode="0001", name="Tea", quantity=0, unit_price_minor=250)
    with pytest.raises(ValueError):
        ReceiptLineData(product_id=1, barcode="0001", name="Tea", quantity=1, unit_price_minor=-1)
    with pytest.raises(TypeError):
        ReceiptLineData(product_id=1, barcode="0001", name="Tea", quantity=1, unit_price_minor=2.5)
    with pytest.raises(TypeError):
        ReceiptLineData(product_id=1, barcode="0001", name="Tea", quantity=True, unit_price_minor=1)


def test_provider_result_refuses_non_integer_amounts():
    with pytest.raises(ValueError):
        ProviderResult(status=ResultStatus.SUCCEEDED, provider_ref="x", intent_ref="x", amount_minor=1.5,
                       currency="usd")
    assert ProviderResult(status="failed", provider_ref="", intent_ref="", amount_minor=0,
                          currency="usd").status is ResultStatus.FAILED


def test_amounts_in_the_logs_are_in_major_units_with_their_code():
    """An operator read "visit 14 authorise 5000 usd" as five thousand dollars: the logs say 50.00 USD."""
    assert [amount_log(5000, "usd"), amount_log(1200, "jpy"), amount_log(-5, "sek"), amount_log(12345, "kwd")] == \
        ["50.00 USD", "1200 JPY", "-0.05 SEK", "12.345 KWD"]
