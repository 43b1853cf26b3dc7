"""Disputes: a shopper disputes a receipt line within the window (a review task), a manager accepts (the line is
refunded through ``billing.receipt_refund_line``) or rejects it. Money flows through the dummy provider."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from carts.models import Dispute
from carts.services.checkout import visit_checkout
from carts.services.disputes import DisputeError, dispute_decide, dispute_open
from carts.services.ledger import CartChange, cart_apply
from store.accounts.payment import shopper_card_attach
from store.accounts.services import manager_create, shopper_create
from store.billing.models import PaymentAttempt, Receipt
from store.gates.services import gate_create, pass_issue, visit_enter, visit_exit
from store.inventory.models import Product
from store.layout.models import Store

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough password 1"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.WALKOUT = {**settings.WALKOUT, "DISPUTE_WINDOW_H": 48}


def shopper(email: str):
    user = shopper_create(email=email, password=PASSWORD)
    shopper_card_attach(user=user, card_token="4242424242424242")
    return user


def billed_receipt(user, store, gate, products: dict) -> Receipt:
    """A real visit: pass → gate (hold) → cart events → exit → checkout (capture)."""
    _, token = pass_issue(shopper=user, store=store)
    visit = visit_enter(token=token, gate=gate)
    for product, qty in products.items():
        cart_apply(change=CartChange(visit=visit, product=product, quantity=qty, confidence=0.9, evidence={}),
                   shelf_event=None)
    visit_exit(visit=visit)
    return visit_checkout(visit=visit)


@pytest.fixture
def w():
    store = Store.objects.create(code="corner", name="Corner shop")
    gate, _ = gate_create(store=store, name="door-1")
    cola = Product.objects.create(store=store, barcode="0001", name="Cola", price=Decimal("1.99"), unit_weight_g=355)
    chips = Product.objects.create(store=store, barcode="0002", name="Chips", price=Decimal("2.50"), unit_weight_g=150)
    ann, bob = shopper("ann@example.com"), shopper("bob@example.com")
    boss = manager_create(email="boss@example.com", password=PASSWORD)
    receipt = billed_receipt(ann, store, gate, {cola: 3, chips: 1})
    lines = {line.barcode: line for line in receipt.lines.all()}
    return type("W", (), dict(store=store, gate=gate, ann=ann, bob=bob, boss=boss, receipt=receipt,
                              cola=lines["0001"], chips=lines["0002"]))


def as_user(user, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def dispute_url(w, line) -> str:
    return f"/visits/receipts/{w.receipt.pk}/lines/{line.pk}/dispute/"


def test_shopper_disputes_a_line_from_the_receipt_page(w):
    client = as_user(w.ann)
    page = client.get(f"/visits/receipts/{w.receipt.pk}/").content.decode()
    assert page.count("Dispute this line") == 2 and "You can dispute a line until" in page
    response = client.post(dispute_url(w, w.cola), {"kind": "wrong_quantity", "quantity_taken": 1,
                                                    "note": "only one"}, follow=True)
    assert "we will check" in response.content.decode()
    dispute = Dispute.objects.get()
    assert (dispute.kind, dispute.quantity, dispute.status, dispute.note) == ("wrong_quantity", 2, "open", "only one")
    page = client.get(f"/visits/receipts/{w.receipt.pk}/").content.decode()
    assert "dispute-open" in page and page.count("Dispute this line") == 1


def test_dispute_form_errors_are_shown_and_write_nothing(w):
    client = as_user(w.ann)
    for data in ({}, {"kind": "wrong_quantity"}, {"kind": "refund-everything"},
                 {"kind": "wrong_quantity", "quantity_taken": 3}, {"kind": "wrong_quantity", "quantity_taken": -1}):
        response = client.post(dispute_url(w, w.cola), data, follow=True)
        assert "Dispute not sent" in response.content.decode(), data
    assert not Dispute.objects.exists()


def test_one_open_dispute_per_line_and_the_window(w, settings):
    dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    with pytest.raises(DisputeError) as exc:
        dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    assert exc.value.code == "already_open"
    late = w.receipt.issued_at + timedelta(hours=48, seconds=1)
    with pytest.raises(DisputeError) as exc:
        dispute_open(receipt_line=w.chips, user=w.ann, kind="not_taken", now=late)
    assert exc.value.code == "window_closed"
    Receipt.objects.filter(pk=w.receipt.pk).update(issued_at=timezone.now() - timedelta(hours=49))
    response = as_user(w.ann).post(dispute_url(w, w.chips), {"kind": "not_taken"}, follow=True)
    assert "can be disputed for 48 hours" in response.content.decode()
    assert "Dispute this line" not in as_user(w.ann).get(f"/visits/receipts/{w.receipt.pk}/").content.decode()
    assert Dispute.objects.count() == 1


def test_accepting_refunds_the_disputed_units_once(w):
    dispute = dispute_open(receipt_line=w.cola, user=w.ann, kind="wrong_quantity", quantity_taken=1)
    client = as_user(w.boss)
    page = client.get("/visits/disputes/").content.decode()
    assert "Wrong quantity" in page and "$3.98" in page
    response = client.post(f"/visits/disputes/{dispute.pk}/decide/", {"decision": "accept"}, follow=True)
    assert "accepted: 2 unit(s) refunded" in response.content.decode()
    dispute.refresh_from_db()
    assert dispute.status == "accepted" and dispute.decided_by == "boss@example.com"
    refund = dispute.refund
    assert (refund.kind, refund.status, refund.amount_minor, refund.quantity) == ("refund", "succeeded", 398, 2)
    assert refund.receipt_line_id == w.cola.pk
    with pytest.raises(DisputeError) as exc:
        dispute_decide(dispute=dispute, accept=True, by="boss@example.com")
    assert exc.value.code == "not_open"
    assert PaymentAttempt.objects.filter(kind="refund").count() == 1
    # the shopper sees it; the last unit may still be disputed, then nothing is left
    page = as_user(w.ann).get(f"/visits/receipts/{w.receipt.pk}/").content.decode()
    assert "dispute-accepted" in page and "2 refunded" in page
    last = dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    assert last.quantity == 1
    dispute_decide(dispute=last, accept=True, by="boss")
    with pytest.raises(DisputeError) as exc:
        dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    assert exc.value.code == "nothing_left"


def test_rejecting_refunds_nothing_and_the_shopper_sees_why(w):
    dispute = dispute_open(receipt_line=w.chips, user=w.ann, kind="not_taken")
    as_user(w.boss).post(f"/visits/disputes/{dispute.pk}/decide/", {"decision": "reject",
                                                                    "note": "The camera shows you took it."})
    dispute.refresh_from_db()
    assert dispute.status == "rejected" and dispute.refund is None
    assert not PaymentAttempt.objects.filter(kind="refund").exists()
    assert "The camera shows you took it." in as_user(w.ann).get(f"/visits/receipts/{w.receipt.pk}/").content.decode()


def test_a_refused_refund_leaves_the_dispute_open(w):
    dispute = dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    PaymentAttempt.objects.filter(kind="capture").update(status="failed")  # nothing left that a refund could go to
    with pytest.raises(DisputeError) as exc:
        dispute_decide(dispute=dispute, accept=True, by="boss")
    assert exc.value.code == "refund_failed"
    dispute.refresh_from_db()
    assert dispute.status == "open" and dispute.decided_at is None


def test_another_shopper_cannot_dispute_or_see_my_receipt(w):
    client = as_user(w.bob)
    assert client.get(f"/visits/receipts/{w.receipt.pk}/").status_code == 404
    assert client.post(dispute_url(w, w.cola), {"kind": "not_taken"}).status_code == 404
    with pytest.raises(DisputeError) as exc:
        dispute_open(receipt_line=w.cola, user=w.bob, kind="not_taken")
    assert exc.value.code == "not_yours"
    # a line of another receipt under my receipt's URL is not found either
    bobs = billed_receipt(w.bob, w.store, w.gate, {Product.objects.get(barcode="0001"): 1})
    mine = as_user(w.ann).post(f"/visits/receipts/{w.receipt.pk}/lines/{bobs.lines.get().pk}/dispute/",
                               {"kind": "not_taken"})
    assert mine.status_code == 404
    # a manager may look at any receipt but not dispute for the shopper
    assert as_user(w.boss).get(f"/visits/receipts/{w.receipt.pk}/").status_code == 200
    with pytest.raises(DisputeError):
        dispute_open(receipt_line=w.cola, user=w.boss, kind="not_taken")
    assert not Dispute.objects.exists()


def test_dispute_queue_is_for_managers_and_forms_need_csrf(w):
    dispute = dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    assert Client().get("/visits/disputes/").status_code == 302
    assert as_user(w.ann).get("/visits/disputes/").status_code == 403
    assert as_user(w.ann).post(f"/visits/disputes/{dispute.pk}/decide/", {"decision": "accept"}).status_code == 403
    assert as_user(w.boss, csrf=True).post(f"/visits/disputes/{dispute.pk}/decide/",
                                           {"decision": "accept"}).status_code == 403
    assert as_user(w.ann, csrf=True).post(dispute_url(w, w.chips), {"kind": "not_taken"}).status_code == 403
    assert as_user(w.boss).post("/visits/disputes/999/decide/", {"decision": "accept"}).status_code == 404
    dispute.refresh_from_db()
    assert dispute.status == "open" and Dispute.objects.count() == 1


def test_a_rejected_line_is_not_disputed_again_and_the_shopper_is_told(w, mailoutbox,
                                                                      django_capture_on_commit_callbacks):
    d = dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken", note="never touched it")
    with django_capture_on_commit_callbacks(execute=True):
        dispute_decide(dispute=d, accept=False, by="boss", note="the camera shows you taking it")
    with pytest.raises(DisputeError) as exc:
        dispute_open(receipt_line=w.cola, user=w.ann, kind="not_taken")
    assert exc.value.code == "decided" and "the camera shows you taking it" in str(exc.value)
    told = [m for m in mailoutbox if "the line stands" in m.subject]
    assert len(told) == 1 and "the camera shows you taking it" in told[0].body
    page = as_user(w.ann).get(f"/visits/receipts/{w.receipt.pk}/").content.decode()
    assert "Dispute rejected" in page and "the camera shows you taking it" in page


def test_a_refused_dispute_keeps_the_note_and_one_unit_lines_offer_no_quantity(w):
    response = as_user(w.ann).post(dispute_url(w, w.cola), {"kind": "wrong_quantity", "note": "keep these words"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Dispute not sent" in body and "keep these words" in body
    d = as_user(w.ann).post(dispute_url(w, w.chips), {"kind": "wrong_quantity", "quantity_taken": 0, "note": "x"})
    assert "single unit" in d.content.decode() and "from 0 to 0" not in d.content.decode()
    page = as_user(w.ann).get(f"/visits/receipts/{w.receipt.pk}/").content.decode()
    assert page.count('value="wrong_quantity"') == 1  # offered for the 3 colas, not for the one bag of chips
