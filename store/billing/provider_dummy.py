"""The dummy payment provider of the embedded profile: Stripe's state machine, kept in our own database.

It behaves like Stripe where Walkout can tell (https://docs.stripe.com/payments/paymentintents/lifecycle): a hold
is ``requires_capture`` until captured once (at most its amount) or canceled; only a ``succeeded`` PaymentIntent
can be refunded, at most what it received; a repeated idempotency key replays the first answer, and the same key
with a different request is refused. Its records are :class:`~store.billing.models.DummyCustomer` and friends;
references are ``dummy_cus_<n>``, ``dummy_pm_<n>``, ``dummy_pi_<n>``, ``dummy_re_<n>``.

Cards are Stripe's test card numbers (https://docs.stripe.com/testing); only the brand and last four digits are
stored. Other numbers are refused: the dummy never takes a real card.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db import transaction

from store.billing.models import (
    DummyCustomer,
    DummyIdempotencyKey,
    DummyPaymentIntent,
    DummyPaymentMethod,
    DummyRefund,
)
from store.billing.provider_interface import (
    CaptureResult,
    CardResult,
    CustomerResult,
    PaymentProvider,
    ProviderResult,
    ProviderUnavailable,
    ResultStatus,
    _check_amount,
    _check_key,
)

B = DummyPaymentMethod.Behaviour

#: Test card number → (brand, behaviour of payments), or None: declined when saved (Stripe's documented outcomes).
TEST_CARDS: dict[str, tuple[str, str] | None] = {
    "4242424242424242": ("visa", B.OK),
    "4000056655665556": ("visa", B.OK),  # Visa debit
    "5555555555554444": ("mastercard", B.OK),
    "2223003122003222": ("mastercard", B.OK),
    "378282246310005": ("amex", B.OK),
    "6011111111111117": ("discover", B.OK),
    "4000000000000341": ("visa", B.DECLINE),  # saving succeeds, every payment is declined
    "4000000000003220": ("visa", B.AUTHENTICATION_REQUIRED),  # 3D Secure 2 required on every payment
    "4000000000000002": None,  # declined (card_declined)
    "4000000000009995": None,  # declined (insufficient_funds)
}
_DECLINE_CODES = {"4000000000000002": "generic_decline", "4000000000009995": "insufficient_funds"}

#: PaymentIntent statuses from which a cancel is allowed (https://docs.stripe.com/api/payment_intents/cancel).
_CANCELABLE = {"requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"}

R = TypeVar("R")


def _ref_pk(prefix: str, ref: str) -> int | None:
    if not ref.startswith(prefix) or not ref[len(prefix):].isdigit():
        return None
    return int(ref[len(prefix):])


def _result_to_json(result: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(result), default=lambda v: v.value))


def _result_from_json(cls: type[R], data: dict[str, Any]) -> R:
    if cls is CaptureResult:
        extra = data.get("extra_charge")
        return CaptureResult(  # type: ignore[return-value]
            capture=ProviderResult(**data["capture"]),
            extra_charge=ProviderResult(**extra) if extra else None,
        )
    return cls(**data)


class DummyProvider(PaymentProvider):
    """Payments recorded in the database, no money moved. Deterministic references (``dummy_pi_<n>``)."""

    name = "dummy"

    # --- idempotency ---------------------------------------------------------------------------------------------

    def _idempotent(self, key: str, operation: str, request: Mapping[str, Any], cls: type[R],
                    run: Callable[[], R]) -> R:
        """Run ``run`` once per key; replay the stored answer for a repeated key with the same request."""
        _check_key(key)
        request_hash = hashlib.sha256(
            json.dumps({"op": operation, **request}, sort_keys=True, default=str).encode()
        ).hexdigest()
        with transaction.atomic():
            stored = DummyIdempotencyKey.objects.select_for_update().filter(key=key).first()
            if stored is not None:
                if stored.operation != operation or stored.request_hash != request_hash:
                    raise ProviderUnavailable(
                        f"idempotency key {key!r} was first used for a different request ({stored.operation})"
                    )
                return _result_from_json(cls, stored.response)
            result = run()
            DummyIdempotencyKey.objects.create(
                key=key, operation=operation, request_hash=request_hash, response=_result_to_json(result)
            )
            return result

    # --- cards ---------------------------------------------------------------------------------------------------

    def create_customer(self, *, email: str, idempotency_key: str) -> CustomerResult:
        return self._idempotent(
            idempotency_key, "create_customer", {"email": email}, CustomerResult,
            lambda: CustomerResult(customer_ref=DummyCustomer.objects.create(email=email).ref),
        )

    def attach_card(self, *, customer_ref: str, card_token: str, idempotency_key: str) -> CardResult:
        number = "".join(ch for ch in card_token if ch.isdigit())

        def run() -> CardResult:
            customer = DummyCustomer.objects.filter(pk=_ref_pk("dummy_cus_", customer_ref)).first()
            if customer is None:
                return CardResult(status=ResultStatus.FAILED, customer_ref=customer_ref,
                                  error_code="resource_missing", error=f"no such customer {customer_ref!r}")
            if number not in TEST_CARDS:
                return CardResult(status=ResultStatus.FAILED, customer_ref=customer_ref,
                                  error_code="invalid_number",
                                  error="the dummy provider takes only test card numbers, e.g. 4242424242424242")
            card = TEST_CARDS[number]
            if card is None:
                return CardResult(status=ResultStatus.FAILED, customer_ref=customer_ref,
                                  error_code=_DECLINE_CODES[number], error="Your card was declined.")
            brand, behaviour = card
            pm = DummyPaymentMethod.objects.create(customer=customer, brand=brand, last4=number[-4:],
                                                   behaviour=behaviour)
            return CardResult(status=ResultStatus.SUCCEEDED, customer_ref=customer_ref, payment_method_ref=pm.ref,
                              brand=brand, last4=pm.last4)

        # The request hash covers only the last four digits: no card number is stored, even hashed.
        return self._idempotent(idempotency_key, "attach_card",
                                {"customer": customer_ref, "card": number[-4:]}, CardResult, run)

    # --- payments ------------------------------------------------------------------------------------------------

    def _payment_intent(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        capture_method: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        customer = DummyCustomer.objects.filter(pk=_ref_pk("dummy_cus_", customer_ref)).first()
        pm = DummyPaymentMethod.objects.filter(pk=_ref_pk("dummy_pm_", payment_method_ref)).first()
        if customer is None or pm is None or pm.customer_id != customer.pk:
            return ProviderResult(
                status=ResultStatus.FAILED, provider_ref="", intent_ref="", amount_minor=amount_minor,
                currency=currency, error_code="resource_missing",
                error=f"no payment method {payment_method_ref!r} on customer {customer_ref!r}",
            )
        if pm.behaviour == B.OK:
            status = "requires_capture" if capture_method == "manual" else "succeeded"
        else:
            status = "requires_payment_method"
        pi = DummyPaymentIntent.objects.create(
            customer=customer, payment_method=pm, amount_minor=amount_minor, currency=currency,
            capture_method=capture_method, status=status, metadata=dict(metadata),
            amount_received_minor=amount_minor if status == "succeeded" else 0,
        )
        common = dict(provider_ref=pi.ref, intent_ref=pi.ref, amount_minor=amount_minor, currency=currency,
                      provider_status=status)
        if pm.behaviour == B.DECLINE:
            return ProviderResult(status=ResultStatus.FAILED, error_code="card_declined",
                                  error="Your card was declined.", **common)
        if pm.behaviour == B.AUTHENTICATION_REQUIRED:
            return ProviderResult(status=ResultStatus.REQUIRES_ACTION, error_code="authentication_required",
                                  error="This payment requires the cardholder to authenticate.", **common)
        return ProviderResult(status=ResultStatus.SUCCEEDED, **common)

    def _new_intent(self, *, kind: str, capture_method: str, customer_ref: str, payment_method_ref: str,
                    amount_minor: int, currency: str, idempotency_key: str,
                    metadata: Mapping[str, str]) -> ProviderResult:
        """A PaymentIntent on the saved card, idempotent on ``idempotency_key`` (``kind``: authorise or charge)."""
        _check_amount(amount_minor)
        request = {"customer": customer_ref, "pm": payment_method_ref, "amount": amount_minor,
                   "currency": currency, "metadata": dict(metadata)}
        return self._idempotent(idempotency_key, kind, request, ProviderResult, lambda: self._payment_intent(
            customer_ref=customer_ref, payment_method_ref=payment_method_ref, amount_minor=amount_minor,
            currency=currency, capture_method=capture_method, metadata=metadata,
        ))

    def authorise(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        return self._new_intent(kind="authorise", capture_method="manual", customer_ref=customer_ref,
                                payment_method_ref=payment_method_ref, amount_minor=amount_minor, currency=currency,
                                idempotency_key=idempotency_key, metadata=metadata)

    def charge(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        return self._new_intent(kind="charge", capture_method="automatic", customer_ref=customer_ref,
                                payment_method_ref=payment_method_ref, amount_minor=amount_minor, currency=currency,
                                idempotency_key=idempotency_key, metadata=metadata)

    def _locked_intent(self, intent_ref: str) -> DummyPaymentIntent | None:
        return DummyPaymentIntent.objects.select_for_update().filter(pk=_ref_pk("dummy_pi_", intent_ref)).first()

    def capture(self, *, intent_ref: str, amount_minor: int, idempotency_key: str) -> CaptureResult:
        _check_amount(amount_minor)

        def run() -> CaptureResult:
            pi = self._locked_intent(intent_ref)
            if pi is None:
                return CaptureResult(capture=ProviderResult(
                    status=ResultStatus.FAILED, provider_ref="", intent_ref=intent_ref, amount_minor=0,
                    currency="", error_code="resource_missing", error=f"no such PaymentIntent {intent_ref!r}"))
            to_capture = min(amount_minor, pi.amount_minor)
            if pi.status != "requires_capture":
                return CaptureResult(capture=ProviderResult(
                    status=ResultStatus.FAILED, provider_ref=pi.ref, intent_ref=pi.ref, amount_minor=to_capture,
                    currency=pi.currency, provider_status=pi.status, error_code="payment_intent_unexpected_state",
                    error=f"This PaymentIntent could not be captured because it has a status of {pi.status}."))
            pi.status, pi.amount_received_minor = "succeeded", to_capture
            pi.save(update_fields=["status", "amount_received_minor"])
            captured = ProviderResult(status=ResultStatus.SUCCEEDED, provider_ref=pi.ref, intent_ref=pi.ref,
                                      amount_minor=to_capture, currency=pi.currency, provider_status=pi.status)
            extra = None
            if amount_minor > to_capture:
                extra = self.charge(
                    customer_ref=pi.customer.ref, payment_method_ref=pi.payment_method.ref,
                    amount_minor=amount_minor - to_capture, currency=pi.currency,
                    idempotency_key=f"{idempotency_key}:extra", metadata={**pi.metadata, "beyond_hold_of": pi.ref},
                )
            return CaptureResult(capture=captured, extra_charge=extra)

        return self._idempotent(idempotency_key, "capture", {"pi": intent_ref, "amount": amount_minor},
                                CaptureResult, run)

    def cancel(self, *, intent_ref: str, idempotency_key: str) -> ProviderResult:
        def run() -> ProviderResult:
            pi = self._locked_intent(intent_ref)
            if pi is None:
                return ProviderResult(status=ResultStatus.FAILED, provider_ref="", intent_ref=intent_ref,
                                      amount_minor=0, currency="", error_code="resource_missing",
                                      error=f"no such PaymentIntent {intent_ref!r}")
            if pi.status not in _CANCELABLE:
                return ProviderResult(
                    status=ResultStatus.FAILED, provider_ref=pi.ref, intent_ref=pi.ref, amount_minor=0,
                    currency=pi.currency, provider_status=pi.status, error_code="payment_intent_unexpected_state",
                    error=f"You cannot cancel this PaymentIntent because it has a status of {pi.status}.")
            released = pi.amount_minor - pi.amount_received_minor
            pi.status = "canceled"
            pi.save(update_fields=["status"])
            return ProviderResult(status=ResultStatus.SUCCEEDED, provider_ref=pi.ref, intent_ref=pi.ref,
                                  amount_minor=released, currency=pi.currency, provider_status=pi.status)

        return self._idempotent(idempotency_key, "cancel", {"pi": intent_ref}, ProviderResult, run)

    def refund(
        self, *, intent_ref: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        _check_amount(amount_minor)

        def run() -> ProviderResult:
            pi = self._locked_intent(intent_ref)
            if pi is None:
                return ProviderResult(status=ResultStatus.FAILED, provider_ref="", intent_ref=intent_ref,
                                      amount_minor=amount_minor, currency="", error_code="resource_missing",
                                      error=f"no such PaymentIntent {intent_ref!r}")
            refundable = pi.amount_received_minor - pi.amount_refunded_minor
            if pi.status != "succeeded" or amount_minor > refundable:
                return ProviderResult(
                    status=ResultStatus.FAILED, provider_ref="", intent_ref=pi.ref, amount_minor=amount_minor,
                    currency=pi.currency, provider_status=pi.status,
                    error_code="amount_too_large" if pi.status == "succeeded" else "payment_intent_unexpected_state",
                    error=f"cannot refund {amount_minor}: {refundable} refundable, status {pi.status}")
            refund = DummyRefund.objects.create(payment_intent=pi, amount_minor=amount_minor, metadata=dict(metadata))
            pi.amount_refunded_minor += amount_minor
            pi.save(update_fields=["amount_refunded_minor"])
            return ProviderResult(status=ResultStatus.SUCCEEDED, provider_ref=refund.ref, intent_ref=pi.ref,
                                  amount_minor=amount_minor, currency=pi.currency, provider_status="succeeded")

        return self._idempotent(idempotency_key, "refund",
                                {"pi": intent_ref, "amount": amount_minor, "metadata": dict(metadata)},
                                ProviderResult, run)
