"""What a fresh-user trial found about offline runs (``replay``, ``evaluate``): they must never bind a real
shopper's account (a hold on a real card, a visit in the real shopper's cart page), and the emulated store's stored
times must stay in order at any ``--speed``."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from carts.management.commands.replay import waiting_review
from carts.models import CartEvent, ReviewItem
from carts.selectors_dashboard import review_queue, sales_today
from carts.services.checkout import visit_checkout
from sensors.models import ShelfEvent
from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure, is_throwaway_shopper, throwaway_shopper
from store.accounts.services import manager_create
from store.billing.models import Receipt
from store.gates.models import Visit
from store.gates.services import gate_create, pass_issue, visit_enter, visit_transition
from store.layout.models import Store

pytestmark = pytest.mark.django_db


def test_evaluate_replays_on_throwaway_accounts_never_the_demo_shopper(benchmark1_recording):
    demo_shopper_ensure(DEMO_SHOPPER)  # the real demo account exists (``manage.py demo`` made it)
    call_command("evaluate", str(benchmark1_recording), replay=True, stdout=io.StringIO())
    visits = list(Visit.objects.select_related("shopper"))
    assert visits
    assert not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()
    assert all(is_throwaway_shopper(v.shopper.username) for v in visits), [v.shopper.username for v in visits]


def test_replay_without_shopper_uses_throwaway_accounts_and_needs_no_create_shoppers(benchmark1_recording):
    demo_shopper_ensure(DEMO_SHOPPER)
    call_command("replay", str(benchmark1_recording), stdout=io.StringIO(), stderr=io.StringIO())
    assert not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()
    assert Visit.objects.filter(shopper__username=throwaway_shopper(Visit.objects.first().track_id)).exists()


def test_evaluate_never_plays_an_account_the_recording_names(benchmark1_recording, tmp_path):
    """A recording made in a real store names its shoppers' accounts: an offline evaluation still plays them on
    throwaway accounts (``replay --shopper`` opts back in to the recorded ones)."""
    import shutil

    rec = tmp_path / "named"
    shutil.copytree(benchmark1_recording, rec)
    gates = (rec / "gates.csv").read_text().splitlines()
    (rec / "gates.csv").write_text("\n".join([gates[0]] + [line.replace(",,", f",{DEMO_SHOPPER},", 1)
                                                            for line in gates[1:]]) + "\n")
    assert DEMO_SHOPPER in (rec / "gates.csv").read_text()
    demo_shopper_ensure(DEMO_SHOPPER)
    call_command("evaluate", str(rec), replay=True, stdout=io.StringIO())
    assert Visit.objects.exists() and not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()
    # --shopper names an account with a card (an unknown one is refused: tests/test_cli_errors.py); on a recording
    # that names its shoppers it opts in to the recorded accounts
    call_command("replay", str(rec), "--shopper", DEMO_SHOPPER, stdout=io.StringIO(), stderr=io.StringIO())
    assert Visit.objects.filter(shopper__username=DEMO_SHOPPER).count() == 1


def test_throwaway_names():
    assert is_throwaway_shopper("replay+7@walkout.test")
    assert not is_throwaway_shopper(DEMO_SHOPPER) and not is_throwaway_shopper("shopper+7@walkout.test")
    assert not is_throwaway_shopper("replay+7@walkout.test.evil.com")


def _assert_times_in_order(visit) -> None:
    """Every stored time of ``visit`` in order: shelf events ≤ exit ≤ billed ≤ receipt issued."""
    receipt = visit.receipt
    events = [e.shelf_event.t_end for e in CartEvent.objects.filter(visit=visit, shelf_event__isnull=False)
              .select_related("shelf_event")]
    assert visit.exited_at is not None and visit.billed_at is not None
    assert all(t <= visit.exited_at for t in events), (events, visit.exited_at)
    assert visit.exited_at <= visit.billed_at <= receipt.issued_at, (visit.exited_at, visit.billed_at,
                                                                     receipt.issued_at)


@pytest.mark.django_db(transaction=True)
def test_emulated_run_at_5x_stores_its_times_in_order(benchmark1_recording, settings):
    """``emulate_store --speed 5`` (``make demo``): the store's clock runs 5× the wall clock; the receipt used to be
    issued on the wall clock, before the shelf events on it, the exit and the billing."""
    from carts.offline.emulator import emulate
    from store.recording import read_recording

    settings.PAYMENT_PROVIDER = "dummy"
    result = emulate(read_recording(benchmark1_recording), speed=5)
    visits = list(Visit.objects.filter(pk__in=result.visits.values()))
    assert visits and all(v.state == Visit.State.BILLED for v in visits), [v.state for v in visits]
    for visit in visits:
        _assert_times_in_order(visit)


def test_a_wall_clock_checkout_of_a_visit_whose_store_clock_ran_ahead_bills_it_after_its_exit(benchmark1_recording):
    """The checkout sweeper (wall clock) billing a visit that exited on an emulated store clock ahead of the wall."""
    from datetime import timedelta

    from django.utils import timezone

    user = demo_shopper_ensure(throwaway_shopper("1"))

    store = Store.objects.create(code="ahead", name="Ahead", currency="usd")
    gate, _ = gate_create(store=store, name="front")
    visit = visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate)
    ahead = timezone.now() + timedelta(minutes=3)
    visit = visit_transition(visit=visit, to_state=Visit.State.EXITED, at=ahead)
    receipt = visit_checkout(visit=visit)
    visit.refresh_from_db()
    assert visit.state == Visit.State.BILLED and visit.billed_at == ahead and receipt.issued_at == ahead


def test_demo_refuses_a_port_in_use_before_running_anything():
    """``demo --addr`` on a taken port used to run the whole demo, then exit 0 with "CRITICAL Listen failure"."""
    import socket

    from django.core.management.base import CommandError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=rf"cannot serve on 127.0.0.1:{port}: port {port} of 127.0.0.1 is in "
                                               r"use; stop what listens there"):
            call_command("demo", "--addr", f"127.0.0.1:{port}", stdout=io.StringIO())
    assert not Visit.objects.exists()


def test_offline_runs_are_not_todays_sales_and_replay_names_the_visits_awaiting_review(benchmark1_recording):
    """A replay's receipts are a test run's: not in the dashboard's Today's sales; a live visit's are."""
    from datetime import timedelta

    from django.utils import timezone

    out = io.StringIO()
    call_command("replay", str(benchmark1_recording), stdout=out, stderr=io.StringIO())
    visit = Visit.objects.get()
    Receipt.objects.filter(visit=visit).update(issued_at=timezone.now())  # as if billed today (a review decided)
    assert Receipt.objects.filter(visit=visit).exists()
    assert sales_today() == []
    real = demo_shopper_ensure(DEMO_SHOPPER)
    live = Visit.objects.create(store=visit.store, shopper=real, session="live", track_id="t",
                                entered_at=timezone.now() - timedelta(minutes=5))
    Receipt.objects.create(visit=live, currency="usd", total_minor=250, issued_at=timezone.now())
    assert [(r.receipts, r.total_minor) for r in sales_today()] == [(1, 250)]

    Visit.objects.filter(pk=visit.pk).update(state=Visit.State.UNDER_REVIEW)

    said = io.StringIO()
    waiting_review(said, visit.session, benchmark1_recording)

    event = ShelfEvent.objects.filter(session=visit.session).first()
    ReviewItem.objects.update_or_create(shelf_event=event, defaults={"reason": "test", "status": "open",
                                                                   "candidates": [{"visit": visit.pk}]})
    assert [r.test_run for r in review_queue()] == [True]
    from django.test import Client

    client = Client()
    client.force_login(manager_create(email="boss@walkout.test", password="a-long-pass-phrase-1"))
    page = client.get("/manage/").content.decode()
    assert '<span class="pill">test run</span>' in page and f"--session {visit.session}" in page
    assert f"1 visit(s) of session {visit.session} wait on a review" in said.getvalue()
    assert f"manage.py evaluate {benchmark1_recording} --session {visit.session}" in said.getvalue()
