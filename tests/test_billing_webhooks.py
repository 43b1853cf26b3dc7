"""The Stripe webhook endpoint: signed events apply once, replays are no-ops, anything unverified is refused.

Signatures are forged the way Stripe makes them (https://docs.stripe.com/webhooks#verify-manually):
``Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import include, path, reverse
from django.utils import timezone

from store.billing.models import PaymentAttempt, WebhookEvent
from store.gates.models import Visit
from store.layout.models import Store

urlpatterns = [path("billing/", include("store.billing.urls"))]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

SECRET = "whsec_test_walkout"
K = PaymentAttempt.Kind
S = PaymentAttempt.Status


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


@pytest.fixture
def visit() -> Visit:
    store = Store.objects.create(code="corner", name="Corner shop")
    user = get_user_model().objects.create_user(username="ann@example.com", email="ann@example.com")
    visit = Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())
    PaymentAttempt.objects.create(visit=visit, kind=K.AUTHORISE, provider="stripe", amount_minor=5000,
                                  currency="usd", idempotency_key=f"authorise:{visit.pk}", provider_ref="pi_3Hold",
                                  intent_ref="pi_3Hold", status=S.SUCCEEDED, provider_status="requires_capture")
    return visit


def event(event_id: str, event_type: str, obj: dict) -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "api_version": "2025-09-30.clover", "created": int(time.time()),
        "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }, indent=2).encode()  # pretty-printed on purpose: the signature covers these exact bytes


def sign(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def intent(pid="pi_3Hold", *, status="canceled", amount=5000, amount_received=0, capture_method="manual",
           **extra) -> dict:
    return {"id": pid, "object": "payment_intent", "amount": amount, "amount_received": amount_received,
            "capture_method": capture_method, "currency": "usd", "status": status, "customer": "cus_Ann",
            "metadata": {}, "last_payment_error": None, "cancellation_reason": None, **extra}


def charge(*, amount_refunded: int, refund_id: str) -> dict:
    return {"id": "ch_3Hold", "object": "charge", "amount": 1299, "amount_captured": 1299,
            "amount_refunded": amount_refunded, "currency": "usd", "payment_intent": "pi_3Hold",
            "refunded": amount_refunded == 1299, "status": "succeeded",
            "refunds": {"object": "list", "data": [{"id": refund_id, "object": "refund", "amount": 100}],
                        "has_more": False}}


def post(client, payload: bytes, signature: str | None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(reverse("billing:stripe-webhook"), data=payload, content_type="application/json", **headers)


def test_signed_event_applies_once_and_its_replay_is_a_no_op(client, visit):
    payload = event("evt_1Expired", "payment_intent.canceled", intent(cancellation_reason="automatic"))
    response = post(client, payload, sign(payload))
    assert response.status_code == 200 and response.json()["status"] == "applied"
    row = visit.payment_attempts.get(kind=K.CANCEL)
    assert (row.status, row.amount_minor, row.idempotency_key, row.intent_ref) == (
        S.SUCCEEDED, 5000, "webhook:evt_1Expired", "pi_3Hold")
    assert "automatic" in row.reason
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.type, stored.visit_id, stored.object_ref) == (
        "evt_1Expired", "payment_intent.canceled", visit.pk, "pi_3Hold")
    assert row.webhook_event_id == stored.pk and stored.payload["data"]["object"]["id"] == "pi_3Hold"

    replay = post(client, payload, sign(payload))  # Stripe re-sends with a fresh signature
    assert replay.status_code == 200 and replay.json()["status"] == "replayed"
    assert WebhookEvent.objects.count() == 1 and visit.payment_attempts.filter(kind=K.CANCEL).count() == 1


def test_bad_signature_is_refused_and_nothing_is_stored(client, visit, caplog):
    payload = event("evt_1Forged", "payment_intent.canceled", intent())
    response = post(client, payload, sign(payload, secret="whsec_someone_else"))
    assert response.status_code == 400 and "signature" in response.json()["reason"]
    assert "signature" in caplog.text
    assert not WebhookEvent.objects.exists() and visit.payment_attempts.count() == 1


def test_tampered_body_missing_header_and_garbage_are_refused(client, visit):
    payload = event("evt_1Tamper", "payment_intent.canceled", intent())
    signature = sign(payload)
    tampered = payload.replace(b'"amount": 5000', b'"amount": 1')
    assert tampered != payload
    assert post(client, tampered, signature).status_code == 400
    assert post(client, payload, None).status_code == 400
    assert post(client, payload, "t=abc,v0=nothing").status_code == 400
    garbage = b"not json at all"
    assert post(client, garbage, sign(garbage)).status_code == 400
    assert not WebhookEvent.objects.exists() and visit.payment_attempts.count() == 1


def test_stale_timestamp_is_refused(client, visit):
    payload = event("evt_1Stale", "payment_intent.canceled", intent())
    response = post(client, payload, sign(payload, at=int(time.time()) - 301))
    assert response.status_code == 400 and "timestamp" in response.json()["reason"].lower()
    assert not WebhookEvent.objects.exists()
    fresh = post(client, payload, sign(payload, at=int(time.time()) - 200))
    assert fresh.status_code == 200  # within the 300 s tolerance


def test_unhandled_event_type_is_refused_with_a_reason(client, visit):
    payload = event("evt_1Other", "customer.created", {"id": "cus_Ann", "object": "customer"})
    response = post(client, payload, sign(payload))
    assert response.status_code == 400 and "customer.created" in response.json()["reason"]
    assert not WebhookEvent.objects.exists()


def test_only_post_and_only_with_a_configured_secret(client, visit, settings):
    assert client.get(reverse("billing:stripe-webhook")).status_code == 405
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = event("evt_1NoSecret", "payment_intent.canceled", intent())
    assert post(client, payload, sign(payload)).status_code == 503
    assert not WebhookEvent.objects.exists()


def test_event_for_a_payment_not_ours_is_stored_without_effect(client, visit):
    payload = event("evt_1Stranger", "payment_intent.succeeded", intent("pi_3Other", status="succeeded",
                                                                         amount_received=5000))
    response = post(client, payload, sign(payload))
    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.visit is None and "no payment of ours" in stored.outcome
    assert visit.payment_attempts.count() == 1


def test_cancellation_after_our_own_cancel_or_capture_adds_nothing(client, visit):
    PaymentAttempt.objects.create(visit=visit, kind=K.CAPTURE, provider="stripe", amount_minor=1299, currency="usd",
                                  idempotency_key=f"capture:{visit.pk}", provider_ref="pi_3Hold",
                                  intent_ref="pi_3Hold", status=S.SUCCEEDED)
    payload = event("evt_1Late", "payment_intent.canceled", intent())
    assert post(client, payload, sign(payload)).status_code == 200
    assert visit.payment_attempts.filter(kind=K.CANCEL).count() == 0
    assert "captured" in WebhookEvent.objects.get().outcome


def test_succeeded_records_only_what_the_ledger_lacks(client, visit):
    """An extra charge that needed authentication, completed later by the shopper in the app."""
    PaymentAttempt.objects.create(visit=visit, kind=K.CHARGE, provider="stripe", amount_minor=700, currency="usd",
                                  idempotency_key=f"capture:{visit.pk}:extra", provider_ref="pi_3Extra",
                                  intent_ref="pi_3Extra", status=S.REQUIRES_ACTION)
    paid = event("evt_1Paid", "payment_intent.succeeded", intent("pi_3Extra", status="succeeded", amount=700,
                                                                  amount_received=700,
                                                                  capture_method="automatic_async"))
    assert post(client, paid, sign(paid)).status_code == 200
    row = visit.payment_attempts.get(intent_ref="pi_3Extra", status=S.SUCCEEDED)
    assert (row.kind, row.amount_minor, row.idempotency_key) == (K.CHARGE, 700, "webhook:evt_1Paid")
    # an older failure event arriving afterwards must not undo the success
    failed = event("evt_0Failed", "payment_intent.payment_failed", intent(
        "pi_3Extra", status="requires_payment_method", amount=700,
        last_payment_error={"code": "authentication_required", "message": "needs auth"}))
    assert post(client, failed, sign(failed)).status_code == 200
    assert not visit.payment_attempts.filter(intent_ref="pi_3Extra", status=S.FAILED).exists()
    assert WebhookEvent.objects.get(event_id="evt_0Failed").outcome.startswith("stale")
    # our own capture, already recorded, is not recorded twice
    PaymentAttempt.objects.create(visit=visit, kind=K.CAPTURE, provider="stripe", amount_minor=5000, currency="usd",
                                  idempotency_key=f"capture:{visit.pk}", provider_ref="pi_3Hold",
                                  intent_ref="pi_3Hold", status=S.SUCCEEDED)
    ours = event("evt_1Ours", "payment_intent.succeeded", intent(status="succeeded", amount_received=5000))
    assert post(client, ours, sign(ours)).status_code == 200
    assert visit.payment_attempts.filter(intent_ref="pi_3Hold", kind=K.CAPTURE).count() == 1


def test_payment_failed_is_recorded_when_the_ledger_lacks_it(client, visit):
    PaymentAttempt.objects.create(visit=visit, kind=K.CHARGE, provider="stripe", amount_minor=700, currency="usd",
                                  idempotency_key=f"charge:{visit.pk}", provider_ref="pi_3Extra",
                                  intent_ref="pi_3Extra", status=S.REQUIRES_ACTION)
    failed = event("evt_1Failed", "payment_intent.payment_failed", intent(
        "pi_3Extra", status="requires_payment_method", amount=700,
        last_payment_error={"code": "card_declined", "decline_code": "lost_card", "message": "lost"}))
    assert post(client, failed, sign(failed)).status_code == 200
    row = visit.payment_attempts.get(status=S.FAILED)
    assert (row.kind, row.amount_minor, row.error_code) == (K.CHARGE, 700, "lost_card")


def test_refunds_are_cumulative_and_order_does_not_matter(client, visit):
    PaymentAttempt.objects.create(visit=visit, kind=K.CAPTURE, provider="stripe", amount_minor=1299, currency="usd",
                                  idempotency_key=f"capture:{visit.pk}", provider_ref="pi_3Hold",
                                  intent_ref="pi_3Hold", status=S.SUCCEEDED)
    PaymentAttempt.objects.create(visit=visit, kind=K.REFUND, provider="stripe", amount_minor=100, currency="usd",
                                  idempotency_key="refund:line:1:1", provider_ref="re_1Ours",
                                  intent_ref="pi_3Hold", status=S.SUCCEEDED)
    first = event("evt_1RefundA", "charge.refunded", charge(amount_refunded=100, refund_id="re_1Ours"))
    second = event("evt_1RefundB", "charge.refunded", charge(amount_refunded=600, refund_id="re_2Dash"))
    assert post(client, second, sign(second)).status_code == 200  # the later event arrives first
    assert post(client, first, sign(first)).status_code == 200
    refunds = visit.payment_attempts.filter(kind=K.REFUND).order_by("id")
    assert [(r.amount_minor, r.provider_ref, r.idempotency_key) for r in refunds] == [
        (100, "re_1Ours", "refund:line:1:1"), (500, "re_2Dash", "webhook:evt_1RefundB")]
    assert "already records" in WebhookEvent.objects.get(event_id="evt_1RefundA").outcome
