"""The manager's dashboard (/manage/): occupancy, today's sales, low-stock alerts, open visits with their carts,
optional slots (store map, sensor health), and live updates over ws/dashboard/ (carts.dashboard_consumers,
store.dashboard_events)."""
from __future__ import annotations

import asyncio
import sys
import types
from datetime import timedelta

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.urls import path
from django.utils import timezone

from carts import selectors_dashboard
from carts.dashboard_consumers import DashboardConsumer
from carts.services.ledger import cart_snapshot
from store.dashboard_events import DASHBOARD_GROUP, dashboard_message, dashboard_notify
from carts.models import ReviewItem
from sensors.models import ShelfEvent
from store.gates.models import Visit
from store.inventory.models import TaxCategory
from store.inventory.services import stock_record_restock, stock_record_sale
from tests.test_inventory_stock import make_receipt, make_visit, make_world, pick


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def w(db):
    return make_world()


def manager(w) -> Client:
    client = Client()
    client.force_login(w.mia)
    return client


# ------------------------------------------------------------------------------------------------ reads
def test_occupancy_counts_shoppers_inside_against_capacity(w):
    other = make_world(code="s2", capacity=0)
    make_visit(w, state=Visit.State.ADMITTED)
    make_visit(w, shopper=w.bob, state=Visit.State.SHOPPING)
    for state in (Visit.State.EXITED, Visit.State.BILLED, Visit.State.UNDER_REVIEW, Visit.State.REFUSED):
        make_visit(w, state=state)
    rows = {r.store_code: r for r in selectors_dashboard.store_occupancy()}
    assert (rows["s1"].inside, rows["s1"].capacity, rows["s1"].percent, rows["s1"].full) == (2, 3, 66, False)
    assert (rows["s2"].inside, rows["s2"].percent, rows["s2"].full) == (0, 0, True)
    make_visit(w, shopper=w.bob, state=Visit.State.SHOPPING)
    assert selectors_dashboard.store_occupancy()[0].full
    html = manager(w).get("/manage/").content.decode()
    assert '<span class="big" data-store="s1">3</span> / 3 shoppers <span class="bad">full</span>' in html
    assert other.store.code in html


def test_sales_today_sums_receipts_issued_today_per_store_and_currency(w):
    yen = make_world(code="jp", currency="jpy")
    now = timezone.now()
    make_receipt(make_visit(w), [(w.cola, 2), (w.chips, 1)], issued_at=now)                 # 398 + 250
    make_receipt(make_visit(w, shopper=w.bob), [(w.water, 1)], issued_at=now)               # 99
    make_receipt(make_visit(w), [(w.water, 5)], issued_at=now - timedelta(days=1))          # yesterday
    make_receipt(make_visit(yen), [(yen.cola, 1)], issued_at=now)                          # ¥ (price 1.99 → 199)
    rows = {(r.store_code, r.currency): r for r in selectors_dashboard.sales_today(now=now)}
    assert set(rows) == {("s1", "usd"), ("jp", "jpy")}
    s1 = rows[("s1", "usd")]
    assert (s1.receipts, s1.items, s1.total_minor, s1.total_display) == (2, 4, 747, "$7.47")
    assert rows[("jp", "jpy")].total_display == "¥199"
    start, end = selectors_dashboard.day_bounds(now)
    assert start <= now < end and end - start == timedelta(days=1)
    assert selectors_dashboard.sales_today(now=now + timedelta(days=2)) == []
    assert "$7.47" in manager(w).get("/manage/").content.decode()


def test_low_stock_alert_appears_and_clears_with_a_restock(w):
    stock_record_restock(product=w.cola, quantity=5, bin=w.bin_a, by="mia")      # threshold 2: fine
    stock_record_restock(product=w.chips, quantity=1, bin=w.bin_b, by="mia")     # threshold 0: fine
    count, alerts = selectors_dashboard.low_stock_alerts()
    assert count == 1 and [(a.barcode, a.level, a.threshold) for a in alerts] == [(w.water.barcode, 0, 5)]
    html = manager(w).get("/manage/").content.decode()
    assert "Water</a>" in html and "0</span> left (threshold 5)" in html
    visit = make_visit(w)
    pick(w, visit, w.cola, w.bin_a, 3, seconds_ago=30)
    stock_record_sale(receipt=make_receipt(visit, [(w.cola, 3)]))                # 5 − 3 = 2 ≤ 2: low
    assert {a.barcode for a in selectors_dashboard.low_stock_alerts()[1]} == {w.water.barcode, w.cola.barcode}
    stock_record_restock(product=w.water, quantity=6, by="mia")
    assert {a.barcode for a in selectors_dashboard.low_stock_alerts()[1]} == {w.cola.barcode}


def test_open_visits_show_their_carts(w):
    shopping = make_visit(w)
    pick(w, shopping, w.cola, w.bin_a, 2, seconds_ago=50)
    pick(w, shopping, w.chips, w.bin_b, 1, seconds_ago=40)
    pick(w, shopping, w.chips, w.bin_b, -1, seconds_ago=30)
    make_visit(w, shopper=w.bob, state=Visit.State.BILLED)
    rows = selectors_dashboard.open_visit_carts()
    assert [r.id for r in rows] == [shopping.pk]
    assert [(x["name"], x["quantity"], x["line_total_display"]) for x in rows[0].lines] == [("Cola", 2, "$3.98")]
    assert (rows[0].items, rows[0].total_display) == (2, "$3.98")
    html = manager(w).get("/manage/").content.decode()
    assert "2 × Cola" in html and 'id="open-visits" data-live' in html


def test_open_carts_and_todays_visits_show_totals_with_tax_as_the_shopper_sees_them(w):
    """The dashboard's totals are the shopper's: the cart snapshot's ``total_minor`` (lines plus tax, one rule:
    ``billing.services.receipt_amounts``), in the open-carts table and in today's visits."""
    from decimal import Decimal

    food = TaxCategory.objects.create(store=w.store, name="Prepared food", rate_percent=Decimal("8.875"))
    w.cola.tax_category = food
    w.cola.save(update_fields=["tax_category"])
    shopping = make_visit(w)
    pick(w, shopping, w.cola, w.bin_a, 2, seconds_ago=50)  # 2 × 1.99 = 3.98, + 8.875 % = 0.35 (0.3532 half-up)
    pick(w, shopping, w.chips, w.bin_b, 1, seconds_ago=40)  # 2.50, not taxed
    snap = cart_snapshot(visit=shopping)
    assert (snap["tax_minor"], snap["total_minor"]) == (35, 398 + 250 + 35)
    row = selectors_dashboard.open_visit_carts()[0]
    assert (row.tax_minor, row.total_minor, row.total_display, row.tax_display) == (35, 683, "$6.83", "$0.35")
    visit_row = next(v for v in selectors_dashboard.dashboard_visits() if v.id == shopping.pk)
    assert (visit_row.total_minor, visit_row.items) == (snap["total_minor"], 3)
    html = manager(w).get("/manage/").content.decode()
    assert "$6.83" in html and "incl. $0.35 tax" in html and "$6.48" not in html  # 6.48: before tax


def test_dashboard_is_for_managers_only(w, settings):
    assert Client().get("/manage/").status_code == 302
    shopper = Client()
    shopper.force_login(w.ann)
    assert shopper.get("/manage/").status_code == 403


# ------------------------------------------------------------------------------------------------ optional slots
def test_store_map_and_sensor_health_slots_are_included_only_when_present(w, settings, tmp_path, monkeypatch):
    html = manager(w).get("/manage/").content.decode()
    assert 'id="store-map"' not in html
    (tmp_path / "vision").mkdir()
    (tmp_path / "vision" / "_store_map.html").write_text("<svg id='map-under-test'></svg>")
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "dashboard" / "_sensor_health.html").write_text("<p id='health-under-test'>{{ sensors_ok }}</p>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    fake = types.ModuleType("sensors.selectors")
    fake.dashboard_sensor_context = lambda: {"sensors_ok": "all 2 plates reporting"}
    monkeypatch.setitem(sys.modules, "sensors.selectors", fake)
    html = manager(w).get("/manage/").content.decode()
    assert "<svg id='map-under-test'></svg>" in html
    assert "<p id='health-under-test'>all 2 plates reporting</p>" in html


def test_sensor_context_is_empty_without_sensor_selectors(monkeypatch):
    monkeypatch.setitem(sys.modules, "sensors.selectors", None)  # import → ModuleNotFoundError for that name
    assert selectors_dashboard.sensor_alerts_context() == {}


# ------------------------------------------------------------------------------------------------ live updates
ORIGIN = b"http://testserver"


def dashboard_app():
    """The dashboard route behind the same stack as ``store.asgi`` (origin check, session auth)."""
    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
        path("ws/dashboard/", DashboardConsumer.as_asgi())])))


@database_sync_to_async
def cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def socket_for(user=None) -> WebsocketCommunicator:
    headers = [(b"origin", ORIGIN)]
    if user is not None:
        headers.append((b"cookie", await cookie_for(user)))
    return WebsocketCommunicator(dashboard_app(), "/ws/dashboard/", headers=headers)


@pytest.mark.django_db(transaction=True)
async def test_socket_is_for_managers_and_forwards_updates_after_commit():
    w = await database_sync_to_async(make_world)()
    for user in (None, w.ann):
        comm = await socket_for(user)
        connected, _ = await comm.connect()
        assert not connected
        await comm.disconnect()
    comm = await socket_for(w.mia)
    connected, _ = await comm.connect()
    assert connected
    assert await comm.receive_json_from(timeout=5) == {"type": "update", "reason": "connected", "store": None}

    @database_sync_to_async
    def restock_and_notify():
        from django.db import transaction

        with transaction.atomic():
            stock_record_restock(product=w.cola, quantity=3, by="mia")
            dashboard_notify(reason="stock", store_id=w.store.pk)
            assert not comm.output_queue.qsize()  # not before the commit

    await restock_and_notify()
    assert await comm.receive_json_from(timeout=5) == {"type": "update", "reason": "stock", "store": w.store.pk}
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from(timeout=5) == {"type": "pong"}
    await comm.send_to(text_data="nonsense")
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_resolving_a_review_on_the_dashboard_notifies_open_dashboards():
    from channels.layers import get_channel_layer

    w = await database_sync_to_async(make_world)()

    @database_sync_to_async
    def review_and_resolve():
        visit = make_visit(w)
        t = timezone.now()
        se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_a, bin_codes=["1-1-1"], t_start=t,
                                       t_end=t + timedelta(seconds=1), delta_g=-355,
                                       hypotheses=[{"barcode": w.cola.barcode, "quantity": 1, "likelihood": 0.6}])
        item = ReviewItem.objects.create(shelf_event=se, reason="two shoppers",
                                         candidates=[{"visit": visit.pk, "track_id": "t1", "distance_m": 0.2,
                                                      "score": 0.5}])
        response = manager(w).post(f"/manage/reviews/{item.pk}/resolve/",
                                   {"visit": visit.pk, "barcode": w.cola.barcode, "quantity": 1})
        item.refresh_from_db()
        return response.status_code, item.status, visit

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(DASHBOARD_GROUP, channel)
    status, item_status, visit = await review_and_resolve()
    assert (status, item_status) == (302, "resolved")
    received = []  # cart_publish may notify too ("cart"); the view's own notice must be among them
    while dashboard_message(reason="review", store_id=w.store.pk) not in received:
        received.append(await asyncio.wait_for(layer.receive(channel), timeout=5))
    carts = await database_sync_to_async(selectors_dashboard.open_visit_carts)()
    assert [(c.id, c.items) for c in carts] == [(visit.pk, 1)]


def test_page_has_the_live_script_and_sections(w):
    html = manager(w).get("/manage/").content.decode()
    assert '"/ws/dashboard/"' in html
    for section in ("occupancy", "sales", "alerts", "open-visits", "reviews", "visits", "shelf-events"):
        assert f'id="{section}" data-live' in html
