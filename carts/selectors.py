"""Cart reads for the shopper's pages, the live-cart consumers and the manager's dashboard (writes: ``services``).

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
from django.db.models import Count, Q, Sum
from django.utils import timezone

from sensors.models import ShelfEvent
from store.billing.models import PaymentAttempt, Receipt, ReceiptLine
from store.billing.money import money_display
from store.billing.services import (
    ReceiptLineData,
    price_to_minor,
    receipt_amounts,
)
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.timezones import store_zone

from .models import CartEvent, ReviewItem
from .services.ledger import cart_line_data
from store.billing.senses import senses_words

#: Visit states in which the shopper's cart is live (the shopper app shows the cart page, not the waiting page).
OPEN_STATES: tuple[str, ...] = (
    Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED, Visit.State.UNDER_REVIEW,
)

def snapshot_display(snapshot: dict) -> dict:
    """A cart snapshot (``carts.services`` contract) plus display strings, for the server-rendered page: each line
    gains ``unit_price_display``, ``line_total_display`` and ``senses_display`` (``store.billing.senses.senses_words``), the
    snapshot ``total_display``."""
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


def _evidence(event: CartEvent) -> EventEvidence:
    shelf = event.shelf_event
    return EventEvidence(
        id=event.pk, at=shelf.t_start if shelf else event.created_at, source=event.source,
        quantity=event.quantity, confidence=event.confidence, bin_code=shelf.bin.code if shelf else "",
        bin_codes=list(shelf.bin_codes) if shelf else [], delta_g=shelf.delta_g if shelf else None,
        shelf_event_id=shelf.pk if shelf else None, evidence=event.evidence or {},
    )


def _visit_events(visit_id: int) -> list[CartEvent]:
    return list(CartEvent.objects.filter(visit_id=visit_id).select_related("product", "shelf_event__bin")
                .order_by("created_at", "id"))


def receipt_detail(*, receipt: Receipt) -> ReceiptView:
    """The receipt page: lines with the cart events behind each (matched by product), payment state and ledger.

    The caller has already checked access (:func:`receipt_for_viewer`).
    """
    events_by_product: dict[int, list[CartEvent]] = defaultdict(list)
    for event in _visit_events(receipt.visit_id):
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
        events = [_evidence(e) for e in events_by_product.get(line.product_id, [])]
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
        (f"{e.product.name} ({e.product.barcode})", _evidence(e))
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


# ---------------------------------------------------------------------------------------------------------- dashboard
def _cart_data(visits: list[Visit]) -> dict[int, list[ReceiptLineData]]:
    """``{visit id: its cart as ReceiptLineData, by product id}`` from the cart ledgers of ``visits``, in two
    queries; the same rule as ``carts.services.cart_lines`` (products summing to ≤ 0 are not in the cart; catalogue
    prices and tax categories now)."""
    currency = {v.pk: v.store.currency for v in visits}
    rows = list(CartEvent.objects.filter(visit_id__in=list(currency)).values("visit_id", "product_id")
                .annotate(q=Sum("quantity")).filter(q__gt=0).order_by("visit_id", "product_id"))
    products = Product.objects.select_related("tax_category").in_bulk({r["product_id"] for r in rows})
    out: dict[int, list[ReceiptLineData]] = {pk: [] for pk in currency}
    for r in rows:
        out[r["visit_id"]].append(cart_line_data(products[r["product_id"]], r["q"], currency[r["visit_id"]]))
    return out


def _cart_totals(visits: list[Visit]) -> dict[int, tuple[int, int]]:
    """``{visit id: (items, total_minor)}``: the cart now, total with tax as the receipt would charge it
    (``receipt_amounts``)."""
    return {pk: (sum(ln.quantity for ln in lines), receipt_amounts(lines)[2])
            for pk, lines in _cart_data(visits).items()}


@dataclass(frozen=True)
class VisitRow:
    """A visit on the dashboard. ``total_minor`` is the receipt's total once billed, else the cart's now with the
    tax it would bear (both include tax, as the shopper sees them)."""

    id: int
    store_code: str
    shopper: str
    state: str
    entered_at: datetime
    exited_at: datetime | None
    items: int
    total_minor: int
    total_display: str
    open_reviews: int
    receipt_id: int | None


def dashboard_visits(*, now: datetime | None = None) -> list[VisitRow]:
    """Today's visits (entered since local midnight) and any older visit still unsettled (open states or
    ``payment_failed``), newest first."""
    now = now or timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    unsettled = (*OPEN_STATES, Visit.State.PAYMENT_FAILED)
    visits = list(
        Visit.objects.filter(Q(entered_at__gte=midnight, entered_at__lt=midnight + timedelta(days=1))
                             | Q(state__in=unsettled))
        .select_related("store", "shopper", "receipt").order_by("-entered_at", "-id")
    )
    totals = _cart_totals(visits)
    open_counts = _open_review_counts()
    rows = []
    for v in visits:
        receipt = getattr(v, "receipt", None)
        items, total = totals[v.pk]
        if receipt is not None:
            total = receipt.total_minor
        rows.append(VisitRow(
            id=v.pk, store_code=v.store.code, shopper=v.shopper.get_username(), state=v.state,
            entered_at=v.entered_at, exited_at=v.exited_at, items=items, total_minor=total,
            total_display=money_display(total, v.store.currency), open_reviews=open_counts.get(v.pk, 0),
            receipt_id=receipt.pk if receipt else None,
        ))
    return rows


def _open_review_counts() -> dict[int, int]:
    """``{visit id: open review items naming it among their candidates}``."""
    counts: dict[int, int] = defaultdict(int)
    for candidates in ReviewItem.objects.filter(status=ReviewItem.Status.OPEN).values_list("candidates", flat=True):
        for visit_id in {c.get("visit") for c in candidates or [] if isinstance(c, dict)}:
            if visit_id is not None:
                counts[visit_id] += 1
    return counts


def _hypotheses(event: ShelfEvent, names: dict[tuple[int, str], str]) -> list[dict]:
    """The event's hypotheses, best first, each with the product's ``name`` ("" when the barcode is unknown)."""
    return [
        {"barcode": h.get("barcode", ""), "quantity": h.get("quantity", 0), "likelihood": h.get("likelihood"),
         "name": names.get((event.store_id, h.get("barcode", "")), "")}
        for h in event.hypotheses or [] if isinstance(h, dict)
    ]


def _product_names(events: list[ShelfEvent]) -> dict[tuple[int, str], str]:
    barcodes = {h.get("barcode") for e in events for h in e.hypotheses or [] if isinstance(h, dict)}
    stores = {e.store_id for e in events}
    return {(s, b): n for s, b, n in Product.objects.filter(store_id__in=stores, barcode__in=barcodes)
            .values_list("store_id", "barcode", "name")}


@dataclass(frozen=True)
class ShelfEventRow:
    """A shelf event on the dashboard: ``best`` is the top hypothesis (``{"barcode", "name", "quantity",
    "likelihood"}``) or None; ``given_to`` lists the cart events written from it as ``{"visit", "quantity",
    "source"}``; ``review`` is the status of its review item, or ``""``."""

    id: int
    store_code: str
    session: str
    bin_code: str
    bin_codes: list
    t_start: datetime
    t_end: datetime
    delta_g: float
    best: dict | None
    given_to: list[dict]
    review: str
    review_id: int | None


def shelf_events_latest(*, limit: int = 30) -> list[ShelfEventRow]:
    """The ``limit`` latest shelf events (by ``t_start``) with what fusion or review made of them."""
    events = list(ShelfEvent.objects.select_related("bin", "store").order_by("-t_start", "-id")[:limit])
    names = _product_names(events)
    given: dict[int, list[dict]] = defaultdict(list)
    for se_id, visit_id, qty, source in (CartEvent.objects.filter(shelf_event__in=events)
                                         .values_list("shelf_event_id", "visit_id", "quantity", "source")):
        given[se_id].append({"visit": visit_id, "quantity": qty, "source": source})
    reviews = {se_id: (pk, status) for pk, se_id, status in
               ReviewItem.objects.filter(shelf_event__in=events).values_list("pk", "shelf_event_id", "status")}
    rows = []
    for e in events:
        hyps = _hypotheses(e, names)
        review_id, review = reviews.get(e.pk, (None, ""))
        rows.append(ShelfEventRow(
            id=e.pk, store_code=e.store.code, session=e.session, bin_code=e.bin.code, bin_codes=list(e.bin_codes),
            t_start=e.t_start, t_end=e.t_end, delta_g=e.delta_g, best=hyps[0] if hyps else None,
            given_to=given.get(e.pk, []), review=review, review_id=review_id,
        ))
    return rows


@dataclass(frozen=True)
class ReviewRow:
    """An open review item with its evidence. ``hypotheses`` as in :func:`_hypotheses`; ``candidates`` best first,
    each ``{"visit", "track_id", "distance_m", "score", "shopper", "state", "open"}`` (``shopper``/``state`` of the
    visit, ``""`` when the candidate names no known visit; ``open``: its cart still takes events); ``waiting``:
    the put-backs that wait for this decision (``ReviewItem.follows``): fusion applies them once it is made;
    ``test_run``: every candidate visit is a throwaway account's (an offline ``replay``/``evaluate`` run,
    ``carts.offline.replay.is_throwaway_shopper``): deciding it bills only the test card."""

    id: int
    reason: str
    created_at: datetime
    shelf_event: ShelfEvent
    hypotheses: list[dict]
    candidates: list[dict]
    waiting: int = 0
    test_run: bool = False


def review_queue(*, limit: int = 100) -> list[ReviewRow]:
    """Open review items, oldest first (the order to work through them), at most ``limit``."""
    from .offline.replay import is_throwaway_shopper

    items = list(ReviewItem.objects.filter(status=ReviewItem.Status.OPEN)
                 .select_related("shelf_event__bin", "shelf_event__store").order_by("created_at", "id")[:limit])
    names = _product_names([i.shelf_event for i in items])
    waiting = dict(ReviewItem.objects.filter(follows__in=items, status=ReviewItem.Status.WAITING)
                   .values("follows").annotate(n=Count("id")).values_list("follows", "n"))
    visit_ids = {c.get("visit") for i in items for c in i.candidates or [] if isinstance(c, dict)}
    visits = {v.pk: v for v in Visit.objects.filter(pk__in=[v for v in visit_ids if isinstance(v, int)])
              .select_related("shopper")}
    rows = []
    for i in items:
        candidates = []
        for c in i.candidates or []:
            if not isinstance(c, dict):
                continue
            v = visits.get(c.get("visit"))
            candidates.append({
                "visit": v.pk if v else None, "track_id": c.get("track_id", ""),
                "distance_m": c.get("distance_m"), "score": c.get("score"),
                "shopper": v.shopper.get_username() if v else "", "state": v.state if v else "",
                "open": bool(v and v.state in OPEN_STATES),
            })
        rows.append(ReviewRow(id=i.pk, reason=i.reason, created_at=i.created_at, shelf_event=i.shelf_event,
                              hypotheses=_hypotheses(i.shelf_event, names), candidates=candidates,
                              waiting=waiting.get(i.pk, 0),
                              test_run=bool(candidates) and all(is_throwaway_shopper(c["shopper"])
                                                                for c in candidates)))
    return rows


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
    from .review_console import units_text

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
    from .review_console import review_console

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
            from .review_console import units_text

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
    items, total = _cart_totals([visit])[visit.pk]
    reviews = [r for r in ReviewItem.objects.filter(shelf_event__store_id=visit.store_id)
               .select_related("shelf_event__bin").order_by("created_at", "id")
               if any(isinstance(c, dict) and c.get("visit") == visit.pk for c in r.candidates or [])]
    receipt = Receipt.objects.select_related("visit__store").filter(visit_id=visit.pk).first()
    tz = store_zone(visit.store)
    cart_events = _visit_events(visit.pk)
    events = [(f"{e.product.name} ({e.product.barcode})", _evidence(e)) for e in cart_events]
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



# ---------------------------------------------------------------------------------------------- dashboard: the store
#: Visit states of a shopper inside the store (past the gate, not yet through the exit).
INSIDE_STATES: tuple[str, ...] = (Visit.State.ADMITTED, Visit.State.SHOPPING)


@dataclass(frozen=True)
class OccupancyRow:
    """Shoppers inside one store now: ``inside`` visits in :data:`INSIDE_STATES` (a party's guests have their own
    visits, so each person counts once) against ``capacity`` (``Store.capacity``); ``percent`` of capacity,
    rounded down (0 when the capacity is 0); ``full``: inside ≥ capacity."""

    store_id: int
    store_code: str
    store_name: str
    inside: int
    capacity: int
    percent: int
    full: bool


def store_occupancy() -> list[OccupancyRow]:
    """Every store, by code, with how many shoppers are inside now. Two queries."""
    from store.layout.models import Store

    counts = dict(Visit.objects.filter(state__in=INSIDE_STATES).values("store_id")
                  .annotate(n=Count("id")).values_list("store_id", "n"))
    rows = []
    for s in Store.objects.order_by("code"):
        inside = counts.get(s.pk, 0)
        rows.append(OccupancyRow(store_id=s.pk, store_code=s.code, store_name=s.name, inside=inside,
                                 capacity=s.capacity, percent=(100 * inside // s.capacity) if s.capacity else 0,
                                 full=inside >= s.capacity))
    return rows


def day_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """``[start, end)`` of the day containing ``now`` (default: now) in ``settings.TIME_ZONE``, as aware times."""
    local = timezone.localtime(now or timezone.now())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class SalesRow:
    """Receipts issued today in one store and currency: how many, their total (minor units) and its display."""

    store_code: str
    store_name: str
    currency: str
    receipts: int
    items: int
    total_minor: int
    total_display: str


def sales_today(*, now: datetime | None = None) -> list[SalesRow]:
    """Today's sales per store and currency: the sum of ``Receipt.total_minor`` of receipts issued today (see
    :func:`day_bounds`), and the units on their lines. Refunds are not subtracted (they are payment attempts).
    Test runs are not sales: receipts of the throwaway accounts of offline ``replay``/``evaluate`` runs
    (``carts.offline.replay.is_throwaway_shopper``) are left out; live and emulated sessions (``make demo``) count, as the
    devices' traffic is the store's."""
    from .offline.replay import THROWAWAY_USERNAME_RE

    start, end = day_bounds(now)
    receipts = (Receipt.objects.filter(issued_at__gte=start, issued_at__lt=end)
                .exclude(visit__shopper__username__regex=THROWAWAY_USERNAME_RE))
    totals = (receipts.values("visit__store__code", "visit__store__name", "currency")
              .annotate(n=Count("id"), total=Sum("total_minor")).order_by("visit__store__code", "currency"))
    items = {(r["receipt__visit__store__code"], r["receipt__currency"]): r["units"] for r in
             ReceiptLine.objects.filter(receipt__in=receipts)
             .values("receipt__visit__store__code", "receipt__currency").annotate(units=Sum("quantity"))}
    return [SalesRow(store_code=r["visit__store__code"], store_name=r["visit__store__name"], currency=r["currency"],
                     receipts=r["n"], items=items.get((r["visit__store__code"], r["currency"]), 0) or 0,
                     total_minor=r["total"] or 0, total_display=money_display(r["total"] or 0, r["currency"]))
            for r in totals]


@dataclass(frozen=True)
class OpenCart:
    """A visit whose cart is live (:data:`OPEN_STATES`) and its cart now: ``lines`` as ``{"barcode", "name",
    "quantity", "line_total_display"}`` (the ``carts.services.cart_lines`` rule: products summing to ≤ 0 are not
    in the cart; catalogue prices now), ``tax_minor`` the tax the cart would bear if billed now and its display
    ("" when none), ``total_minor`` (with that tax, as the shopper's cart and the receipt show it) and its display,
    ``open_reviews`` naming the visit."""

    id: int
    store_code: str
    shopper: str
    state: str
    entered_at: datetime
    lines: list[dict]
    items: int
    tax_minor: int
    tax_display: str
    total_minor: int
    total_display: str
    open_reviews: int


def open_visit_carts(*, limit: int = 100) -> list[OpenCart]:
    """Visits in :data:`OPEN_STATES`, newest first (at most ``limit``), with their carts. Four queries."""
    visits = list(Visit.objects.filter(state__in=OPEN_STATES).select_related("store", "shopper")
                  .order_by("-entered_at", "-id")[:limit])
    data = _cart_data(visits)
    reviews = _open_review_counts()
    out = []
    for v in visits:
        cur = v.store.currency
        _, tax, total = receipt_amounts(data[v.pk])
        ls = sorted(({"barcode": ln.barcode, "name": ln.name, "quantity": ln.quantity,
                      "line_total_minor": ln.line_total_minor,
                      "line_total_display": money_display(ln.line_total_minor, cur)} for ln in data[v.pk]),
                    key=lambda x: x["name"])
        out.append(OpenCart(id=v.pk, store_code=v.store.code, shopper=v.shopper.get_username(), state=v.state,
                            entered_at=v.entered_at, lines=ls, items=sum(x["quantity"] for x in ls),
                            tax_minor=tax, tax_display=money_display(tax, cur) if tax else "",
                            total_minor=total, total_display=money_display(total, cur),
                            open_reviews=reviews.get(v.pk, 0)))
    return out


@dataclass(frozen=True)
class LowStockAlert:
    """A product at or below its low-stock threshold: level and threshold in units."""

    product_id: int
    store_code: str
    barcode: str
    name: str
    level: int
    threshold: int


def low_stock_alerts(*, limit: int = 20) -> tuple[int, list[LowStockAlert]]:
    """``(how many products are low, the ``limit`` lowest)``: level (stock ledger sum, units) ≤
    ``Product.low_stock_threshold`` (``store.inventory.selectors.low_stock_products``)."""
    from store.inventory.selectors import low_stock_products

    rows = low_stock_products()
    return len(rows), [LowStockAlert(product_id=r.product.pk, store_code=r.product.store.code,
                                     barcode=r.product.barcode, name=r.product.name, level=r.level,
                                     threshold=r.product.low_stock_threshold) for r in rows[:limit]]


def sensor_alerts_context() -> dict:
    """Context the sensors part provides for the dashboard's alerts (sensor health, misplaced items), or ``{}``
    while ``sensors.selectors`` does not provide it. Looked up at call time so the page works without it."""
    import importlib

    try:
        module = importlib.import_module("sensors.selectors")
    except ModuleNotFoundError as exc:
        if exc.name == "sensors.selectors":
            return {}
        raise
    provider = getattr(module, "dashboard_sensor_context", None)
    return dict(provider()) if callable(provider) else {}


def store_alerts_open(*, limit: int = 20) -> list:
    """The live store workers' open alerts (``carts.models.StoreAlert``: a source down, a shopper lost inside, a
    visit no track could be bound to), newest first, with their store."""
    from .models import StoreAlert

    return list(StoreAlert.objects.filter(resolved_at__isnull=True).select_related("store")[:limit])
