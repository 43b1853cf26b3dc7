"""Issue 15 item 1: whoever is inside the store when a recording plays is its shopper. A new shopper signs up, is
admitted at the gate, and the recording's shopper is bound to that visit (not to the demo account): the cart fills
and the receipt is theirs; the dashboard names who plays whom."""
from __future__ import annotations

import pytest
from django.test import Client

from carts.offline.emulator import emulate
from carts.live import replay_cast, visits_waiting
from carts.tasks import replay_recording_task
from store.accounts.demo import DEMO_SHOPPER
from store.accounts.payment import shopper_card_attach
from store.accounts.services import shopper_create
from store.billing.models import Receipt
from store.gates.models import Gate, Visit
from store.gates.services import gate_create, pass_issue, visit_enter
from store.inventory.services import catalogue_load
from store.layout.services import layout_load
from store.recording import read_recording

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"


def admit_new_shopper(store, email="newbie@walkout.test") -> Visit:
    """A shopper who signed up, saved a card and scanned a pass at the store's own gate (the store loop off, as in
    the embedded demo before a replay starts)."""
    user = shopper_create(email=email, password="take-it-and-go")
    shopper_card_attach(user=user, card_token="4242424242424242")
    gate, _ = gate_create(store=store, name="front")
    return visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate)


def test_the_shopper_inside_is_the_recordings_shopper(benchmark1_recording):
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    visit = admit_new_shopper(store)
    assert [v.pk for v in visits_waiting(store_code=store.code)] == [visit.pk]
    assert replay_cast(store_code=store.code, entries=2) == [("newbie@walkout.test", visit.pk), (DEMO_SHOPPER, None)]

    result = emulate(rec, speed=10, bind_visits=[visit.pk])
    assert result.visits and list(result.visits.values()) == [visit.pk], result
    visit.refresh_from_db()
    assert visit.state == Visit.State.BILLED and visit.track_id
    receipt = Receipt.objects.get(visit=visit)
    assert [(ln.barcode, ln.quantity) for ln in receipt.lines.all()] == [("071142008582", 1)]
    # nobody played as the demo account
    assert not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()


def test_dashboard_hint_names_who_plays(benchmark1_recording, settings, tmp_path):
    import shutil

    from django.contrib.auth import get_user_model

    settings.RECORDINGS_DIR = tmp_path
    shutil.copytree(benchmark1_recording, tmp_path / benchmark1_recording.name)
    boss = get_user_model().objects.create_user("boss", is_staff=True)
    c = Client()
    c.force_login(boss)
    hint = c.get("/manage/").content.decode()
    assert "nobody is inside now, so it plays as <strong>shopper@walkout.test</strong>" in hint
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    visit = admit_new_shopper(store)
    hint = c.get("/manage/").content.decode()
    assert f"now <strong>newbie@walkout.test</strong> (visit {visit.pk}, {store.code})" in hint


def test_the_workers_replay_binds_the_shopper_inside_too(benchmark1_recording):
    """Production profile: the live replay runs on a Celery worker (``replay_recording_task``), not the emulator;
    the person inside is its shopper there too (it used to play the demo account and leave them an empty cart)."""
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    visit = admit_new_shopper(store)
    out = replay_recording_task(str(benchmark1_recording), "worker-bind", None, [visit.pk])
    assert out["visits"] == 1, out
    visit.refresh_from_db()
    assert visit.state == Visit.State.BILLED and visit.track_id and visit.session == "worker-bind"
    receipt = Receipt.objects.get(visit=visit)
    assert [(ln.barcode, ln.quantity) for ln in receipt.lines.all()] == [("071142008582", 1)]
    assert not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()


def test_a_stopped_emulations_shopper_is_nobody_inside(benchmark1_recording):
    """A visit admitted at the emulator's own gate (a recorded shopper of an earlier emulation that was stopped) is
    not a person inside: it is neither offered as the replay's shopper nor bound (the next emulation bills it)."""
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    admit_new_shopper(store, email="stale@walkout.test")
    assert Gate.objects.filter(store=store, name="front").update(emulated=True) == 1  # where it was admitted
    assert visits_waiting(store_code=store.code) == []
    assert replay_cast(store_code=store.code, entries=1) == [(DEMO_SHOPPER, None)]


def test_emulate_store_binds_the_shopper_inside_unless_told_not_to(benchmark1_recording):
    """``manage.py emulate_store``: the person inside is the recording's shopper and the command says so;
    ``--no-bind`` plays the demo account and leaves them inside, untouched."""
    import io

    from django.core.management import call_command

    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    visit = admit_new_shopper(store)
    err = io.StringIO()
    call_command("emulate_store", str(benchmark1_recording), "--speed", "20", "--no-bind", stdout=io.StringIO(),
                 stderr=err)
    assert "inside the store now" not in err.getvalue()
    visit.refresh_from_db()
    assert visit.state == Visit.State.ADMITTED and not visit.track_id
    assert Visit.objects.filter(shopper__username=DEMO_SHOPPER, state=Visit.State.BILLED).count() == 1

    err = io.StringIO()
    call_command("emulate_store", str(benchmark1_recording), "--speed", "20", stdout=io.StringIO(), stderr=err)
    assert (f"inside the store now, so the recording's first shopper: newbie@walkout.test (visit {visit.pk})"
            in err.getvalue()), err.getvalue()
    visit.refresh_from_db()
    assert visit.state == Visit.State.BILLED and visit.track_id
    assert [(ln.barcode, ln.quantity) for ln in Receipt.objects.get(visit=visit).lines.all()] == [("071142008582", 1)]
    assert Visit.objects.filter(shopper__username=DEMO_SHOPPER).count() == 1
