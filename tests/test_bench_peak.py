"""``bench/bench_store.py``'s busiest window (``_peak``): the worker's CPU per store second over the busiest
``window_s`` of store time, any window of whole steps, the session's first and last included."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def peak(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # the bench's modules import each other as scripts
    from bench_store import _peak

    return _peak


def steps(cpu: list[float], step_s: float = 0.5, t0: float = 0.0) -> list[tuple[float, float, float]]:
    return [(t0 + i * step_s, t0 + (i + 1) * step_s, c) for i, c in enumerate(cpu)]


def test_the_busiest_window_may_be_the_sessions_first_or_last(peak):
    # 0.5 s steps: 20 of them make 10 s. Before, a window was read only from a step starting 10 s after the first
    # one: the first 10 s were never a window (0.5, 1.91 here), and a session of exactly 10 s had none
    assert peak(steps([1.0] * 20 + [0.1] * 20), 10.0) == pytest.approx((0.0, 2.0))
    assert peak(steps([0.1] * 20 + [1.0] * 20), 10.0) == pytest.approx((10.0, 2.0))
    assert peak(steps([0.1] * 10 + [1.0] * 20 + [0.1] * 10), 10.0) == pytest.approx((5.0, 2.0))
    assert peak(steps([1.0] * 20), 10.0) == pytest.approx((0.0, 2.0))


def test_a_session_shorter_than_the_window_has_none(peak):
    assert peak([], 10.0) is None
    assert peak(steps([1.0] * 19), 10.0) is None
    # store seconds since a UTC start: differences that miss 10.0 by a rounding are still a whole window
    t0 = 1_767_744_013.767
    assert peak([(a - t0, b - t0, c) for a, b, c in steps([1.0] * 20, t0=t0)], 10.0) == pytest.approx((0.0, 2.0))
