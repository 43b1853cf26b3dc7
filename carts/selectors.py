"""Cart reads for the shopper's pages and the live-cart consumers: who may see which visit and receipt, a receipt
told line by line with its evidence, a visit's payments (writes: ``carts.services``). The manager's pages read
through ``carts.selectors_dashboard`` (the dashboard), ``carts.selectors_visit`` (a visit's page) and
``carts.selectors_disputes``; they share :data:`OPEN_STATES` and the receipt views here.

Every function that takes a ``user`` applies the access rule of the house: a shopper sees only their own visits and
receipts, a manager (``is_staff``) sees all; a row the user may not see is returned as ``None`` (views answer 404,
consumers close the socket), never as an error that tells the two cases apart.

Money is integer minor units of the store's currency (``usd`` 398 = $3.98) everywhere; the ``*_display`` strings
are for templates only, made by :func:`money_display`. Times are aware ``datetime`` (UTC).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone

from store.billing.models import PaymentAttempt, Receipt
from store.billing.money import money_display
from store.billing.senses import senses_words
from store.gates.models import Visit
from store.layout.timezones import store_zone

from .models import CartEvent

#: Visit states in which the shopper's cart is live (the shopper app shows the cart page, not the waiting page).
OPEN_STATES: tuple[str, ...] = (
    Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED, Visit.State.UNDER_REVIEW,
)


def snapshot_display(snapshot: dict) -> dict:
    """A cart snapshot (``carts.services.ledger.cart_snapshot`` contract) plus display strings, for the server-rendered
    page: each line gains ``unit_price_display``, ``line_total_display`` and ``senses_display``
    (``store.billing.senses.senses_words``), the snapshot ``total_display``."""
    cur = snapshot["currency"]
    return {
        **snapshot,
        "lines": [
            {**line, "unit_price_display": money_display(line["unit_price_minor"], cur),
             "line_total_display": money_display(line["line_total_minor"], cur),
             "senses_display": senses_words(line.get("senses"))}
            for line in snapshot["lines"]
        ],
        "total_display": money_display(snapshot["total_minor"], cur),
        "tax_display": money_display(snapshot.get("tax_minor", 0), cur),
    }


# ---------------------------------------------------------------------------------------------------------- access
def _is_manager(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def _is_shopper(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def visit_for_viewer(*, user: AbstractBaseUser | AnonymousUser | None, visit_id: int) -> Visit | None:
    """The visit ``visit_id`` (with its store) if ``user`` is its shopper or a manager; else None (also when it does
    not exist, or the user is anonymous or inactive)."""
    if not _is_shopper(user):
        return None
    qs = Visit.objects.select_related("store", "shopper").filter(pk=visit_id)
    if not _is_manager(user):
        qs = qs.filter(shopper_id=user.pk)
    return qs.first()


def visit_current_for(*, user: AbstractBaseUser | AnonymousUser | None) -> Visit | None:
    """The shopper's own visit whose cart is live (state in :data:`OPEN_STATES`), the latest entered; else None."""
    if not _is_shopper(user):
        return None
    return (Visit.objects.select_related("store")
            .filter(shopper_id=user.pk, state__in=OPEN_STATES).order_by("-entered_at", "-id").first())


#: How long after a visit ends the shopper's cart page still shows how it ended (the receipt's link).
LAST_VISIT_SHOWN_H = 24


def visit_last_ended_for(*, user: AbstractBaseUser | AnonymousUser | None,
                         now: datetime | None = None) -> Visit | None:
    """The shopper's own latest visit that ended (billed, closed, payment failed) within :data:`LAST_VISIT_SHOWN_H`
    hours, or None: the waiting page says how it ended and links its receipt."""
    if not _is_shopper(user):
        return None
    since = (now or timezone.now()) - timedelta(hours=LAST_VISIT_SHOWN_H)
    return (Visit.objects.select_related("store", "shopper")
            .filter(shopper_id=user.pk, state__in=(Visit.State.BILLED, Visit.State.CLOSED,
                                                   Visit.State.PAYMENT_FAILED),
                    entered_at__gte=since).order_by("-entered_at", "-id").first())


def receipt_for_viewer(*, user: AbstractBaseUser | AnonymousUser | None, receipt_id: int) -> Receipt | None:
    """The receipt ``receipt_id`` if ``user`` is the shopper of its visit or a manager; else None."""
    if not _is_shopper(user):
        return None
    qs = Receipt.objects.select_related("visit", "visit__store", "visit__shopper").filter(pk=receipt_id)
    if not _is_manager(user):
        qs = qs.filter(visit__shopper_id=user.pk)
    return qs.first()


# ---------------------------------------------------------------------------------------------------------- payments
@dataclass(frozen=True)
class PaymentState:
    """Where a visit's payment stands, from its PaymentAttempt ledger.

    ``code`` is one of ``paid``, ``partly_refunded``, ``refunded``, ``no_charge`` (nothing to pay), ``failed``,
    ``action_required`` (the card needs the shopper's authentication) or ``pending`` (nothing captured yet);
    ``captured_minor`` is captured plus charged, ``refunded_minor`` refunded, both succeeded attempts only.
    """

    code: str
    label: str
    captured_minor: int
    refunded_minor: int
    captured_display: str
    refunded_display: str


_PAYMENT_LABELS = {
    "paid": "Paid", "partly_refunded": "Paid, partly refunded", "refunded": "Refunded", "no_charge": "No charge",
    "failed": "Payment failed", "action_required": "Card needs your confirmation", "pending": "Payment pending",
}


def payment_state(*, attempts: list[PaymentAttempt], total_minor: int, currency: str) -> PaymentState:
    """Summarise ``attempts`` (one visit's PaymentAttempt rows, any order) against a receipt total (minor units)."""
    ok = PaymentAttempt.Status.SUCCEEDED
    taken = (PaymentAttempt.Kind.CAPTURE, PaymentAttempt.Kind.CHARGE)
    captured = sum(a.amount_minor for a in attempts if a.kind in taken and a.status == ok)
    refunded = sum(a.amount_minor for a in attempts if a.kind == PaymentAttempt.Kind.REFUND and a.status == ok)
    latest_take = max((a for a in attempts if a.kind in taken), key=lambda a: (a.created_at, a.pk), default=None)
    if captured > 0 and refunded >= captured:
        code = "refunded"
    elif captured > 0 and refunded > 0:
        code = "partly_refunded"
    elif captured >= total_minor and captured > 0:
        code = "paid"
    elif total_minor == 0:
        code = "no_charge"
    elif latest_take is not None and latest_take.status == PaymentAttempt.Status.REQUIRES_ACTION:
        code = "action_required"
    elif latest_take is not None and latest_take.status == PaymentAttempt.Status.FAILED:
        code = "failed"
    else:
        code = "pending"
    return PaymentState(code=code, label=_PAYMENT_LABELS[code], captured_minor=captured, refunded_minor=refunded,
                        captured_display=money_display(captured, currency),
                        refunded_display=money_display(refunded, currency))


# ---------------------------------------------------------------------------------------------------------- receipts
@dataclass(frozen=True)
class ReceiptSummary:
    """One row of the shopper's receipt list. ``issued_at`` tz-aware (UTC); ``tz_name``: the store's time zone, in
    which the list shows it (as the receipt does)."""

    id: int
    visit_id: int
    store_name: str
    issued_at: datetime
    items: int
    total_minor: int
    total_display: str
    payment: PaymentState
    tz_name: str = "UTC"


def receipts_for(*, user: AbstractBaseUser | AnonymousUser | None) -> list[ReceiptSummary]:
    """The user's own receipts (managers too see only their own here), newest first."""
    if not _is_shopper(user):
        return []
    receipts = (Receipt.objects.filter(visit__shopper_id=user.pk).select_related("visit__store")
                .prefetch_related("lines", "visit__payment_attempts").order_by("-issued_at", "-id"))
    return [
        ReceiptSummary(
            id=r.pk, visit_id=r.visit_id, store_name=r.visit.store.name, issued_at=r.issued_at,
            items=sum(line.quantity for line in r.lines.all()), total_minor=r.total_minor,
            total_display=money_display(r.total_minor, r.currency),
            payment=payment_state(attempts=list(r.visit.payment_attempts.all()), total_minor=r.total_minor,
                                  currency=r.currency),
            tz_name=store_zone(r.visit.store).key,
        )
        for r in receipts
    ]


@dataclass(frozen=True)
class EventEvidence:
    """One cart event behind a receipt line: why the product is (or is not) on the bill.

    ``at`` is when the shelf weight changed (the shelf event's start) or, for an event without a shelf event, when
    it was written; ``quantity`` signed units (+ taken, − put back); ``confidence`` 0..1; ``bin_code`` the main bin
    (``"<gondola>-<shelf>-<plate>"``) or ``""``; ``delta_g`` the weight change, grams, or None.
    """

    id: int
    at: datetime
    source: str
    quantity: int
    confidence: float
    bin_code: str
    bin_codes: list
    delta_g: float | None
    shelf_event_id: int | None
    evidence: dict

    @property
    def evidence_json(self) -> str:
        """``evidence`` as indented JSON, for display."""
        return json.dumps(self.evidence, indent=1, sort_keys=True, default=str)


@dataclass(frozen=True)
class ReceiptLineView:
    """A receipt line and the cart events that explain it. ``explained`` is True when the events' signed quantities
    add up to the line's quantity. ``refunded_quantity`` counts units refunded on this line (succeeded refunds)."""

    id: int
    barcode: str
    name: str
    quantity: int
    unit_price_display: str
    line_total_minor: int
    line_total_display: str
    events: list[EventEvidence]
    events_quantity: int
    explained: bool
    refunded_quantity: int
    #: the senses that supported the line, as billed (``store.billing.senses``: weight, hand, image, tag, staff); None:
    #: unknown (issued before senses were recorded). ``senses_display``: the same in short words for the page
    senses: tuple[str, ...] | None = None
    senses_display: str = "unknown"


@dataclass(frozen=True)
class ReceiptView:
    """Everything on the receipt page. ``other_events``: cart events of products that are not on the receipt
    (picked up and put back), so that the whole ledger of the visit is shown."""

    id: int
    visit_id: int
    store_name: str
    currency: str
    issued_at: datetime
    total_minor: int
    total_display: str
    lines: list[ReceiptLineView]
    other_events: list[tuple[str, EventEvidence]]
    payment: PaymentState
    attempts: list[PaymentAttempt] = field(default_factory=list)
    store_address: str = ""
    tz_name: str = "UTC"
    card_words: str = "your card"
    subtotal_display: str = ""
    #: tax lines: (label, rate as text "8.875 %", taxable display, tax display); empty where nothing is taxed
    taxes: list[tuple[str, str, str, str]] = field(default_factory=list)


def event_evidence(event: CartEvent) -> EventEvidence:
    """One cart event as its evidence row (:class:`EventEvidence`): the shelf event's time, bin and Δ grams where it
    has one; load ``event`` with ``shelf_event__bin`` (else a query per event)."""
    shelf = event.shelf_event
    return EventEvidence(
        id=event.pk, at=shelf.t_start if shelf else event.created_at, source=event.source,
        quantity=event.quantity, confidence=event.confidence, bin_code=shelf.bin.code if shelf else "",
        bin_codes=list(shelf.bin_codes) if shelf else [], delta_g=shelf.delta_g if shelf else None,
        shelf_event_id=shelf.pk if shelf else None, evidence=event.evidence or {},
    )


def visit_cart_events(visit_id: int) -> list[CartEvent]:
    """The cart events of visit ``visit_id`` in the order they were written, with product and shelf event loaded."""
    return list(CartEvent.objects.filter(visit_id=visit_id).select_related("product", "shelf_event__bin")
                .order_by("created_at", "id"))


def receipt_detail(*, receipt: Receipt) -> ReceiptView:
    """The receipt page: lines with the cart events behind each (matched by product), payment state and ledger.

    The caller has already checked access (:func:`receipt_for_viewer`).
    """
    events_by_product: dict[int, list[CartEvent]] = defaultdict(list)
    for event in visit_cart_events(receipt.visit_id):
        events_by_product[event.product_id].append(event)
    attempts = list(PaymentAttempt.objects.filter(visit_id=receipt.visit_id).order_by("created_at", "id"))
    refunded_units: dict[int, int] = defaultdict(int)
    for a in attempts:
        line_id = getattr(a, "receipt_line_id", None)
        if a.kind == PaymentAttempt.Kind.REFUND and a.status == PaymentAttempt.Status.SUCCEEDED and line_id:
            refunded_units[line_id] += getattr(a, "quantity", None) or 0
    cur = receipt.currency
    lines = []
    on_receipt: set[int] = set()
    for line in receipt.lines.all().order_by("id"):
        on_receipt.add(line.product_id)
        events = [event_evidence(e) for e in events_by_product.get(line.product_id, [])]
        qty = sum(e.quantity for e in events)
        lines.append(ReceiptLineView(
            id=line.pk, barcode=line.barcode, name=line.name, quantity=line.quantity,
            unit_price_display=money_display(line.unit_price_minor, cur), line_total_minor=line.line_total_minor,
            line_total_display=money_display(line.line_total_minor, cur), events=events, events_quantity=qty,
            explained=qty == line.quantity, refunded_quantity=refunded_units.get(line.pk, 0),
            senses=tuple(line.senses) if line.senses is not None else None,
            senses_display=senses_words(line.senses),
        ))
    other = [
        (f"{e.product.name} ({e.product.barcode})", event_evidence(e))
        for pid, evs in events_by_product.items() if pid not in on_receipt for e in evs
    ]
    return ReceiptView(
        id=receipt.pk, visit_id=receipt.visit_id, store_name=receipt.visit.store.name, currency=cur,
        issued_at=receipt.issued_at, total_minor=receipt.total_minor,
        total_display=money_display(receipt.total_minor, cur), lines=lines, other_events=other,
        payment=payment_state(attempts=attempts, total_minor=receipt.total_minor, currency=cur), attempts=attempts,
        store_address=receipt.visit.store.address, tz_name=store_zone(receipt.visit.store).key,
        card_words=(f"{(receipt.card_brand or 'card').title()} ending {receipt.card_last4}" if receipt.card_last4
                    else "the card on file"),
        subtotal_display=money_display(receipt.total_minor - receipt.tax_minor, cur),
        taxes=[(t.label, f"{t.rate_percent.normalize():f} %", money_display(t.taxable_minor, cur),
                money_display(t.tax_minor, cur)) for t in receipt.taxes.all()],
    )
