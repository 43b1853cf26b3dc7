"""``bench/live_sampler.py``: a sample counts as the session's (``emulating``) only while the emulator plays the
recording's devices; once it has said so (its ``emulated in …`` line) the devices are silent while it decides the
reviews, and the newest records' age then grew by the second (a "shelf records reach the stream 12.9 s late"
saturation line at 200 shoppers that was the oracle phase's silence, not the store's)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sampler(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # the bench's modules import each other as scripts
    from live_sampler import Sampler
    from live_stack import Procs

    return Sampler(Procs(tmp_path), "walkout_bench_test", [])


def test_the_devices_are_done_once_the_emulator_says_so_even_across_two_looks(sampler, tmp_path):
    log = tmp_path / "emulator.log"
    assert not sampler._devices_done()  # no log yet
    log.write_text("2026-12-06 23:20:01 INFO carts.offline.emulator: shopper 1 in\n" * 500)
    assert not sampler._devices_done()
    with log.open("a") as f:
        f.write("emula")  # the line is being written when the sampler looks
    assert not sampler._devices_done()
    with log.open("a") as f:
        f.write("ted in 152.9 s: sent {'shelf': 6016}\n")
    assert sampler._devices_done()
    log.write_text("")  # once done, done
    assert sampler._devices_done()
