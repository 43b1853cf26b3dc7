"""The store worker's database side with fewer queries and the same outcome: the carts read for decisions kept up to
date through the sink's own writes (equal to a fresh read), a shelf event this sink stored itself decided without
asking whether it was decided, a restarted sink still refusing to decide twice, and a step's cart snapshots built
together equal to each visit's own snapshot."""
from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from carts.fusion import Decision
from carts.models import Cart, CartEvent, ReviewItem
from carts.pipeline import DatabaseSink
from carts import pipeline
from carts.services import ledger
from carts.services.checkout import visit_checkout
from carts.services.ledger import (
    CartChange, cart_apply, cart_publish, cart_publish_batch, cart_snapshot, cart_snapshots,
)
from carts.services.review_queue import review_undecided_by_visit
from sensors import weight
from sensors.models import ShelfEvent
from store import pushes
from store.billing.models import Receipt
from store.gates.models import Visit
from store.gates.services import visit_exit
from store.inventory.models import Product, TaxCategory
from store.inventory.services import catalogue_load
from store.layout.models import Bin
from store.layout.services import layout_load

pytestmark = pytest.mark.django_db

COLA, CHIPS = "0001", "0002"
T0 = 1_700_000_000.0


@pytest.fixture
def store():
    data = {"store": {"code": "sq", "name": "Queries", "currency": "usd"}, "zones": [],
            "gondolas": [{"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 0.6, "depth_m": 0.4,
                          "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": [
                              {"number": p, "code": f"1-1-{p}", "x": 0.2 * p, "y": 0.2, "z": 1.0, "width_m": 0.2,
                               "depth_m": 0.4, "yaw_rad": 0.0} for p in range(1, 3)]}]}]}
    store = layout_load(data=data)
    catalogue_load(store=store, products=[
        {"barcode": COLA, "name": "Cola", "price": "1.99", "unit_weight_g": 355.0, "unit_weight_sd_g": 5.0},
        {"barcode": CHIPS, "name": "Chips", "price": "2.49", "unit_weight_g": 120.0, "unit_weight_sd_g": 4.0}],
        facings=[{"bin": "1-1-1", "barcode": COLA}, {"bin": "1-1-2", "barcode": CHIPS}])
    Product.objects.filter(store=store, barcode=CHIPS).update(
        tax_category=TaxCategory.objects.create(store=store, name="food", rate_percent=Decimal("7.25")))
    return store


def _visit(store, name, state=Visit.State.SHOPPING):
    user = get_user_model().objects.create_user(username=f"{name}@example.com", email=f"{name}@example.com")
    return Visit.objects.create(store=store, shopper=user, state=state, entered_at=timezone.now())


def _event(t, code=COLA, quantity=1, bin_code="1-1-1"):
    return weight.ShelfEvent((bin_code,), t, t + 1.0, -355.0 * quantity, 2.0,
                             (weight.Hypothesis(code, quantity, 0.99, 0.5),))


def _decision(track, code, quantity):
    return Decision(track_id=track, charge_track=track, barcode=code, quantity=quantity, confidence=0.95,
                    attribution=0.97, product=0.98, review=False, reason="sure", candidates=(), options=(),
                    shares=((track, quantity),))


def _read(store, visits, tracks):
    sink = DatabaseSink(store=store, session="fresh-read")
    sink.visits.update(visits)
    return sink.holdings(tracks)


def test_the_carts_kept_through_writes_equal_a_fresh_read_and_a_fresh_event_needs_no_decided_query(store):
    ann, bob = _visit(store, "ann"), _visit(store, "bob")
    sink = DatabaseSink(store=store, session="s1")
    sink.visits.update({"ann": ann, "bob": bob})
    sink.step_begins()
    assert sink.holdings(["ann", "bob"]) == {"ann": {}, "bob": {}}
    steps = [("ann", COLA, 2), ("bob", CHIPS, 1), ("ann", COLA, -1), ("ann", CHIPS, 1), ("ann", COLA, -1)]
    for i, (track, code, qty) in enumerate(steps):
        key = sink.shelf_event(_event(T0 + 10 * i, code, qty, "1-1-1" if code == COLA else "1-1-2"))
        with CaptureQueriesContext(connection) as q:
            assert sink.decided(key) is False
        assert len(q) == 0  # stored by this sink a moment ago: nothing can name it
        with CaptureQueriesContext(connection) as q:
            assert sink.apply(key, _event(T0 + 10 * i, code, qty), _decision(track, code, qty)) is None
        assert not any("reviewitem" in x["sql"].lower() for x in q.captured_queries)  # no "decided before?"
        with CaptureQueriesContext(connection) as q:
            kept = sink.holdings(["ann", "bob"])
        assert len(q) == 0  # kept, not read again
        assert kept == _read(store, {"ann": ann, "bob": bob}, ["ann", "bob"])
    assert kept == {"ann": {CHIPS: 1}, "bob": {CHIPS: 1}}  # a product summing to 0 is left out, as read
    # a review changes no cart: the carts are kept
    key = sink.shelf_event(_event(T0 + 100))
    sink.review(key, _event(T0 + 100), _decision("ann", COLA, 1), "not sure")
    with CaptureQueriesContext(connection) as q:
        assert sink.holdings(["ann"]) == {"ann": {CHIPS: 1}}
    assert len(q) == 0
    assert ReviewItem.objects.filter(shelf_event_id=key).count() == 1
    # a refused put-back (more than the cart holds) writes nothing and keeps the carts as they are
    key = sink.shelf_event(_event(T0 + 110))
    assert "cannot put back" in sink.apply(key, _event(T0 + 110), _decision("ann", COLA, -1))
    assert sink.holdings(["ann"]) == _read(store, {"ann": ann}, ["ann"])
    assert sink.decided(key) is False  # still nothing names it: the review follows
    sink.review(key, _event(T0 + 110), _decision("ann", COLA, -1), "cannot put back")
    assert ReviewItem.objects.filter(shelf_event_id=key).count() == 1


def test_a_restarted_sink_finds_its_events_decided_and_does_not_decide_them_twice(store):
    ann = _visit(store, "ann")
    sink = DatabaseSink(store=store, session="s2")
    sink.visits["ann"] = ann
    first = sink.shelf_event(_event(T0))
    assert sink.apply(first, _event(T0), _decision("ann", COLA, 1)) is None
    second = sink.shelf_event(_event(T0 + 10))
    sink.review(second, _event(T0 + 10), _decision("ann", COLA, 1), "not sure")
    third = sink.shelf_event(_event(T0 + 20))  # stored, then the worker stopped before deciding it
    # the worker restarts from a checkpoint taken before: the same events are detected again
    again = DatabaseSink(store=store, session="s2")
    again.visits["ann"] = Visit.objects.get(pk=ann.pk)
    keys = [again.shelf_event(_event(T0 + t)) for t in (0, 10, 20)]
    assert keys == [first, second, third]
    assert again.decided(first) and again.decided(second) and not again.decided(third)
    assert again.apply(first, _event(T0), _decision("ann", COLA, 1)) is None  # nothing done twice
    again.review(second, _event(T0 + 10), _decision("ann", COLA, 1), "not sure")
    assert CartEvent.objects.filter(visit=ann).count() == 1 and ReviewItem.objects.count() == 1
    assert again.apply(third, _event(T0 + 20), _decision("ann", COLA, 1)) is None
    assert again.holdings(["ann"]) == {"ann": {COLA: 2}} == _read(store, {"ann": ann}, ["ann"])
    assert ShelfEvent.objects.filter(session="s2").count() == 3


def test_a_steps_snapshots_built_together_equal_each_visits_own(store, django_capture_on_commit_callbacks):
    cola, chips = (Product.objects.get(store=store, barcode=b) for b in (COLA, CHIPS))
    ann, bob, cy = _visit(store, "ann"), _visit(store, "bob"), _visit(store, "cy")
    dee = _visit(store, "dee", state=Visit.State.EXITED)
    Visit.objects.filter(pk=dee.pk).update(exited_at=timezone.now(),
                                           checkout_due_at=timezone.now() - timedelta(minutes=5))
    eve = _visit(store, "eve", state=Visit.State.BILLED)
    Receipt.objects.create(visit=eve, currency="usd", total_minor=199, issued_at=timezone.now(), card_last4="4242")
    for visit, product, qty, senses in [(ann, cola, 2, ["weight", "hand"]), (ann, chips, 1, None),
                                        (bob, chips, 3, ["weight"]), (ann, cola, -1, ["weight"]),
                                        (bob, chips, -3, ["weight"]), (dee, chips, 1, ["hand"]),
                                        (eve, cola, 1, ["weight"]), (bob, cola, 1, ["staff"])]:
        CartEvent.objects.create(visit=visit, product=product, quantity=qty, confidence=1.0, senses=senses)
    CartEvent.objects.create(visit=cy, product=cola, quantity=-1, confidence=1.0)  # a sum below 0: shown as 0
    Cart.objects.create(visit=bob, seq=7)
    visits = [ann, bob, cy, dee, eve]
    fresh = Visit.objects.select_related("store", "receipt").in_bulk([v.pk for v in visits])
    pending = review_undecided_by_visit(list(fresh.values()))
    counts = {visit_id: len(undecided) for visit_id, (undecided, _) in pending.items()}
    together = cart_snapshots([fresh[v.pk] for v in visits], pending)  # makes the 4 carts missing
    with CaptureQueriesContext(connection) as q:
        assert cart_snapshots([fresh[v.pk] for v in visits], pending) == together
    assert len(q) == 3  # seq, events, products, whatever the number of visits (the states here read no more)
    alone = {v.pk: cart_snapshot(visit=Visit.objects.get(pk=v.pk), under_review=counts[v.pk]) for v in visits}
    assert together == alone
    assert together[ann.pk]["lines"][0]["quantity"] == 1 and together[bob.pk]["tax_minor"] == 0
    # published in a batch: each sequence bumped once (a new cart to 1), the messages are these snapshots
    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, message))

    real = ledger.get_channel_layer
    ledger.get_channel_layer = lambda: Layer()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            with cart_publish_batch():
                for v in visits:
                    cart_publish(visit=v)
    finally:
        ledger.get_channel_layer = real
    seqs = dict(Cart.objects.values_list("visit_id", "seq"))
    assert seqs[bob.pk] == 8 and seqs[ann.pk] == 1  # ann's cart made by the snapshots above, then bumped
    assert [g for g, _ in sent] == [x for v in visits for x in (f"cart.{v.pk}", f"shopper.{v.shopper_id}")]
    for v in visits:
        snap = next(m["snapshot"] for g, m in sent if g == f"cart.{v.pk}")
        assert snap == cart_snapshot(visit=Visit.objects.get(pk=v.pk), under_review=counts[v.pk])


def test_cart_apply_still_refuses_a_put_back_beyond_the_cart(store):
    ann = _visit(store, "ann")
    cola = Product.objects.get(store=store, barcode=COLA)
    with pytest.raises(ValueError, match="holds 0"):
        cart_apply(change=CartChange(visit=ann, product=cola, quantity=-1, confidence=1.0, evidence={}),
                   shelf_event=None)


def test_a_visit_exited_at_the_gate_before_the_loop_binds_it_does_not_stop_the_worker(store, monkeypatch):
    """A shopper scans in and straight out while the store loop runs behind (the gate's exit scan lands between
    the loop reading the visit and binding its track): the bind must not raise (it stopped ``run_store``: "visit 237
    cannot go from exited to shopping", the hour phase of bench_live); the track is recorded as the shopper's and the
    visit stays exited, for the loop to take the exit when the scan's record comes."""
    ann = _visit(store, "ann", state=Visit.State.ADMITTED)
    real = pipeline.visit_bind_track

    def gate_exits_first(*, visit, track_id, at=None):
        visit_exit(visit=Visit.objects.get(pk=visit.pk), reason="exit scan")  # the gate, in another process
        return real(visit=visit, track_id=track_id, at=at)

    monkeypatch.setattr(pipeline, "visit_bind_track", gate_exits_first)
    sink = DatabaseSink(store=store, session="race")
    sink.bind("t-ann", ann.pk, T0)
    row = Visit.objects.get(pk=ann.pk)
    assert row.state == Visit.State.EXITED and row.track_id == "t-ann"
    assert sink.visits["t-ann"].state == Visit.State.EXITED


def test_a_checkout_held_for_review_reads_the_same_whatever_the_number_of_its_review_items(
        store, django_capture_on_commit_callbacks, monkeypatch):
    """At an exodus the billing workers check out a visit a second, most of them held for review (200 shoppers live:
    179 of 200): the checkout and its push read the review items with their shelf events in the same queries, not
    one more per item, and the shopper is told what is being checked."""
    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, message))

    monkeypatch.setattr(ledger, "get_channel_layer", lambda: Layer())
    bin_ = Bin.objects.get(store=store, code="1-1-1")
    counts = {}
    for n in (1, 4):
        visit = _visit(store, f"v{n}", state=Visit.State.EXITED)
        Visit.objects.filter(pk=visit.pk).update(exited_at=timezone.now())
        visit.refresh_from_db()
        for k in range(n):
            t = timezone.now() - timedelta(seconds=30 - k)
            se = ShelfEvent.objects.create(store=store, session="t", bin=bin_, bin_codes=["1-1-1"], t_start=t,
                                           t_end=t + timedelta(seconds=0.8), delta_g=-355.0,
                                           hypotheses=[{"barcode": COLA, "quantity": 1}])
            ReviewItem.objects.create(shelf_event=se, reason="test", candidates=[{"visit": visit.pk}])
        sent.clear()
        with CaptureQueriesContext(connection) as q, django_capture_on_commit_callbacks(execute=True):
            assert visit_checkout(visit=visit) is None
        counts[n] = len(q)
        visit.refresh_from_db()
        assert visit.state == Visit.State.UNDER_REVIEW
        trip = next(m["snapshot"]["trip"] for g, m in sent if g == f"cart.{visit.pk}")
        assert trip["stage"] == "review" and "Cola" in trip["text"]
    assert counts[4] == counts[1], counts


def test_a_batch_of_pushes_goes_to_many_groups_at_once_in_order_within_each():
    """``group_send_all``: groups are sent to concurrently (at most ``PUSH_CONCURRENCY``), each group's messages in
    their order (a party's members share the lead's shopper group), and a push that fails loses no other."""
    active, most, got = [0], [0], {}

    class Layer:
        async def group_send(self, group, message):
            active[0] += 1
            most[0] = max(most[0], active[0])
            await asyncio.sleep(0.01)  # a round trip to the channel layer
            active[0] -= 1
            if message == "boom":
                raise ConnectionError("redis away")
            got.setdefault(group, []).append(message)

    messages = [(v, f"cart.{v}", f"m{v}") for v in range(40)]
    messages += [(v, "shopper.7", f"s{v}") for v in range(5)] + [(99, "cart.99", "boom")]
    started = time.monotonic()
    asyncio.run(pushes.group_send_all(Layer(), messages))
    assert time.monotonic() - started < 0.3  # not 46 round trips one after the other
    assert most[0] == pushes.PUSH_CONCURRENCY
    assert got["shopper.7"] == [f"s{v}" for v in range(5)]
    assert all(got[f"cart.{v}"] == [f"m{v}"] for v in range(40)) and "cart.99" not in got


def test_a_push_that_hangs_is_given_up_and_holds_nothing_else(monkeypatch, caplog):
    """A channel layer that never answers one group (its Redis away mid-send) must not hold the store loop, whose step
    waits for the batch: that push is given up after ``PUSH_TIMEOUT_S`` and logged; the other groups' go."""
    monkeypatch.setattr(pushes, "PUSH_TIMEOUT_S", 0.2)
    got = []

    class Layer:
        async def group_send(self, group, message):
            if group == "cart.1":
                await asyncio.Event().wait()  # never answers
            got.append(group)

    started = time.monotonic()
    batch = [(1, "cart.1", "a"), (2, "cart.2", "b"), (1, "shopper.5", "c")]
    asyncio.run(asyncio.wait_for(pushes.group_send_all(Layer(), batch), 3.0))  # without the bound: TimeoutError here
    assert time.monotonic() - started < 2.0
    assert sorted(got) == ["cart.2", "shopper.5"] and "given up" in caplog.text


def test_the_store_workers_pushes_go_from_a_thread_of_their_own_in_order():
    """While the background sender is on (the store worker's ``run``), handing a batch over does not wait for the
    channel layer's round trips; the batches then arrive in the order handed over (a group's messages in order
    across batches), and turning it off sends what was handed over first."""
    got: dict[str, list[str]] = {}

    class Layer:
        async def group_send(self, group, message):
            await asyncio.sleep(0.05)  # a slow round trip
            got.setdefault(group, []).append(message)

    layer = Layer()
    sender = pushes.pushes_in_background(True)
    try:
        started = time.monotonic()
        for k in range(4):
            pushes.send_groups(layer, [(1, "cart.1", f"a{k}"), (2, "cart.2", f"b{k}")])
        assert time.monotonic() - started < 0.1  # inline, 4 batches of 0.05 s round trips would take 0.2 s
    finally:
        assert pushes.pushes_in_background(False) is None
    assert got == {"cart.1": ["a0", "a1", "a2", "a3"], "cart.2": ["b0", "b1", "b2", "b3"]}
    assert sender.sent == 4 and sender.dropped == 0
    started = time.monotonic()
    pushes.send_groups(layer, [(1, "cart.1", "inline")])  # off: sent before it returns
    assert got["cart.1"][-1] == "inline" and time.monotonic() - started >= 0.05


def test_a_background_sender_behind_a_hanging_layer_drops_batches_beyond_its_bound(caplog):
    """A channel layer that hangs must not grow the store worker's memory without bound: past ``max_batches``
    waiting, a batch is dropped, logged and counted (phones resync from the ledger), and nothing blocks."""
    release = threading.Event()

    class Layer:
        async def group_send(self, group, message):
            while not release.is_set():
                await asyncio.sleep(0.01)

    sender = pushes.BackgroundPushes(max_batches=2)
    started = time.monotonic()
    for k in range(6):
        sender.submit(Layer(), [(k, f"cart.{k}", "m")])
    assert time.monotonic() - started < 0.5
    assert 3 <= sender.dropped <= 4 and "dropped" in caplog.text  # the one being sent left the queue
    release.set()
    assert sender.close(2.0)
    assert sender.sent + sender.dropped == 6


@pytest.mark.django_db(transaction=True)
def test_a_checkout_handed_on_inside_a_transaction_is_queued_after_it_commits(store, monkeypatch):
    """A checkout handed on while a transaction is open (the visit's last take written in it) is queued once that
    transaction has committed, so the billing worker reads every cart event written before it (queued inside it,
    the checkout could bill the cart without them)."""
    ann = _visit(store, "ann")
    sink = DatabaseSink(store=store, session="slice", queue_checkouts=True)
    sink.visits["ann"] = ann
    sink.step_begins()
    queued = []

    def enqueue(**kw):  # what the billing worker would read now, from a connection of its own
        seen = {}

        def read():
            from django.db import connection as other
            seen["events"] = CartEvent.objects.filter(visit_id=kw["visit_id"]).count()
            other.close()

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        queued.append((kw["visit_id"], seen["events"]))
        return True

    monkeypatch.setattr(pipeline, "checkout_enqueue", enqueue)
    with transaction.atomic():  # the last take of the visit, then its checkout
        key = sink.shelf_event(_event(T0))
        sink.apply(key, _event(T0), _decision("ann", COLA, 1))
        assert sink.checkout("ann", T0 + 5.0) is True
        assert queued == []  # not inside the transaction
    assert queued == [(ann.pk, 1)]
