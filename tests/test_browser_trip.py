"""Issue 15 item 2 as a shopper meets the end of a trip, in real headless Chromium on a phone (tests/browser.py):
leaving the store reads "Adding up your cart" with an honest expected time that counts down, says plainly when it
takes longer than that, then turns into the charge (amount, card, receipt link) when the visit is billed, pushed
over the page's socket; a visit sent to a person says what is checked, why and by when (store local time).

Screenshots: var/screenshots/trip-*.png."""
from __future__ import annotations

import re

from datetime import timedelta

import pytest

from browser import (  # noqa: F401
    asgi_server, assert_fits, browser, login, phone, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"


def test_leaving_counts_down_then_reads_as_charged(phone, asgi_server):
    from django.utils import timezone
    from playwright.sync_api import expect

    from carts.services.checkout import visit_checkout
    from store.billing.services import payment_authorise
    from store.gates.models import Visit
    from tests.test_inventory_stock import make_world, pick

    screenshots_clear("trip-")
    w = make_world()
    ann = user_make("ann@walkout.test", card=True)
    now = timezone.now()
    visit = Visit.objects.create(store=w.store, shopper=ann, state=Visit.State.SHOPPING,
                                 entered_at=now - timedelta(minutes=4))
    payment_authorise(visit=visit)
    pick(w, visit, w.cola, w.bin_a, 2, seconds_ago=60)
    login(phone, "ann@walkout.test")
    Visit.objects.filter(pk=visit.pk).update(state=Visit.State.EXITED, exited_at=timezone.now(),
                                             checkout_due_at=timezone.now() + timedelta(seconds=4))
    phone.goto(f"/visits/{visit.pk}/")
    trip = phone.locator("#trip")
    expect(trip).to_have_attribute("data-stage", "leaving")
    expect(phone.locator("#trip-title")).to_have_text("Adding up your cart")
    text = phone.locator("#trip-text")
    expect(text).to_contain_text("your receipt should be ready in about")
    first = int(text.inner_text().split("about ")[1].split()[0])
    assert 1 <= first <= 9, text.inner_text()  # the settle time (4 s) and the billing margin, not a made-up wait
    expect(phone.locator("#trip-link")).to_be_hidden()  # no receipt yet: no link that leads nowhere
    assert_fits(phone, "leaving")
    screenshot(phone, "trip-leaving-phone")
    # past the expected time the page says so instead of counting below zero
    # "a little longer", then (a loaded machine may poll past it) "longer than usual: we will e-mail your receipt"
    expect(text).to_contain_text(re.compile(r"taking (a little )?longer than usual"), timeout=15_000)
    screenshot(phone, "trip-leaving-late-phone")

    receipt = asgi_server.call(visit_checkout, visit=Visit.objects.get(pk=visit.pk))
    expect(trip).to_have_attribute("data-stage", "charged")
    expect(phone.locator("#trip-title")).to_have_text("Charged $3.98")
    expect(text).to_contain_text("Visa ending 4242")
    expect(phone.locator("#trip-link")).to_have_attribute("href", f"/visits/receipts/{receipt.pk}/")
    assert_fits(phone, "charged")
    screenshot(phone, "trip-charged-phone")


def test_under_review_says_what_why_and_by_when(phone, settings):
    from django.utils import timezone
    from playwright.sync_api import expect

    from carts.models import ReviewItem
    from sensors.models import ShelfEvent
    from store.gates.models import Visit

    settings.WALKOUT = {**settings.WALKOUT, "REVIEW_WITHIN_H": 2}
    from tests.test_inventory_stock import make_world

    w = make_world()
    w.store.timezone = "America/New_York"
    w.store.save(update_fields=["timezone"])
    ann = user_make("ann@walkout.test", card=True)
    exited = timezone.now().replace(microsecond=0)
    visit = Visit.objects.create(store=w.store, shopper=ann, state=Visit.State.UNDER_REVIEW,
                                 entered_at=exited - timedelta(minutes=6), exited_at=exited)
    se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_a, bin_codes=[w.bin_a.code],
                                   t_start=exited - timedelta(minutes=2), t_end=exited - timedelta(minutes=2),
                                   delta_g=-355, hypotheses=[{"barcode": w.cola.barcode, "quantity": 1,
                                                              "likelihood": .9}])
    ReviewItem.objects.create(shelf_event=se, reason="two shoppers", candidates=[{"visit": visit.pk}])
    login(phone, "ann@walkout.test")
    phone.goto(f"/visits/{visit.pk}/")
    expect(phone.locator("#trip")).to_have_attribute("data-stage", "review")
    expect(phone.locator("#trip-title")).to_have_text("A person is checking your visit")
    from zoneinfo import ZoneInfo

    by = (exited + timedelta(hours=2)).astimezone(ZoneInfo("America/New_York")).strftime("%H:%M")
    text = phone.locator("#trip-text")
    expect(text).to_contain_text("Cola")
    expect(text).to_contain_text(f"Someone checks by {by}")
    assert_fits(phone, "under review")
    screenshot(phone, "trip-under-review-phone")
