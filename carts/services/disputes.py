"""Disputes: a shopper disputes a receipt line ("I didn't take this", "wrong quantity") within the dispute window, and
a manager decides; an accepted dispute refunds the disputed units through billing, and the shopper is told by
e-mail either way.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from store.billing.models import ReceiptLine
from store.billing.services import PaymentFailed, RefundRejected, receipt_refund_line

from ..emails import dispute_decision_email_schedule
from ..models import Dispute
from .corrections import line_refunded_units

log = logging.getLogger(__name__)


class DisputeError(ValueError):
    """A dispute that cannot be opened or decided. ``code``: ``not_yours``, ``window_closed``, ``nothing_left``
    (every unit of the line is refunded already), ``bad_quantity``, ``bad_kind``, ``already_open``, ``not_open``
    (already decided, or being decided), ``refund_failed`` (the dispute stays open; see the message)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


def dispute_window_h() -> float:
    """How long after a receipt is issued its lines may be disputed, hours: ``settings.WALKOUT["DISPUTE_WINDOW_H"]``
    (default 72)."""
    return float(settings.WALKOUT.get("DISPUTE_WINDOW_H", 72))


def dispute_open(*, receipt_line: ReceiptLine, user, kind: str, quantity_taken: int | None = None, note: str = "",
                 now: datetime | None = None) -> Dispute:
    """The shopper ``user`` disputes ``receipt_line``: opens a :class:`~carts.models.Dispute` (a review task for the
    store; decided by :func:`dispute_decide`).

    ``kind``: ``not_taken`` ("I didn't take this": every unit not yet refunded is disputed) or ``wrong_quantity``
    (``quantity_taken``: how many units the shopper really took, 0 … line quantity − 1; the difference, less units
    already refunded, is disputed). ``note``: the shopper's words (≤ 500 characters). Allowed to the visit's shopper
    (or the party lead's, for a guest visit) within :func:`dispute_window_h` hours of the receipt's ``issued_at``,
    one open dispute per line. Raises :class:`DisputeError` (nothing written).
    """
    now = now or timezone.now()
    line = ReceiptLine.objects.select_related("receipt__visit__party_lead").get(pk=receipt_line.pk)
    visit = line.receipt.visit
    payers = {visit.shopper_id, visit.party_lead.shopper_id if visit.party_lead_id else visit.shopper_id}
    if user is None or not user.is_authenticated or user.pk not in payers:
        raise DisputeError("only the shopper billed for this receipt may dispute it", code="not_yours")
    window_h = dispute_window_h()
    if now > line.receipt.issued_at + timedelta(hours=window_h):
        raise DisputeError(f"receipts can be disputed for {window_h:g} hours after they are issued",
                           code="window_closed")
    left = line.quantity - line_refunded_units(line)
    if left <= 0:
        raise DisputeError("every unit of this line is refunded already", code="nothing_left")
    rejected = Dispute.objects.filter(receipt_line=line, status=Dispute.Status.REJECTED).first()
    if rejected is not None:
        raise DisputeError("this line was disputed and the store decided it stands"
                           + (f" (“{rejected.decision_note}”)" if rejected.decision_note else "")
                           + "; reply to the receipt e-mail if you still disagree", code="decided")
    if kind == Dispute.Kind.NOT_TAKEN:
        quantity = left
    elif kind == Dispute.Kind.WRONG_QUANTITY and line.quantity < 2:
        raise DisputeError("this line has a single unit: choose “I didn't take this”", code="bad_quantity")
    elif kind == Dispute.Kind.WRONG_QUANTITY:
        if not isinstance(quantity_taken, int) or isinstance(quantity_taken, bool) or not (
                0 <= quantity_taken < line.quantity):
            raise DisputeError(f"say how many you took: a whole number from 0 to {line.quantity - 1}",
                               code="bad_quantity")
        quantity = min(left, line.quantity - quantity_taken)
    else:
        raise DisputeError(f"unknown kind of dispute {kind!r}", code="bad_kind")
    try:
        with transaction.atomic():
            if Dispute.objects.filter(receipt_line=line, status=Dispute.Status.OPEN).exists():
                raise DisputeError("this line is disputed already; we are looking at it", code="already_open")
            dispute = Dispute.objects.create(receipt_line=line, opened_by=user, kind=kind, quantity=quantity,
                                             note=(note or "").strip()[:500])
    except IntegrityError:  # a concurrent dispute of the same line won the race (dispute_one_open_per_line)
        raise DisputeError("this line is disputed already; we are looking at it", code="already_open") from None
    log.info("dispute %s opened by user %s: receipt line %s, %s, %d unit(s)", dispute.pk, user.pk, line.pk, kind,
             quantity)
    return dispute


def dispute_decide(*, dispute: Dispute, accept: bool, by: str, note: str = "") -> Dispute:
    """A manager decides an open dispute. Accepted: ``dispute.quantity`` units of the line are refunded to the card
    (``billing.receipt_refund_line``, reason ``dispute <id>: …``) and the refund is linked; rejected: nothing is
    refunded. ``by``: who decided (a username); ``note``: why (≤ 500 characters), shown to the shopper.

    The dispute is claimed first by one conditional UPDATE, so two managers deciding at once refund once. Raises
    :class:`DisputeError`: ``not_open`` (decided or being decided), ``refund_failed`` (the provider or the billing
    rules refused the refund: the dispute is open again, any failed payment attempt stays in the ledger).
    """
    now = timezone.now()
    claimed = Dispute.objects.filter(pk=dispute.pk, status=Dispute.Status.OPEN, decided_at__isnull=True).update(
        decided_at=now, decided_by=by[:150], decision_note=(note or "").strip()[:500])
    if claimed != 1:
        raise DisputeError(f"dispute {dispute.pk} is not open (decided already, or being decided)", code="not_open")
    fresh = Dispute.objects.select_related("receipt_line").get(pk=dispute.pk)
    if not accept:
        Dispute.objects.filter(pk=fresh.pk).update(status=Dispute.Status.REJECTED)
        fresh.refresh_from_db()
        log.info("dispute %s rejected by %s", fresh.pk, by)
        dispute_decision_email_schedule(dispute=fresh)
        return fresh
    try:
        refund = receipt_refund_line(receipt_line=fresh.receipt_line, quantity=fresh.quantity,
                                     reason=f"dispute {fresh.pk}: {fresh.get_kind_display()}")
    except (RefundRejected, PaymentFailed, ValueError) as exc:
        Dispute.objects.filter(pk=fresh.pk).update(decided_at=None, decided_by="", decision_note="")
        log.warning("dispute %s: refund refused: %s", fresh.pk, exc)
        raise DisputeError(f"the refund did not go through: {exc}", code="refund_failed") from exc
    Dispute.objects.filter(pk=fresh.pk).update(status=Dispute.Status.ACCEPTED, refund=refund)
    fresh.refresh_from_db()
    dispute_decision_email_schedule(dispute=fresh)
    log.info("dispute %s accepted by %s: %d unit(s) refunded (attempt %s)", fresh.pk, by, fresh.quantity, refund.pk)
    return fresh
