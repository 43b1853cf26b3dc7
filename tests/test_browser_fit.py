"""Issue 15 items 4 and 5 as a person meets them: every page a shopper or a manager opens, at a phone (390×844) and
a desktop (1440×900), in real headless Chromium (tests/browser.py), with the store's real-length product names,
money with tax, a dispute, a review and a low stock: no word broken across lines in a table cell, list line or
heading, no page wider than the window (``browser.assert_fits``). The shopper's pages may not scroll sideways at
all; a manager's wide table may scroll inside its card on a phone, but never breaks a word.

Item 5 end to end: a visit checked out through the store's real checkout (``carts.services.checkout.visit_checkout``) in
a store that charges tax on one category: the receipt page and its e-mail show the tax line per rate, the store's
local time (the list of receipts too), its address, the card's brand and last 4, and the e-mail links the receipt
page.

Screenshots: var/screenshots/fit-<page>-<phone|desktop>.png."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest

from browser import (  # noqa: F401
    DESKTOP, PHONE, _context, asgi_server, assert_fits, browser, login, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)

#: Real names of the demo store's catalogue are this long (AutoCheckout's products.csv).
LONG = "Kellogg's Rice Krispies Treats Original Crispy Marshmallow Squares 0.78oz"


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _world():
    """A taxed store with a shopper's billed visit (receipt through the real checkout, a disputed line), a shopper
    still shopping, an open review, a low stock and ledger rows."""
    from django.utils import timezone

    from carts.models import ReviewItem
    from carts.services.checkout import visit_checkout
    from carts.services.disputes import dispute_open
    from sensors.models import ShelfEvent
    from store.billing.services import payment_authorise
    from store.gates.models import Visit
    from store.inventory.models import TaxCategory
    from store.inventory.services import stock_record_adjustment, stock_record_restock
    from tests.test_inventory_stock import make_world, pick

    w = make_world()
    w.store.timezone = "America/Los_Angeles"
    w.store.address = "3401 Central Expressway, Santa Clara, CA"
    w.store.name = "AiFi NanoStore (AutoCheckout 2020)"
    w.store.save()
    food = TaxCategory.objects.create(store=w.store, name="Prepared food", rate_percent=Decimal("9.125"))
    w.chips.name = LONG
    w.chips.tax_category = food
    w.chips.save()
    w.cola.name = "ARRWHD SPRNG WTR 1.5L"
    w.cola.save()
    boss = user_make("boss@walkout.test", manager=True)
    ann = user_make("ann.longname.shopper@walkout-example.test", card=True)
    bob = user_make("bob@walkout.test", card=True)
    now = timezone.now()

    billed = Visit.objects.create(store=w.store, shopper=ann, state=Visit.State.SHOPPING,
                                  entered_at=now - timedelta(minutes=9))
    payment_authorise(visit=billed)
    pick(w, billed, w.chips, w.bin_b, 12, seconds_ago=400)
    pick(w, billed, w.cola, w.bin_a, 1, seconds_ago=380)
    Visit.objects.filter(pk=billed.pk).update(state=Visit.State.EXITED, exited_at=now - timedelta(minutes=2))
    billed.refresh_from_db()
    receipt = visit_checkout(visit=billed)
    line = receipt.lines.get(product=w.chips)
    dispute_open(receipt_line=line, user=ann, kind="wrong_quantity", quantity_taken=10,
                 note="I only took ten of these, two went back on the shelf by the door.")

    shopping = Visit.objects.create(store=w.store, shopper=bob, state=Visit.State.SHOPPING,
                                    entered_at=now - timedelta(minutes=3))
    payment_authorise(visit=shopping)
    pick(w, shopping, w.chips, w.bin_b, 3, seconds_ago=90)
    pick(w, shopping, w.cola, w.bin_a, 11, seconds_ago=60)
    se = ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin_a, bin_codes=[w.bin_a.code],
                                   t_start=now - timedelta(seconds=30), t_end=now - timedelta(seconds=29),
                                   delta_g=-355, noise_sd_g=3.0,
                                   hypotheses=[{"barcode": w.cola.barcode, "quantity": 1, "likelihood": 0.95}])
    review = ReviewItem.objects.create(
        shelf_event=se, reason="two shoppers' hands were at this plate",
        candidates=[{"visit": shopping.pk, "track_id": "cam:7", "distance_m": 0.04, "posterior": 0.55},
                    {"visit": billed.pk, "track_id": "cam:8", "distance_m": 0.31, "posterior": 0.45}])
    stock_record_restock(product=w.chips, quantity=40, bin=w.bin_b, by=boss.get_username())
    stock_record_adjustment(product=w.chips, quantity=-2, reason="damaged in the stockroom", by=boss.get_username(),
                            bin=w.bin_b)
    return w, ann, bob, receipt, billed, shopping, review


def _pages(w, receipt, billed, shopping, review):
    shopper = [("home", "/", "main"),
               ("pass", "/gates/pass/", "main"),
               ("cart", "/visits/current/", "main"),
               ("receipts", "/visits/receipts/", "main"),
               ("receipt", f"/visits/receipts/{receipt.pk}/", "li.receipt-line")]
    manager = [("dashboard", "/manage/", "#open-visits"),
               ("review", f"/manage/reviews/{review.pk}/", "h1"),
               ("visit", f"/manage/visits/{billed.pk}/", "h1"),
               ("disputes", "/visits/disputes/", "#disputes"),
               ("inventory", f"/manage/inventory/?store={w.store.code}", "#product-table"),
               ("product", f"/manage/inventory/products/{w.chips.pk}/", "h1"),
               ("ledger", f"/manage/inventory/ledger/?store={w.store.code}", "table"),
               ("planogram", f"/manage/inventory/planogram/?store={w.store.code}", "#shelves"),
               ("reports", f"/manage/reports/?store={w.store.code}", "#sales-chart"),
               ("csv", "/manage/inventory/csv/", "h2"),
               ("store-map", f"/manage/vision/map/{w.store.code}/", "h1")]
    return shopper, manager


def test_every_page_fits_a_phone_and_a_desktop(browser, asgi_server):
    """Item 4: no word of a table, list or heading broken across lines, at both sizes, on every page."""
    from playwright.sync_api import expect

    screenshots_clear("fit-")
    w, ann, bob, receipt, billed, shopping, review = _world()
    shopper, manager = _pages(w, receipt, billed, shopping, review)
    problems = []
    for size, options in (("phone", PHONE), ("desktop", DESKTOP)):
        for who, email, pages, scroll_ok in (("shopper", ann.get_username(), shopper, False),
                                             ("bob", bob.get_username(), shopper[2:3], False),
                                             ("manager", "boss@walkout.test", manager, size == "phone")):
            ctx = _context(browser, asgi_server, **options)
            try:
                page = ctx.new_page()
                login(page, email)
                for name, url, ready in pages:
                    page.goto(url)
                    expect(page.locator(ready).first).to_be_visible()
                    label = f"{name}{'-' + who if who == 'bob' else ''}-{size}"
                    screenshot(page, f"fit-{label}")
                    from browser import layout_problems

                    problems += [f"{label}: {p}" for p in layout_problems(page, scroll_ok=scroll_ok)]
            finally:
                ctx.close()
    assert not problems, "\n".join(problems)


def test_a_taxed_checkout_reads_as_a_receipt_on_the_page_and_in_the_email(browser, asgi_server):
    """Item 5 through the real checkout: tax per category rate, local time, address, card, a link in the e-mail."""
    from django.core import mail
    from playwright.sync_api import expect

    w, ann, bob, receipt, billed, shopping, review = _world()
    # 12 × $2.50 = $30.00 taxed at 9.125 % = $2.7375 → $2.74; 1 × $1.99 untaxed
    assert receipt.total_minor == 3000 + 274 + 199
    ctx = _context(browser, asgi_server, **PHONE)
    try:
        page = ctx.new_page()
        login(page, ann.get_username())
        page.goto(f"/visits/receipts/{receipt.pk}/")
        expect(page.locator("#subtotal")).to_contain_text("$31.99")
        expect(page.locator(".tax-line")).to_have_count(1)
        expect(page.locator(".tax-line")).to_contain_text("Prepared food tax 9.125 % on $30.00")
        expect(page.locator(".tax-line")).to_contain_text("$2.74")
        expect(page.locator("#receipt-total")).to_have_text("$34.73")
        expect(page.locator("#store-address")).to_have_text("3401 Central Expressway, Santa Clara, CA")
        expect(page.locator("#card-used")).to_have_text("Visa ending 4242")
        issued = page.locator("#issued-at").inner_text()
        assert ("PST" in issued or "PDT" in issued) and "UTC" not in issued, issued
        screenshot(page, "fit-receipt-taxed-checkout-phone")
        # the list of receipts tells the same local time (it showed UTC: 07:18 for a receipt of 23:18 PST)
        from zoneinfo import ZoneInfo

        local = receipt.issued_at.astimezone(ZoneInfo("America/Los_Angeles"))
        page.goto("/visits/receipts/")
        when = page.locator(".receipt-when").first
        expect(when).to_contain_text(f"{local.day} {local:%b %Y, %H:%M} {local.tzname()}")
        screenshot(page, "fit-receipts-local-time-phone")
    finally:
        ctx.close()
    copies = [m for m in mail.outbox if f"Receipt {receipt.pk}" in m.body]
    assert [m.to for m in copies] == [[ann.email or ann.get_username()]]
    body = copies[0].body
    assert "Prepared food tax 9.125 % on $30.00: $2.74" in body, body
    assert "Total: $34.73" in body and "Visa ending 4242" in body, body
    assert "3401 Central Expressway, Santa Clara, CA" in body, body
    assert ("PST" in body or "PDT" in body) and "UTC" not in body, body
    assert f"/visits/receipts/{receipt.pk}/" in body, body
    # the HTML part, which most mail apps show, says the same, and reads on a phone
    html = next(content for content, kind in copies[0].alternatives if kind == "text/html")
    ctx = _context(browser, asgi_server, **PHONE)
    try:
        page = ctx.new_page()
        page.set_content(html)
        text = page.locator("body").inner_text()
        for words in ("3401 Central Expressway, Santa Clara, CA", "Prepared food tax 9.125 % on $30.00: $2.74",
                      "Total $34.73", "Visa ending 4242"):
            assert words in text, (words, text)
        assert ("PST" in text or "PDT" in text) and "UTC" not in text, text
        expect(page.locator("a", has_text="dispute")).to_have_attribute(
            "href", re.compile(rf"/visits/receipts/{receipt.pk}/$"))
        assert_fits(page, "the receipt e-mail on a phone")
        screenshot(page, "fit-receipt-email-phone")
    finally:
        ctx.close()
