"""Issue 15 item 6 as a shopper and a manager meet a dispute, in real headless Chromium (tests/browser.py): a
dispute refused for a missing quantity keeps the shopper's words and says why; sent again, a manager rejects it
with a note; the shopper reads the decision on the receipt (phone) and in an e-mail, and the line cannot be
disputed again. Screenshots: var/screenshots/dispute-*.png."""
from __future__ import annotations

from datetime import timedelta

import pytest

from browser import (  # noqa: F401
    asgi_server, assert_fits, browser, desk, login, phone, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_refused_dispute_keeps_the_note_and_a_rejection_is_told_and_final(phone, desk):
    from django.core import mail
    from django.utils import timezone
    from playwright.sync_api import expect

    from carts.services.checkout import visit_checkout
    from store.billing.services import payment_authorise
    from store.gates.models import Visit
    from tests.test_inventory_stock import make_world, pick

    screenshots_clear("dispute-")
    w = make_world()
    user_make("boss@walkout.test", manager=True)
    ann = user_make("ann@walkout.test", card=True)
    visit = Visit.objects.create(store=w.store, shopper=ann, state=Visit.State.SHOPPING,
                                 entered_at=timezone.now() - timedelta(minutes=5))
    payment_authorise(visit=visit)
    pick(w, visit, w.cola, w.bin_a, 3, seconds_ago=120)
    Visit.objects.filter(pk=visit.pk).update(state=Visit.State.EXITED, exited_at=timezone.now())
    receipt = visit_checkout(visit=Visit.objects.get(pk=visit.pk))

    login(phone, "ann@walkout.test")
    phone.goto(f"/visits/receipts/{receipt.pk}/")
    line = phone.locator("li.receipt-line", has_text="Cola")
    line.locator("details.dispute-form summary").click()
    line.locator("input[name=kind][value=wrong_quantity]").check()
    line.locator("textarea[name=note]").fill("Two went back on the shelf by the door.")
    line.locator("details.dispute-form button[type=submit]").click()
    expect(phone.locator("#dispute-errors")).to_contain_text("Dispute not sent")
    line = phone.locator("li.receipt-line", has_text="Cola")
    expect(line.locator("textarea[name=note]")).to_have_value("Two went back on the shelf by the door.")
    expect(line.locator("input[name=kind][value=wrong_quantity]")).to_be_checked()
    assert_fits(phone, "refused dispute")
    screenshot(phone, "dispute-refused-keeps-note-phone")
    line.locator("input[name=quantity_taken]").fill("1")
    line.locator("details.dispute-form button[type=submit]").click()
    expect(phone.locator(".messages")).to_contain_text("we will check")
    expect(phone.locator(".dispute-open")).to_be_visible()

    login(desk, "boss@walkout.test")
    desk.goto("/visits/disputes/")
    row = desk.locator("#disputes tr[data-dispute]")
    expect(row).to_contain_text("Two went back on the shelf by the door.")
    row.locator("input[name=note]").fill("The camera shows three bottles leaving with you.")
    row.locator("button[value=reject]").click()
    expect(desk.locator(".messages")).to_contain_text("rejected")
    assert_fits(desk, "disputes after a decision")
    screenshot(desk, "dispute-rejected-manager-desktop")

    phone.reload()
    decided = phone.locator(".dispute-rejected")
    expect(decided).to_contain_text("Dispute rejected")
    expect(decided).to_contain_text("The camera shows three bottles leaving with you.")
    expect(phone.locator("li.receipt-line", has_text="Cola").locator("details.dispute-form")).to_have_count(0)
    assert_fits(phone, "rejected dispute")
    screenshot(phone, "dispute-rejected-shopper-phone")
    told = [m for m in mail.outbox if "the line stands" in m.subject]
    assert [m.to for m in told] == [["ann@walkout.test"]]
    assert "The camera shows three bottles leaving with you." in told[0].body
    assert f"/visits/receipts/{receipt.pk}/" in told[0].body
