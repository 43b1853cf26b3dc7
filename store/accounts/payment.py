"""The shopper's card on file, saved through the payment provider (``store.billing.providers``).

The card itself stays with the provider: Stripe gets it from the browser (Stripe.js creates a PaymentMethod,
``pm_…``); the embedded profile's dummy provider takes a test card number. Either way the provider verifies it
for off-session use (a SetupIntent with ``usage=off_session``: https://docs.stripe.com/payments/save-and-reuse)
and only its references, brand and last four digits are kept on :class:`ShopperProfile`.
"""
from __future__ import annotations

import logging
import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from store.accounts.models import ShopperProfile
from store.billing.providers import ProviderUnavailable, ResultStatus, get_provider

log = logging.getLogger(__name__)


class CardRejected(Exception):
    """The card could not be saved. ``code``: the provider's (``card_declined``, ``invalid_number``,
    ``authentication_required`` — then ``client_secret`` lets the app finish 3-D Secure —, ``provider_unavailable``).
    """

    def __init__(self, reason: str, *, code: str = "", client_secret: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.client_secret = client_secret


def shopper_card_attach(*, user: AbstractBaseUser, card_token: str) -> ShopperProfile:
    """Save ``card_token`` as ``user``'s card on file with the configured provider; returns the updated profile.

    ``card_token``: with Stripe a PaymentMethod id (``pm_…``); with the dummy provider a test card number
    (``4242424242424242``). Creates the provider-side customer once (key ``customer:<user id>``). Replaces any
    previous card. Raises :class:`CardRejected`; the profile keeps its previous card then.
    """
    card_token = (card_token or "").strip()
    if not card_token:
        raise CardRejected("no card given", code="missing_card")
    provider = get_provider()
    with transaction.atomic():
        profile, _ = ShopperProfile.objects.select_for_update().get_or_create(user=user)
        try:
            if not profile.customer_ref or profile.provider not in ("", provider.name):
                customer = provider.create_customer(email=user.email or "", idempotency_key=f"customer:{user.pk}")
                profile.customer_ref = customer.customer_ref
                profile.provider = provider.name
                profile.payment_method_ref = profile.card_brand = profile.card_last4 = ""
                profile.save(update_fields=["customer_ref", "provider", "payment_method_ref", "card_brand",
                                            "card_last4"])
            # A fresh key per request: the card token must not be derived into a stored key (it may be a number).
            result = provider.attach_card(customer_ref=profile.customer_ref, card_token=card_token,
                                          idempotency_key=f"card:{user.pk}:{uuid.uuid4().hex}")
        except ProviderUnavailable as exc:
            raise CardRejected(f"the payment provider did not answer ({exc.reason}); try again",
                               code="provider_unavailable") from None
        if result.status != ResultStatus.SUCCEEDED:
            log.info("shopper %s: card not saved: %s", user.pk, result.error_code)
            failure = CardRejected(result.error or "the card was declined", code=result.error_code,
                                   client_secret=result.client_secret)
        else:
            profile.provider = provider.name
            profile.payment_method_ref = result.payment_method_ref
            profile.card_brand, profile.card_last4 = result.brand, result.last4
            profile.save(update_fields=["provider", "payment_method_ref", "card_brand", "card_last4"])
            log.info("shopper %s saved a %s card ending %s", user.pk, result.brand, result.last4)
            return profile
    raise failure
