"""A store recovers from visits that nobody will see leave: an ``emulate_store``/``demo`` killed mid-run leaves its
shopper's visit "inside", which refused every later entry of that shopper (``already_inside``) for twelve hours.
The sweep exits and checks out a visit with no activity for ``VISIT_IDLE_EXIT_S`` whose track is gone (a visit
whose track is still on the live map is left alone); the emulator, on start, deals with the visits an earlier run of
its own left open (exits and bills them, saying so) instead of being refused at its own gate."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from carts.offline.emulator_devices import register
from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure
from store.billing.money import money_display
from carts.services.ledger import CartChange, cart_apply
from store.gates.models import Visit
from store.gates.services import (
    GateRefusal,
    pass_issue,
    visit_bind_track,
    visit_enter,
    visits_abandoned_sweep,
)
from store.inventory.models import Product
from store.inventory.services import catalogue_load
from store.layout.services import layout_load
from store.recording import read_recording
from vision.services import store_map_publish
from test_billing_corrections import _shelf_event, shop  # noqa: F401

pytestmark = pytest.mark.django_db


def _inside(shop, *, track="t9") -> Visit:
    """Ann scanned in and bound to ``track``, one water in her cart; then whatever ran the store died."""
    store, _, water, _, gate = shop
    user = demo_shopper_ensure("ann@walkout.test")
    visit = visit_bind_track(visit=visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate),
                             track_id=track)
    cart_apply(change=CartChange(visit=visit, product=water, quantity=1, confidence=0.95, evidence={}),
               shelf_event=_shelf_event(shop, -600.0))
    return visit


def test_the_sweep_ends_a_visit_left_open_with_no_activity_and_no_track(shop, settings):
    settings.WALKOUT = {**settings.WALKOUT, "VISIT_IDLE_EXIT_S": 1800.0}
    store, gate = shop[0], shop[4]
    visit = _inside(shop)
    user = visit.shopper
    with pytest.raises(GateRefusal) as refused:
        visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate)
    assert refused.value.code == "already_inside"
    # not idle long enough yet: left alone
    assert visits_abandoned_sweep(now=timezone.now() + timedelta(minutes=20)) == []
    assert Visit.objects.get(pk=visit.pk).state == Visit.State.SHOPPING
    # long idle, and its track gone: exited and billed for what the cart held
    ended = visits_abandoned_sweep(now=timezone.now() + timedelta(minutes=31))
    assert [v.pk for v in ended] == [visit.pk]
    visit.refresh_from_db()
    assert visit.state == Visit.State.BILLED and visit.receipt.total_minor == 199
    assert any(r.startswith("abandoned: no activity for 31 min")
               for r in visit.transitions.values_list("reason", flat=True))
    # the shopper can come in again
    assert visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate).state == Visit.State.ADMITTED


def test_a_visit_whose_track_is_still_on_the_map_is_not_swept(shop):
    visit = _inside(shop, track="cam:42")
    later = timezone.now() + timedelta(hours=3)
    store_map_publish(store_code=shop[0].code, t=later.timestamp(), positions={"42": (1.0, 2.0)})
    assert visits_abandoned_sweep(now=later) == []
    assert Visit.objects.get(pk=visit.pk).state == Visit.State.SHOPPING


def test_sweep_visits_command_says_what_it_ended(shop, settings):
    settings.WALKOUT = {**settings.WALKOUT, "VISIT_IDLE_EXIT_S": 0.0}
    visit = _inside(shop)
    out = io.StringIO()
    call_command("sweep_visits", stdout=out)
    assert f"visit {visit.pk} (ann@walkout.test) was left open with no activity and no track: exited, now billed" \
        in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_rerun_after_a_killed_emulation_bills_its_stale_visit_and_is_not_refused(benchmark1_recording):
    """The first run "died" after its gate admitted the demo shopper and the pick reached the cart; the next run
    exits and bills that visit, says so, and plays the recording in full."""
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    devices = register(store)
    user = demo_shopper_ensure(DEMO_SHOPPER)
    stale = visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=devices.gate)
    stale = visit_bind_track(visit=stale, track_id="emulate_store:dead01-1")
    water = Product.objects.get(store=store, barcode="071142008582")
    cart_apply(change=CartChange(visit=stale, product=water, quantity=1, confidence=0.9, evidence={}),
               shelf_event=None)
    # the dead run's shelf event: played faster than real time, its devices' clock ran ahead of the wall clock, so
    # its event lies inside the next run's window; it is not the next run's
    from sensors.models import ShelfEvent
    from store.layout.models import Bin

    ahead = timezone.now() + timedelta(seconds=40)
    dead_event = ShelfEvent.objects.create(store=store, session="live", bin=Bin.objects.filter(store=store).first(),
                                           bin_codes=["dead"], t_start=ahead, t_end=ahead, delta_g=-623,
                                           hypotheses=[])
    out, err = io.StringIO(), io.StringIO()
    call_command("emulate_store", str(benchmark1_recording), "--speed", "10", stdout=out, stderr=err)
    lines = out.getvalue().strip().splitlines()
    assert lines[-1] == "F1 1.000", err.getvalue()
    assert f"visit {stale.pk} of {DEMO_SHOPPER} was left inside by an earlier emulate_store run that was stopped " \
           "before the shopper left; exited it now: billed for what its cart held" in err.getvalue()
    assert "refused at the gate" not in err.getvalue()
    stale.refresh_from_db()
    assert f"line(s), total {money_display(stale.receipt.total_minor, 'usd')}\n" in err.getvalue()  # as on receipts
    assert "minor units" not in err.getvalue() and money_display(stale.receipt.total_minor, "usd").startswith("$")
    assert stale.state == Visit.State.BILLED and stale.receipt.lines.get().barcode == "071142008582"
    fresh = Visit.objects.get(session=lines[0].split()[1])
    assert fresh.pk != stale.pk and fresh.state == Visit.State.BILLED
    dead_event.refresh_from_db()
    assert dead_event.session == "live" and ShelfEvent.objects.filter(session=fresh.session).count() == 1
