"""The live store end to end in the embedded profile: ``emulate_store`` plays a recording's devices through the HTTP
APIs (shelf controllers, the external tracker, the gate with real passes); the store loop binds each scan to the
track at the gate, sees each shopper leave and bills them; the receipts equal the offline run's."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from carts.evaluation import offline_replay
from carts.models import CartEvent
from carts.simulation import SimConfig, load_store, read_truth_events, simulate, write_simulation
from store.billing.models import Receipt
from store.gates.models import Visit
from store.recording import read_recording
from conftest import shared_file

pytestmark = pytest.mark.django_db(transaction=True)


def run(path, *args) -> list[str]:
    out = io.StringIO()
    call_command("emulate_store", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip().splitlines()


def test_benchmark1_live_at_ten_times_real_time(benchmark1_recording, settings):
    lines = run(benchmark1_recording, "--speed", "10")
    assert lines[-1] == "F1 1.000"
    assert "shelf events 1, sent to review 0 (review rate 0.000)" in lines
    visit = Visit.objects.get(session=lines[0].split()[1])
    assert visit.state == Visit.State.BILLED
    # bound by the loop at the gate (nobody told it the track), exited by the loop when the track left
    reasons = list(visit.transitions.values_list("reason", flat=True))
    assert any(r.startswith("bound to track emulator:") for r in reasons)
    assert any(r == "left the store" for r in reasons)
    assert [(line.barcode, line.quantity) for line in Receipt.objects.get(visit=visit).lines.all()] == \
        [("071142008582", 1)]
    assert settings.WALKOUT["STORE_LOOP"] == "off"  # the command's own process setting is put back


@pytest.fixture(scope="module")
def two_shoppers(tmp_path_factory):
    store = load_store(shared_file("datasets/autocheckout/store_meta/Plates.json").parents[1])
    sim = simulate(store, SimConfig.at("default", shoppers=2, minutes=2.0, seed=5))
    return write_simulation(sim, tmp_path_factory.mktemp("sim") / "sim-5")


def test_two_shoppers_live_match_the_offline_run(two_shoppers):
    lines = run(two_shoppers, "--speed", "10")
    assert lines[-1] == "F1 1.000"
    session = lines[0].split()[1]
    rec = read_recording(two_shoppers)
    offline = offline_replay(rec, truth_events=read_truth_events(rec.path))  # reviews decided by the oracle, as
    billed = {}
    for v in Visit.objects.filter(session=session):
        assert v.state == Visit.State.BILLED
        billed[v.track_id] = {line.barcode: line.quantity for line in v.receipt.lines.all()}
    # emulate_store's evaluate does: the same receipts as the offline run (which reads who is whom from the gates)
    assert billed == {t: cart for t, cart in offline.billed.items()}
    # each cart line came from fusion (or a review), none twice
    events = CartEvent.objects.filter(visit__session=session, source="fusion")
    assert events.count() == len(set(events.values_list("shelf_event_id", "visit_id", "product_id")))
