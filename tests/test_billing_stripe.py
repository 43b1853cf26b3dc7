"""StripeProvider, offline: stripe's HTTP client is replaced by a recording fake that checks each request
(method, path, form parameters, Idempotency-Key header) and answers with Stripe-shaped JSON (API reference:
https://docs.stripe.com/api/payment_intents/object, /api/refunds/object, /api/errors)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from django.contrib.auth import get_user_model
from django.utils import timezone

from store.accounts.models import ShopperProfile
from store.accounts.payment import shopper_card_attach
from store.billing import services
from store.billing.models import PaymentAttempt
from store.billing.provider_stripe import StripeProvider
from store.billing.providers import ProviderUnavailable, ResultStatus
from store.billing.services import PaymentDeclined, ReceiptLineData, payment_authorise, receipt_issue
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.models import Store

API = "https://api.stripe.com"
NOW = 1_764_000_000


@dataclass
class Sent:
    method: str
    base: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class RecordingHTTPClient(stripe.HTTPClient):
    """Answers scripted ``(method, path, status, body)`` in order and records what was sent."""

    name = "recording"

    def __init__(self, script: list[tuple[str, str, int, dict]]):
        super().__init__()
        self.script = list(script)
        self.sent: list[Sent] = []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        params = dict(parse_qsl(body or parts.query, keep_blank_values=True))
        self.sent.append(Sent(method.upper(), f"{parts.scheme}://{parts.netloc}", parts.path, params, dict(headers)))
        assert self.script, f"unexpected request {method.upper()} {parts.path}"
        want_method, want_path, status, answer = self.script.pop(0)
        assert (method.upper(), parts.path) == (want_method, want_path)
        return json.dumps(answer), status, {"Request-Id": f"req_{len(self.sent)}"}

    def close(self):
        pass


def payment_intent(pid="pi_3Hold", *, amount=5000, status="requires_capture", amount_received=0,
                   capture_method="manual", metadata=None, last_payment_error=None) -> dict:
    return {
        "id": pid, "object": "payment_intent", "amount": amount,
        "amount_capturable": amount if status == "requires_capture" else 0, "amount_details": {"tip": {}},
        "amount_received": amount_received, "application": None, "application_fee_amount": None,
        "automatic_payment_methods": None, "canceled_at": NOW if status == "canceled" else None,
        "cancellation_reason": "requested_by_customer" if status == "canceled" else None,
        "capture_method": capture_method, "client_secret": f"{pid}_secret_abc", "confirmation_method": "automatic",
        "created": NOW, "currency": "usd", "customer": "cus_Ann", "description": None,
        "last_payment_error": last_payment_error, "latest_charge": "ch_3Hold" if status != "canceled" else None,
        "livemode": False, "metadata": metadata or {}, "next_action": None, "on_behalf_of": None,
        "payment_method": "pm_1Card", "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
        "setup_future_usage": None, "shipping": None, "statement_descriptor": None, "status": status,
        "transfer_data": None, "transfer_group": None,
    }


def card_error(code: str, message: str, *, decline_code: str | None = None, pi: dict | None = None) -> dict:
    error = {"type": "card_error", "code": code, "message": message, "doc_url": f"https://docs.stripe.com/error-codes/{code}",
             "request_log_url": "https://dashboard.stripe.com/test/logs/req_1"}
    if decline_code:
        error["decline_code"] = decline_code
    if pi is not None:
        error["payment_intent"] = pi
    return {"error": error}


def make(script, **kwargs) -> tuple[StripeProvider, RecordingHTTPClient]:
    client = RecordingHTTPClient(script)
    return StripeProvider(api_key="sk_test_walkout", http_client=client, max_network_retries=0, **kwargs), client


# --- the exact requests -----------------------------------------------------------------------------------------

def test_authorise_is_a_manual_capture_payment_intent_confirmed_off_session():
    provider, http = make([("POST", "/v1/payment_intents", 200, payment_intent())])
    result = provider.authorise(customer_ref="cus_Ann", payment_method_ref="pm_1Card", amount_minor=5000,
                                currency="usd", idempotency_key="authorise:7", metadata={"visit": "7"})
    (sent,) = http.sent
    assert sent.base == API and sent.method == "POST"
    assert sent.params == {
        "amount": "5000", "currency": "usd", "customer": "cus_Ann", "payment_method": "pm_1Card",
        "payment_method_types[0]": "card", "confirm": "true", "off_session": "true", "capture_method": "manual",
        "metadata[visit]": "7",
    }
    assert sent.headers["Idempotency-Key"] == "authorise:7"
    assert sent.headers["Authorization"] == "Bearer sk_test_walkout"
    assert result.status is ResultStatus.SUCCEEDED
    assert (result.provider_ref, result.intent_ref, result.amount_minor, result.provider_status) == (
        "pi_3Hold", "pi_3Hold", 5000, "requires_capture")


def test_authorise_declined_returns_the_decline_with_the_payment_intent():
    declined = payment_intent("pi_3Decl", status="requires_payment_method",
                              last_payment_error={"code": "card_declined", "decline_code": "generic_decline"})
    provider, http = make([("POST", "/v1/payment_intents", 402, card_error(
        "card_declined", "Your card was declined.", decline_code="generic_decline", pi=declined))])
    result = provider.authorise(customer_ref="cus_Ann", payment_method_ref="pm_1Card", amount_minor=5000,
                                currency="usd", idempotency_key="authorise:8", metadata={})
    assert result.status is ResultStatus.FAILED
    assert (result.error_code, result.error, result.provider_ref) == (
        "generic_decline", "Your card was declined.", "pi_3Decl")


def test_authorise_needing_authentication_requires_action():
    pi = payment_intent("pi_3Auth", status="requires_payment_method")
    provider, _ = make([("POST", "/v1/payment_intents", 402, card_error(
        "authentication_required", "This payment requires authentication.", pi=pi))])
    result = provider.authorise(customer_ref="cus_Ann", payment_method_ref="pm_1Card", amount_minor=5000,
                                currency="usd", idempotency_key="authorise:9", metadata={})
    assert result.status is ResultStatus.REQUIRES_ACTION and result.error_code == "authentication_required"


def test_capture_within_the_hold_sends_amount_to_capture():
    provider, http = make([
        ("GET", "/v1/payment_intents/pi_3Hold", 200, payment_intent()),
        ("POST", "/v1/payment_intents/pi_3Hold/capture", 200,
         payment_intent(status="succeeded", amount_received=1299)),
    ])
    result = provider.capture(intent_ref="pi_3Hold", amount_minor=1299, idempotency_key="capture:7")
    get, capture = http.sent
    assert "Idempotency-Key" not in get.headers
    assert capture.params == {"amount_to_capture": "1299"}
    assert capture.headers["Idempotency-Key"] == "capture:7"
    assert result.succeeded and result.extra_charge is None
    assert (result.capture.amount_minor, result.capture.provider_status) == (1299, "succeeded")


def test_capture_above_the_hold_charges_the_rest_as_a_separate_off_session_payment_intent():
    provider, http = make([
        ("GET", "/v1/payment_intents/pi_3Hold", 200, payment_intent(metadata={"visit": "7"})),
        ("POST", "/v1/payment_intents/pi_3Hold/capture", 200,
         payment_intent(status="succeeded", amount_received=5000, metadata={"visit": "7"})),
        ("POST", "/v1/payment_intents", 200,
         payment_intent("pi_3Extra", amount=700, status="succeeded", amount_received=700,
                        capture_method="automatic_async")),
    ])
    result = provider.capture(intent_ref="pi_3Hold", amount_minor=5700, idempotency_key="capture:7")
    _, capture, extra = http.sent
    assert capture.params == {"amount_to_capture": "5000"}
    assert extra.params == {
        "amount": "700", "currency": "usd", "customer": "cus_Ann", "payment_method": "pm_1Card",
        "payment_method_types[0]": "card", "confirm": "true", "off_session": "true",
        "metadata[visit]": "7", "metadata[beyond_hold_of]": "pi_3Hold",
    }
    assert extra.headers["Idempotency-Key"] == "capture:7:extra"
    assert result.succeeded
    assert (result.capture.amount_minor, result.extra_charge.amount_minor) == (5000, 700)
    assert result.extra_charge.provider_ref == "pi_3Extra"


def test_second_capture_is_refused_by_stripe_and_reported_failed():
    provider, _ = make([
        ("GET", "/v1/payment_intents/pi_3Hold", 200, payment_intent(status="succeeded", amount_received=1299)),
        ("POST", "/v1/payment_intents/pi_3Hold/capture", 400, {"error": {
            "type": "invalid_request_error", "code": "payment_intent_unexpected_state",
            "message": "This PaymentIntent could not be captured because it has a status of succeeded."}}),
    ])
    result = provider.capture(intent_ref="pi_3Hold", amount_minor=1299, idempotency_key="capture:7:retry1")
    assert result.capture.status is ResultStatus.FAILED
    assert result.capture.error_code == "payment_intent_unexpected_state" and result.extra_charge is None


def test_cancel_releases_the_hold():
    provider, http = make([("POST", "/v1/payment_intents/pi_3Hold/cancel", 200,
                            payment_intent(status="canceled"))])
    result = provider.cancel(intent_ref="pi_3Hold", idempotency_key="cancel:7")
    assert http.sent[0].headers["Idempotency-Key"] == "cancel:7" and http.sent[0].params == {}
    assert result.succeeded and result.amount_minor == 5000 and result.provider_status == "canceled"


def test_refund_part_of_a_payment():
    refund = {"id": "re_3Part", "object": "refund", "amount": 400, "balance_transaction": "txn_1",
              "charge": "ch_3Hold", "created": NOW, "currency": "usd", "metadata": {"receipt_line": "3"},
              "payment_intent": "pi_3Hold", "reason": None, "receipt_number": None, "source_transfer_reversal": None,
              "status": "succeeded", "transfer_reversal": None}
    provider, http = make([("POST", "/v1/refunds", 200, refund)])
    result = provider.refund(intent_ref="pi_3Hold", amount_minor=400, idempotency_key="refund:line:3:1",
                             metadata={"receipt_line": "3"})
    assert http.sent[0].params == {"payment_intent": "pi_3Hold", "amount": "400", "metadata[receipt_line]": "3"}
    assert http.sent[0].headers["Idempotency-Key"] == "refund:line:3:1"
    assert result.succeeded and (result.provider_ref, result.intent_ref, result.amount_minor) == (
        "re_3Part", "pi_3Hold", 400)


def test_attach_card_confirms_an_off_session_setup_intent_and_keeps_brand_and_last4():
    seti = {"id": "seti_1", "object": "setup_intent", "client_secret": "seti_1_secret_x", "customer": "cus_Ann",
            "payment_method": None, "status": "requires_payment_method", "usage": "off_session",
            "payment_method_types": ["card"], "last_setup_error": None, "next_action": None, "livemode": False}
    pm = {"id": "pm_1Card", "object": "payment_method", "type": "card", "customer": "cus_Ann",
          "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030, "country": "US",
                   "funding": "credit"}, "billing_details": {}, "created": NOW, "livemode": False, "metadata": {}}
    provider, http = make([
        ("POST", "/v1/setup_intents", 200, seti),
        ("POST", "/v1/setup_intents/seti_1/confirm", 200,
         {**seti, "status": "succeeded", "payment_method": "pm_1Card"}),
        ("GET", "/v1/payment_methods/pm_1Card", 200, pm),
    ])
    result = provider.attach_card(customer_ref="cus_Ann", card_token="pm_card_visa", idempotency_key="card:1:a")
    create, confirm, _ = http.sent
    assert create.params == {"customer": "cus_Ann", "usage": "off_session", "payment_method_types[0]": "card"}
    assert create.headers["Idempotency-Key"] == "card:1:a"
    assert confirm.params == {"payment_method": "pm_card_visa"}
    assert confirm.headers["Idempotency-Key"] == "card:1:a:confirm"
    assert result.succeeded and (result.payment_method_ref, result.brand, result.last4) == ("pm_1Card", "visa", "4242")
    with pytest.raises(ValueError):
        provider.attach_card(customer_ref="cus_Ann", card_token="4242424242424242", idempotency_key="card:1:b")


def test_api_base_points_the_client_at_another_server():
    provider, http = make([("POST", "/v1/customers", 200, {"id": "cus_Ann", "object": "customer"})],
                          api_base="http://127.0.0.1:8420/")
    assert provider.create_customer(email="ann@example.com", idempotency_key="customer:1").customer_ref == "cus_Ann"
    assert http.sent[0].base == "http://127.0.0.1:8420" and http.sent[0].params == {"email": "ann@example.com"}


def test_server_errors_are_retried_with_the_same_key_then_reported_unavailable(monkeypatch):
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.0)
    monkeypatch.setattr(stripe.HTTPClient, "MAX_DELAY", 0.0)
    api_error = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
    client = RecordingHTTPClient([("POST", "/v1/payment_intents/pi_3Hold/cancel", 500, api_error)] * 2)
    provider = StripeProvider(api_key="sk_test_walkout", http_client=client, max_network_retries=1)
    with pytest.raises(ProviderUnavailable):
        provider.cancel(intent_ref="pi_3Hold", idempotency_key="cancel:7")
    assert [s.headers["Idempotency-Key"] for s in client.sent] == ["cancel:7", "cancel:7"]


def test_bad_api_key_is_unavailable_not_a_decline():
    provider, _ = make([("POST", "/v1/payment_intents/pi_3Hold/cancel", 401, {"error": {
        "type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}})])
    with pytest.raises(ProviderUnavailable):
        provider.cancel(intent_ref="pi_3Hold", idempotency_key="cancel:7")


# --- the services on Stripe ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_services_on_stripe_hold_then_capture_the_receipt(settings, monkeypatch):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.WALKOUT = {**settings.WALKOUT, "AUTHORISE_AMOUNT_MINOR": 5000}
    store = Store.objects.create(code="corner", name="Corner shop", currency="usd")
    user = get_user_model().objects.create_user(username="ann@example.com", email="ann@example.com")
    ShopperProfile.objects.create(user=user, provider="stripe", customer_ref="cus_Ann", payment_method_ref="pm_1Card",
                                  card_brand="visa", card_last4="4242")
    visit = Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())
    product = Product.objects.create(store=store, barcode="0001", name="Tea", price="2.50", unit_weight_g=100)
    client = RecordingHTTPClient([
        ("POST", "/v1/payment_intents", 200, payment_intent(metadata={"visit": str(visit.pk)})),
        ("GET", "/v1/payment_intents/pi_3Hold", 200, payment_intent()),
        ("POST", "/v1/payment_intents/pi_3Hold/capture", 200, payment_intent(status="succeeded", amount_received=750)),
    ])
    provider = StripeProvider(api_key="sk_test_walkout", http_client=client, max_network_retries=0)
    monkeypatch.setattr(services, "get_provider", lambda name=None: provider)

    hold = payment_authorise(visit=visit)
    receipt = receipt_issue(visit=visit, lines=[ReceiptLineData(
        product_id=product.pk, barcode="0001", name="Tea", quantity=3, unit_price_minor=250)])
    assert receipt.total_minor == 750
    assert [(a.kind, a.provider, a.provider_ref, a.amount_minor, a.idempotency_key)
            for a in PaymentAttempt.objects.order_by("id")] == [
        ("authorise", "stripe", "pi_3Hold", 5000, f"authorise:{visit.pk}"),
        ("capture", "stripe", "pi_3Hold", 750, f"capture:{visit.pk}"),
    ]
    assert client.sent[0].params["metadata[visit]"] == str(visit.pk) and hold.intent_ref == "pi_3Hold"
    assert client.sent[2].params == {"amount_to_capture": "750"}
    assert receipt_issue(visit=visit, lines=[ReceiptLineData(
        product_id=product.pk, barcode="0001", name="Tea", quantity=3, unit_price_minor=250)]).pk == receipt.pk
    assert len(client.sent) == 3  # nothing more sent to Stripe


@pytest.mark.django_db
def test_services_on_stripe_decline_at_the_gate(settings, monkeypatch):
    settings.PAYMENT_PROVIDER = "stripe"
    store = Store.objects.create(code="corner", name="Corner shop")
    user = get_user_model().objects.create_user(username="bob@example.com", email="bob@example.com")
    ShopperProfile.objects.create(user=user, provider="stripe", customer_ref="cus_Bob", payment_method_ref="pm_2")
    visit = Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())
    declined = payment_intent("pi_3Decl", status="requires_payment_method")
    client = RecordingHTTPClient([("POST", "/v1/payment_intents", 402, card_error(
        "card_declined", "Your card has insufficient funds.", decline_code="insufficient_funds", pi=declined))])
    provider = StripeProvider(api_key="sk_test_walkout", http_client=client, max_network_retries=0)
    monkeypatch.setattr(services, "get_provider", lambda name=None: provider)
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert exc.value.code == "insufficient_funds"
    row = PaymentAttempt.objects.get()
    assert (row.status, row.provider_ref, row.error_code) == ("failed", "pi_3Decl", "insufficient_funds")


@pytest.mark.django_db
def test_card_on_file_with_stripe(settings, monkeypatch):
    settings.PAYMENT_PROVIDER = "stripe"
    seti = {"id": "seti_9", "object": "setup_intent", "client_secret": "seti_9_secret", "customer": "cus_New",
            "payment_method": None, "status": "requires_payment_method", "usage": "off_session"}
    client = RecordingHTTPClient([
        ("POST", "/v1/customers", 200, {"id": "cus_New", "object": "customer", "email": "cy@example.com"}),
        ("POST", "/v1/setup_intents", 200, seti),
        ("POST", "/v1/setup_intents/seti_9/confirm", 200, {**seti, "status": "succeeded", "payment_method": "pm_9"}),
        ("GET", "/v1/payment_methods/pm_9", 200, {"id": "pm_9", "object": "payment_method", "type": "card",
                                                  "card": {"brand": "mastercard", "last4": "4444"}}),
    ])
    provider = StripeProvider(api_key="sk_test_walkout", http_client=client, max_network_retries=0)
    monkeypatch.setattr("store.accounts.payment.get_provider", lambda name=None: provider)
    user = get_user_model().objects.create_user(username="cy@example.com", email="cy@example.com")
    profile = shopper_card_attach(user=user, card_token="pm_card_mastercard")
    assert (profile.provider, profile.customer_ref, profile.payment_method_ref) == ("stripe", "cus_New", "pm_9")
    assert (profile.card_brand, profile.card_last4) == ("mastercard", "4444")
    assert client.sent[0].headers["Idempotency-Key"] == f"customer:{user.pk}"
