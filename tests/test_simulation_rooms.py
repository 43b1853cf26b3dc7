"""The tiled simulated store (``SimConfig.rooms``): a larger store made of NanoStore rooms side by side, with
unique bins, valid zones, shoppers who use them, and sessions the offline pipeline decides as well as the
NanoStore's."""
from __future__ import annotations

import re

import numpy as np
import pytest

from carts.offline.emulator_devices import controller_blocks, entry_doors
from carts.offline.evaluation import evaluate_session, offline_replay
from carts.offline.simulation import simulate, write_simulation
from carts.offline.simulation_config import ROOM_PITCH_M, SimConfig
from carts.offline.simulation_store import load_store, tile_store
from conftest import shared_file
from store.recording import ShelfSamples, read_recording


@pytest.fixture(scope="module")
def store():
    return load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])


def _bins(store_dict):
    return [(g["number"], b) for g in store_dict["gondolas"] for s in g["shelves"] for b in s["bins"]]


def test_tiled_store_has_unique_bins_one_catalogue_and_a_gate_pair_per_room(store):
    assert tile_store(store, 1) is store
    with pytest.raises(ValueError):
        tile_store(store, 0)
    with pytest.raises(ValueError):
        SimConfig(rooms=0)
    base, big = store.store, tile_store(store, 3).store
    n_g, n_b = len(base["gondolas"]), len(_bins(base))
    bins = _bins(big)
    codes = [b["code"] for _, b in bins]
    assert len(codes) == 3 * n_b and len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"\d+-\d+-\d+", c) for c in codes)
    assert sorted(g["number"] for g in big["gondolas"]) == list(range(1, 3 * n_g + 1))
    for number, b in bins:  # the code names the bin's gondola; room k lies in [k·pitch, (k+1)·pitch)
        assert int(b["code"].split("-")[0]) == number
        assert (number - 1) // n_g == int(b["x"] // ROOM_PITCH_M)
    # room 0 is the NanoStore itself, untouched
    assert big["gondolas"][:n_g] == base["gondolas"]
    assert big["products"] == base["products"]
    assert {f["bin"] for f in big["facings"]} <= set(codes) and len(big["facings"]) == 3 * len(base["facings"])
    faced = {(f["bin"].split("-", 1)[1], f["barcode"]) for f in big["facings"]}  # same planogram in every room
    assert faced == {(f["bin"].split("-", 1)[1], f["barcode"]) for f in base["facings"]}
    names = [z["name"] for z in big["zones"]]
    assert len(set(names)) == len(names) == 6 and names[:2] == ["entry", "exit"]
    for kind in ("entry", "exit"):
        rooms = sorted(int(np.mean([p[0] for p in z["polygon"]]) // ROOM_PITCH_M) for z in big["zones"]
                       if z["kind"] == kind)
        assert rooms == [0, 1, 2]


@pytest.fixture(scope="module")
def tiled(store):
    return simulate(store, SimConfig.at("default", shoppers=14, minutes=3.0, seed=41, rooms=3))


def test_tiled_session_uses_every_room_and_its_gates(tiled):
    zones = {k: [np.asarray(z["polygon"]) for z in tiled.store["zones"] if z["kind"] == k] for k in ("entry", "exit")}

    def inside(xy, polygons, margin=0.3):  # the zones are axis-aligned squares
        return any(np.all(xy >= p.min(axis=0) - margin) and np.all(xy <= p.max(axis=0) + margin) for p in polygons)

    obs = tiled.tracks
    heads = obs[obs.keypoint == "head"]
    for track in sorted(set(heads.track_id)):
        mine = heads[heads.track_id == track]
        order = np.argsort(mine.t)
        first, last = mine.xyz[order[0], :2], mine.xyz[order[-1], :2]
        # seen first at an entry gate and last at an exit gate (position noise ≪ the 1 m zones)
        assert inside(first, zones["entry"]), track
        assert inside(last, zones["exit"]), track
    codes = {c for g in tiled.shelves for c in g.bin_codes}
    assert len(codes) == 3 * 306
    used = {c for bins in tiled.events.bins for c in bins}
    assert used <= codes
    n_g = 5
    assert {(int(c.split("-")[0]) - 1) // n_g for c in used} == {0, 1, 2}


def test_a_short_tiled_session_evaluates_as_well_as_the_nanostore(tiled):
    res = offline_replay(tiled, truth_events=tiled.events)
    truth = {r.track: {x.barcode: x.quantity for x in r.lines} for r in tiled.truth}
    rep = evaluate_session(res.billed, truth, party_of=res.party_of, decisions=res.decisions,
                           truth_events=tiled.events)
    assert len(res.billed) >= 10
    assert rep.score.f1 > 0.95      # measured: 46/46 items, 13/13 receipts exact, F1 1.000
    assert rep.review_rate <= 0.25  # measured: 0.04 (72 true events)


def test_the_emulator_splits_a_large_store_into_controllers_of_whole_gondolas(store, tmp_path):
    # a short session of the 3-room store: the split is about the bins, not the shoppers (writing 3 minutes of
    # 918 plates at 60 Hz cost ~30 s)
    short = simulate(store, SimConfig.at("default", shoppers=2, minutes=0.3, seed=41, rooms=3))
    rec = read_recording(write_simulation(short, tmp_path / "rec"))
    assert [len(b.bin_codes) for b in rec.shelves] == [3 * 306]  # one clock: one block in the recording
    assert controller_blocks(rec) is rec  # within sensors.ingest.MAX_BINS: unchanged
    split = controller_blocks(rec, max_bins=200)
    sizes = [len(b.bin_codes) for b in split.shelves]
    assert max(sizes) <= 200 and sum(sizes) == 3 * 306
    block = rec.shelves[0]
    col = {c: j for j, c in enumerate(block.bin_codes)}
    gondolas = []
    for b in split.shelves:
        gondolas.append({c.split("-")[0] for c in b.bin_codes})
        np.testing.assert_array_equal(b.t, block.t)
        np.testing.assert_array_equal(b.grams, block.grams[:, [col[c] for c in b.bin_codes]])
    assert all(not (a & b) for i, a in enumerate(gondolas) for b in gondolas[i + 1:])  # whole gondolas


def test_a_recording_is_decided_the_same_whichever_way_its_gondolas_are_wired_to_controllers(store):
    """Offline (``evaluate``) the recording's shelves are one block of 612 bins (one clock); live, the emulator
    plays them as controllers of whole gondolas (``controller_blocks``). The loop detects per gondola, so both
    give the same shelf events, decisions and receipts. Before, one detector per block held every change while
    any plate of the block was moving and cut the held batch at arbitrary points: on this session the two
    wirings split different item shares into events of their own and billed differently (the 50-shopper,
    7-room bench-live session replayed offline both ways: 659 events and 250 reviews as one block, 552 and 103 as
    the emulator's three controllers)."""
    from dataclasses import replace

    sim = simulate(store, SimConfig.at("default", shoppers=10, minutes=1.5, seed=11, rooms=2))
    t = sim.shelves[0].t
    assert all(np.array_equal(b.t, t) for b in sim.shelves)  # one clock: one block, as the recording reads it
    rec = replace(sim, shelves=[ShelfSamples(t=t, bin_codes=tuple(c for b in sim.shelves for c in b.bin_codes),
                                             grams=np.hstack([b.grams for b in sim.shelves]))])
    live = controller_blocks(rec, max_bins=400)
    assert [len(b.bin_codes) for b in rec.shelves] == [612] and len(live.shelves) == 2
    results = [offline_replay(r) for r in (rec, live)]

    def events(res):
        return [(e.bin_codes, e.t_start, e.t_end, e.delta_g) for e in sorted(res.events, key=lambda e: (e.t_end,
                                                                                                      e.bin_codes))]

    one, wired = results
    assert len(one.events) > 30
    assert events(one) == events(wired)
    assert list(one.decisions.outcome) == list(wired.decisions.outcome)
    assert list(one.decisions.track) == list(wired.decisions.track)
    assert one.billed == wired.billed and sum(sum(r.values()) for r in one.billed.values()) > 10


def test_each_scanned_shopper_is_placed_at_the_door_they_entered(tiled):
    """``entry_doors``: the entry zone of each scanned track's first floor position (the door whose gate the
    emulator and bench_store scan them at)."""
    doors = entry_doors(tiled)
    scanned = {g.track for g in tiled.gates if g.kind == "entry"}
    assert set(doors) == scanned
    zones = {z["name"]: np.asarray(z["polygon"]) for z in tiled.store["zones"] if z["kind"] == "entry"}
    assert set(doors.values()) == set(zones)  # every room's door used (14 shoppers, 3 rooms)
    heads = tiled.tracks[tiled.tracks.keypoint == "head"]
    for track, door in doors.items():
        mine = heads[heads.track_id == track]
        first = mine.xyz[np.argmin(mine.t), :2]
        poly = zones[door]
        assert np.all(first >= poly.min(axis=0) - 0.3) and np.all(first <= poly.max(axis=0) + 0.3), track
