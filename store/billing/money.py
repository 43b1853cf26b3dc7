"""Money as people read it: minor units and an ISO 4217 code to text, one format for the whole site.

Amounts are integers in the currency's minor unit (``currency_exponent``: Stripe's zero- and three-decimal
currencies); the page script renders live amounts with the same rules (:func:`money_format_table`).
"""
from __future__ import annotations

from .services import THREE_DECIMAL_CURRENCIES, ZERO_DECIMAL_CURRENCIES, currency_exponent

#: Symbols written before the amount; other currencies are written as ``12.00 SEK``.
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩", "cad": "CA$", "aud": "A$",
            "chf": "CHF ", "cny": "CN¥"}


def money_display(amount_minor: int, currency: str) -> str:
    """``amount_minor`` (int, minor units) as text: ``money_display(398, "usd") == "$3.98"``,
    ``money_display(1200, "jpy") == "¥1,200"``, ``money_display(-5, "sek") == "-0.05 SEK"``."""
    exp = currency_exponent(currency)  # billing's rule (Stripe's zero- and three-decimal currencies)
    sign = "-" if amount_minor < 0 else ""
    units, frac = divmod(abs(int(amount_minor)), 10 ** exp)
    number = f"{units:,}" + (f".{frac:0{exp}d}" if exp else "")
    symbol = _SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def money_format_table() -> dict:
    """The rules of :func:`money_display` as plain JSON for the page script, so that both render money alike:
    ``{"zero": [codes], "three": [codes], "symbols": {code: symbol}}``."""
    return {"zero": sorted(ZERO_DECIMAL_CURRENCIES), "three": sorted(THREE_DECIMAL_CURRENCIES),
            "symbols": dict(_SYMBOLS)}
