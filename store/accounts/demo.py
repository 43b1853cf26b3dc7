"""The demo and throwaway shopper accounts: the demo shopper ``make demo`` and the dashboard's live replay play
(:data:`DEMO_SHOPPER`), and the throwaway accounts offline replays and evaluations play on
(``replay+<track>@walkout.test``), which the dashboard leaves out of the sales figures. Here, in the accounts app,
so that the running store tells a test account from a real one without importing the offline tooling.
"""
from __future__ import annotations

import re

from django.contrib.auth import get_user_model

from store.billing.providers import get_provider

from .payment import shopper_card_attach
from .services import shopper_create

#: The demo shopper's account (``make demo`` creates it; a recording's shopper with nobody inside plays it).
DEMO_SHOPPER = "shopper@walkout.test"
#: The demo accounts' password (README "What you see").
DEMO_PASSWORD = "take-it-and-go"
#: The throwaway shopper accounts of offline replays and evaluations (``replay+<track>@walkout.test``): created on
#: demand with the payment provider's test card, never a real shopper's account (``is_throwaway_shopper``).
THROWAWAY_DOMAIN = "walkout.test"
#: The pattern of throwaway account e-mails (a database ``__regex`` lookup takes it as is).
THROWAWAY_USERNAME_RE = r"^replay\+[^@]+@walkout\.test$"
_THROWAWAY = re.compile(THROWAWAY_USERNAME_RE)


def throwaway_shopper(track: str) -> str:
    """The throwaway account e-mail for recorded shopper ``track`` of an offline replay: ``replay+<track>@walkout.test``."""
    return f"replay+{track}@{THROWAWAY_DOMAIN}"


def is_throwaway_shopper(email: str) -> bool:
    """Whether ``email`` is a throwaway replay account (:func:`throwaway_shopper`) rather than a real shopper's."""
    return bool(_THROWAWAY.match(email or ""))


def demo_shopper_ensure(email: str, *, password: str = DEMO_PASSWORD) -> object:
    """The shopper ``email``, created if missing with ``password`` and the payment provider's test card
    (4242 4242 4242 4242 with the dummy provider, ``pm_card_visa`` with Stripe in test mode) on file.
    Raises ``store.accounts.payment.CardRejected`` if the provider refuses the card."""
    User = get_user_model()
    user = User.objects.filter(username=email).first() or shopper_create(email=email, password=password)
    profile = getattr(user, "shopper", None)
    if profile is None or not profile.has_payment_method:
        token = "4242424242424242" if get_provider().name == "dummy" else "pm_card_visa"
        shopper_card_attach(user=user, card_token=token)
    return user
