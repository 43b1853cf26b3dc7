"""The whole billing flow on the dummy provider: card on file → hold at the gate → capture/cancel at the exit → refund.

The dummy provider keeps Stripe's state machine in the database, so each test checks both our ledger
(PaymentAttempt) and the provider's own records (DummyPaymentIntent …).
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import serializers
from django.utils import timezone

from store.accounts.models import ShopperProfile
from store.accounts.payment import CardRejected, shopper_card_attach
from store.billing.models import (
    DummyIdempotencyKey,
    DummyPaymentIntent,
    DummyPaymentMethod,
    DummyRefund,
    PaymentAttempt,
    Receipt,
)
from store.billing.provider_dummy import DummyProvider
from store.billing.providers import ProviderUnavailable, ResultStatus, get_provider
from store.billing.services import (
    PaymentDeclined,
    PaymentFailed,
    ReceiptConflict,
    ReceiptLineData,
    RefundRejected,
    payment_authorise,
    receipt_issue,
    receipt_refund_line,
)
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.models import Store

pytestmark = pytest.mark.django_db

K = PaymentAttempt.Kind
S = PaymentAttempt.Status
HOLD = 2000


@pytest.fixture(autouse=True)
def _dummy(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.WALKOUT = {**settings.WALKOUT, "AUTHORISE_AMOUNT_MINOR": HOLD}


def make_visit(*, card: str = "4242424242424242", email: str = "ann@example.com", currency: str = "usd",
               party_lead: Visit | None = None) -> Visit:
    store, _ = Store.objects.get_or_create(code="corner", defaults={"name": "Corner shop", "currency": currency})
    user = get_user_model().objects.create_user(username=email, email=email)
    ShopperProfile.objects.create(user=user)
    if card:
        shopper_card_attach(user=user, card_token=card)
    return Visit.objects.create(store=store, shopper=user, entered_at=timezone.now(), party_lead=party_lead)


def make_lines(store: Store, spec: list[tuple[int, int]]) -> list[ReceiptLineData]:
    """``spec``: (quantity, unit price in minor units) per line; a product is created for each."""
    lines = []
    for i, (quantity, unit) in enumerate(spec):
        product = Product.objects.create(store=store, barcode=f"000{i}", name=f"Item {i}", price=Decimal(unit) / 100,
                                         unit_weight_g=100)
        lines.append(ReceiptLineData(product_id=product.pk, barcode=product.barcode, name=product.name,
                                     quantity=quantity, unit_price_minor=unit))
    return lines


def attempts(visit: Visit) -> list[tuple[str, str, int, str]]:
    return [(a.kind, a.status, a.amount_minor, a.idempotency_key) for a in visit.payment_attempts.order_by("id")]


# --- card on file -------------------------------------------------------------------------------------------------

def test_card_on_file_keeps_only_brand_and_last4():
    visit = make_visit(card="4242 4242 4242 4242")
    profile = ShopperProfile.objects.get(user=visit.shopper)
    assert (profile.provider, profile.card_brand, profile.card_last4) == ("dummy", "visa", "4242")
    assert profile.customer_ref.startswith("dummy_cus_") and profile.payment_method_ref.startswith("dummy_pm_")
    dumped = serializers.serialize("json", [*DummyPaymentMethod.objects.all(), *DummyIdempotencyKey.objects.all(),
                                            profile])
    assert "4242424242424242" not in dumped and "42424242" not in dumped


@pytest.mark.parametrize(("number", "code"), [("4000000000000002", "generic_decline"),
                                              ("4000000000009995", "insufficient_funds"),
                                              ("4111111111111112", "invalid_number")])
def test_card_declined_or_not_a_test_card_is_not_saved(number, code):
    user = get_user_model().objects.create_user(username="bob@example.com", email="bob@example.com")
    with pytest.raises(CardRejected) as exc:
        shopper_card_attach(user=user, card_token=number)
    assert exc.value.code == code
    profile = ShopperProfile.objects.get(user=user)
    assert profile.payment_method_ref == "" and profile.card_last4 == ""
    assert not DummyPaymentMethod.objects.exists()


def test_new_card_replaces_the_old_one_on_the_same_customer():
    visit = make_visit()
    profile = ShopperProfile.objects.get(user=visit.shopper)
    first_pm, customer = profile.payment_method_ref, profile.customer_ref
    profile = shopper_card_attach(user=visit.shopper, card_token="5555555555554444")
    assert profile.customer_ref == customer and profile.payment_method_ref != first_pm
    assert (profile.card_brand, profile.card_last4) == ("mastercard", "4444")


# --- authorise at the gate ----------------------------------------------------------------------------------------

def test_authorise_holds_the_amount_once():
    visit = make_visit()
    attempt = payment_authorise(visit=visit)
    assert (attempt.kind, attempt.status, attempt.amount_minor, attempt.currency) == (K.AUTHORISE, S.SUCCEEDED,
                                                                                    HOLD, "usd")
    assert attempt.idempotency_key == f"authorise:{visit.pk}"
    assert attempt.provider == "dummy" and attempt.provider_ref == attempt.intent_ref
    pi = DummyPaymentIntent.objects.get()
    assert attempt.provider_ref == f"dummy_pi_{pi.pk}"
    assert (pi.status, pi.amount_minor, pi.capture_method) == ("requires_capture", HOLD, "manual")
    assert pi.metadata == {"visit": str(visit.pk), "store": "corner"}
    again = payment_authorise(visit=visit)
    assert again.pk == attempt.pk and DummyPaymentIntent.objects.count() == 1


def test_authorise_declined_leaves_failed_row_and_retry_uses_a_new_key():
    visit = make_visit(card="4000000000000341")  # saves fine, every payment declined
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert exc.value.code == "card_declined"
    assert exc.value.attempt is not None and exc.value.attempt.status == S.FAILED
    with pytest.raises(PaymentDeclined):
        payment_authorise(visit=visit)
    assert attempts(visit) == [
        (K.AUTHORISE, S.FAILED, HOLD, f"authorise:{visit.pk}"),
        (K.AUTHORISE, S.FAILED, HOLD, f"authorise:{visit.pk}:retry1"),
    ]
    assert set(DummyPaymentIntent.objects.values_list("status", flat=True)) == {"requires_payment_method"}


def test_authorise_needing_authentication_is_declined_with_requires_action_row():
    visit = make_visit(card="4000000000003220")
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert exc.value.code == "authentication_required"
    assert attempts(visit) == [(K.AUTHORISE, S.REQUIRES_ACTION, HOLD, f"authorise:{visit.pk}")]


def test_authorise_without_card_is_declined_without_calling_the_provider():
    visit = make_visit(card="")
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert exc.value.code == "no_payment_method"
    assert attempts(visit) == [] and not DummyPaymentIntent.objects.exists()


def test_card_saved_with_another_provider_is_not_used(settings):
    visit = make_visit()
    ShopperProfile.objects.filter(user=visit.shopper).update(provider="stripe")
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert "stripe" in exc.value.reason and not DummyPaymentIntent.objects.exists()


def test_guest_visit_is_held_on_the_party_leads_card():
    lead = make_visit()
    guest = make_visit(card="", email="guest@example.com", party_lead=lead)
    attempt = payment_authorise(visit=guest)
    pi = DummyPaymentIntent.objects.get(pk=int(attempt.intent_ref.rsplit("_", 1)[1]))
    assert pi.payment_method.ref == ShopperProfile.objects.get(user=lead.shopper).payment_method_ref


def test_provider_unavailable_at_the_gate_declines_without_a_row(monkeypatch):
    visit = make_visit()

    def down(self, **kwargs):
        raise ProviderUnavailable("connection refused")

    monkeypatch.setattr(DummyProvider, "authorise", down)
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert exc.value.code == "provider_unavailable" and attempts(visit) == []


# --- receipt and capture at the exit ------------------------------------------------------------------------------

def test_receipt_captures_the_total_from_the_hold():
    visit = make_visit()
    hold = payment_authorise(visit=visit)
    lines = make_lines(visit.store, [(2, 150), (1, 999)])
    receipt = receipt_issue(visit=visit, lines=lines)
    assert (receipt.total_minor, receipt.currency) == (1299, "usd")
    assert [(ln.quantity, ln.unit_price_minor, ln.line_total_minor) for ln in receipt.lines.all()] == [
        (2, 150, 300), (1, 999, 999)]
    assert attempts(visit)[1:] == [(K.CAPTURE, S.SUCCEEDED, 1299, f"capture:{visit.pk}")]
    pi = DummyPaymentIntent.objects.get()
    assert (pi.status, pi.amount_received_minor) == ("succeeded", 1299)
    assert visit.payment_attempts.get(kind=K.CAPTURE).intent_ref == hold.intent_ref


def test_receipt_issue_twice_returns_the_same_receipt_and_never_captures_twice():
    visit = make_visit()
    payment_authorise(visit=visit)
    lines = make_lines(visit.store, [(1, 500)])
    first = receipt_issue(visit=visit, lines=lines)
    second = receipt_issue(visit=visit, lines=list(reversed(lines)))
    assert first.pk == second.pk and Receipt.objects.count() == 1
    assert [a[0] for a in attempts(visit)] == [K.AUTHORISE, K.CAPTURE]
    assert DummyPaymentIntent.objects.get().amount_received_minor == 500


def test_receipt_issue_with_other_lines_is_a_conflict():
    visit = make_visit()
    payment_authorise(visit=visit)
    lines = make_lines(visit.store, [(1, 500), (2, 100)])
    receipt_issue(visit=visit, lines=lines)
    with pytest.raises(ReceiptConflict):
        receipt_issue(visit=visit, lines=lines[:1])
    assert Receipt.objects.get().total_minor == 700


def test_empty_cart_releases_the_hold():
    visit = make_visit()
    payment_authorise(visit=visit)
    receipt = receipt_issue(visit=visit, lines=[])
    assert receipt.total_minor == 0 and receipt.lines.count() == 0
    assert attempts(visit)[1:] == [(K.CANCEL, S.SUCCEEDED, HOLD, f"cancel:{visit.pk}")]
    assert DummyPaymentIntent.objects.get().status == "canceled"
    receipt_issue(visit=visit, lines=[])
    assert len(attempts(visit)) == 2


def test_provider_refuses_a_second_capture_and_replays_a_repeated_key():
    visit = make_visit()
    hold = payment_authorise(visit=visit)
    provider = get_provider("dummy")
    first = provider.capture(intent_ref=hold.intent_ref, amount_minor=800, idempotency_key="capture:test")
    assert first.succeeded and first.capture.amount_minor == 800
    replay = provider.capture(intent_ref=hold.intent_ref, amount_minor=800, idempotency_key="capture:test")
    assert replay == first
    second = provider.capture(intent_ref=hold.intent_ref, amount_minor=100, idempotency_key="capture:other")
    assert second.capture.status is ResultStatus.FAILED
    assert second.capture.error_code == "payment_intent_unexpected_state"
    assert DummyPaymentIntent.objects.get().amount_received_minor == 800
    with pytest.raises(ProviderUnavailable):  # same key, different request: refused like Stripe's idempotency_error
        provider.capture(intent_ref=hold.intent_ref, amount_minor=900, idempotency_key="capture:test")
    cancel = provider.cancel(intent_ref=hold.intent_ref, idempotency_key="cancel:test")
    assert cancel.status is ResultStatus.FAILED  # a captured PaymentIntent cannot be canceled


def test_total_above_the_hold_captures_the_hold_and_charges_the_rest():
    visit = make_visit()
    hold = payment_authorise(visit=visit)
    receipt = receipt_issue(visit=visit, lines=make_lines(visit.store, [(3, 1000)]))
    assert receipt.total_minor == 3000
    assert attempts(visit)[1:] == [
        (K.CAPTURE, S.SUCCEEDED, HOLD, f"capture:{visit.pk}"),
        (K.CHARGE, S.SUCCEEDED, 1000, f"capture:{visit.pk}:extra"),
    ]
    held, extra = DummyPaymentIntent.objects.order_by("id")
    assert (held.ref, held.status, held.amount_received_minor) == (hold.intent_ref, "succeeded", HOLD)
    assert (extra.capture_method, extra.status, extra.amount_received_minor) == ("automatic", "succeeded", 1000)
    assert extra.metadata["beyond_hold_of"] == held.ref


def test_failed_extra_charge_is_recorded_and_a_retry_charges_only_what_is_due():
    visit = make_visit()
    payment_authorise(visit=visit)
    DummyPaymentMethod.objects.update(behaviour=DummyPaymentMethod.Behaviour.DECLINE)  # card blocked meanwhile
    lines = make_lines(visit.store, [(1, 2500)])
    with pytest.raises(PaymentFailed) as exc:
        receipt_issue(visit=visit, lines=lines)
    assert exc.value.code == "card_declined" and exc.value.attempt.kind == K.CHARGE
    assert Receipt.objects.get(visit=visit).total_minor == 2500  # the bill stands; payment is what failed
    DummyPaymentMethod.objects.update(behaviour=DummyPaymentMethod.Behaviour.OK)
    receipt_issue(visit=visit, lines=lines)
    receipt_issue(visit=visit, lines=lines)
    assert attempts(visit)[1:] == [
        (K.CAPTURE, S.SUCCEEDED, HOLD, f"capture:{visit.pk}"),
        (K.CHARGE, S.FAILED, 500, f"capture:{visit.pk}:extra"),
        (K.CHARGE, S.SUCCEEDED, 500, f"charge:{visit.pk}"),
    ]
    assert sum(DummyPaymentIntent.objects.values_list("amount_received_minor", flat=True)) == 2500


def test_failed_capture_leaves_a_failed_row_then_the_total_is_charged_off_session():
    visit = make_visit()
    payment_authorise(visit=visit)
    DummyPaymentIntent.objects.update(status="canceled")  # the hold vanished provider-side
    lines = make_lines(visit.store, [(1, 700)])
    with pytest.raises(PaymentFailed) as exc:
        receipt_issue(visit=visit, lines=lines)
    assert exc.value.attempt.status == S.FAILED and exc.value.code == "payment_intent_unexpected_state"
    receipt_issue(visit=visit, lines=lines)
    assert attempts(visit)[1:] == [
        (K.CAPTURE, S.FAILED, 700, f"capture:{visit.pk}"),
        (K.CHARGE, S.SUCCEEDED, 700, f"charge:{visit.pk}"),
    ]


def test_unknown_capture_outcome_writes_no_row_and_the_retry_reuses_the_key(monkeypatch):
    visit = make_visit()
    payment_authorise(visit=visit)
    lines = make_lines(visit.store, [(1, 300)])
    real_capture = DummyProvider.capture
    seen_keys = []

    def lost_answer(self, *, intent_ref, amount_minor, idempotency_key):
        seen_keys.append(idempotency_key)
        real_capture(self, intent_ref=intent_ref, amount_minor=amount_minor, idempotency_key=idempotency_key)
        raise ProviderUnavailable("read timed out")  # captured, but we never heard

    monkeypatch.setattr(DummyProvider, "capture", lost_answer)
    with pytest.raises(PaymentFailed) as exc:
        receipt_issue(visit=visit, lines=lines)
    assert exc.value.code == "provider_unavailable" and exc.value.attempt is None
    assert [a[0] for a in attempts(visit)] == [K.AUTHORISE]
    monkeypatch.setattr(DummyProvider, "capture", real_capture)
    receipt_issue(visit=visit, lines=lines)
    assert seen_keys == [f"capture:{visit.pk}"]
    assert attempts(visit)[1:] == [(K.CAPTURE, S.SUCCEEDED, 300, f"capture:{visit.pk}")]
    assert DummyPaymentIntent.objects.get().amount_received_minor == 300  # the replay, not a second capture


# --- refunds ------------------------------------------------------------------------------------------------------

def test_refund_a_line_within_what_was_bought():
    visit = make_visit()
    payment_authorise(visit=visit)
    receipt = receipt_issue(visit=visit, lines=make_lines(visit.store, [(3, 200), (1, 0)]))
    line, free = receipt.lines.all()
    refund = receipt_refund_line(receipt_line=line, quantity=2, reason="shopper disputed: put back")
    assert (refund.kind, refund.status, refund.amount_minor, refund.quantity) == (K.REFUND, S.SUCCEEDED, 400, 2)
    assert refund.idempotency_key == f"refund:line:{line.pk}:1" and refund.receipt_line_id == line.pk
    assert refund.provider_ref == f"dummy_re_{DummyRefund.objects.get().pk}"
    with pytest.raises(RefundRejected):
        receipt_refund_line(receipt_line=line, quantity=2, reason="again")
    second = receipt_refund_line(receipt_line=line, quantity=1, reason="the last one")
    assert second.idempotency_key == f"refund:line:{line.pk}:2"
    assert DummyPaymentIntent.objects.get().amount_refunded_minor == 600
    with pytest.raises(RefundRejected):
        receipt_refund_line(receipt_line=free, quantity=1, reason="free item")
    with pytest.raises(ValueError):
        receipt_refund_line(receipt_line=line, quantity=0, reason="nothing")


def test_refund_that_no_payment_covers_is_rejected_before_calling_the_provider():
    visit = make_visit()
    payment_authorise(visit=visit)
    receipt = receipt_issue(visit=visit, lines=make_lines(visit.store, [(1, 1500), (1, 1500)]))
    first, second = receipt.lines.all()  # 2000 captured from the hold, 1000 charged beyond it
    receipt_refund_line(receipt_line=first, quantity=1, reason="damaged")  # 1500 of the hold's 2000
    with pytest.raises(RefundRejected) as exc:
        receipt_refund_line(receipt_line=second, quantity=1, reason="damaged")  # 500 + 1000 left: split
    assert exc.value.code == "no_payment_covers"
    assert DummyRefund.objects.count() == 1
