"""Issue 15 follow-ups as a person meets them, in real headless Chromium (tests/browser.py):

* the shopper whose item a manager just decided reads "Checked: your receipt is coming" with the seconds it takes,
  not "under review", while the decision is held in its undo window (phone);
* the dashboard's open-carts total includes tax, as the shopper's cart and receipt do (desktop);
* a manager sets a product's tax category on the inventory page; another store's is refused with the reason.

Screenshots: var/screenshots/polish-*.png."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from browser import (  # noqa: F401
    asgi_server, assert_fits, browser, desk, login, phone, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)



@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"


def test_held_decision_reads_as_decided_and_the_dashboard_total_includes_tax(desk, phone):
    from django.utils import timezone
    from playwright.sync_api import expect

    from carts.models import ReviewItem
    from sensors.models import ShelfEvent
    from store.gates.models import Visit
    from store.inventory.models import TaxCategory
    from tests.test_inventory_stock import make_world, pick

    screenshots_clear("polish-")
    w = make_world()
    user_make("boss@walkout.test", manager=True)
    ann = user_make("ann@walkout.test", card=True)
    food = TaxCategory.objects.create(store=w.store, name="Prepared food", rate_percent=Decimal("8.875"))
    w.cola.tax_category = food
    w.cola.save(update_fields=["tax_category"])
    now = timezone.now()
    shopping = Visit.objects.create(store=w.store, shopper=w.bob, state=Visit.State.SHOPPING,
                                    entered_at=now - timedelta(minutes=2))
    pick(w, shopping, w.cola, w.bin_a, 2, seconds_ago=50)  # 3.98 + 0.35 tax
    pick(w, shopping, w.chips, w.bin_b, 1, seconds_ago=40)  # 2.50, not taxed

    left = Visit.objects.create(store=w.store, shopper=ann, state=Visit.State.UNDER_REVIEW,
                                entered_at=now - timedelta(minutes=5), exited_at=now - timedelta(minutes=1))
    se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_a, bin_codes=[w.bin_a.code],
                                   t_start=now - timedelta(minutes=3), t_end=now - timedelta(minutes=3),
                                   delta_g=-355, hypotheses=[{"barcode": w.cola.barcode, "quantity": 1,
                                                              "likelihood": .9}])
    item = ReviewItem.objects.create(shelf_event=se, reason="two shoppers", candidates=[{"visit": left.pk}])
    login(phone, "ann@walkout.test")
    phone.goto(f"/visits/{left.pk}/")
    expect(phone.locator("#trip")).to_have_attribute("data-stage", "review")
    expect(phone.locator("#cart-review")).to_be_visible()
    # one item in words a shopper reads ("1 item(s)" before), also after the live snapshot re-renders it
    expect(phone.locator("#cart-review")).to_have_text("We're not sure about 1 item — we'll check.")
    screenshot(phone, "polish-trip-under-review-phone")

    ReviewItem.objects.filter(pk=item.pk).update(status=ReviewItem.Status.DISMISSED, resolved_at=timezone.now(),
                                                 resolved_by="boss", undo_until=timezone.now() + timedelta(seconds=60))
    phone.reload()
    trip = phone.locator("#trip")
    expect(trip).to_have_attribute("data-stage", "decided")
    expect(trip).to_contain_text("Checked: your receipt is coming")
    expect(trip).to_contain_text("A person has just checked Cola")
    expect(phone.locator("#trip-text")).to_contain_text("seconds")
    assert "review" not in trip.inner_text().lower()
    expect(phone.locator("#cart-review")).to_be_hidden()
    assert_fits(phone, "trip while a decision is held")
    screenshot(phone, "polish-trip-decided-phone")

    login(desk, "boss@walkout.test")
    desk.goto("/manage/")
    row = desk.locator("#open-visits tbody tr", has_text="bob")
    expect(row).to_contain_text("$6.83")  # 3.98 + 2.50 + 0.35 tax, as bob's cart and receipt say
    expect(row).to_contain_text("incl. $0.35 tax")
    expect(desk.locator("#open-visits thead")).to_contain_text("with tax")
    screenshot(desk, "polish-dashboard-total-with-tax")


def test_manager_sets_a_products_tax_category_and_another_stores_is_refused(desk):
    from playwright.sync_api import expect

    from store.inventory.models import TaxCategory
    from store.layout.models import Store
    from tests.test_inventory_stock import make_world

    w = make_world()
    user_make("boss@walkout.test", manager=True)
    food = TaxCategory.objects.create(store=w.store, name="Prepared food", rate_percent=Decimal("8.875"))
    theirs = TaxCategory.objects.create(store=Store.objects.create(code="s2", name="Other", currency="usd"),
                                        name="Their rate", rate_percent=Decimal("5"))
    login(desk, "boss@walkout.test")
    desk.goto(f"/manage/inventory/products/{w.cola.pk}/")
    select = desk.locator("#edit select[name=tax_category]")
    expect(select).to_be_visible()
    select.select_option(label="Prepared food (8.875 %)")
    desk.locator("#edit button[type=submit]").click()
    expect(desk.locator("ul.messages")).to_contain_text("saved")
    w.cola.refresh_from_db()
    assert w.cola.tax_category == food
    expect(desk.locator("#edit select[name=tax_category]")).to_have_value(str(food.pk))
    # a crafted post with another store's category: refused on the page, with the reason, nothing saved
    select.evaluate(f"s => {{ const o = document.createElement('option'); o.value = '{theirs.pk}'; "
                    "o.textContent = 'Their rate'; s.appendChild(o); s.value = o.value; }")
    desk.locator("#edit button[type=submit]").click()
    expect(desk.locator("#edit")).to_contain_text("“Their rate” is a tax category of store s2, not of s1")
    w.cola.refresh_from_db()
    assert w.cola.tax_category == food
    assert_fits(desk, "product page with a refused tax category")
    screenshot(desk, "polish-product-tax-category-refused")
