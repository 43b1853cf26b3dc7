"""The manager's dashboard says "no data" when it has none, and every figure names its store (issue #15, item 8);
its pages fit a phone and a desktop (item 4). Real headless Chromium against daphne (tests/browser.py).
Screenshots: var/screenshots/dashboard-*.png."""
from __future__ import annotations

import pytest

from browser import (  # noqa: F401
    asgi_server, assert_fits, browser, login, manager_page, screenshot, screenshots_clear, user_make,
)
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"


def test_no_data_is_said_and_low_stock_agrees_with_inventory_and_names_its_store(manager_page):
    from playwright.sync_api import expect

    from sensors.services import controller_create

    screenshots_clear("dashboard-")
    page = manager_page
    page.set_viewport_size({"width": 1440, "height": 900})
    a, _ = make_world("s1"), make_world("s2")
    user_make("boss@walkout.test", manager=True)
    login(page, "boss@walkout.test")
    page.goto("/manage/")
    # zero controllers: not "every load cell reports normally"
    expect(page.locator("#sensor-no-data")).to_contain_text("No data")
    assert "reports normally" not in page.locator("#alerts").inner_text()
    # the low-stock count is the inventory page's count, and each line names its store
    pill = int(page.locator("#low-stock .pill").inner_text())
    page.goto("/manage/inventory/?store=s1")
    s1_low = int(page.locator("#low-count").inner_text().split()[0])
    page.goto("/manage/")
    items = page.locator("#low-stock li")
    assert items.count() == pill > 0
    for i in range(items.count()):
        assert items.nth(i).inner_text().split()[0] in {"s1", "s2"}, items.nth(i).inner_text()
    assert s1_low * 2 == pill  # the two stores are alike
    assert_fits(page, "dashboard at 1440 px")
    screenshot(page, "dashboard-no-data-1440")

    controller_create(store=a.store, name="ctl-1", bin_codes=["1-1-1", "1-1-2"])
    page.reload()
    expect(page.locator("#sensor-no-data")).to_contain_text("no load cell has reported")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert_fits(page, "dashboard on a phone", scroll_ok=True)
    screenshot(page, "dashboard-phone")
