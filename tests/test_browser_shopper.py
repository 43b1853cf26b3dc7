"""The shopper's path in real headless Chromium against the real ASGI server (tests/browser.py):

sign up → add a card → entry pass (full screen; still shown offline through the service worker) → the gate's API
admits the QR code read off the screen → the live cart page turns from waiting to the cart → the real BENCHMARK-1
shelf event is replayed through the pipeline and the item appears live → exit scan → the receipt link appears, the
receipt explains its line, the email copy is sent → the shopper disputes the line → a manager accepts it → the line
is refunded. Screenshots of the key pages go to var/screenshots/shopper-*.png.
"""
from __future__ import annotations

import json
import time
import urllib.request

import cv2
import numpy as np
import pytest
from django.core import mail

from browser import (  # noqa: F401
    SCREENSHOTS, asgi_server, assert_fits, browser, login, manager_page, page, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "walk.in@example.com"
PASSWORD = "Take-it-and-go-42"
WATER = "071142008582"  # the one real pick of BENCHMARK-1 (gondola 1, shelf 5, plate 11, ≈ 623 g)


@pytest.fixture(autouse=True)
def live_settings(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.WALKOUT = {**settings.WALKOUT, "PASS_MAX_AGE_S": 60, "EXIT_SETTLE_S": 0.0}


def _store_from(recording_path):
    """The recording's store and catalogue (as ``make demo`` sets them up) and a gate with its API key."""
    from store.gates.services import gate_create
    from store.inventory.services import catalogue_load
    from store.layout.services import layout_load
    from store.recording import read_recording

    recording = read_recording(recording_path)
    store = layout_load(data=recording.store)
    catalogue_load(store=store, products=recording.store["products"], facings=recording.store["facings"])
    gate, key = gate_create(store=store, name="door-1")
    return recording, store, key


def _replay_shelves_into(recording, visit_id: int) -> dict:
    """Replay the recording's shelf weights and shopper track through the real pipeline, its clock shifted to now,
    with the recording's (only) track bound to the visit the gate opened. Runs in the server (``asgi_server.call``)
    so the cart pushes reach the open sockets. Returns the pipeline's counters."""
    from carts.pipeline import StorePipeline
    from store.gates.models import Visit
    from store.gates.services import visit_bind_track

    store = Visit.objects.select_related("store").get(pk=visit_id).store
    pipeline = StorePipeline(store=store, session="browser-test", clock_offset_s=time.time() - recording.t_start)
    track = recording.tracks.track_ids()[0]
    visit = visit_bind_track(visit=Visit.objects.get(pk=visit_id), track_id=track)
    pipeline.bind_visit(track_id=track, visit=visit)
    pipeline.on_tracks(recording.tracks)
    for block in recording.shelves:
        pipeline.on_samples(bin_codes=block.bin_codes, t=block.t, grams=block.grams, rate_hz=block.rate_hz)
    pipeline.finish()
    return {"shelf_events": pipeline.stats.shelf_events, "cart_events": pipeline.stats.cart_events,
            "reviews": pipeline.stats.reviews}


def _qr_token(page) -> str:
    """The text of the QR code on the pass page, read from a screenshot with OpenCV (as a camera at the gate)."""
    page.locator("#qr").scroll_into_view_if_needed()
    for _attempt in range(5):  # a camera at the gate tries again too; the page may still be laying out
        png = page.locator("#qr").screenshot(animations="disabled")
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        image = cv2.copyMakeBorder(image, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        # OpenCV's classic detector misses some codes the ArUco-based one reads (and the other way round): a
        # scanner that fails on one random token in twenty would be a flaky test, not a broken pass
        for candidate in (image, cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)):
            for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
                text, _, _ = detector.detectAndDecode(candidate)
                if text:
                    return text
        page.wait_for_timeout(300)
    cv2.imwrite(str(SCREENSHOTS / "shopper-qr-unreadable.png"), image)
    raise AssertionError("the QR code on the pass page could not be read (var/screenshots/shopper-qr-unreadable.png)")


def _gate_post(url: str, key: str, token: str) -> tuple[int, dict]:
    """POST a scanned token to the gate API the way scanner hardware does (``Authorization: Gate <key>``)."""
    request = urllib.request.Request(url, data=json.dumps({"token": token}).encode(), method="POST", headers={
        "Authorization": f"Gate {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_shopper_signs_up_enters_sees_cart_live_exits_gets_receipt_and_disputes(
        benchmark1_recording, asgi_server, page, manager_page):
    from playwright.sync_api import expect

    from store.billing.models import PaymentAttempt, Receipt

    screenshots_clear("shopper-")
    recording, store, gate_key = _store_from(benchmark1_recording)
    store.timezone, store.address = "America/Los_Angeles", "3401 Central Expressway, Santa Clara, CA"
    store.save(update_fields=["timezone", "address"])
    user_make("boss@walkout.test", manager=True)

    # Sign up, then the app asks for a card.
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    screenshot(page, "shopper-01-signup")
    page.click("form button[type=submit]")
    expect(page).to_have_url(f"{asgi_server.url}/accounts/card/")
    page.fill("input[name=number]", "4242 4242 4242 4242")
    page.fill("input[name=expiry]", "12/34")
    page.fill("input[name=cvc]", "123")
    screenshot(page, "shopper-02-card")
    page.click("form button[type=submit]")
    expect(page.locator("#card-on-file")).to_contain_text("4242")
    screenshot(page, "shopper-03-home")

    # The entry pass; the service worker takes over and keeps it for offline use.
    page.click("text=Show my entry pass")
    expect(page.locator("#qr svg")).to_be_visible()
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()                                       # now through the service worker: the page is kept
    expect(page.locator("#qr svg")).to_be_visible()
    assert page.evaluate("!!navigator.serviceWorker.controller")
    shown_id = page.locator("#qr").get_attribute("data-pass-id")
    screenshot(page, "shopper-04-pass")
    page.context.set_offline(True)
    page.reload()                                       # offline: the kept page shows the newest pass still valid
    expect(page.locator("#qr svg")).to_be_visible()
    assert page.locator("#qr").get_attribute("data-pass-id") == shown_id
    expect(page.locator("#qr")).not_to_have_class("qr-box stale")
    assert int(page.locator("#seconds").inner_text()) > 0
    expect(page.locator("#offline")).to_be_visible()
    screenshot(page, "shopper-05-pass-offline")
    page.context.set_offline(False)
    page.goto("/gates/pass/")
    expect(page.locator("#qr svg")).to_be_visible()
    page.click("#fullscreen")
    page.wait_for_function("document.fullscreenElement !== null || "
                           "document.getElementById('pass').classList.contains('full-fallback')")
    screenshot(page, "shopper-06-pass-fullscreen", full_page=False)
    token = _qr_token(page)

    # The phone's cart tab waits for the visit: it says so, and no button leads nowhere.
    cart = page.context.new_page()
    cart.goto("/visits/current/")
    expect(cart.locator("#conn")).to_have_text("waiting for your visit")
    expect(cart.locator("#waiting-view h1")).to_have_text("Waiting at the gate")
    expect(cart.locator("#trip-link")).to_be_hidden()
    assert_fits(cart, "waiting page")

    # The gate scans the pass: admitted; the same code at a second scan is refused.
    status, body = _gate_post(f"{asgi_server.url}/gates/api/scan/", gate_key, token)
    assert status == 200 and body["admitted"], body
    status, again = _gate_post(f"{asgi_server.url}/gates/api/scan/", gate_key, token)
    assert status == 403 and again["reason"] == "replayed", again
    expect(cart.locator("#cart-view")).to_be_visible()
    expect(cart.locator("#trip")).to_have_attribute("data-stage", "inside")
    expect(cart.locator("#trip-title")).to_have_text("You're in")
    expect(cart.locator("#trip-link")).to_be_hidden()          # no receipt link while shopping
    expect(cart.locator("#cart-empty")).to_be_visible()
    assert_fits(cart, "empty cart")
    screenshot(cart, "shopper-07-cart-empty")

    # The pass page, still open on the phone, says "you're in" as soon as the gate admits (over its socket).
    page.evaluate("document.fullscreenElement ? document.exitFullscreen() : null")
    page.evaluate("document.getElementById('pass').classList.remove('full-fallback')")
    expect(page.locator("#inside")).to_be_visible()
    expect(page.locator("#inside")).to_contain_text("You're in")
    screenshot(page, "shopper-07b-pass-youre-in")

    # A fresh pass scanned again while inside opens no second visit: the gate says the shopper is inside.
    page.goto("/gates/pass/")
    expect(page.locator("#qr svg")).to_be_visible()
    expect(page.locator("#inside")).to_contain_text("You came into")
    status, twice = _gate_post(f"{asgi_server.url}/gates/api/scan/", gate_key, _qr_token(page))
    assert status == 403 and twice["reason"] == "already_inside", twice
    assert "already inside" in twice["message"]
    from store.gates.models import Visit
    assert Visit.objects.count() == 1
    assert PaymentAttempt.objects.filter(kind=PaymentAttempt.Kind.AUTHORISE).count() == 1

    # A real shelf event is replayed through the pipeline: the water appears in the open cart page, live.
    stats = asgi_server.call(_replay_shelves_into, recording, body["visit"])
    assert stats["cart_events"] == 1, stats
    expect(cart.locator("#cart-lines li")).to_have_count(1)
    expect(cart.locator("#cart-lines")).to_contain_text("ARRWHD")
    expect(cart.locator("#cart-lines")).to_contain_text("1 × $")
    expect(cart.locator("#trip")).to_have_attribute("data-stage", "inside")
    total = cart.locator("#cart-total").inner_text()
    assert total.startswith("$") and total != "$0.00"
    assert_fits(cart, "live cart")
    screenshot(cart, "shopper-08-cart-live")

    # Exit scan with a fresh pass: the visit is billed; the cart says what was charged to which card, and links
    # the receipt.
    page.goto("/gates/pass/")
    expect(page.locator("#qr svg")).to_be_visible()
    status, out = _gate_post(f"{asgi_server.url}/gates/api/exit/", gate_key, _qr_token(page))
    assert status == 200 and out["visits"] == [body["visit"]], out
    expect(cart.locator("#trip")).to_have_attribute("data-stage", "charged")
    expect(cart.locator("#trip-title")).to_have_text(f"Charged {total}")
    expect(cart.locator("#trip-text")).to_contain_text("Visa ending 4242")
    expect(cart.locator("#trip-link")).to_be_visible()
    assert_fits(cart, "charged cart")
    screenshot(cart, "shopper-09-cart-billed")
    receipt = Receipt.objects.get(visit_id=body["visit"])
    assert [m.to for m in mail.outbox if f"Receipt {receipt.pk}" in m.body] == [[EMAIL]]

    # Reopening the cart afterwards: waiting at the gate again, and how the last visit ended, with its receipt.
    again_page = page.context.new_page()
    again_page.goto("/visits/current/")
    expect(again_page.locator("#last-trip")).to_contain_text(f"Charged {total}")
    expect(again_page.locator("#last-trip-link")).to_have_attribute("href", f"/visits/receipts/{receipt.pk}/")
    screenshot(again_page, "shopper-09b-cart-reopened")
    again_page.close()

    # The receipt explains its line, in the store's local time, with its address and the card charged; a list that
    # reads on a phone. The e-mail copy links it.
    cart.click("#trip-link")
    expect(cart.locator("li.receipt-line")).to_have_count(1)
    expect(cart.locator("li.receipt-line")).to_contain_text("ARRWHD")
    expect(cart.locator("#store-address")).to_have_text("3401 Central Expressway, Santa Clara, CA")
    expect(cart.locator("#issued-at")).to_contain_text("PST")
    expect(cart.locator("#card-used")).to_have_text("Visa ending 4242")
    copy = next(m for m in mail.outbox if f"Receipt {receipt.pk}" in m.body)
    assert f"/visits/receipts/{receipt.pk}/" in copy.body
    cart.locator("li.receipt-line details.why summary").first.click()
    expect(cart.locator("li.evidence")).to_have_count(1)
    expect(cart.locator("li.evidence")).to_contain_text("1 taken from shelf 1-5-11")
    assert_fits(cart, "receipt")
    screenshot(cart, "shopper-10-receipt")
    cart.locator("details.dispute-form summary").click()
    expect(cart.locator("input[name=kind][value=wrong_quantity]")).to_have_count(0)   # a one-unit line
    cart.check("input[name=kind][value=not_taken]")
    cart.fill("textarea[name=note]", "I put it back on the shelf.")
    cart.click("details.dispute-form button[type=submit]")
    expect(cart.locator(".messages")).to_contain_text("we will check")
    expect(cart.locator(".dispute-open")).to_be_visible()
    assert_fits(cart, "disputed receipt")
    screenshot(cart, "shopper-11-disputed")

    # A manager accepts the dispute: the line is refunded, and the shopper sees it, on the receipt and by e-mail.
    login(manager_page, "boss@walkout.test")
    manager_page.set_viewport_size({"width": 1440, "height": 900})
    manager_page.goto("/visits/disputes/")
    row = manager_page.locator("#disputes tr[data-dispute]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("I didn't take this")
    assert_fits(manager_page, "disputes at 1440 px")
    screenshot(manager_page, "shopper-12-manager-disputes")
    row.locator("button[value=accept]").click()
    expect(manager_page.locator(".messages")).to_contain_text("accepted")
    refund = PaymentAttempt.objects.get(visit_id=body["visit"], kind=PaymentAttempt.Kind.REFUND)
    assert refund.status == PaymentAttempt.Status.SUCCEEDED and refund.amount_minor == receipt.total_minor
    cart.reload()
    expect(cart.locator(".dispute-accepted")).to_be_visible()
    expect(cart.locator("details.dispute-form")).to_have_count(0)     # decided: not disputed again
    decision = [m for m in mail.outbox if "dispute is accepted" in m.subject]
    assert [m.to for m in decision] == [[EMAIL]] and f"/visits/receipts/{receipt.pk}/" in decision[0].body
    screenshot(cart, "shopper-13-refunded")
