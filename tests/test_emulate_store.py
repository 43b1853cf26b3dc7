"""The live store end to end in the embedded profile: ``emulate_store`` plays a recording's devices through the HTTP
APIs (shelf controllers, the external tracker, the gate with real passes); the store loop binds each scan to the
track at the gate, sees each shopper leave and bills them; the receipts equal the offline run's. A recording whose
shelf data ends before its other sources still bills every shopper at their exit; the emulator plays its own
devices and never touches the store's."""
from __future__ import annotations

import ast
import io
import json
import re
import shutil
import time

import numpy as np
import pytest
from django.core.management import call_command

from carts.management.commands.demo import demo_store_prepare
from carts.offline.emulator import emulate
from carts.offline.emulator_devices import (
    EMULATOR, _controllers, controller_blocks, door_gates, emulated_store, idle_samples, register,
)
from carts.offline.evaluation import offline_replay
from carts.models import CartEvent
from carts.offline.replay import session_decisions
from carts.offline.simulation import simulate, write_simulation
from carts.offline.simulation_config import SimConfig
from carts.offline.simulation_store import load_store
from carts.offline.simulation_truth import read_truth_events
from carts.pipeline import StorePipeline
from sensors.models import ShelfController
from sensors.services import controller_authenticate, controller_create
from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure
from store.billing.models import Receipt
from store.gates.models import EntryPass, Gate, Visit
from store.gates.services import gate_authenticate, gate_create
from store.layout.models import Store
from store.layout.services import layout_load
from store.recording import SHELVES_NPY, ShelfSamples, read_recording, write_shelves
from conftest import shared_file
from vision.models import TrackerSource
from vision.services import tracker_authenticate, tracker_create

pytestmark = pytest.mark.django_db(transaction=True)


def run(path, *args, err: io.StringIO | None = None) -> list[str]:
    out = io.StringIO()
    call_command("emulate_store", str(path), *args, stdout=out, stderr=err if err is not None else io.StringIO())
    return out.getvalue().strip().splitlines()


def billed_receipts(session: str) -> dict[str, dict[str, int]]:
    """{recording track: {barcode: units}} of the visits ``session`` billed (each must be billed)."""
    billed = {}
    for v in Visit.objects.filter(session=session):
        assert v.state == Visit.State.BILLED, (v.track_id, v.state)
        billed[v.track_id] = {line.barcode: line.quantity for line in v.receipt.lines.all()}
    return billed


def test_benchmark1_live_at_ten_times_real_time(benchmark1_recording, settings):
    from store.gates.services import gate_authenticate, gate_create
    from store.layout.services import layout_load

    # a manager's own gate that happens to bear the emulator's name: the emulator must leave it alone
    store = layout_load(data=read_recording(benchmark1_recording).store)
    managers_gate, managers_key = gate_create(store=store, name=EMULATOR)
    lines = run(benchmark1_recording, "--speed", "10")
    assert lines[-1] == "F1 1.000"
    assert gate_authenticate(api_key=managers_key) == managers_gate  # its key still works
    managers_gate.refresh_from_db()
    assert managers_gate.active and not managers_gate.emulated
    assert "shelf events 1, sent to review 0 (review rate 0.000)" in lines
    visit = Visit.objects.get(session=lines[0].split()[1])
    assert visit.state == Visit.State.BILLED
    # bound by the loop at the gate (nobody told it the track), exited by the loop when the track left
    reasons = list(visit.transitions.values_list("reason", flat=True))
    assert any(r.startswith(f"bound to track {EMULATOR}:") for r in reasons)
    assert any(r == "left the store" for r in reasons)
    assert [(line.barcode, line.quantity) for line in Receipt.objects.get(visit=visit).lines.all()] == \
        [("071142008582", 1)]
    # the same receipt as evaluate's offline run of the recording
    rec = read_recording(benchmark1_recording)
    assert billed_receipts(visit.session) == offline_replay(rec).billed
    # the devices' times are the recording's plus a whole number of seconds (the store's 0.1 s body frames group
    # sightings as offline: a fraction of a second flips decisions at the margin, docs/store-worker-load.md)
    shift = visit.entered_at.timestamp() - rec.gates[0].t
    assert abs(shift - round(shift)) < 1e-5, shift
    # the emulator scanned at its own gate, clearly marked, under the next free name
    assert Gate.objects.get(store=store, emulated=True).name == f"{EMULATOR}-2"
    assert settings.WALKOUT["STORE_LOOP"] == "off"  # the command's own process setting is put back


@pytest.fixture(scope="module")
def two_shoppers(tmp_path_factory):
    store = load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])
    sim = simulate(store, SimConfig.at("default", shoppers=2, minutes=2.0, seed=5))
    return write_simulation(sim, tmp_path_factory.mktemp("sim") / "sim-5")


@pytest.fixture(scope="module")
def shelves_end_early(two_shoppers, tmp_path_factory):
    """The two-shopper recording with its shelf data cut 1.75 s after the last shelf event ends (the plates have
    settled), before the last shopper leaves and a minute before the recording ends: its cameras and gate go on."""
    dest = tmp_path_factory.mktemp("cut") / "sim-5-cut"
    shutil.copytree(two_shoppers, dest)
    events = json.loads((dest / "truth_events.json").read_text())["events"]
    cut = max(e["t_end"] for e in events) + 1.75
    gates = (dest / "gates.csv").read_text().splitlines()[1:]
    last_exit = max(float(g.split(",")[0]) for g in gates if ",exit," in g)
    manifest = json.loads((dest / "recording.json").read_text())
    assert cut < last_exit < manifest["t_end"] - 30  # what this fixture is for
    write_shelves(dest, [ShelfSamples(s.t[s.t <= cut], s.bin_codes, np.array(s.grams[s.t <= cut]))
                         for s in read_recording(two_shoppers).shelves], form="npy")
    return dest


def test_shelf_data_ending_before_the_other_sources_still_bills_at_the_exits(shelves_end_early):
    """The controller goes on sampling its idle plates after its recorded samples end (a real one never stops), so
    the store's shelf horizon keeps up and each shopper is billed at their exit, during the recording: before, the
    controller's clock stopped and billing waited for the devices to catch up after the recording (at the emulated
    pace: minutes for a long recording, beyond the settle timeout)."""
    err = io.StringIO()
    lines = run(shelves_end_early, "--speed", "20", err=err)
    assert lines[-1] == "F1 1.000"
    settled = re.search(r"every visit settled ([0-9.]+) s", err.getvalue())
    assert settled and float(settled.group(1)) == 0.0, err.getvalue()[-2000:]
    sent = re.search(r"sent (\{.*?\})", err.getvalue())
    assert sent and ast.literal_eval(sent.group(1))["idle"] > 0
    rec = read_recording(shelves_end_early)
    offline = offline_replay(rec, truth_events=read_truth_events(rec.path))
    assert billed_receipts(lines[0].split()[1]) == offline.billed


def test_a_recording_with_binary_shelf_samples_plays_from_its_memory_map(benchmark1_recording, tmp_path):
    """The AutoCheckout benchmark's shelf samples in the binary form (``shelves/``) play as its CSV does: the
    emulator sends the controllers' blocks straight from the mapped arrays, and a block too wide for one controller
    is split into column views of the map, not copies."""
    rec_dir = tmp_path / "rec"
    shutil.copytree(benchmark1_recording, rec_dir)
    write_shelves(rec_dir, read_recording(rec_dir).shelves, form="npy")
    assert (rec_dir / SHELVES_NPY).is_dir() and not (rec_dir / "shelves.csv").exists()
    lines = run(rec_dir, "--speed", "10")
    assert lines[-1] == "F1 1.000"
    rec = read_recording(rec_dir)
    split = controller_blocks(rec, max_bins=4)
    assert len(split.shelves) > len(rec.shelves)
    assert all(isinstance(o.grams, np.memmap) for o in rec.shelves)
    # views of the map (nothing read), not copies
    assert all(any(np.shares_memory(b.grams, o.grams) for o in rec.shelves) for b in split.shelves)


def test_the_emulator_registers_its_own_devices_once_and_never_a_managers(benchmark1_recording):
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    theirs = {  # a manager's devices bearing the names the emulator uses
        "gate": gate_create(store=store, name=EMULATOR),
        "tracker": tracker_create(store=store, name=EMULATOR),
        "controller": controller_create(store=store, name=f"{EMULATOR}-c0", bin_codes=["1-1-1"], rate_hz=60.0),
    }
    first = register(store)
    controllers = _controllers(store, rec)
    again = register(store)
    controllers_again = _controllers(store, rec)
    # its own, clearly marked, under the first free name; the same rows on the next run, with new keys
    assert first.gate.emulated and first.gate.name == f"{EMULATOR}-2" and again.gate.pk == first.gate.pk
    assert first.tracker.emulated and first.tracker.name == f"{EMULATOR}-2" and again.tracker.pk == first.tracker.pk
    assert gate_authenticate(api_key=again.gate_key) == first.gate and gate_authenticate(api_key=first.gate_key) is None
    assert tracker_authenticate(api_key=again.tracker_key) == first.tracker
    assert [c.name for c in controllers] == [f"{EMULATOR}-c0-2"] + [f"{EMULATOR}-c{k}" for k in range(1, 4)]
    assert [c.name for c in controllers_again] == [c.name for c in controllers]
    own = ShelfController.objects.filter(store=store, emulated=True)
    assert own.count() == len(rec.shelves)
    for c, block in zip(controllers_again, rec.shelves):
        row = own.get(name=c.name)
        assert row.bin_codes == list(block.bin_codes) and controller_authenticate(api_key=c.key) == row
    assert Gate.objects.filter(store=store).count() == 2 and TrackerSource.objects.filter(store=store).count() == 2
    # the manager's devices: untouched, their keys still work
    gate, key = theirs["gate"]
    assert gate_authenticate(api_key=key) == gate and not Gate.objects.get(pk=gate.pk).emulated
    tracker, key = theirs["tracker"]
    assert tracker_authenticate(api_key=key) == tracker and not TrackerSource.objects.get(pk=tracker.pk).emulated
    controller, key = theirs["controller"]
    assert controller_authenticate(api_key=key) == controller
    assert ShelfController.objects.get(pk=controller.pk).bin_codes == ["1-1-1"]


def test_idle_plates_turn_back_without_a_jump():
    tail = np.arange(6, dtype=float).reshape(3, 2)  # three samples of two plates
    out = idle_samples(tail, 0, 8)
    assert out[:, 0].tolist() == [0, 2, 4, 4, 2, 0, 0, 2]
    assert idle_samples(tail, 5, 3)[:, 0].tolist() == [0, 0, 2]  # numbered on from where the last block stopped
    assert np.abs(np.diff(out, axis=0)).max() <= np.abs(np.diff(tail, axis=0)).max()
    assert idle_samples(tail[:1], 0, 3).tolist() == [[0, 1]] * 3
    with pytest.raises(ValueError):
        idle_samples(tail[:0], 0, 3)


def _matched(live, offline, *, tol_s: float = 0.01) -> tuple[list, list]:
    """The rows of two ``carts.offline.evaluation.Decisions`` that have no twin in the other (same bins, outcome, track and
    lines, times within ``tol_s``: the live session's clock offset is stored to the millisecond)."""
    def rows(d):
        return [(tuple(d.bins[j]), float(d.t_start[j]), float(d.t_end[j]), d.outcome[j], str(d.track[j]),
                 tuple(d.lines[j])) for j in range(len(d))]

    left, right = rows(live), rows(offline)
    for row in list(left):
        twin = next((r for r in right if r[0] == row[0] and r[3:] == row[3:] and abs(r[1] - row[1]) < tol_s
                     and abs(r[2] - row[2]) < tol_s), None)
        if twin is not None:
            left.remove(row)
            right.remove(twin)
    return left, right


def test_two_shoppers_live_match_the_offline_run_through_a_long_store_loop_step(two_shoppers, monkeypatch):
    """Two shoppers played live bill what the offline run bills, decision by decision, each cart line from fusion (or
    a review) once — and that through one long step of the store loop. Embedded, the emulator steps the store loop
    on its own thread after each batch its devices send, so the devices cannot send while the loop steps. One step that takes long (a first JIT compile on a loaded machine: 36 s seen on
    a 10-shopper session) must not be their silence: before, the next (empty) read took every source for down
    (``source_down_s`` 5 s) and the watermark ran that long ahead of the records — shoppers lost inside, hands
    missed, decisions and receipts unlike the offline run's. The step is played on a fake clock, while the first
    scan waits for its shopper's track, and made longer than ``LoopConfig.lost_max_s`` (300 s) so that its harm is
    certain with two shoppers (the bound shopper unseen that long is exited as lost)."""
    from carts import runtime

    class Clock:  # time.monotonic 400 s later from the first step with a scan waiting for its shopper's track
        extra = 0.0

        def __getattr__(self, name):
            return getattr(time, name)

        def monotonic(self):
            return time.monotonic() + self.extra

    clock = Clock()
    monkeypatch.setattr(runtime, "time", clock)
    advance = StorePipeline.advance

    def slow_advance(self, now, **slicing):
        advance(self, now, **slicing)
        if self.loop._binds and not clock.extra:
            clock.extra = 400.0

    monkeypatch.setattr(StorePipeline, "advance", slow_advance)
    lines = run(two_shoppers, "--speed", "20")
    session = lines[0].split()[1]
    rec = read_recording(two_shoppers)
    offline = offline_replay(rec, truth_events=read_truth_events(rec.path))
    assert _matched(session_decisions(session=session, recording=rec), offline.decisions) == ([], [])
    assert billed_receipts(session) == offline.billed
    assert lines[-1] == "F1 1.000"
    assert clock.extra == 400.0  # the long step happened
    # each cart line came from fusion (or a review), none twice
    events = CartEvent.objects.filter(visit__session=session, source="fusion")
    assert events.count() == len(set(events.values_list("shelf_event_id", "visit_id", "product_id")))


def test_a_store_the_emulator_creates_is_not_offered_to_shoppers_but_the_demos_is(two_shoppers, benchmark1_recording):
    """Issue #11: the throwaway store an emulation creates (here the simulated ``walkout-sim``) is never offered on
    the shopper's pass page (``Store.listed`` off), nor given a pass by its code; a manager's store is, and so is
    the demo's store (``make demo``), even where an ``emulate_store`` run created it first."""
    from django.test import Client

    Store.objects.create(code="corner", name="Corner shop")  # a manager's store
    result = emulate(read_recording(two_shoppers), speed=20)
    assert not Store.objects.get(code=result.store_code).listed
    shopper = Client()
    shopper.force_login(demo_shopper_ensure(DEMO_SHOPPER))
    EntryPass.objects.all().delete()  # the emulation's own passes
    page = shopper.get("/gates/pass/")  # the only store offered: its pass straight away, no choice
    assert page.status_code == 200 and page["X-Walkout-Pass"] == "1"
    assert list(EntryPass.objects.values_list("store__code", flat=True)) == ["corner"]
    assert shopper.get(f"/gates/pass/?store={result.store_code}").status_code == 404
    assert shopper.post("/gates/pass/token/", {"store": result.store_code},
                        content_type="application/json").json()["reason"] == "unknown_store"
    # the demo's store: an emulate_store run of BENCHMARK-1 created it unlisted, `make demo` lists it
    bench = read_recording(benchmark1_recording)
    demo_code = bench.store["store"]["code"]
    assert not emulated_store(bench).listed
    demo_store_prepare(bench)
    assert Store.objects.get(code=demo_code).listed
    choose = shopper.get("/gates/pass/").content.decode()
    offered = re.findall(r'href="/gates/pass/\?store=([^"]+)"', choose)
    assert offered == sorted(["corner", demo_code], key=lambda c: Store.objects.get(code=c).name)


def test_a_store_of_several_doors_gets_one_emulated_gate_per_door_and_never_a_managers(benchmark1_recording):
    """``door_gates``: a tiled store's entry zones each get a gate named like the zone (the store loop's door), made
    ``emulated`` once and re-keyed later; a door whose name a manager's gate has gets none; one door, no gates."""
    one = read_recording(benchmark1_recording)
    assert door_gates(layout_load(data=one.store), one) == {}
    tiled = simulate(load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1]),
                     SimConfig.at("default", shoppers=2, minutes=0.5, seed=5, rooms=3))
    store = layout_load(data=tiled.store)
    managers, key = gate_create(store=store, name="entry-2")
    first = door_gates(store, tiled)
    again = door_gates(store, tiled)
    assert sorted(first) == sorted(again) == ["entry", "entry-3"]
    for door, (gate, gate_key) in again.items():
        assert gate.name == door and gate.emulated and gate.pk == first[door][0].pk
        assert gate_authenticate(api_key=gate_key) == gate and gate_authenticate(api_key=first[door][1]) is None
    assert gate_authenticate(api_key=key) == managers and not Gate.objects.get(pk=managers.pk).emulated
