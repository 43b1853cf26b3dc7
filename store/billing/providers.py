"""The payment provider boundary: one narrow, typed interface, a dummy provider and Stripe behind it.

Walkout pre-authorises a hold at the gate and captures it at the exit (DESIGN.md; notes/conventions.md):

- ``authorise``: a PaymentIntent with ``capture_method=manual``, ``confirm=True``, ``off_session=True`` on the
  shopper's saved card → ``requires_capture`` (https://docs.stripe.com/payments/place-a-hold-on-a-payment-method).
- ``capture``: ``amount_to_capture`` ≤ the hold; the rest of the hold is released; one capture only. A total above
  the hold captures the whole hold and charges the rest off-session as a separate PaymentIntent
  (https://docs.stripe.com/payments/save-and-reuse#charge-saved-payment-method).
- ``cancel``: release an uncaptured hold (empty cart) (https://docs.stripe.com/api/payment_intents/cancel).
- ``refund``: part or all of a captured PaymentIntent (https://docs.stripe.com/api/refunds/create).
- ``charge``: an off-session, automatically captured payment (supplementary charges).
- ``create_customer`` / ``attach_card``: the card on file, verified for off-session use through a SetupIntent
  with ``usage=off_session`` (https://docs.stripe.com/payments/save-and-reuse).

Every mutating call carries an ``idempotency_key`` that the caller derives from its own ids (``capture:<visit
id>``); the provider replays its first answer to a repeated key. Amounts are integers in minor currency units
(cents; yen for zero-decimal currencies), currencies ISO 4217 lower case.

A payment-level outcome (success, decline, authentication required) is *returned* as a dataclass; an unknown
outcome (network failure, provider 5xx, rate limit, bad credentials) *raises* :class:`ProviderUnavailable`, so that
the caller records nothing and retries with the same key. Only :mod:`store.billing.provider_stripe` imports
``stripe``; :mod:`store.billing.provider_dummy` keeps its state in the database.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from store.billing.provider_dummy import DummyProvider
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
)

__all__ = ["CaptureResult", "CardResult", "CustomerResult", "PaymentProvider", "ProviderResult", "ProviderUnavailable",
           "ResultStatus", "VerifiedEvent", "WebhookRejected", "get_provider"]


def get_provider(name: str | None = None) -> PaymentProvider:
    """The provider called ``name`` (default ``settings.PAYMENT_PROVIDER``): ``"dummy"`` or ``"stripe"``.

    Stripe is configured from ``settings.STRIPE_SECRET_KEY`` and ``settings.STRIPE_API_BASE`` (empty: Stripe's
    own API). Raises ``ImproperlyConfigured`` for an unknown name or Stripe without a secret key.
    """
    name = name or settings.PAYMENT_PROVIDER
    if name == "dummy":
        return DummyProvider()
    if name == "stripe":
        from store.billing.provider_stripe import StripeProvider  # lazy: loads the stripe SDK where Stripe is used

        if not settings.STRIPE_SECRET_KEY:
            raise ImproperlyConfigured("PAYMENT_PROVIDER is 'stripe' but STRIPE_SECRET_KEY is empty")
        return StripeProvider(api_key=settings.STRIPE_SECRET_KEY, api_base=settings.STRIPE_API_BASE)
    raise ImproperlyConfigured(f"unknown payment provider {name!r}: expected 'dummy' or 'stripe'")
