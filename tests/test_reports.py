"""The owner's reports (carts.reports and /manage/reports/): sales per local day, top sellers, review rate per day
with "no data" for a day without shelf events, the SVG chart, and who may see the page."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_tz

import pytest
from django.test import Client

from carts import reports
from carts.models import ReviewItem
from sensors.models import ShelfEvent
from store.billing.models import Receipt, ReceiptLine
from store.gates.models import Visit
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=dt_tz.utc)


@pytest.fixture(autouse=True)
def plain(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def sell(w, when: datetime, lines: list[tuple]) -> Receipt:
    v = Visit.objects.create(store=w.store, shopper=w.ann, state=Visit.State.BILLED, entered_at=when - timedelta(minutes=5))
    r = Receipt.objects.create(visit=v, currency="usd", issued_at=when,
                               total_minor=sum(q * p for _, q, p in lines))
    for product, q, p in lines:
        ReceiptLine.objects.create(receipt=r, product=product, barcode=product.barcode, name=product.name,
                                   quantity=q, unit_price_minor=p, line_total_minor=q * p)
    return r


def shelf_event(w, when: datetime, review: str | None = None, by: str = "") -> ShelfEvent:
    se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_a, bin_codes=[w.bin_a.code], t_start=when,
                                   t_end=when + timedelta(seconds=1), delta_g=-355, noise_sd_g=2, hypotheses=[])
    if review:
        ReviewItem.objects.create(shelf_event=se, status=review, reason="x", resolved_by=by)
    return se


def test_sales_per_local_day_and_top_sellers():
    w = make_world()
    w.store.timezone = "America/Los_Angeles"  # UTC-7 in March after the 9th (PDT)
    w.store.save()
    sell(w, NOW, [(w.cola, 2, 199)])                           # 05:00 local, 10 March
    sell(w, NOW - timedelta(hours=13), [(w.chips, 1, 250)])    # 16:00 local, 9 March
    sell(w, NOW - timedelta(hours=6), [(w.chips, 3, 250)])     # 23:00 local, 9 March
    sell(w, NOW - timedelta(days=40), [(w.water, 9, 99)])      # outside 30 days
    days = reports.sales_by_day(store=w.store, days=7, now=NOW)
    assert len(days) == 7 and days[-1].day.isoformat() == "2025-03-10"
    assert (days[-1].receipts, days[-1].units, days[-1].total_minor) == (1, 2, 398)
    assert (days[-2].receipts, days[-2].units, days[-2].total_minor) == (2, 4, 1000)
    assert sum(d.total_minor for d in days[:-2]) == 0
    top = reports.top_sellers(store=w.store, days=30, now=NOW)
    assert [(t.name, t.units, t.revenue_minor) for t in top] == [("Chips", 4, 1000), ("Cola", 2, 398)]


def test_review_rate_counts_people_and_says_no_data():
    w = make_world()
    s = timedelta(seconds=1)
    shelf_event(w, NOW)
    shelf_event(w, NOW + s, review="open")
    shelf_event(w, NOW + 2 * s, review="resolved", by="fusion")   # a waiting put-back fusion settled: not for people
    shelf_event(w, NOW + 3 * s, review="dismissed", by="mia")
    shelf_event(w, NOW - timedelta(days=2))
    days = reports.review_rate_by_day(store=w.store, days=3, now=NOW)
    assert [(d.shelf_events, d.reviews) for d in days] == [(1, 0), (0, 0), (4, 2)]
    assert days[0].rate == 0.0 and days[1].rate is None and days[2].rate == 0.5


def test_bar_chart_svg_escapes_and_marks_no_data():
    svg = reports.bar_chart_svg([3, None, 1.5], ["<a>", "b", "c"], title="T & U")
    assert svg.count('class="bar"') == 2 and svg.count('class="nodata"') == 1
    assert "<a>" not in svg and "&lt;a&gt;" in svg and "T &amp; U" in svg
    with pytest.raises(ValueError):
        reports.bar_chart_svg([1], [], title="x")


def test_reports_page_for_managers_only_and_checks_days():
    w = make_world()
    sell(w, datetime.now(dt_tz.utc), [(w.cola, 2, 199)])
    anon = Client().get("/manage/reports/")
    assert anon.status_code == 302
    c = Client()
    c.force_login(w.ann)
    assert c.get("/manage/reports/").status_code == 403
    c.force_login(w.mia)
    r = c.get("/manage/reports/?days=7")
    body = r.content.decode()
    assert r.status_code == 200 and "$3.98" in body and body.count('class="bar"') >= 1 and "Cola" in body
    assert c.get("/manage/reports/?days=abc").status_code == 400
    assert c.get("/manage/reports/?store=nope").status_code == 404
