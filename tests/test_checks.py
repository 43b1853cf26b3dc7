"""The core's shared shape and range checks (store.checks): what they accept, and messages that name the field."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from store.checks import check_array, check_numbers, check_rows


@dataclass
class Knobs:
    rate_hz: float = 60.0
    share: float = 0.5
    count: int = 3
    flag: bool = True


@pytest.mark.parametrize("kwargs, field, message", [
    ({"rate_hz": 0.0}, "rate_hz", "Knobs.rate_hz must be > 0, got 0.0"),
    ({"rate_hz": float("nan")}, "rate_hz", "Knobs.rate_hz must be a finite number > 0, got nan"),
    ({"rate_hz": float("inf")}, "rate_hz", "Knobs.rate_hz must be a finite number > 0, got inf"),
    ({"rate_hz": "60"}, "rate_hz", "Knobs.rate_hz must be > 0, got '60'"),
    ({"share": 1.5}, "share", "Knobs.share must be in (0, 1], got 1.5"),
    ({"count": 2.0}, "count", "Knobs.count must be an integer ≥ 3, got 2.0"),
    ({"count": True}, "count", "Knobs.count must be an integer ≥ 3, got True"),
])
def test_a_number_out_of_range_is_refused_naming_its_field(kwargs, field, message):
    knobs = Knobs(**kwargs)
    checks = {"rate_hz": dict(low=0, low_open=True), "share": dict(low=0, high=1, low_open=True),
              "count": dict(low=3, integer=True)}
    with pytest.raises(ValueError) as err:
        check_numbers(knobs, (field,), **checks[field])
    assert str(err.value) == message


def test_numbers_in_range_pass_and_infinity_only_where_allowed():
    check_numbers(Knobs(), ("rate_hz",), low=0, low_open=True)
    check_numbers(Knobs(share=1.0), ("share",), low=0, high=1, low_open=True)
    check_numbers(Knobs(count=np.int64(3)), ("count",), low=3, integer=True)
    check_numbers(Knobs(rate_hz=float("inf")), ("rate_hz",), low=0, finite=False)
    with pytest.raises(ValueError, match="finite"):
        check_numbers(Knobs(rate_hz=float("nan")), ("rate_hz",), low=0, finite=False)


@dataclass
class Table:
    t: object
    xyz: object


def test_rows_must_have_the_tables_length_and_shape():
    check_rows(Table(np.zeros(4), np.zeros((4, 3))), ("t", "xyz:3"), 4)
    with pytest.raises(ValueError, match=r"Table.xyz must have shape \(4, 3\), got \(4, 2\)"):
        check_rows(Table(np.zeros(4), np.zeros((4, 2))), ("t", "xyz:3"), 4)
    with pytest.raises(ValueError, match=r"Table.t must have shape \(4,\), got \(5,\)"):
        check_rows(Table(np.zeros(5), np.zeros((4, 3))), ("t", "xyz:3"), 4)
    with pytest.raises(TypeError, match="Table.t must be a numpy array, got list"):
        check_rows(Table([0.0] * 4, np.zeros((4, 3))), ("t",), 4)
    with pytest.raises(ValueError, match="Table.t must be float64, got int64"):
        check_rows(Table(np.zeros(4, dtype=np.int64), None), ("t",), 4, dtype=np.float64)


def test_an_array_of_any_length_returns_its_shape():
    assert check_array("w", np.zeros((7, 2, 2)), (None, 2, 2)) == (7, 2, 2)
    with pytest.raises(ValueError, match=r"w must have shape \(n, 2\), got \(7,\)"):
        check_array("w", np.zeros(7), (None, 2))
