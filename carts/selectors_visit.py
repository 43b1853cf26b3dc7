"""The manager's page of one visit (``/manage/visits/<id>/``): its transitions, cart events, reviews and payments
told in words, with the raw records kept for the engineers' details. Managers only: the caller checks
``is_staff``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sensors.models import ShelfEvent
from store.billing.models import PaymentAttempt, Receipt
from store.billing.money import money_display
from store.billing.services import price_to_minor
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.timezones import store_zone

from .models import CartEvent, ReviewItem
from .review_console import review_console, units_text
from .selectors import EventEvidence, ReceiptView, event_evidence, receipt_detail, visit_cart_events
from .selectors_dashboard import cart_totals


@dataclass(frozen=True)
class VisitDetail:
    """The manager's page of one visit: its transitions, cart events with evidence, the cart now, the review items
    naming it, its payment attempts and receipt (None before billing). ``tz_name``: the store's time zone (the page
    shows local times); ``event_rows``/``review_rows``/``payment_rows``: the same events, reviews and attempts told
    in words (:class:`VisitEventRow`, :class:`VisitReviewRow`, :class:`VisitPaymentRow`), the raw records kept for
    the engineers' details."""

    visit: Visit
    transitions: list
    events: list[tuple[str, EventEvidence]]
    cart_items: int
    cart_total_display: str
    reviews: list[ReviewItem]
    attempts: list[PaymentAttempt]
    receipt: ReceiptView | None
    tz_name: str = "UTC"
    event_rows: list = field(default_factory=list)
    review_rows: list = field(default_factory=list)
    payment_rows: list = field(default_factory=list)
    state_words: str = ""


#: A visit's state as the visit page says it.
VISIT_STATE_WORDS = {
    "admitted": "admitted at the gate, not yet seen by a camera",
    "shopping": "in the store",
    "exited": "left the store; the bill is being finalised",
    "under_review": "left the store; waiting for a review decision before billing",
    "billed": "billed",
    "closed": "closed without a charge",
    "refused": "refused at the gate",
    "payment_failed": "left the store; the payment failed",
}


@dataclass(frozen=True)
class VisitEventRow:
    """One cart event as the visit page says it: ``product`` name, ``quantity`` signed units, ``what`` ("took one
    Cola", "put back two Water"), ``how`` (who or what decided it, in words), ``sure`` the confidence as text
    ("99 %"), ``bin_code`` the plate ("" without a shelf event) and ``grams`` what its scale saw ("356 g left it"),
    ``amount_display`` the money it
    moves (+ charged, − taken off), ``ev`` the :class:`EventEvidence` (for the engineers' details)."""

    product: str
    quantity: int
    what: str
    how: str
    sure: str
    bin_code: str
    grams: str
    amount_display: str
    ev: EventEvidence


@dataclass(frozen=True)
class VisitReviewRow:
    """A review item naming the visit: ``item``, ``summary`` (the console's first sentence), ``outcome`` in words
    ("open: decide it", "decided by boss at 10:02: …")."""

    item: ReviewItem
    summary: str
    outcome: str


@dataclass(frozen=True)
class VisitPaymentRow:
    """A payment attempt in words: ``at``, ``what`` ("Hold of $50.00 placed on the card"), ``outcome`` ("done",
    "failed: card declined", "waiting for the shopper's bank"), ``attempt`` the row (for the engineers' details)."""

    at: datetime
    what: str
    outcome: str
    attempt: PaymentAttempt


_PAYMENT_WORDS = {
    "authorise": "Hold of {amount} placed on the card",
    "capture": "Charged {amount} (from the hold)",
    "cancel": "Hold of {amount} released",
    "charge": "Charged {amount} after the visit",
    "refund": "Refunded {amount}",
}


def _event_row(name: str, ev: EventEvidence, product: Product, currency: str) -> VisitEventRow:
    q = ev.quantity
    what = f"{'took' if q > 0 else 'put back'} {units_text(q, product.name)}"
    evidence = ev.evidence or {}
    if evidence.get("undo_of"):
        how = f"undo by {evidence.get('by') or 'a manager'} of an earlier decision"
    elif ev.source == CartEvent.Source.REVIEW:
        how = f"decided in review by {evidence.get('by') or 'a manager'}"
    elif ev.source == CartEvent.Source.MANAGER:
        how = f"corrected by {evidence.get('by') or 'a manager'}"
    elif evidence.get("sense") == "tag":
        how = "the product's tag was read at the exit"
    else:
        how = "seen by the shelf's scale and the cameras"
    grams = ""
    if ev.bin_code and ev.delta_g is not None:
        grams = f"{abs(ev.delta_g):,.0f} g {'left it' if ev.delta_g < 0 else 'put on it'}"
    amount = price_to_minor(product.price, currency) * q
    amount_display = ("+" if amount >= 0 else "−") + money_display(abs(amount), currency)
    return VisitEventRow(product=name, quantity=q, what=what, how=how, sure=f"{ev.confidence * 100:.0f} %",
                         bin_code=ev.bin_code if grams else "", grams=grams, amount_display=amount_display, ev=ev)


def _review_row(item: ReviewItem, tz) -> VisitReviewRow:
    try:
        summary = review_console(item, drawings=False).sentences[0]
    except (ShelfEvent.DoesNotExist, IndexError, ValueError, TypeError):
        summary = f"A weight change on plate {item.shelf_event.bin.code}."
    if item.status == ReviewItem.Status.OPEN:
        outcome = "open: waiting for a decision"
    else:
        when = item.resolved_at.astimezone(tz).strftime("%H:%M") if item.resolved_at else ""
        who = f" by {item.resolved_by}" if item.resolved_by else ""
        verb = {"dismissed": "dismissed", "waiting": "waiting for the pick it depends on"}.get(item.status, "decided")
        outcome = f"{verb}{who}{f' at {when}' if when else ''}"
        res = item.resolution if isinstance(item.resolution, dict) else {}
        if item.status == ReviewItem.Status.DISMISSED:
            outcome += ": nobody was charged"
        elif res.get("visit") and res.get("barcode") and res.get("quantity"):
            product = Product.objects.filter(store_id=item.shelf_event.store_id, barcode=res["barcode"]).first()
            q = int(res["quantity"])
            outcome += (f": visit {res['visit']} {'took' if q > 0 else 'put back'} "
                        f"{units_text(q, product.name if product else res['barcode'])}")
    return VisitReviewRow(item=item, summary=summary, outcome=outcome)


def _payment_row(a: PaymentAttempt) -> VisitPaymentRow:
    amount = money_display(a.amount_minor, a.currency)
    what = _PAYMENT_WORDS.get(a.kind, a.kind + " {amount}").format(amount=amount)
    if a.status == PaymentAttempt.Status.SUCCEEDED:
        outcome = "done"
    elif a.status == PaymentAttempt.Status.REQUIRES_ACTION:
        outcome = "waiting for the shopper's bank to confirm"
    else:
        outcome = f"failed{': ' + a.error if a.error else ''}"
    return VisitPaymentRow(at=a.created_at, what=what, outcome=outcome, attempt=a)


def visit_detail(*, visit_id: int) -> VisitDetail | None:
    """Everything recorded about visit ``visit_id`` (managers only: the caller checks ``is_staff``), or None."""
    visit = Visit.objects.select_related("store", "shopper").filter(pk=visit_id).first()
    if visit is None:
        return None
    items, total = cart_totals([visit])[visit.pk]
    reviews = [r for r in ReviewItem.objects.filter(shelf_event__store_id=visit.store_id)
               .select_related("shelf_event__bin").order_by("created_at", "id")
               if any(isinstance(c, dict) and c.get("visit") == visit.pk for c in r.candidates or [])]
    receipt = Receipt.objects.select_related("visit__store").filter(visit_id=visit.pk).first()
    tz = store_zone(visit.store)
    cart_events = visit_cart_events(visit.pk)
    events = [(f"{e.product.name} ({e.product.barcode})", event_evidence(e)) for e in cart_events]
    attempts = list(PaymentAttempt.objects.filter(visit_id=visit.pk).order_by("created_at", "id"))
    return VisitDetail(
        visit=visit, transitions=list(visit.transitions.order_by("at", "id")), events=events,
        cart_items=items, cart_total_display=money_display(total, visit.store.currency), reviews=reviews,
        attempts=attempts, receipt=receipt_detail(receipt=receipt) if receipt else None, tz_name=tz.key,
        event_rows=[_event_row(name, ev, e.product, visit.store.currency)
                    for (name, ev), e in zip(events, cart_events)],
        review_rows=[_review_row(r, tz) for r in reviews], payment_rows=[_payment_row(a) for a in attempts],
        state_words=VISIT_STATE_WORDS.get(visit.state, visit.state),
    )
