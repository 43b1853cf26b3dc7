"""Billing services: authorise at the gate, issue and capture the receipt at the exit, refund a line.

Money is in integer minor currency units (``*_minor``: cents; yen for zero-decimal currencies); prices come in as
``Decimal`` and are converted once by :func:`price_to_minor`. Every provider call that gets a definitive answer
appends a :class:`~store.billing.models.PaymentAttempt` row (the ledger) with an idempotency key derived from our
ids (``authorise:<visit id>``, ``capture:<visit id>``, ``cancel:<visit id>``, ``charge:<visit id>``,
``refund:line:<line id>:<n>``); a retry after a recorded failure appends ``:retry<n>`` so that it is a new request
to the provider, while a retry after an unknown outcome (no row) reuses the key and gets the provider's replay.
Captures and refunds run with the visit row locked (``select_for_update``). Visit state changes are the
caller's (gates, carts). Stripe references: https://docs.stripe.com/payments/place-a-hold-on-a-payment-method,
https://docs.stripe.com/api/idempotent_requests, https://docs.stripe.com/currencies#zero-decimal.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from store.accounts.models import ShopperProfile
from store.billing.models import PaymentAttempt, Receipt, ReceiptLine, ReceiptTax
from store.billing.providers import (
    PaymentProvider,
    ProviderResult,
    ProviderUnavailable,
    ResultStatus,
    get_provider,
)
from store.gates.models import Visit
from .senses import senses_checked

log = logging.getLogger(__name__)

K = PaymentAttempt.Kind
S = PaymentAttempt.Status

#: Currencies without minor units at Stripe (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
#: Currencies with three decimals at Stripe (https://docs.stripe.com/currencies#three-decimal).
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


# --- errors -----------------------------------------------------------------------------------------------------

class BillingError(Exception):
    """Base of billing's errors. ``reason``: a sentence for people; ``code``: a machine word."""

    def __init__(self, reason: str, *, code: str = "", attempt: PaymentAttempt | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.attempt = attempt


class PaymentDeclined(BillingError):
    """The card on file could not be authorised (declined, needs authentication, none on file, provider down)."""


class PaymentFailed(BillingError):
    """A capture, charge, cancel or refund failed. ``attempt``: the failed ledger row, or None when the provider's
    answer is unknown (``code="provider_unavailable"``: retry later, the same idempotency key is reused)."""


class ReceiptConflict(BillingError):
    """``receipt_issue`` was called again for a visit with different lines: a billed receipt is never edited."""


class RefundRejected(BillingError):
    """A refund that cannot be made: more units than left on the line, a free line, no payment covers it."""


# --- money ------------------------------------------------------------------------------------------------------

def amount_log(amount_minor: int, currency: str) -> str:
    """An amount for the logs in major units with its code, ``amount_log(5000, "usd") == "50.00 USD"`` (a log line
    read "authorise 5000 usd" for a $50 hold), ``amount_log(1200, "jpy") == "1200 JPY"``."""
    exp = currency_exponent(currency) if currency else 2
    return f"{Decimal(int(amount_minor)).scaleb(-exp):.{exp}f} {currency.upper()}"


def currency_exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit at Stripe: 0 (jpy), 3 (kwd) or 2. ``ValueError`` if bad."""
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"currency must be a three-letter ISO 4217 code, got {currency!r}")
    currency = currency.lower()
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    if currency in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def price_to_minor(price: Decimal, currency: str) -> int:
    """``price`` (a ``Decimal`` in ``currency``'s major unit) in minor units, rounded half-up exactly.

    ``Decimal("19.99"), "usd"`` → 1999; ``Decimal("0.005"), "usd"`` → 1; ``Decimal("120.5"), "jpy"`` → 121.
    Raises ``TypeError`` for a float or other non-Decimal (floats are not money), ``ValueError`` for a negative or
    non-finite price or a malformed currency.
    """
    if not isinstance(price, (Decimal, int)) or isinstance(price, bool):
        raise TypeError(f"price must be a Decimal, not {type(price).__name__}")
    price = Decimal(price)
    if not price.is_finite() or price < 0:
        raise ValueError(f"price must be a finite, non-negative amount, got {price}")
    exponent = currency_exponent(currency)
    return int((price.scaleb(exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_minor(amount_minor: int, rate_percent: Decimal) -> int:
    """Tax on ``amount_minor`` (minor units ≥ 0) at ``rate_percent`` (a ``Decimal`` percent, 0–100), in minor units,
    rounded half-up exactly (``Decimal`` arithmetic, never floats): 1000 at 8.875 % → 88.75 → 89; 250 at 7 % →
    17.5 → 18; 0 % → 0. Raises ``TypeError`` for a non-int amount or a non-Decimal rate, ``ValueError`` out of
    range."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError(f"amount_minor must be an int, got {type(amount_minor).__name__}")
    if not isinstance(rate_percent, Decimal):
        raise TypeError(f"rate_percent must be a Decimal, got {type(rate_percent).__name__}")
    if amount_minor < 0 or not rate_percent.is_finite() or not (0 <= rate_percent <= 100):
        raise ValueError(f"tax of {amount_minor} at {rate_percent} %: amount ≥ 0 and a rate 0–100 % expected")
    return int((Decimal(amount_minor) * rate_percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- data crossing into billing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptLineData:
    """One receipt line as the cart computed it. ``unit_price_minor``: minor units; ``quantity`` ≥ 1 units;
    ``tax_rate_percent``: the product's tax rate (``Decimal`` percent; 0: not taxed) and ``tax_category`` its name.
    ``senses``: the senses that supported the line (``store.billing.senses.SENSES``, kept in that order; None: unknown);
    stored on the receipt line, not part of :meth:`key` (a re-issue with other senses is the same receipt)."""

    product_id: int
    barcode: str
    name: str
    quantity: int
    unit_price_minor: int
    tax_rate_percent: Decimal = Decimal(0)
    tax_category: str = ""
    senses: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "senses", senses_checked(self.senses))  # ValueError names a bad sense
        for name in ("product_id", "quantity", "unit_price_minor"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if self.quantity < 1:
            raise ValueError(f"quantity must be ≥ 1, got {self.quantity}")
        if self.unit_price_minor < 0:
            raise ValueError(f"unit_price_minor must be ≥ 0, got {self.unit_price_minor}")
        if not isinstance(self.tax_rate_percent, Decimal):
            raise TypeError(f"tax_rate_percent must be a Decimal, got {type(self.tax_rate_percent).__name__}")
        if not self.tax_rate_percent.is_finite() or not (0 <= self.tax_rate_percent <= 100):
            raise ValueError(f"tax_rate_percent must be 0–100, got {self.tax_rate_percent}")

    @property
    def line_total_minor(self) -> int:
        return self.quantity * self.unit_price_minor

    def key(self) -> tuple:
        return (self.product_id, self.barcode, self.name, self.quantity, self.unit_price_minor,
                self.tax_rate_percent.quantize(Decimal("0.001")))


@dataclass(frozen=True)
class TaxLineData:
    """One tax line: the lines at ``rate_percent`` (``label``: their categories' names, sorted, joined by " / "),
    their total ``taxable_minor`` and the tax on it ``tax_minor`` (minor units)."""

    label: str
    rate_percent: Decimal
    taxable_minor: int
    tax_minor: int


def tax_lines(lines: list[ReceiptLineData]) -> list[TaxLineData]:
    """The tax lines of a receipt with ``lines``, by rate (lowest first), rates above 0 only.

    Rounding rule: tax is computed once per rate on the sum of the line totals at that rate, and rounded half-up to
    the minor unit (:func:`tax_minor`): two 0.50 items at 5 % pay 0.05 (5 % of 1.00), not 0.03 + 0.03. The
    receipt's total is its lines plus the sum of these (what the card is charged)."""
    groups: dict[Decimal, list[ReceiptLineData]] = {}
    for line in lines:
        rate = line.tax_rate_percent.quantize(Decimal("0.001"))
        if rate > 0:
            groups.setdefault(rate, []).append(line)
    out = []
    for rate in sorted(groups):
        taxable = sum(ln.line_total_minor for ln in groups[rate])
        label = " / ".join(sorted({ln.tax_category for ln in groups[rate] if ln.tax_category})) or "Tax"
        out.append(TaxLineData(label=label, rate_percent=rate, taxable_minor=taxable,
                               tax_minor=tax_minor(taxable, rate)))
    return out


def receipt_amounts(lines: list[ReceiptLineData]) -> tuple[list[TaxLineData], int, int]:
    """``(tax lines, tax_minor, total_minor)`` of a receipt with ``lines``: its tax lines (:func:`tax_lines`), their
    sum, and the lines' totals plus that sum (what the card is charged), minor units. The one rule for every total
    shown before or after billing: the receipt (:func:`receipt_issue`), the shopper's live cart and the dashboard."""
    taxes = tax_lines(lines)
    tax = sum(t.tax_minor for t in taxes)
    return taxes, tax, sum(line.line_total_minor for line in lines) + tax


# --- ledger helpers ---------------------------------------------------------------------------------------------

def _attempt_key(*, visit: Visit, base: str) -> str:
    """``base`` for the first attempt; ``base:retry<n>`` after ``n`` recorded attempts under that base."""
    keys = visit.payment_attempts.filter(idempotency_key__startswith=base).values_list("idempotency_key", flat=True)
    n = sum(1 for k in keys if k == base or (k.startswith(f"{base}:retry") and k[len(base) + 6:].isdigit()))
    return base if n == 0 else f"{base}:retry{n}"


def _attempt_record(
    *, visit: Visit, kind: str, provider: PaymentProvider, result: ProviderResult, idempotency_key: str,
    currency: str, **extra: object,
) -> PaymentAttempt:
    attempt = PaymentAttempt.objects.create(
        visit=visit, kind=kind, provider=provider.name, amount_minor=result.amount_minor,
        currency=result.currency or currency, idempotency_key=idempotency_key, provider_ref=result.provider_ref,
        intent_ref=result.intent_ref, status=result.status.value, provider_status=result.provider_status[:40],
        error_code=result.error_code[:64], error=result.error[:300], **extra,
    )
    log_fn = log.info if result.succeeded else log.warning
    log_fn("visit %s %s %s: %s %s", visit.pk, kind, amount_log(result.amount_minor, attempt.currency),
           result.status.value, result.error_code or result.provider_ref)
    return attempt


def _payer_profile(visit: Visit) -> ShopperProfile | None:
    """The profile whose card pays: the party lead's for a guest visit, else the shopper's own."""
    payer = visit.party_lead.shopper if visit.party_lead_id else visit.shopper
    return ShopperProfile.objects.filter(user=payer).first()


def _profile_provider(profile: ShopperProfile | None) -> tuple[PaymentProvider | None, str]:
    """The configured provider if ``profile`` has a card saved with it; else (None, why not)."""
    if profile is None or not profile.has_payment_method:
        return None, "no payment card on file"
    if profile.provider and profile.provider != settings.PAYMENT_PROVIDER:
        return None, f"the card on file was saved with {profile.provider!r}, not {settings.PAYMENT_PROVIDER!r}"
    return get_provider(settings.PAYMENT_PROVIDER), ""


def _hold(visit: Visit) -> PaymentAttempt | None:
    """The visit's authorised hold, or None."""
    return visit.payment_attempts.filter(kind=K.AUTHORISE, status=S.SUCCEEDED).order_by("-created_at", "-id").first()


def _hold_usable(visit: Visit, hold: PaymentAttempt | None) -> bool:
    """The hold exists, was released by no one (us, or the provider as a webhook told), and no capture was tried
    on it: a hold captures once, and a refused capture means it is gone (expired, canceled provider-side)."""
    if hold is None:
        return False
    used = visit.payment_attempts.filter(intent_ref=hold.intent_ref).filter(
        Q(kind=K.CAPTURE) | Q(kind=K.CANCEL, status=S.SUCCEEDED))
    return not used.exists()


def payment_settled_minor(*, visit: Visit) -> int:
    """Minor units collected for ``visit``: succeeded captures and charges (refunds not deducted)."""
    return visit.payment_attempts.filter(kind__in=[K.CAPTURE, K.CHARGE], status=S.SUCCEEDED).aggregate(
        s=Sum("amount_minor"))["s"] or 0


# --- services ---------------------------------------------------------------------------------------------------

def payment_authorise(*, visit: Visit) -> PaymentAttempt:
    """Hold ``settings.WALKOUT["AUTHORISE_AMOUNT_MINOR"]`` (minor units, in the store's currency) on the card on file.

    Called at the gate. The payer is the shopper, or the party lead for a guest visit. Idempotent: a visit whose
    hold succeeded returns that attempt. Key ``authorise:<visit id>`` (``:retry<n>`` after recorded failures).
    Raises :class:`PaymentDeclined` (``code``: ``no_payment_method``, ``card_declined``/a decline code,
    ``authentication_required``, ``provider_unavailable``); a declined or authentication-required answer leaves
    its failed attempt row.
    """
    amount = settings.WALKOUT["AUTHORISE_AMOUNT_MINOR"]
    with transaction.atomic():
        visit = Visit.objects.select_for_update(of=("self",)).select_related("store").get(pk=visit.pk)
        existing = _hold(visit)
        if existing is not None:
            return existing
        profile = _payer_profile(visit)
        provider, why_not = _profile_provider(profile)
        if provider is None:
            raise PaymentDeclined(f"{why_not}: add a card in the app", code="no_payment_method")
        key = _attempt_key(visit=visit, base=f"authorise:{visit.pk}")
        currency = visit.store.currency.lower()
        try:
            result = provider.authorise(
                customer_ref=profile.customer_ref, payment_method_ref=profile.payment_method_ref,
                amount_minor=amount, currency=currency, idempotency_key=key,
                metadata={"visit": str(visit.pk), "store": visit.store.code},
            )
        except ProviderUnavailable as exc:
            log.warning("visit %s: authorisation not answered: %s", visit.pk, exc.reason)
            raise PaymentDeclined(f"the payment provider did not answer ({exc.reason}); try again",
                                  code="provider_unavailable") from None
        attempt = _attempt_record(visit=visit, kind=K.AUTHORISE, provider=provider, result=result,
                                  idempotency_key=key, currency=currency)
    if not result.succeeded:
        raise PaymentDeclined(result.error or "the card was declined", code=result.error_code, attempt=attempt)
    return attempt


def receipt_issue(*, visit: Visit, lines: list[ReceiptLineData], at: datetime | None = None) -> Receipt:
    """Issue ``visit``'s receipt from ``lines`` and collect its total (minor units) from the card.

    ``at``: the receipt's ``issued_at`` (tz-aware UTC; default now): the checkout's time on the store's clock, the
    visit's ``billed_at``, so that a receipt is never issued before the events on it nor before the visit left
    (a store clock ahead of the wall clock: an emulation at ``--speed`` above 1; a replay of a recording's times).

    Total 0: the hold is released (cancel). Otherwise the hold is captured for the total; a total above the hold
    captures the hold and charges the rest off-session; without a usable hold (expired or released), the total is
    charged off-session. Idempotent: a second call returns the same receipt and never collects twice; after a
    failure it resumes collecting what is still due (a new key ``…:retry<n>``). The visit row is locked throughout.

    Raises :class:`ReceiptConflict` if a receipt exists with other lines, :class:`PaymentFailed` when collection
    fails (the receipt and the failed attempt row are kept; ``code="provider_unavailable"``: no answer, no row).
    """
    lines = list(lines)
    for line in lines:
        if not isinstance(line, ReceiptLineData):
            raise TypeError(f"lines must be ReceiptLineData, got {type(line).__name__}")
    failure: PaymentFailed | None = None
    with transaction.atomic():
        visit = Visit.objects.select_for_update(of=("self",)).select_related("store").get(pk=visit.pk)
        receipt = Receipt.objects.filter(visit=visit).first()
        if receipt is None:
            payer = visit.party_lead.shopper if visit.party_lead_id else visit.shopper
            profile = getattr(payer, "shopper", None)
            taxes, tax, total = receipt_amounts(lines)
            receipt = Receipt.objects.create(
                visit=visit, currency=visit.store.currency.lower(), total_minor=total, tax_minor=tax, issued_at=at or timezone.now(),
                card_brand=getattr(profile, "card_brand", "") or "", card_last4=getattr(profile, "card_last4", "") or "",
            )
            ReceiptLine.objects.bulk_create([
                ReceiptLine(receipt=receipt, product_id=line.product_id, barcode=line.barcode, name=line.name,
                            quantity=line.quantity, unit_price_minor=line.unit_price_minor,
                            line_total_minor=line.line_total_minor, tax_category=line.tax_category,
                            tax_rate_percent=line.tax_rate_percent,
                            senses=list(line.senses) if line.senses is not None else None)
                for line in lines
            ])
            ReceiptTax.objects.bulk_create([
                ReceiptTax(receipt=receipt, label=t.label[:200], rate_percent=t.rate_percent,
                           taxable_minor=t.taxable_minor, tax_minor=t.tax_minor) for t in taxes])
            log.info("visit %s: receipt %s issued, total %s", visit.pk, receipt.pk,
                     amount_log(receipt.total_minor, receipt.currency))
        else:
            stored = sorted((ln.product_id, ln.barcode, ln.name, ln.quantity, ln.unit_price_minor,
                             Decimal(ln.tax_rate_percent).quantize(Decimal("0.001")))
                            for ln in receipt.lines.all())
            if stored != sorted(line.key() for line in lines):
                raise ReceiptConflict(
                    f"visit {visit.pk} already has receipt {receipt.pk} with other lines; correct it by refund",
                    code="receipt_conflict")
        try:
            failure = _receipt_collect(visit=visit, receipt=receipt)
        except ProviderUnavailable as exc:
            log.warning("visit %s: collection not answered: %s", visit.pk, exc.reason)
            failure = PaymentFailed(f"the payment provider did not answer ({exc.reason}); try again",
                                    code="provider_unavailable")
    if failure is not None:
        raise failure
    return receipt


def _receipt_collect(*, visit: Visit, receipt: Receipt) -> PaymentFailed | None:
    """Collect what ``receipt`` still lacks (visit row locked by the caller). A failure is returned, not raised,
    so that its ledger row commits."""
    hold = _hold(visit)
    usable = _hold_usable(visit, hold)
    currency = receipt.currency
    if receipt.total_minor == 0:
        if not usable:
            return None
        provider = get_provider(hold.provider)
        key = _attempt_key(visit=visit, base=f"cancel:{visit.pk}")
        result = provider.cancel(intent_ref=hold.intent_ref, idempotency_key=key)
        attempt = _attempt_record(visit=visit, kind=K.CANCEL, provider=provider, result=result,
                                  idempotency_key=key, currency=currency)
        if not result.succeeded:
            return PaymentFailed(f"the hold could not be released: {result.error}", code=result.error_code,
                                 attempt=attempt)
        return None
    due = receipt.total_minor - payment_settled_minor(visit=visit)
    if due <= 0:
        return None
    if usable:
        provider = get_provider(hold.provider)
        key = _attempt_key(visit=visit, base=f"capture:{visit.pk}")
        captured = provider.capture(intent_ref=hold.intent_ref, amount_minor=due, idempotency_key=key)
        attempt = _attempt_record(visit=visit, kind=K.CAPTURE, provider=provider, result=captured.capture,
                                  idempotency_key=key, currency=currency)
        if not captured.capture.succeeded:
            return PaymentFailed(f"the capture failed: {captured.capture.error}",
                                 code=captured.capture.error_code, attempt=attempt)
        if captured.extra_charge is None:
            return None
        result, key, kind = captured.extra_charge, f"{key}:extra", K.CHARGE
    else:
        profile = _payer_profile(visit)
        provider, why_not = _profile_provider(profile)
        if provider is None:
            return PaymentFailed(f"no usable hold and {why_not}", code="no_payment_method")
        key, kind = _attempt_key(visit=visit, base=f"charge:{visit.pk}"), K.CHARGE
        result = provider.charge(
            customer_ref=profile.customer_ref, payment_method_ref=profile.payment_method_ref, amount_minor=due,
            currency=currency, idempotency_key=key,
            metadata={"visit": str(visit.pk), "receipt": str(receipt.pk), "store": visit.store.code},
        )
    attempt = _attempt_record(visit=visit, kind=kind, provider=provider, result=result, idempotency_key=key,
                              currency=currency)
    if not result.succeeded:
        return PaymentFailed(f"the off-session charge of {result.amount_minor} failed: {result.error}",
                             code=result.error_code, attempt=attempt)
    return None


def refund_tax_minor(*, receipt_line: ReceiptLine, quantity: int) -> int:
    """The tax (minor units) refunded with ``quantity`` more units of ``receipt_line``: the receipt's tax at the
    line's rate on what is left unrefunded at that rate before, less the same after (:func:`tax_minor`, rounded
    half-up once per rate as when billed). So refunding every unit of a receipt refunds exactly the tax charged."""
    rate = Decimal(receipt_line.tax_rate_percent)
    if rate <= 0:
        return 0
    same_rate = ReceiptLine.objects.filter(receipt_id=receipt_line.receipt_id, tax_rate_percent=rate)
    taxable = sum(ln.line_total_minor for ln in same_rate)
    refunded = sum((a.quantity or 0) * a.receipt_line.unit_price_minor for a in PaymentAttempt.objects.filter(
        receipt_line__in=same_rate, kind=K.REFUND, status=S.SUCCEEDED).select_related("receipt_line"))
    before = taxable - refunded
    after = before - quantity * receipt_line.unit_price_minor
    return tax_minor(before, rate) - tax_minor(max(after, 0), rate)


def receipt_refund_line(*, receipt_line: ReceiptLine, quantity: int, reason: str) -> PaymentAttempt:
    """Refund ``quantity`` units of ``receipt_line`` (``quantity × unit_price_minor`` minor units, plus their tax,
    :func:`refund_tax_minor`) to the card.

    The refund goes against the visit's capture or charge that still has that much unrefunded. Key
    ``refund:line:<line id>:<n>``. The visit row is locked. Raises ``ValueError`` for a quantity < 1,
    :class:`RefundRejected` for more units than left unrefunded on the line, a free line, or when no single
    payment of the visit covers the amount; :class:`PaymentFailed` when the provider refuses (row kept) or does
    not answer (no row). Source: https://docs.stripe.com/api/refunds/create.
    """
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise ValueError(f"quantity must be an int ≥ 1, got {quantity!r}")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a refund needs a reason")
    failure: PaymentFailed | None = None
    with transaction.atomic():
        line = ReceiptLine.objects.select_related("receipt").get(pk=receipt_line.pk)
        visit = Visit.objects.select_for_update().get(pk=line.receipt.visit_id)
        refunded = line.refund_attempts.filter(status=S.SUCCEEDED).aggregate(q=Sum("quantity"))["q"] or 0
        if quantity > line.quantity - refunded:
            raise RefundRejected(
                f"line {line.pk} has {line.quantity - refunded} of {line.quantity} unit(s) left to refund, "
                f"not {quantity}", code="quantity_too_large")
        amount = quantity * line.unit_price_minor + refund_tax_minor(receipt_line=line, quantity=quantity)
        if amount == 0:
            raise RefundRejected(f"line {line.pk} is free: nothing to refund", code="nothing_to_refund")
        payment = _refundable_payment(visit=visit, amount_minor=amount)
        if payment is None:
            raise RefundRejected(f"no single payment of visit {visit.pk} has {amount} left to refund",
                                 code="no_payment_covers")
        provider = get_provider(payment.provider)
        n = PaymentAttempt.objects.filter(idempotency_key__startswith=f"refund:line:{line.pk}:").count() + 1
        key = f"refund:line:{line.pk}:{n}"
        try:
            result = provider.refund(
                intent_ref=payment.intent_ref, amount_minor=amount, idempotency_key=key,
                metadata={"visit": str(visit.pk), "receipt_line": str(line.pk), "reason": reason},
            )
        except ProviderUnavailable as exc:
            raise PaymentFailed(f"the payment provider did not answer ({exc.reason}); try again",
                                code="provider_unavailable") from None
        attempt = _attempt_record(visit=visit, kind=K.REFUND, provider=provider, result=result, idempotency_key=key,
                                  currency=line.receipt.currency, receipt_line=line, quantity=quantity,
                                  reason=reason[:300])
        if not result.succeeded:
            failure = PaymentFailed(f"the refund failed: {result.error}", code=result.error_code, attempt=attempt)
    if failure is not None:
        raise failure
    return attempt


def _refundable_payment(*, visit: Visit, amount_minor: int) -> PaymentAttempt | None:
    """The first succeeded capture/charge of ``visit`` with at least ``amount_minor`` not yet refunded."""
    for payment in visit.payment_attempts.filter(kind__in=[K.CAPTURE, K.CHARGE], status=S.SUCCEEDED):
        refunded = visit.payment_attempts.filter(
            kind=K.REFUND, status=S.SUCCEEDED, intent_ref=payment.intent_ref
        ).aggregate(s=Sum("amount_minor"))["s"] or 0
        captured = visit.payment_attempts.filter(
            kind__in=[K.CAPTURE, K.CHARGE], status=S.SUCCEEDED, intent_ref=payment.intent_ref
        ).aggregate(s=Sum("amount_minor"))["s"] or 0
        if captured - refunded >= amount_minor:
            return payment
    return None


__all__ = [
    "BillingError", "PaymentDeclined", "PaymentFailed", "ReceiptConflict", "RefundRejected", "ReceiptLineData",
    "currency_exponent", "price_to_minor", "tax_minor", "tax_lines", "receipt_amounts", "TaxLineData", "refund_tax_minor", "payment_authorise", "payment_settled_minor", "receipt_issue",
    "receipt_refund_line", "ResultStatus",
]
