"""Corrections of a billed visit's money by a review decision made after its checkout: a take is charged off-session
to the payer's card, a put-back is refunded (first what a review added but never collected, then review charges,
then the receipt line), so that what the card paid net always equals the value of the cart. Billing's ledger rows
are written by billing's own helpers; :func:`carts.services.review.review_resolve` is the one caller.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Sum

from store.billing.models import PaymentAttempt, ReceiptLine
from store.billing.providers import ProviderUnavailable, get_provider
from store.billing.services import (
    BillingError,
    PaymentFailed,
    _attempt_record,
    _payer_profile,
    _profile_provider,
    _refundable_payment,
    price_to_minor,
    receipt_refund_line,
    tax_minor,
)
from store.gates.models import Visit
from store.inventory.models import Product

from ..models import CartEvent
from .review_queue import ReviewError


def line_refunded_units(line: ReceiptLine) -> int:
    """Units of receipt ``line`` refunded so far (its succeeded refund attempts' quantities)."""
    return line.refund_attempts.filter(status=PaymentAttempt.Status.SUCCEEDED).aggregate(
        q=Sum("quantity"))["q"] or 0


def _correction_charge(*, visit: Visit, product: Product, quantity: int, key: str) -> PaymentAttempt:
    """Charge ``quantity`` units of ``product`` (> 0) off-session to the payer's card (the party lead's for a
    guest), captured at once, for a review decision made after the visit was billed. One ledger row
    (``PaymentAttempt`` kind ``charge``, idempotency key ``key``), written by billing's own helper. Raises
    :class:`PaymentFailed` when no card is usable or the provider does not answer (no row); a declined charge
    returns its failed row. Where the product's tax category has a rate, its tax is charged with it (rounded
    half-up on this charge, ``store.billing.services.tax_minor``)."""
    currency = visit.store.currency.lower()
    amount = quantity * price_to_minor(product.price, currency)
    category = product.tax_category
    if category is not None:
        amount += tax_minor(amount, category.rate_percent)
    profile = _payer_profile(visit)
    provider, why_not = _profile_provider(profile)
    if provider is None:
        raise PaymentFailed(why_not, code="no_payment_method")
    try:
        result = provider.charge(customer_ref=profile.customer_ref, payment_method_ref=profile.payment_method_ref,
                                 amount_minor=amount, currency=currency, idempotency_key=key,
                                 metadata={"visit": str(visit.pk), "store": visit.store.code,
                                           "correction": f"{quantity} x {product.barcode}"})
    except ProviderUnavailable as exc:
        raise PaymentFailed(f"the payment provider did not answer ({exc.reason}); try again",
                            code="provider_unavailable") from None
    return _attempt_record(visit=visit, kind=PaymentAttempt.Kind.CHARGE, provider=provider, result=result,
                           idempotency_key=key, currency=currency)


@dataclass
class _ChargedUnits:
    """Units of one product added to a billed visit's cart by a review decision and charged off-session by
    :func:`_correction_charge`: ``attempt`` (the succeeded charge), ``units`` it charged, ``left`` not refunded yet."""

    attempt: PaymentAttempt
    units: int
    left: int

    def refund_minor(self, k: int) -> int:
        """Minor units refunded with ``k`` more of these units: the charge's amount (tax included) shared
        pro rata, rounded so that refunding every unit refunds exactly what was charged."""
        done = self.units - self.left
        return (self.attempt.amount_minor * (done + k)) // self.units - (self.attempt.amount_minor * done) // self.units


def _corrections_after_billing(*, visit: Visit, product: Product) -> tuple[int, list[_ChargedUnits]]:
    """What review decisions on billed ``visit`` added of ``product`` that a put-back may take back first:
    ``(unpaid, charged)``. ``unpaid``: units added whose correction charge was declined or not answered (nothing
    was collected for them); ``charged``: per succeeded correction charge, its units still unrefunded, oldest
    first. Read from the cart events' ``correction`` evidence (:func:`review_resolve`)."""
    unpaid, charged = 0, {}  # charge attempt id → [units charged, units left]
    events = visit.cart_events.filter(product=product, source=CartEvent.Source.REVIEW).order_by("id")
    for qty, evidence in events.values_list("quantity", "evidence"):
        corr = (evidence or {}).get("correction") or {}
        if corr.get("kind") == "charge" and qty > 0:
            if corr.get("status") == PaymentAttempt.Status.SUCCEEDED and isinstance(corr.get("attempt"), int):
                charged[corr["attempt"]] = [qty, qty]
            else:
                unpaid += qty
        elif corr.get("kind") == "refund":
            unpaid -= int(corr.get("from_unpaid") or 0)
            for part in corr.get("from_charges") or []:
                if part.get("attempt") in charged:
                    charged[part["attempt"]][1] -= int(part.get("units") or 0)
    attempts = PaymentAttempt.objects.in_bulk(list(charged))
    out = [_ChargedUnits(attempts[pk], units, left) for pk, (units, left) in charged.items()
           if pk in attempts and left > 0]
    return max(unpaid, 0), out


def _billed_put_back(*, visit: Visit, product: Product, units: int, reason: str, key: str) -> tuple[dict, list]:
    """Take ``units`` (> 0) of ``product`` back from billed ``visit``'s money: first units a review added whose
    charge was never collected (no money moves), then units charged by review corrections (newest first: refunded
    from that charge, pro rata with its tax), then units of the receipt line (``billing.receipt_refund_line``).
    Everything is checked before the first refund, so a put-back that exceeds what was billed and charged raises
    :class:`ReviewError` with nothing refunded. Returns ``(correction evidence, [refund PaymentAttempt, …])``; the
    evidence is ``{"kind": "refund", "attempt", "attempts", "from_unpaid", "from_charges": [{"attempt", "units"}],
    "from_receipt"}``."""
    unpaid, charged = _corrections_after_billing(visit=visit, product=product)
    from_unpaid = min(units, unpaid)
    rest = units - from_unpaid
    plan = []
    for c in reversed(charged):
        if rest == 0:
            break
        k = min(rest, c.left)
        plan.append((c, k))
        rest -= k
    line = ReceiptLine.objects.filter(receipt__visit=visit, product=product).first()
    if rest:
        left = (line.quantity - line_refunded_units(line)) if line is not None else 0
        if line is None and not plan and not from_unpaid:
            raise ReviewError(f"visit {visit.pk} was billed without {product.barcode}: nothing to refund")
        if rest > left:
            raise ReviewError(f"visit {visit.pk} was billed and charged {units - rest + left} unrefunded unit(s) "
                              f"of {product.barcode}: cannot refund {units}")
    attempts: list[PaymentAttempt] = []
    parts = []
    for c, k in plan:
        amount = c.refund_minor(k)
        if amount > 0:
            payment = _refund_source(visit=visit, preferred=c.attempt, amount=amount)
            if payment is None:
                raise ReviewError(f"no payment of visit {visit.pk} has {amount} left to refund")
            provider = get_provider(payment.provider)
            refund_key = f"{key}:charge{c.attempt.pk}"
            try:
                result = provider.refund(intent_ref=payment.intent_ref, amount_minor=amount, idempotency_key=refund_key,
                                         metadata={"visit": str(visit.pk), "charge": str(c.attempt.pk),
                                                   "reason": reason[:200]})
            except ProviderUnavailable as exc:
                raise ReviewError(f"the refund was not answered ({exc.reason}); try again") from None
            attempt = _attempt_record(visit=visit, kind=PaymentAttempt.Kind.REFUND, provider=provider, result=result,
                                      idempotency_key=refund_key, currency=visit.store.currency.lower(),
                                      quantity=k, reason=reason[:300])
            if not result.succeeded:
                raise ReviewError(f"the refund was refused: {result.error}")
            attempts.append(attempt)
        parts.append({"attempt": c.attempt.pk, "units": k})
    if rest:
        try:
            attempts.append(receipt_refund_line(receipt_line=line, quantity=rest, reason=reason))
        except (BillingError, ValueError) as exc:
            raise ReviewError(f"the refund was refused: {exc}") from exc
    return ({"kind": "refund", "attempt": attempts[0].pk if attempts else None, "attempts": [a.pk for a in attempts],
             "from_unpaid": from_unpaid, "from_charges": parts, "from_receipt": rest}, attempts)


def _refund_source(*, visit: Visit, preferred: PaymentAttempt, amount: int) -> PaymentAttempt | None:
    """The payment a refund of ``amount`` minor units goes against: ``preferred`` (the charge being taken back)
    when it has that much unrefunded, else any capture or charge of ``visit`` that has (a dispute may have drawn
    on the charge meanwhile); None when no single payment covers it."""
    refunded = PaymentAttempt.objects.filter(visit=visit, kind=PaymentAttempt.Kind.REFUND,
                                             status=PaymentAttempt.Status.SUCCEEDED,
                                             intent_ref=preferred.intent_ref).aggregate(s=Sum("amount_minor"))["s"] or 0
    if preferred.amount_minor - refunded >= amount:
        return preferred
    return _refundable_payment(visit=visit, amount_minor=amount)


def billed_correction(*, visit: Visit, product: Product, quantity: int, evidence: dict, key: str,
                       reason: str) -> tuple[list[PaymentAttempt], str | None]:
    """The money of a review line on ``visit`` when it is billed already (nothing otherwise): a take is charged
    (:func:`_correction_charge`, idempotency key ``charge:<key>``), a put-back taken back
    (:func:`_billed_put_back`, keys ``refund:<key>…``). Writes ``evidence["correction"]``; returns the payment
    attempts made and, for a declined or unanswered charge, the error to report (the decision stands). Raises
    :class:`ReviewError` when a put-back cannot be refunded (nothing refunded)."""
    if visit.state != Visit.State.BILLED:
        return [], None
    if quantity < 0:
        evidence["correction"], attempts = _billed_put_back(visit=visit, product=product, units=-quantity,
                                                            reason=reason, key=f"refund:{key}")
        return attempts, None
    try:
        charge = _correction_charge(visit=visit, product=product, quantity=quantity, key=f"charge:{key}")
    except PaymentFailed as exc:
        evidence["correction"] = {"kind": "charge", "attempt": None, "status": "unanswered"}
        return [], f"the correction charge was not made: {exc}"
    evidence["correction"] = {"kind": "charge", "attempt": charge.pk, "status": charge.status}
    if charge.status != PaymentAttempt.Status.SUCCEEDED:
        return [charge], f"the correction charge failed: {charge.error}"
    return [charge], None
