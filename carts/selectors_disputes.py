"""Dispute reads for the shopper's receipt page and the managers' dispute queue (writes:
``carts.services.disputes.dispute_open`` / ``dispute_decide``). Access is checked by the callers (``carts.views``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from store.billing.models import Receipt

from .models import Dispute
from store.billing.money import money_display
from .services.disputes import dispute_window_h


def disputes_by_line(*, receipt: Receipt) -> dict[int, Dispute]:
    """``{receipt line id: its latest dispute}`` for the lines of ``receipt``."""
    out: dict[int, Dispute] = {}
    for d in Dispute.objects.filter(receipt_line__receipt=receipt).order_by("created_at", "id"):
        out[d.receipt_line_id] = d
    return out


def dispute_deadline(*, receipt: Receipt) -> datetime:
    """Until when (UTC) the lines of ``receipt`` may be disputed."""
    return receipt.issued_at + timedelta(hours=dispute_window_h())


def dispute_open_allowed(*, receipt: Receipt, now: datetime | None = None) -> bool:
    """The dispute window of ``receipt`` is still open."""
    return (now or timezone.now()) <= dispute_deadline(receipt=receipt)


@dataclass(frozen=True)
class DisputeRow:
    """One dispute in the managers' queue; money in minor units, ``*_display`` for templates."""

    dispute: Dispute
    receipt_id: int
    visit_id: int
    shopper: str
    line_name: str
    line_quantity: int
    refund_minor: int
    refund_display: str


def dispute_queue(*, limit: int = 200) -> list[DisputeRow]:
    """Disputes for the managers: open ones first (oldest first), then the latest decided."""
    rows = []
    qs = Dispute.objects.select_related("receipt_line__receipt__visit", "opened_by")
    open_ = list(qs.filter(status=Dispute.Status.OPEN).order_by("created_at", "id")[:limit])
    decided = list(qs.exclude(status=Dispute.Status.OPEN).order_by("-decided_at", "-id")[:limit])
    for d in open_ + decided:
        line = d.receipt_line
        amount = d.quantity * line.unit_price_minor
        rows.append(DisputeRow(dispute=d, receipt_id=line.receipt_id, visit_id=line.receipt.visit_id,
                               shopper=d.opened_by.get_username(), line_name=line.name, line_quantity=line.quantity,
                               refund_minor=amount, refund_display=money_display(amount, line.receipt.currency)))
    return rows
