"""Stripe webhook events: verify first, store once, then reconcile the payment ledger.

Delivery is at-least-once and unordered (https://docs.stripe.com/webhooks#handle-duplicate-events,
https://docs.stripe.com/webhooks#event-ordering). So: the signature is verified on the raw body
(``stripe.Webhook.construct_event``, in :mod:`store.billing.provider_stripe`); the event id is stored under a
unique constraint in the same transaction as its effect, so a replay changes nothing; and each handler compares
the object's state with what the ledger already says, appending a :class:`PaymentAttempt` (key
``webhook:<event id>``) only for what the ledger lacks — a change made outside Walkout (a hold that expired, a
refund from the Dashboard, a payment authenticated later), never undoing a later state with an older event.
Handlers run with the visit row locked, so they wait for a capture or refund in progress and then see its row.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

from store.billing.models import PaymentAttempt, WebhookEvent
from store.billing.providers import VerifiedEvent, WebhookRejected
from store.gates.models import Visit

log = logging.getLogger(__name__)

K = PaymentAttempt.Kind
S = PaymentAttempt.Status
PROVIDER = "stripe"


@dataclass(frozen=True)
class WebhookOutcome:
    """What the endpoint answers. ``status``: ``applied``, ``replayed`` or ``rejected``."""

    http_status: int
    status: str
    reason: str
    event_id: str = ""


Handler = Callable[[VerifiedEvent, WebhookEvent], str]


def _intent_attempts(intent_ref: str):
    return PaymentAttempt.objects.filter(provider=PROVIDER, intent_ref=intent_ref).order_by("created_at", "id")


def _lock_visit(record: WebhookEvent, intent_ref: str) -> Visit | None:
    first = _intent_attempts(intent_ref).first() if intent_ref else None
    if first is None:
        return None
    visit = Visit.objects.select_for_update().get(pk=first.visit_id)
    record.visit = visit
    return visit


def _append(*, visit: Visit, record: WebhookEvent, event: VerifiedEvent, kind: str, status: str, amount_minor: int,
            currency: str, intent_ref: str, provider_ref: str, reason: str, error_code: str = "",
            error: str = "") -> PaymentAttempt:
    return PaymentAttempt.objects.create(
        visit=visit, kind=kind, provider=PROVIDER, amount_minor=amount_minor, currency=currency,
        idempotency_key=f"webhook:{event.id}", provider_ref=provider_ref, intent_ref=intent_ref, status=status,
        error_code=error_code[:64], error=error[:300], reason=reason[:300], webhook_event=record,
    )


def _sum(qs) -> int:
    return qs.aggregate(s=Sum("amount_minor"))["s"] or 0


def _no_match(intent_ref: str) -> str:
    return f"no payment of ours has PaymentIntent {intent_ref or '(none)'}: nothing to record"


def _on_intent_succeeded(event: VerifiedEvent, record: WebhookEvent) -> str:
    """``payment_intent.succeeded``: money was collected; record what the ledger lacks (captured/charged)."""
    pi = event.data_object
    visit = _lock_visit(record, pi.get("id", ""))
    if visit is None:
        return _no_match(pi.get("id", ""))
    received = int(pi.get("amount_received") or 0)
    recorded = _sum(_intent_attempts(pi["id"]).filter(kind__in=[K.CAPTURE, K.CHARGE], status=S.SUCCEEDED))
    if received <= recorded:
        return f"ledger already records {recorded} collected on {pi['id']}"
    kind = K.CAPTURE if pi.get("capture_method") == "manual" else K.CHARGE
    _append(visit=visit, record=record, event=event, kind=kind, status=S.SUCCEEDED, amount_minor=received - recorded,
            currency=pi.get("currency", ""), intent_ref=pi["id"], provider_ref=pi["id"],
            reason="collected without a ledger row (e.g. authenticated later, or our answer was lost)")
    return f"recorded {kind} of {received - recorded} on {pi['id']}"


def _on_intent_failed(event: VerifiedEvent, record: WebhookEvent) -> str:
    """``payment_intent.payment_failed``: record the failure unless the ledger has it, or success came after."""
    pi = event.data_object
    visit = _lock_visit(record, pi.get("id", ""))
    if visit is None:
        return _no_match(pi.get("id", ""))
    attempts = _intent_attempts(pi["id"])
    if attempts.filter(kind__in=[K.AUTHORISE, K.CAPTURE, K.CHARGE], status=S.SUCCEEDED).exists():
        return f"stale: {pi['id']} succeeded (a failed attempt may precede success)"
    if attempts.filter(status=S.FAILED).exists():
        return f"ledger already records the failure of {pi['id']}"
    error: Mapping[str, Any] = pi.get("last_payment_error") or {}
    first = attempts.first()
    _append(visit=visit, record=record, event=event, kind=first.kind, status=S.FAILED,
            amount_minor=int(pi.get("amount") or 0), currency=pi.get("currency", ""), intent_ref=pi["id"],
            provider_ref=pi["id"], reason="payment failed after our call (e.g. authentication failed)",
            error_code=str(error.get("decline_code") or error.get("code") or "payment_failed"),
            error=str(error.get("message") or ""))
    return f"recorded the failure of {pi['id']}"


def _on_intent_canceled(event: VerifiedEvent, record: WebhookEvent) -> str:
    """``payment_intent.canceled``: a hold released outside Walkout (e.g. expired after 7 days uncaptured)."""
    pi = event.data_object
    visit = _lock_visit(record, pi.get("id", ""))
    if visit is None:
        return _no_match(pi.get("id", ""))
    attempts = _intent_attempts(pi["id"])
    if attempts.filter(kind=K.CANCEL, status=S.SUCCEEDED).exists():
        return f"ledger already records the cancellation of {pi['id']}"
    if attempts.filter(kind__in=[K.CAPTURE, K.CHARGE], status=S.SUCCEEDED).exists():
        return f"ignored: ledger records {pi['id']} as captured, which a cancellation cannot follow"
    released = int(pi.get("amount") or 0) - int(pi.get("amount_received") or 0)
    _append(visit=visit, record=record, event=event, kind=K.CANCEL, status=S.SUCCEEDED, amount_minor=released,
            currency=pi.get("currency", ""), intent_ref=pi["id"], provider_ref=pi["id"],
            reason=f"canceled by the provider ({pi.get('cancellation_reason') or 'no reason given'})")
    return f"recorded the cancellation of {pi['id']}"


def _on_charge_refunded(event: VerifiedEvent, record: WebhookEvent) -> str:
    """``charge.refunded``: ``amount_refunded`` is cumulative; record what exceeds the ledger's refunds."""
    charge = event.data_object
    intent_ref = charge.get("payment_intent") or ""
    visit = _lock_visit(record, intent_ref)
    if visit is None:
        return _no_match(intent_ref)
    refunded = int(charge.get("amount_refunded") or 0)
    recorded = _sum(_intent_attempts(intent_ref).filter(kind=K.REFUND, status=S.SUCCEEDED))
    if refunded <= recorded:
        return f"ledger already records {recorded} refunded on {intent_ref}"
    refunds = (charge.get("refunds") or {}).get("data") or []
    refund_ref = refunds[0].get("id", "") if refunds and isinstance(refunds[0], dict) else ""
    _append(visit=visit, record=record, event=event, kind=K.REFUND, status=S.SUCCEEDED,
            amount_minor=refunded - recorded, currency=charge.get("currency", ""), intent_ref=intent_ref,
            provider_ref=refund_ref or charge.get("id", ""),
            reason="refunded outside Walkout (e.g. from the Stripe Dashboard)")
    return f"recorded a refund of {refunded - recorded} on {intent_ref}"


#: The events Walkout subscribes to, and their handlers. Configure the Stripe endpoint with exactly these.
HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": _on_intent_succeeded,
    "payment_intent.payment_failed": _on_intent_failed,
    "payment_intent.canceled": _on_intent_canceled,
    "charge.refunded": _on_charge_refunded,
}


def _reject(http_status: int, reason: str, event_id: str = "") -> WebhookOutcome:
    log.warning("stripe webhook rejected%s: %s", f" ({event_id})" if event_id else "", reason)
    return WebhookOutcome(http_status=http_status, status="rejected", reason=reason, event_id=event_id)


def webhook_receive(*, payload: bytes, signature: str) -> WebhookOutcome:
    """Verify, store and apply one Stripe webhook delivery (``payload``: the raw body bytes).

    400: bad or missing signature, timestamp older than 300 s, not an event, or an event type not in
    :data:`HANDLERS` (nothing stored). 503: ``STRIPE_WEBHOOK_SECRET`` not set (Stripe retries later). 200: applied
    (stored with its outcome) or replayed (an event id already stored: no effect).
    """
    from store.billing.provider_stripe import webhook_event_verify  # lazy: loads the stripe SDK, Stripe's webhook only

    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        log.error("stripe webhook received but STRIPE_WEBHOOK_SECRET is not set")
        return WebhookOutcome(http_status=503, status="rejected", reason="webhook secret not configured")
    try:
        event = webhook_event_verify(payload=payload, signature=signature, secret=secret)
    except WebhookRejected as exc:
        return _reject(400, exc.reason)
    handler = HANDLERS.get(event.type)
    if handler is None:
        return _reject(400, f"unhandled event type {event.type!r}", event.id)
    if WebhookEvent.objects.filter(event_id=event.id).exists():
        log.info("stripe webhook %s replayed: ignored", event.id)
        return WebhookOutcome(http_status=200, status="replayed", reason="event already processed", event_id=event.id)
    try:
        with transaction.atomic():
            record = WebhookEvent.objects.create(
                provider=PROVIDER, event_id=event.id, type=event.type, payload=dict(event.payload),
                object_ref=str(event.data_object.get("id", ""))[:128],
            )
            record.outcome = handler(event, record)[:300]
            record.save(update_fields=["outcome", "visit"])
    except IntegrityError:
        if not WebhookEvent.objects.filter(event_id=event.id).exists():
            raise
        log.info("stripe webhook %s processed concurrently: ignored", event.id)
        return WebhookOutcome(http_status=200, status="replayed", reason="event already processed", event_id=event.id)
    log.info("stripe webhook %s %s: %s", event.id, event.type, record.outcome)
    return WebhookOutcome(http_status=200, status="applied", reason=record.outcome, event_id=event.id)
