"""Issue 15 item 9 on the dashboard itself: each store's last 7 days at a glance — sales with a chart of the days,
the top seller, the share of shelf events a person decided — every figure naming its store, and "no data" said
for a store with none. Real headless Chromium against daphne (tests/browser.py), desktop and phone.
Screenshots: var/screenshots/dashboard-week-*.png."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from browser import (  # noqa: F401
    asgi_server, assert_fits, browser, desk, login, phone, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_dashboard_shows_each_stores_week_and_says_no_data(desk, phone):
    from playwright.sync_api import expect

    from carts.models import ReviewItem
    from sensors.models import ShelfEvent
    from store.layout.models import Store
    from tests.test_inventory_stock import make_receipt, make_visit, make_world

    screenshots_clear("dashboard-week-")
    w = make_world()
    Store.objects.create(code="s2", name="Store s2", currency="usd", capacity=3)
    user_make("boss@walkout.test", manager=True)
    now = timezone.now()
    make_receipt(make_visit(w), [(w.cola, 2), (w.chips, 1)], issued_at=now - timedelta(days=2))
    make_receipt(make_visit(w, shopper=w.bob), [(w.cola, 1)], issued_at=now)
    for k in range(4):
        se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_a, bin_codes=["1-1-1"],
                                       t_start=now - timedelta(hours=1, minutes=k), delta_g=-355.0,
                                       t_end=now - timedelta(hours=1, minutes=k, seconds=-1), noise_sd_g=3.0)
        if k == 0:
            ReviewItem.objects.create(shelf_event=se, reason="test", candidates=[])

    login(desk, "boss@walkout.test")
    desk.goto("/manage/")
    s1 = desk.locator("#week .glance[data-store=s1]")
    expect(s1).to_contain_text("Store s1")
    expect(s1).to_contain_text("$8.47")  # 3 × $1.99 + $2.50
    expect(s1).to_contain_text("from 2 receipts")
    expect(s1.locator("svg.chart rect.bar")).to_have_count(7)
    expect(s1).to_contain_text("Top seller: Cola (3 sold)")
    expect(s1).to_contain_text("Decided by a person: 25 % (1 of 4) of shelf events")
    s2 = desk.locator("#week .glance[data-store=s2]")
    expect(s2).to_contain_text("no receipts in the last 7 days")
    expect(s2.locator("svg.chart")).to_have_count(0)
    expect(s2).to_contain_text("Top seller: no data (nothing sold)")
    expect(s2).to_contain_text("Decided by a person: no data (no shelf event)")
    s1.get_by_role("link", name="Sales & reports for s1").click()
    expect(desk.locator("h1")).to_contain_text("Store s1")
    desk.goto("/manage/")
    assert_fits(desk, "dashboard")
    desk.locator("#week").screenshot(path=str(__import__("browser").SCREENSHOTS / "dashboard-week-desktop.png"))

    login(phone, "boss@walkout.test")
    phone.goto("/manage/")
    expect(phone.locator("#week .glance[data-store=s1]")).to_contain_text("Top seller: Cola (3 sold)")
    box = phone.locator("#week .glance[data-store=s1] svg.chart").bounding_box()
    assert box and 0 < box["width"] <= 390 and 0 < box["height"] <= 91, box
    assert_fits(phone, "dashboard on a phone")
    screenshot(phone, "dashboard-week-phone")
