"""The payment provider interface (``store.billing.providers`` has the whole story): the results, the errors and
:class:`PaymentProvider`, which the dummy provider and Stripe implement. Plain Python: no Django, no ``stripe``."""
from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ResultStatus(str, enum.Enum):
    """Outcome of one provider call; the values are :class:`store.billing.models.PaymentAttempt.Status`'s."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"


class ProviderUnavailable(Exception):
    """The provider could not be asked or did not answer definitively (network, 5xx, 429, credentials).

    The outcome of the call is unknown: retry it later with the *same* idempotency key.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WebhookRejected(Exception):
    """A webhook request that is not a genuine, fresh event from the provider (bad signature, stale, malformed)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProviderResult:
    """The provider's answer to one payment call.

    ``provider_ref``: the object the call created or changed (a PaymentIntent ``pi_…`` or a Refund ``re_…``; empty
    when the provider created nothing). ``intent_ref``: the PaymentIntent concerned. ``amount_minor``: the amount
    held, captured, charged, released or refunded, in minor units. ``provider_status``: the provider's own status
    word (``requires_capture``, ``succeeded``, ``canceled``…). ``error_code``: the decline or error code
    (``card_declined``, ``insufficient_funds``, ``authentication_required``…) when not succeeded.
    """

    status: ResultStatus
    provider_ref: str
    intent_ref: str
    amount_minor: int
    currency: str
    provider_status: str = ""
    error_code: str = ""
    error: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool) or self.amount_minor < 0:
            raise ValueError(f"amount_minor must be a non-negative int (minor units), got {self.amount_minor!r}")
        if not isinstance(self.status, ResultStatus):
            object.__setattr__(self, "status", ResultStatus(self.status))

    @property
    def succeeded(self) -> bool:
        return self.status == ResultStatus.SUCCEEDED


@dataclass(frozen=True)
class CaptureResult:
    """``capture``: the capture of the hold, and the off-session charge of what exceeded it (None if nothing did)."""

    capture: ProviderResult
    extra_charge: ProviderResult | None = None

    @property
    def succeeded(self) -> bool:
        return self.capture.succeeded and (self.extra_charge is None or self.extra_charge.succeeded)

    @property
    def results(self) -> list[ProviderResult]:
        return [self.capture] + ([self.extra_charge] if self.extra_charge is not None else [])


@dataclass(frozen=True)
class CustomerResult:
    """``create_customer``: the provider's customer reference (``cus_…``)."""

    customer_ref: str


@dataclass(frozen=True)
class CardResult:
    """``attach_card``: the card on file. Only the brand and last four digits ever leave the provider."""

    status: ResultStatus
    customer_ref: str
    payment_method_ref: str = ""
    brand: str = ""
    last4: str = ""
    setup_ref: str = ""  # the SetupIntent (seti_…) that verified the card, where the provider uses one
    client_secret: str = ""  # when requires_action: the SetupIntent's secret for the app to finish authentication
    error_code: str = ""
    error: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.status, ResultStatus):
            object.__setattr__(self, "status", ResultStatus(self.status))
        if self.last4 and (len(self.last4) != 4 or not self.last4.isdigit()):
            raise ValueError(f"last4 must be four digits, got {self.last4!r}")

    @property
    def succeeded(self) -> bool:
        return self.status == ResultStatus.SUCCEEDED


@dataclass(frozen=True)
class VerifiedEvent:
    """A webhook event whose signature and age were verified. ``data_object``: the event's ``data.object``."""

    id: str
    type: str
    created: int
    livemode: bool
    data_object: Mapping[str, Any]
    payload: Mapping[str, Any]


class PaymentProvider(abc.ABC):
    """A payment provider. Amounts in minor units; every mutating call is idempotent on ``idempotency_key``.

    Methods return a result for every definitive answer, declines included, and raise
    :class:`ProviderUnavailable` when the outcome is unknown. ``ValueError`` for arguments no provider accepts.
    """

    name: str

    @abc.abstractmethod
    def create_customer(self, *, email: str, idempotency_key: str) -> CustomerResult:
        """Create the provider-side customer that saved cards belong to."""

    @abc.abstractmethod
    def attach_card(self, *, customer_ref: str, card_token: str, idempotency_key: str) -> CardResult:
        """Save and verify a card for off-session use (a SetupIntent with ``usage=off_session``).

        ``card_token``: Stripe, a PaymentMethod id (``pm_…``, created in the browser by Stripe.js, or a test-mode
        token such as ``pm_card_visa``); dummy, a test card number (``4242424242424242``).
        """

    @abc.abstractmethod
    def authorise(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        """Hold ``amount_minor`` on the saved card (manual capture, confirmed off-session)."""

    @abc.abstractmethod
    def capture(self, *, intent_ref: str, amount_minor: int, idempotency_key: str) -> CaptureResult:
        """Capture ``amount_minor`` (> 0) of the hold; above the hold, capture it all and charge the rest.

        The extra charge uses the key ``<idempotency_key>:extra``.
        """

    @abc.abstractmethod
    def charge(
        self, *, customer_ref: str, payment_method_ref: str, amount_minor: int, currency: str,
        idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        """Charge the saved card off-session, captured at once."""

    @abc.abstractmethod
    def cancel(self, *, intent_ref: str, idempotency_key: str) -> ProviderResult:
        """Release an uncaptured hold. ``amount_minor`` of the result: the amount released."""

    @abc.abstractmethod
    def refund(
        self, *, intent_ref: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str],
    ) -> ProviderResult:
        """Refund ``amount_minor`` (> 0) of a captured PaymentIntent. ``provider_ref`` of the result: the refund."""


def _check_amount(amount_minor: int, *, allow_zero: bool = False) -> None:
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise ValueError(f"amount_minor must be an int in minor units, got {type(amount_minor).__name__}")
    if amount_minor < 0 or (amount_minor == 0 and not allow_zero):
        raise ValueError(f"amount_minor must be {'≥' if allow_zero else '>'} 0, got {amount_minor}")


def _check_key(idempotency_key: str) -> None:
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValueError("idempotency_key must be 1–255 characters")
