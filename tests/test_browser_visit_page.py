"""Issue 15 item 7, the page a reviewer reaches from the console's "Who was there": one visit told in words — what
the shopper took and how it was decided, the reviews naming them with a Decide button, payments as money
("Hold of $50.00 placed on the card: done", not "Amount (minor) 5000 USD"), local times — with the raw records
(track ids, evidence JSON, minor units) folded under "Details for engineers". Real headless Chromium against daphne
(tests/browser.py) at desktop and phone sizes. Screenshots: var/screenshots/visit-*.png."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from browser import (  # noqa: F401
    asgi_server, assert_fits, browser, desk, login, phone, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"


def test_a_visit_reads_as_sentences_with_the_raw_records_folded_away(desk, phone):
    from playwright.sync_api import expect

    from carts.models import CartEvent, ReviewItem
    from sensors.models import ShelfEvent
    from store.billing.models import PaymentAttempt
    from store.gates.models import Visit
    from tests.test_inventory_stock import make_world, pick

    screenshots_clear("visit-")
    w = make_world()
    user_make("boss@walkout.test", manager=True)
    ann = user_make("ann@walkout.test", card=True)
    now = timezone.now()
    visit = Visit.objects.create(store=w.store, shopper=ann, state=Visit.State.SHOPPING, track_id="aisle:live:1002",
                                 entered_at=now - timedelta(minutes=6))
    ev = pick(w, visit, w.cola, w.bin_a, 1, seconds_ago=200)
    CartEvent.objects.filter(pk=ev.pk).update(confidence=0.99, evidence={"hand": {"track": "aisle:live:1002",
                                                                                  "distance_m": 0.0}})
    CartEvent.objects.create(visit=visit, product=w.water, quantity=1, confidence=1.0,
                             source=CartEvent.Source.REVIEW, evidence={"review": 1, "by": "boss@walkout.test"})
    se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_b, bin_codes=[w.bin_b.code],
                                   t_start=now - timedelta(seconds=90), t_end=now - timedelta(seconds=89),
                                   delta_g=-150.0, noise_sd_g=3.0,
                                   hypotheses=[{"barcode": w.chips.barcode, "quantity": 1, "likelihood": 0.9}])
    review = ReviewItem.objects.create(shelf_event=se, reason="confidence 0.513 below 0.60: hand of track 1002 came "
                                                              "within 0.00 m",
                                       candidates=[{"visit": visit.pk, "track_id": "aisle:live:1002",
                                                    "distance_m": 0.0}])
    PaymentAttempt.objects.create(visit=visit, kind="authorise", provider="dummy", amount_minor=5000,
                                  currency="usd", idempotency_key="k1", provider_ref="dummy_pi_1", status="succeeded")
    PaymentAttempt.objects.create(visit=visit, kind="charge", provider="dummy", amount_minor=99, currency="usd",
                                  idempotency_key="k2", status="failed", error="card declined")

    login(desk, "boss@walkout.test")
    desk.goto(f"/manage/visits/{visit.pk}/")
    expect(desk.locator("h1")).to_contain_text(f"Visit {visit.pk}")
    expect(desk.locator("#visit-shopper")).to_have_text("ann@walkout.test")
    expect(desk.locator("#summary")).to_contain_text("in the store")
    events = desk.locator("#events")
    expect(events).to_contain_text("took one Cola +$1.99 — seen by the shelf's scale and the cameras; plate 1-1-1, "
                                   "355 g left it; 99 % sure")
    expect(events).to_contain_text("took one Water +$0.99 — decided in review by boss@walkout.test")
    expect(desk.locator("#reviews")).to_contain_text("Shopper A (ann@walkout.test)'s hand was at this plate when "
                                                     "150 g left it; that is one Chips.")
    expect(desk.locator("#reviews")).to_contain_text("open: waiting for a decision")
    payments = desk.locator("#payments")
    expect(payments).to_contain_text("Hold of $50.00 placed on the card: done")
    expect(payments).to_contain_text("Charged $0.99 after the visit: failed: card declined")
    # nothing written for engineers is in sight until asked for
    seen = desk.locator("main").inner_text()
    for engineer_text in ("Amount (minor)", "5000", "confidence 0.513", "aisle:live:1002", "{", "distance_m"):
        assert engineer_text not in seen, engineer_text
    expect(desk.locator("#engineers")).not_to_have_attribute("open", "")
    assert_fits(desk, "visit page")
    screenshot(desk, "visit-desktop")
    desk.locator("#engineers summary").click()
    expect(desk.locator("#engineers")).to_contain_text("aisle:live:1002")
    expect(desk.locator("#engineers")).to_contain_text("5000 (minor units, USD)")
    desk.locator("#engineers summary").click()
    desk.locator("#reviews").get_by_role("link", name="Decide").click()
    expect(desk).to_have_url(f"{desk.url.split('/manage/')[0]}/manage/reviews/{review.pk}/")
    expect(desk.locator("#likely a.answer").first).to_contain_text("Shopper A took one Chips")

    login(phone, "boss@walkout.test")
    phone.goto(f"/manage/visits/{visit.pk}/")
    expect(phone.locator("#payments")).to_contain_text("Hold of $50.00 placed on the card: done")
    assert_fits(phone, "visit page on a phone")
    screenshot(phone, "visit-phone")
