"""Fixtures and helpers shared by the store loop's tests (``tests/test_store_loop.py``, the loop over a session, and
``tests/test_store_loop_binding.py``, gate scans bound to tracks): the AutoCheckout store, a simulated session of
it, a live-configured :class:`carts.loop.StoreLoop` and a player feeding it steps as the live store gets them.

Use it from a test module by importing what you need (the fixtures are found by name)::

    from store_loop_support import live_loop, play_live, sim, store  # noqa: F401
"""
from __future__ import annotations

import numpy as np
import pytest

from carts.fusion_config import BinGeometry
from carts.loop import StoreLoop
from carts.loop_config import LoopConfig
from carts.offline.evaluation import planogram_from_store
from carts.offline.simulation import simulate
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import SimStore, load_store
from conftest import shared_file


@pytest.fixture(scope="module")
def store() -> SimStore:
    """The AutoCheckout store (``carts.offline.simulation_store.load_store``; skips where the data set is absent)."""
    return load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])


@pytest.fixture(scope="module")
def sim(store):
    """A simulated session of ``store``: 8 shoppers over 4 minutes, seed 77 (one per test module)."""
    return simulate(store, SimConfig.at("default", shoppers=8, minutes=4.0, seed=77))


def live_loop(sim, sink, *, zones: bool = False, **config) -> StoreLoop:
    """A loop on ``sim``'s store inferring exits from the tracks (``config``: more ``LoopConfig`` fields); with
    ``zones``, the store's entry and exit zones set as the store worker sets them."""
    loop = StoreLoop(planogram=planogram_from_store(sim.store), bins=BinGeometry.from_store(sim.store), sink=sink,
                     config=LoopConfig(infer_exits=True, **config))
    if zones:  # as the store worker loads them (carts.runtime.StoreWorker._zones)
        entry = [z for z in sim.store["zones"] if z["kind"] == "entry"]
        loop.entry_zones = [np.asarray(z["polygon"], float) for z in entry]
        loop.gate_zones = {z["name"]: np.asarray(z["polygon"], float) for z in entry}
        loop.exit_zones = [np.asarray(z["polygon"], float) for z in sim.store["zones"] if z["kind"] == "exit"]
    return loop


def play_live(sim, loop, steps, *, visit_of_track):
    """Feed ``steps`` as the live store gets them: scans name visits, never tracks; nobody reports exits."""
    for step in steps:
        for g in step.gates:
            if g.kind == "entry":
                loop.on_gate_entry(visit=visit_of_track[g.track], t=g.t)
        loop.on_observations(step.tracks)
        for codes, t, grams, rate in step.shelves:
            loop.on_samples(bin_codes=codes, t=t, grams=grams, rate_hz=rate)
        loop.advance(step.t_next)
