"""RFID with the database: readers registered with API keys and antennas, reads over HTTP and MQTT (the real broker)
validated and counted, a reader of another store refused, shelf take/return events recorded, and exit-lane tags on
the receipt through the store pipeline — a tagged item nobody weighed is charged, a weighed one is confirmed, and a
serial paid on an earlier receipt is never charged twice."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from carts.pipeline import StorePipeline
from carts.services.checkout import receipt_line_senses, visit_exit_tags_apply
from carts.services.ledger import CartChange, cart_apply
from sensors.models import ReaderProblem, RfidReader, RfidTag, TagEvent
from sensors.mqtt import MqttIngestWorker, Publisher
from sensors.live import ShelfIngestor
from sensors.rfid import (
    TagEvent as TagEventData, decode_sgtin96, encode_reads, encode_sgtin96, exit_lane_tags, reads_topic,
)
from sensors.rfid_live import (
    ReaderInputError, RfidIngestor, http_rfid_ingestor_reset, reader_counters, reader_create,
)
from store.accounts.models import ShopperProfile
from store.accounts.payment import shopper_card_attach
from store.billing.models import Receipt
from store.billing.services import payment_authorise
from store.gates.models import Visit
from store.inventory.services import catalogue_load
from store.layout.services import layout_load
from store.recording import TrackObservations
from tests.services import MQTT, require

pytestmark = pytest.mark.django_db
SHIRT = "5012345678900"        # GTIN-13 of a shirt on a rail: no weight plate
WATER = "614141123452"         # GTIN-12 (UPC-A) of a bottle on a weighed bin
T0 = 1_700_000_000.0


def tagged_store(code: str = "rfid-store"):
    data = {"store": {"code": code, "name": "RFID store", "currency": "usd"}, "zones": [],
            "gondolas": [{"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 0.6, "depth_m": 0.4,
                          "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": [
                              {"number": p, "code": f"1-1-{p}", "x": 0.2 * p, "y": 0.2, "z": 1.0, "width_m": 0.2,
                               "depth_m": 0.4, "yaw_rad": 0.0} for p in range(1, 4)]}]}]}
    store = layout_load(data=data)
    catalogue_load(store=store, products=[
        {"barcode": SHIRT, "name": "Shirt", "price": "20.00", "unit_weight_g": 250.0, "unit_weight_sd_g": 20.0},
        {"barcode": WATER, "name": "Water", "price": "1.50", "unit_weight_g": 520.0, "unit_weight_sd_g": 6.0}],
        facings=[{"bin": "1-1-2", "barcode": WATER}])
    return store


def epc(barcode: str, serial: int) -> str:
    return encode_sgtin96(barcode.zfill(14), serial)


def make_reader(store, name="door-1"):
    return reader_create(store=store, name=name, antennas=[{"port": 1, "kind": "shelf", "bin": "1-1-2"},
                                                          {"port": 2, "kind": "exit", "lane": "lane-1"}])


def test_reader_registration_is_checked():
    store = tagged_store()
    other = tagged_store("other-store")
    reader, key = make_reader(store)
    assert len(key) > 30 and reader.api_key_hash != key
    assert {(a.port, a.kind, a.where) for a in reader.antennas.all()} == {(1, "shelf", "1-1-2"), (2, "exit", "lane-1")}
    with pytest.raises(ReaderInputError, match="already has"):
        make_reader(store)
    with pytest.raises(ReaderInputError, match="no bin"):
        reader_create(store=store, name="x", antennas=[{"port": 1, "kind": "shelf", "bin": "9-9-9"}])
    with pytest.raises(ReaderInputError, match="lane"):
        reader_create(store=other, name="x", antennas=[{"port": 1, "kind": "exit"}])
    with pytest.raises(ReaderInputError, match="once"):
        reader_create(store=other, name="x", antennas=[{"port": 1, "kind": "exit", "lane": "a"},
                                                       {"port": 1, "kind": "exit", "lane": "b"}])


def test_create_reader_command_prints_the_key_once():
    tagged_store()
    import io

    out, err = io.StringIO(), io.StringIO()
    call_command("create_reader", "rfid-store", "rail-3", "--antenna", "1:shelf:1-1-1", "--antenna", "2:exit:door",
                 stdout=out, stderr=err)
    assert RfidReader.objects.get(name="rail-3").antennas.count() == 2
    assert "walkout/rfid-store/rfid/rail-3/reads" in err.getvalue() and len(out.getvalue().strip()) > 30


def post(client, key, body):
    return client.post("/sensors/api/reads/", data=body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Reader {key}")


def test_http_reads_are_validated_counted_and_a_reader_of_another_store_is_refused(client):
    http_rfid_ingestor_reset()
    store = tagged_store()
    other = tagged_store("other-store")
    reader, key = make_reader(store)
    _, other_key = make_reader(other, "door-9")
    good = [(T0 + k, 1, epc(WATER, 1), -50.0) for k in range(4)]
    r = post(client, key, encode_reads(store=store.code, reader="door-1", seq=1, reads=good + [
        (T0, 1, "3074257BF7194E4000001A8", -50.0), (T0, 7, epc(WATER, 2), -50.0)]))
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["reads"] == 4 and {p["reason"] for p in body["problems"]} == {"bad_epc", "unknown_antenna"}
    # a retry of the same message: taken once
    r = post(client, key, encode_reads(store=store.code, reader="door-1", seq=1, reads=good))
    assert r.status_code == 200 and r.json()["duplicate"]
    # the other store's reader sending this store's reads: refused, counted for it, nothing recorded
    r = post(client, other_key, encode_reads(store=store.code, reader="door-1", seq=2, reads=good))
    assert r.status_code == 400 and r.json()["reason"] == "wrong_store"
    r = post(client, key, b"{not json")
    assert r.status_code == 400 and r.json()["reason"] == "malformed_json"
    assert post(client, "nope", b"{}").status_code == 401
    assert reader_counters(reader=reader) == {"bad_epc": 1, "unknown_antenna": 1, "duplicate": 1,
                                              "malformed_json": 1}
    assert dict(ReaderProblem.objects.filter(reader__name="door-9").values_list("reason", "count")) == {
        "wrong_store": 1}
    reader.refresh_from_db()
    assert (reader.messages, reader.reads) == (1, 4)
    tag = RfidTag.objects.get(store=store, serial="1")
    assert (tag.gtin, tag.product.barcode, tag.last_where) == (WATER.zfill(14), WATER, "1-1-2")
    assert not RfidTag.objects.filter(store=other).exists()


def test_shelf_takes_and_returns_are_recorded():
    store = tagged_store()
    reader, _ = make_reader(store)
    ing = RfidIngestor(sink=None)
    seq = iter(range(100))
    for k in range(4):
        ing.handle(reader=reader, payload=encode_reads(store=store.code, reader=reader.name, seq=next(seq), reads=[
            (T0 + k, 1, epc(WATER, 1), -50.0), (T0 + k, 1, epc(WATER, 2), -52.0)]))
    for k in range(4, 9):                       # bottle 1 taken after T0 + 3
        ing.handle(reader=reader, payload=encode_reads(store=store.code, reader=reader.name, seq=next(seq), reads=[
            (T0 + k, 1, epc(WATER, 2), -52.0)]))
    ing.handle(reader=reader, payload=encode_reads(store=store.code, reader=reader.name, seq=next(seq), reads=[
        (T0 + 9, 1, epc(WATER, 1), -50.0)]))    # and put back
    rows = list(TagEvent.objects.filter(store=store).values_list("kind", "tag__serial", "where"))
    assert rows == [("take", "1", "1-1-2"), ("return", "1", "1-1-2")]
    assert TagEvent.objects.get(kind="take").t.timestamp() == pytest.approx(T0 + 3)


def test_a_shelf_tag_take_backs_the_weighed_take_in_the_live_pipeline(dummy_payments):
    """A shelf antenna stops reading a bottle while Ann's hand is at its bin and the plate loses its weight: the
    store pipeline decides the take with the tag event as evidence (``StoreLoop._shelf_tags`` reads the hands of
    the loop's window; it used to call a method the window does not have), and the cart line says weight, hand
    and tag."""
    import numpy as np

    store = tagged_store("rfid-shelf")
    pipe = StorePipeline(store=store, session="rfid-shelf", settle_s=3.0)
    ann = shopper_visit(store, "ann-shelf@example.com")
    pipe.bind_visit(track_id="ann", visit=ann, t=T0)
    t = np.arange(T0, T0 + 30, 1 / 60)
    grams = np.tile([300.0, 2 * 520.0 + 400.0, 300.0], (t.size, 1))
    grams[t >= T0 + 12.5, 1] -= 520.0                      # one bottle lifted off bin 1-1-2
    grams += np.random.default_rng(1).normal(0, 0.5, grams.shape)
    hand_t = np.arange(T0, T0 + 30, 0.1)
    at_bin = np.abs(hand_t - (T0 + 12.4)) < 0.6             # the hand at the bin while it is lifted
    x = np.full(hand_t.size, 0.4)                           # in front of bin 1-1-2 (x 0.3–0.5 m)
    y = np.where(at_bin, 0.15, -0.6)
    z = np.where(at_bin, 1.05, 1.1)
    n = hand_t.size
    obs = TrackObservations(np.array(["ann"] * (2 * n), dtype=object), np.r_[hand_t, hand_t],
                            np.array(["r_wrist"] * n + ["neck"] * n, dtype=object),
                            np.c_[np.r_[x, np.full(n, 0.4)], np.r_[y, np.full(n, -0.7)], np.r_[z, np.full(n, 1.45)]],
                            np.full(2 * n, 0.9))
    reader, _ = make_reader(store, name="shelf-reader")
    e = epc(WATER, 7)
    tag = decode_sgtin96(e)
    pipe.loop.on_tags([TagEventData("take", T0 + 12.5, e, tag.gtin, tag.serial, "1-1-2", -50.0)])
    for k in range(0, t.size, 30):                          # half-second blocks, as a controller sends them
        block = slice(k, k + 30)
        pipe.on_tracks(obs.between(t[block][0], t[block][-1]))
        pipe.on_samples(bin_codes=("1-1-1", "1-1-2", "1-1-3"), t=t[block], grams=grams[block], rate_hz=60.0)
        pipe.advance(float(t[block][-1]))
    event = ann.cart_events.get()
    assert (event.product.barcode, event.quantity) == (WATER, 1)
    assert event.evidence["tags"][0]["kind"] == "take" and event.evidence["tags"][0]["hand"] is True
    assert list(event.senses) == ["weight", "hand", "tag"]


@pytest.fixture
def dummy_payments(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.WALKOUT = {**settings.WALKOUT, "AUTHORISE_AMOUNT_MINOR": 5000}


def shopper_visit(store, email):
    user = get_user_model().objects.create_user(username=email, email=email)
    ShopperProfile.objects.create(user=user)
    shopper_card_attach(user=user, card_token="4242424242424242")
    visit = Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())
    payment_authorise(visit=visit)
    return visit


def exit_reads(t, *tags):
    """Three reads of each (barcode, serial) as a portal reads a passing shopper."""
    out = []
    for barcode, serial in tags:
        e = epc(barcode, serial)
        tag = decode_sgtin96(e)
        out += [TagEventData("exit", t + dt, e, tag.gtin, tag.serial, "lane-1", -50.0) for dt in (-0.4, 0.0, 0.3)]
    return out


def test_exit_lane_tags_are_billed_once(dummy_payments):
    store = tagged_store()
    pipe = StorePipeline(store=store, session="rfid-test", settle_s=3.0)
    ann = shopper_visit(store, "ann@example.com")
    pipe.bind_visit(track_id="ann", visit=ann, t=T0)
    pipe.advance(T0 + 1)
    # Ann leaves with a shirt (no plate saw it) and a bottle of water that the weight plate did see
    water = ann.store.products.get(barcode=WATER)
    cart_apply(change=CartChange(visit=ann, product=water, quantity=1, confidence=0.9, evidence={},
                                 senses=("weight", "hand")), shelf_event=None)
    pipe.loop.on_tags(exit_reads(T0 + 60, (SHIRT, 11), (WATER, 21)))
    pipe.on_exit(track_id="ann", t=T0 + 60, reason="left")
    pipe.advance(T0 + 70)
    receipt = Receipt.objects.get(visit=ann)
    assert {(ln.barcode, ln.quantity) for ln in receipt.lines.all()} == {(SHIRT, 1), (WATER, 1)}
    assert receipt.total_minor == 2150
    senses = {ln.barcode: receipt_line_senses(receipt=receipt)[ln.pk] for ln in receipt.lines.all()}
    assert senses[SHIRT] == ["tag"] and senses[WATER] == ["weight", "hand", "tag"]    # the lane confirmed the water
    assert {ln.barcode: ln.senses for ln in receipt.lines.all()} == senses             # stored on the lines
    sold = {t.serial: (t.sold_visit_id, t.charged) for t in RfidTag.objects.filter(store=store)}
    assert sold == {"11": (ann.pk, True), "21": (ann.pk, False)}
    # Ann comes back wearing the shirt, with Bob, who carries a second shirt out; the lane reads both
    bob = shopper_visit(store, "bob@example.com")
    ann2 = shopper_visit(store, "ann2@example.com")
    pipe.bind_visit(track_id="bob", visit=bob, t=T0 + 100)
    pipe.bind_visit(track_id="ann2", visit=ann2, t=T0 + 100)
    pipe.loop.on_tags(exit_reads(T0 + 200, (SHIRT, 11)))                 # the paid shirt, worn
    pipe.loop.on_tags(exit_reads(T0 + 230, (SHIRT, 12)))                 # Bob's new shirt, 30 s later
    pipe.on_exit(track_id="ann2", t=T0 + 200, reason="left")
    pipe.on_exit(track_id="bob", t=T0 + 230, reason="left")
    pipe.advance(T0 + 240)
    assert not Receipt.objects.get(visit=ann2).lines.exists()            # never charged twice
    bob_receipt = Receipt.objects.get(visit=bob)
    assert [(ln.barcode, ln.quantity) for ln in bob_receipt.lines.all()] == [(SHIRT, 1)]
    assert RfidTag.objects.get(serial="11").sold_visit_id == ann.pk
    # a worker restarted after the checkout applies the same tags again: nothing changes
    att = exit_lane_tags("bob", pipe.loop._exit_reads, pipe.loop.exits)
    charges = visit_exit_tags_apply(visit=Visit.objects.get(pk=bob.pk), tags=att.tags, at=timezone.now())
    assert charges == [] and bob.cart_events.count() == 1


def test_mqtt_reads_are_authenticated_and_counted():
    require("MQTT", MQTT)
    code = f"rfid-{uuid.uuid4().hex[:8]}"
    store = tagged_store(code)
    reader, key = make_reader(store)
    other, other_key = make_reader(tagged_store(f"o{code}"), "door-9")
    topic = reads_topic(code, reader.name)
    msgs = [(topic, encode_reads(store=code, reader=reader.name, seq=k, key=key,
                                 reads=[(time.time(), 1, epc(WATER, k + 1), -50.0)])) for k in range(5)]
    msgs += [(topic, encode_reads(store=code, reader=reader.name, seq=99, key=other_key, reads=[])),  # other store's key
             (reads_topic(code, "ghost"), msgs[0][1]),                                                # no such reader
             (topic, encode_reads(store=code, reader=reader.name, seq=50, key=key,
                                  reads=[(time.time(), 2, "E2801160600002084A8B0F6C", -50.0)])),     # a TID, not an EPC
             (topic, b"{not json")]
    ing = RfidIngestor(sink=None)
    worker = MqttIngestWorker(url=f"mqtt://{MQTT[0]}:{MQTT[1]}", ingestor=ShelfIngestor(raw=None, session="rfid-mq"),
                              subscription=f"walkout/{code}/shelf/+/weights", session_expiry_s=0, rfid=ing,
                              rfid_subscription=f"walkout/{code}/rfid/+/reads")

    def publish() -> None:
        if worker.subscribed.wait(10):
            with Publisher(worker.url) as pub:
                for tp, payload in msgs:
                    pub.publish(tp, payload)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    stats = worker.run(max_messages=len(msgs), max_seconds=60, end_session=True)
    thread.join(10)
    assert stats.refused == 2 and stats.handled == len(msgs) - 2
    reader.refresh_from_db()
    assert (reader.messages, reader.reads) == (5, 5)
    assert reader_counters(reader=reader) == {"unauthenticated": 1, "not_sgtin": 1, "malformed_json": 1}
    assert RfidTag.objects.filter(store=store).count() == 5
    assert not ReaderProblem.objects.filter(reader=other).exists()
