"""Checks of the core's typed containers and config dataclasses: array shapes and dtypes, number ranges (pure).

One place for the ``__post_init__`` checks every container and config repeats (issue #16), so that every message
reads the same: ``Owner.field must be <what>, got <value>``. Imports only NumPy, so every core module may use it.
"""
from __future__ import annotations

import logging
import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["T_UTC_MAX", "T_UTC_MIN", "check_array", "check_numbers", "check_rows", "rejected"]

#: Earliest plausible device time, s since epoch UTC (2000-01-01T00:00:00Z, ``calendar.timegm((2000, 1, 1, 0, 0,
#: 0))``): no Walkout or AiFi recording predates it (AiFi's data sets are from 2020), and a device whose clock was
#: never set reads 1970-01-01 (Unix epoch 0) — such a time would otherwise be "repaired" as a clock jump of decades.
#: Shared by every device API that takes times (weights ``t0``, tracker ``t``/``t_last``).
T_UTC_MIN = 946_684_800.0
#: Latest plausible device time, s since epoch UTC (2100-01-01T00:00:00Z): a clock beyond it is broken.
T_UTC_MAX = 4_102_444_800.0


def _owner(owner: object) -> str:
    return type(owner).__name__


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    def num(x: float) -> str:
        return f"{x:g}"

    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{num(low)}, {num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {num(low)}"
    if high is not None:
        return f"{'<' if high_open else '≤'} {num(high)}"
    return "a finite number"


def check_numbers(owner: object, names: Iterable[str], *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False, integer: bool = False,
                  finite: bool = True) -> None:
    """Each field ``owner.<name>`` must be a real number (``int`` or ``float``, not ``bool``; an ``int`` where
    ``integer``), finite unless ``finite`` is False, and within the interval from ``low`` to ``high`` (either end
    may be None = unbounded; ``*_open``: the end itself is excluded). ``owner`` is the dataclass instance; its class
    names it in the message.

    Raises ``ValueError`` ``"Owner.name must be > 0, got -1.0"`` (or ``an integer ≥ 1``, ``in (0, 1]``, …) for the
    first field that fails; NaN fails every range.
    """
    for name in names:
        value = getattr(owner, name)
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        if ok and integer:
            ok = isinstance(value, (int, np.integer))
        unbounded = False
        if ok:
            v = float(value)
            unbounded = math.isnan(v) or (finite and not math.isfinite(v))
            ok = not unbounded
            if ok and low is not None:
                ok = v > low if low_open else v >= low
            if ok and high is not None:
                ok = v < high if high_open else v <= high
        if not ok:
            what = _interval(low, high, low_open, high_open)
            if integer:
                what = "an integer" + (f" {what}" if low is not None or high is not None else "")
            elif unbounded and what != "a finite number":
                what = f"a finite number {what}"
            raise ValueError(f"{_owner(owner)}.{name} must be {what}, got {value!r}")


def check_array(name: str, value: object, shape: Sequence[int | None], dtype: type | None = None) -> tuple[int, ...]:
    """``value`` must be a NumPy array of ``len(shape)`` dimensions whose sizes match ``shape`` (an int: exactly
    that size; None: any size), of ``dtype`` where given (``np.float64``, ``np.int64``, ``np.bool_``, ``object``).
    ``name`` names it in the message (``"WeightChanges.t_start"``). Returns the array's shape.

    Raises ``TypeError`` for something that is not an array and ``ValueError`` for a wrong shape or dtype.
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    want = tuple(shape)
    if value.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, value.shape)):
        spelled = ", ".join("n" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "")
        raise ValueError(f"{name} must have shape ({spelled}), got {value.shape}")
    if dtype is not None and value.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must be {np.dtype(dtype)}, got {value.dtype}")
    return tuple(int(s) for s in value.shape)


def check_rows(owner: object, names: Iterable[str], n: int, *, dtype: type | None = None) -> None:
    """Each field ``owner.<name>`` must be an array of ``n`` rows (shape ``(n,)``; a name written ``"xyz:3"`` must
    be ``(n, 3)``), of ``dtype`` where given: the columns of one table stored as parallel arrays.

    Raises ``TypeError``/``ValueError`` as :func:`check_array` does, naming ``Owner.field``.
    """
    for spec in names:
        name, _, tail = spec.partition(":")
        shape: tuple[int | None, ...] = (n,) + tuple(int(k) for k in tail.split("x") if k) if tail else (n,)
        check_array(f"{_owner(owner)}.{name}", getattr(owner, name), shape, dtype)


def rejected(log: logging.Logger, message: str) -> ValueError:
    """Log a rejected input at WARNING on ``log`` (the module that rejects it) and return the ``ValueError`` to
    raise, so that every refusal of bad input is both raised and counted in the logs."""
    log.warning("%s", message)
    return ValueError(message)
