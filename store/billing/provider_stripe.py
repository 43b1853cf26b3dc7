"""Stripe behind :class:`~store.billing.providers.PaymentProvider`. The only module that imports ``stripe``.

Calls go through one ``stripe.StripeClient`` (``base_addresses={"api": STRIPE_API_BASE}`` when set, e.g. a
localstripe server) with ``max_network_retries`` (the SDK retries with the same ``Idempotency-Key``). Every
mutating request carries the caller's idempotency key (https://docs.stripe.com/api/idempotent_requests); Stripe
replays the first answer to a key for 24 hours.

Errors (https://docs.stripe.com/error-handling): a ``CardError`` (402: declined, ``authentication_required``) or an
``InvalidRequestError`` (400/404: e.g. already captured, amount too large) is a definitive answer and is returned
as a failed :class:`ProviderResult`; connection errors, 5xx, 429, credential errors and idempotency conflicts leave
the outcome unknown and raise :class:`ProviderUnavailable`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import stripe

from store.billing.provider_interface import (
    CaptureResult,
    CardResult,
    CustomerResult,
    PaymentProvider,
    ProviderResult,
    ProviderUnavailable,
    ResultStatus,
    VerifiedEvent,
    WebhookRejected,
    _check_amount,
    _check_key,
)

log = logging.getLogger(__name__)

#: Tolerance of webhook timestamps, seconds (Stripe's default; https://docs.stripe.com/webhooks#replay-attacks).
WEBHOOK_TOLERANCE_S = 300


class _Declined(Exception):
    """A definitive error answer from Stripe, carried to the result builder."""

    def __init__(self, error: stripe.StripeError):
        super().__init__(str(error))
        body = error.json_body if isinstance(error.json_body, dict) else {}
        self.detail: dict[str, Any] = body.get("error") or {}
        self.code: str = (self.detail.get("decline_code") or self.detail.get("code") or error.code
                          or self.detail.get("type") or type(error).__name__)
        self.message: str = (self.detail.get("message") or error.user_message or str(error))[:300]
        pi = self.detail.get("payment_intent")
        self.payment_intent: dict[str, Any] = pi if isinstance(pi, dict) else {}
        self.authentication_required = (self.detail.get("code") or error.code) == "authentication_required"


def _metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    # Stripe metadata: ≤ 50 keys, keys ≤ 40 characters, values ≤ 500 (https://docs.stripe.com/metadata).
    return {str(k)[:40]: str(v)[:500] for k, v in list(metadata.items())[:50]}


class StripeProvider(PaymentProvider):
    """Stripe PaymentIntents, SetupIntents and Refunds. ``http_client``: a ``stripe.HTTPClient`` (tests)."""

    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str = "", http_client: stripe.HTTPClient | None = None,
                 max_network_retries: int = 2):
        if not api_key:
            raise ValueError("StripeProvider needs an API key (settings.STRIPE_SECRET_KEY)")
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=http_client,
            max_network_retries=max_network_retries,
        )

    # --- plumbing ------------------------------------------------------------------------------------------------

    @staticmethod
    def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run one SDK call; the answer as a plain dict. Raises :class:`_Declined` or :class:`ProviderUnavailable`."""
        try:
            return fn(*args, **kwargs).to_dict()
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            raise _Declined(exc) from exc
        except stripe.StripeError as exc:
            reason = f"stripe {type(exc).__name__}: {exc.user_message or exc}"[:300]
            log.warning("stripe call failed, outcome unknown: %s", reason)
            raise ProviderUnavailable(reason) from exc

    @staticmethod
    def _options(idempotency_key: str) -> dict[str, str]:
        _check_key(idempotency_key)
        return {"idempotency_key": idempotency_key}

    @staticmethod
    def _intent_result(pi: Mapping[str, Any], *, ok_statuses: set[str], amount_minor: int) -> ProviderResult:
        status = pi["status"]
        common = dict(provider_ref=pi["id"], intent_ref=pi["id"], amount_minor=amount_minor,
                      currency=pi["currency"], provider_status=status)
        if status in ok_statuses:
            return ProviderResult(status=ResultStatus.SUCCEEDED, **common)
        error = pi.get("last_payment_error") or {}
        if status == "requires_action":
            return ProviderResult(status=ResultStatus.REQUIRES_ACTION, error_code="authentication_required",
                                  error="the cardholder must authenticate this payment", **common)
        return ProviderResult(
            status=ResultStatus.FAILED, error_code=error.get("decline_code") or error.get("code") or status,
            error=(error.get("message") or f"PaymentIntent is {status}")[:300], **common,
        )

    @staticmethod
    def _declined_result(exc: _Declined, *, intent_ref: str, amount_minor: int, currency: str) -> ProviderResult:
        pi = exc.payment_intent
        return ProviderResult(
            status=ResultStatus.REQUIRES_ACTION if exc.authentication_required else ResultStatus.FAILED,
            provider_ref=pi.get("id", intent_ref), intent_ref=pi.get("id", intent_ref), amount_minor=amount_minor,
            currency=pi.get("currency", currency), provider_status=pi.get("status", ""),
            error_code=exc.code, error=exc.message,
        )

    # --- cards ---------------------------------------------------------------------------------------------------

    def create_customer(self, *, email: str, idempotency_key: str) -> CustomerResult:
        try:
            customer = self._call(self._client.v1.customers.create, params={"email": email},
                                  options=self._options(idempotency_key))
        except _Declined as exc:
            raise ProviderUnavailable(f"stripe refused to create a customer: {exc.message}") from exc
        return CustomerResult(customer_ref=customer["id"])

    def attach_card(self, *, customer_ref: str, card_token: str, idempotency_key: str) -> CardResult:
        """A SetupIntent (``usage=off_session``) for the customer, confirmed with ``card_token`` (a ``pm_…``)."""
        if card_token.replace(" ", "").isdigit():
            raise ValueError("card numbers never reach the server with Stripe: pass a PaymentMethod id (pm_…)")
        try:
            setup = self._call(
                self._client.v1.setup_intents.create,
                params={"customer": customer_ref, "usage": "off_session", "payment_method_types": ["card"]},
                options=self._options(idempotency_key),
            )
            setup = self._call(self._client.v1.setup_intents.confirm, setup["id"],
                               params={"payment_method": card_token},
                               options=self._options(f"{idempotency_key}:confirm"))
        except _Declined as exc:
            return CardResult(status=ResultStatus.FAILED, customer_ref=customer_ref, error_code=exc.code,
                              error=exc.message)
        if setup["status"] == "requires_action":
            return CardResult(status=ResultStatus.REQUIRES_ACTION, customer_ref=customer_ref,
                              payment_method_ref=setup.get("payment_method") or "", setup_ref=setup["id"],
                              client_secret=setup.get("client_secret") or "", error_code="authentication_required",
                              error="the cardholder must authenticate this card")
        if setup["status"] != "succeeded":
            error = setup.get("last_setup_error") or {}
            return CardResult(status=ResultStatus.FAILED, customer_ref=customer_ref, setup_ref=setup["id"],
                              error_code=error.get("decline_code") or error.get("code") or setup["status"],
                              error=(error.get("message") or f"SetupIntent is {setup['status']}")[:300])
        pm_ref = setup["payment_method"]
        try:
            pm = self._call(self._client.v1.payment_methods.retrieve, pm_ref)
        except _Declined as exc:
            raise ProviderUnavailable(f"stripe lost the payment method it just saved: {exc.message}") from exc
        card = pm.get("card") or {}
        return CardResult(status=ResultStatus.SUCCEEDED, customer_ref=customer_ref, payment_method_ref=pm_ref,
                          brand=card.get("brand", ""), last4=card.get("last4", ""), setup_ref=setup["id"])

    # --- payments ------------------------------------------------------------------------------------------------

    def _create_intent(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str], manual: bool,
    ) -> ProviderResult:
        _check_amount(amount_minor)
        params: dict[str, Any] = {
            "amount": amount_minor, "currency": currency, "customer": customer_ref,
            "payment_method": payment_method_ref, "payment_method_types": ["card"],
            "confirm": True, "off_session": True, "metadata": _metadata(metadata),
        }
        if manual:
            params["capture_method"] = "manual"
        try:
            pi = self._call(self._client.v1.payment_intents.create, params=params,
                            options=self._options(idempotency_key))
        except _Declined as exc:
            return self._declined_result(exc, intent_ref="", amount_minor=amount_minor, currency=currency)
        ok = {"requires_capture"} if manual else {"succeeded"}
        return self._intent_result(pi, ok_statuses=ok, amount_minor=amount_minor)

    def authorise(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        return self._create_intent(customer_ref=customer_ref, payment_method_ref=payment_method_ref,
                                   amount_minor=amount_minor, currency=currency, idempotency_key=idempotency_key,
                                   metadata=metadata, manual=True)

    def charge(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        return self._create_intent(customer_ref=customer_ref, payment_method_ref=payment_method_ref,
                                   amount_minor=amount_minor, currency=currency, idempotency_key=idempotency_key,
                                   metadata=metadata, manual=False)

    def capture(self, *, intent_ref: str, amount_minor: int, idempotency_key: str) -> CaptureResult:
        """Retrieve the hold, capture ``min(amount, hold)`` with ``amount_to_capture``, charge what exceeds it."""
        _check_amount(amount_minor)
        options = self._options(idempotency_key)
        try:
            pi = self._call(self._client.v1.payment_intents.retrieve, intent_ref)
        except _Declined as exc:
            return CaptureResult(capture=self._declined_result(exc, intent_ref=intent_ref, amount_minor=0,
                                                               currency=""))
        to_capture = min(amount_minor, pi["amount"])
        try:
            pi = self._call(self._client.v1.payment_intents.capture, intent_ref,
                            params={"amount_to_capture": to_capture}, options=options)
        except _Declined as exc:
            return CaptureResult(capture=self._declined_result(exc, intent_ref=intent_ref, amount_minor=to_capture,
                                                               currency=pi["currency"]))
        received = pi.get("amount_received")  # Stripe sets it; a fake server may not: then what was asked
        captured = self._intent_result(pi, ok_statuses={"succeeded"},
                                       amount_minor=received if isinstance(received, int) and received else to_capture)
        extra = None
        if captured.succeeded and amount_minor > to_capture:
            extra = self.charge(
                customer_ref=pi["customer"], payment_method_ref=pi["payment_method"],
                amount_minor=amount_minor - to_capture, currency=pi["currency"],
                idempotency_key=f"{idempotency_key}:extra",
                metadata={**(pi.get("metadata") or {}), "beyond_hold_of": pi["id"]},
            )
        return CaptureResult(capture=captured, extra_charge=extra)

    def cancel(self, *, intent_ref: str, idempotency_key: str) -> ProviderResult:
        try:
            pi = self._call(self._client.v1.payment_intents.cancel, intent_ref, options=self._options(idempotency_key))
        except _Declined as exc:
            return self._declined_result(exc, intent_ref=intent_ref, amount_minor=0, currency="")
        released = pi["amount"] - (pi.get("amount_received") or 0)
        return self._intent_result(pi, ok_statuses={"canceled"}, amount_minor=released)

    def refund(
        self, *, intent_ref: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        _check_amount(amount_minor)
        try:
            refund = self._call(
                self._client.v1.refunds.create,
                params={"payment_intent": intent_ref, "amount": amount_minor, "metadata": _metadata(metadata)},
                options=self._options(idempotency_key),
            )
        except _Declined as exc:
            return ProviderResult(status=ResultStatus.FAILED, provider_ref="", intent_ref=intent_ref,
                                  amount_minor=amount_minor, currency="", error_code=exc.code, error=exc.message)
        ok = refund["status"] in {"succeeded", "pending"}
        return ProviderResult(
            status=ResultStatus.SUCCEEDED if ok else ResultStatus.FAILED, provider_ref=refund["id"],
            intent_ref=refund.get("payment_intent") or intent_ref, amount_minor=refund["amount"],
            currency=refund["currency"], provider_status=refund["status"],
            error_code="" if ok else (refund.get("failure_reason") or refund["status"]),
            error="" if ok else f"refund {refund['status']}",
        )


def webhook_event_verify(*, payload: bytes, signature: str, secret: str,
                         tolerance_s: int = WEBHOOK_TOLERANCE_S) -> VerifiedEvent:
    """Verify a Stripe webhook on its raw body bytes (``stripe.Webhook.construct_event``) and parse it.

    ``signature``: the ``Stripe-Signature`` header (``t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``).
    Raises :class:`WebhookRejected` for a missing/bad signature, a timestamp older than ``tolerance_s``, a body
    that is not a Stripe event. Source: https://docs.stripe.com/webhooks#verify-official-libraries.
    """
    if not secret:
        raise WebhookRejected("no webhook secret configured (STRIPE_WEBHOOK_SECRET)")
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance_s)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(f"signature verification failed: {exc.user_message or exc}") from None
    except ValueError as exc:  # not UTF-8 / not JSON / not an event
        raise WebhookRejected(f"payload is not a Stripe event: {exc}"[:300]) from None
    data = json.loads(payload)  # the signed bytes themselves, not the SDK's re-serialisation
    event_id, event_type = data.get("id"), data.get("type")
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not isinstance(obj, dict):
        raise WebhookRejected("payload lacks id, type or data.object")
    return VerifiedEvent(id=event_id, type=event_type, created=int(data.get("created") or 0),
                         livemode=bool(data.get("livemode")), data_object=obj, payload=data)
