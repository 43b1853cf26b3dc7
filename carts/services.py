"""Cart services: apply fusion decisions to the append-only cart ledger, build cart snapshots, push them live,
and check a visit out at exit (cart → receipt → capture).

Snapshot contract (DESIGN.md "carts → shopper"), plain JSON types, money in integer minor units::

    {"visit": 12, "seq": 3, "state": "shopping", "currency": "usd",
     "lines": [{"barcode", "name", "quantity", "unit_price_minor", "line_total_minor", "senses"}],
     "under_review": 1, "tax_minor": 0, "total_minor": 398, "receipt": null, "trip": {…}}

``senses``: what supported the line (``store.billing.senses``: a list of ``weight``, ``hand``, ``image``, ``tag``, ``staff``;
null: unknown, cart events written before senses were recorded).

``tax_minor`` is the tax the lines would bear if billed now and ``total_minor`` includes it, as the receipt's total
will (``store.billing.services.receipt_amounts``: the one rule the receipt and the dashboard use too).

``under_review`` counts the review items nobody decided yet (a decision held in its undo window is decided:
``review_undecided_for``). ``trip`` is where the trip stands in words for the shopper (``carts.trip.trip_status``: stage, title, text, link).

Every change bumps ``Cart.seq`` and, after the transaction commits, sends ``{"type": "cart.snapshot",
"snapshot": …}`` to the groups ``cart_group(visit id)`` and ``shopper_group(user id)``. A client that sees a gap in
``seq`` asks for a fresh snapshot (group messages can be dropped: channels docs, "Groups").
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Q, Sum, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from sensors.models import ShelfEvent
from .emails import dispute_decision_email_schedule, receipt_email_schedule
from store.billing.models import PaymentAttempt, Receipt, ReceiptLine
from store.billing.providers import ProviderUnavailable
from store.billing.services import (
    BillingError,
    PaymentFailed,
    ReceiptLineData,
    price_to_minor,
    receipt_amounts,
    receipt_issue,
    receipt_refund_line,
)
from store.gates.models import Visit
from store.gates.services import visit_transition
from store.inventory.models import Product
from store.inventory.services import stock_record_sale

from store.dashboard_events import dashboard_notify
from .models import Cart, CartEvent, Dispute, ReviewItem
from store.billing.senses import STAFF, TAG, WEIGHT, senses_checked, senses_union
from .trip import trip_status

log = logging.getLogger(__name__)
_GROUP_OK = re.compile(r"^[a-zA-Z0-9._-]{1,99}$")


def cart_group(visit_id: int) -> str:
    """Channels group of one visit's cart (``^[a-zA-Z0-9._-]+$``, < 100 chars, as channels requires)."""
    name = f"cart.{int(visit_id)}"
    assert _GROUP_OK.match(name)
    return name


def shopper_group(user_id: int) -> str:
    """Channels group of one shopper: snapshots of any of their visits (a page waiting for a visit to start)."""
    return f"shopper.{int(user_id)}"


def cart_lines(*, visit: Visit) -> list[dict]:
    """The visit's cart now: the signed sum of its cart events per product, products with quantity > 0 only.

    Returns ``[{"product_id", "barcode", "name", "quantity", "unit_price_minor", "line_total_minor", "senses"}]``
    in order of first appearance. Prices are the catalogue's current ``Decimal`` prices in minor units; ``senses``
    the union of the product's cart events' senses (``store.billing.senses.senses_union``; None: all unknown).
    """
    totals: OrderedDict[int, int] = OrderedDict()
    senses: dict[int, list] = {}
    for product_id, qty, sense in visit.cart_events.order_by("id").values_list("product_id", "quantity", "senses"):
        totals[product_id] = totals.get(product_id, 0) + qty
        senses.setdefault(product_id, []).append(sense)
    products = Product.objects.in_bulk([pid for pid, q in totals.items() if q > 0])
    currency = visit.store.currency
    lines = []
    for pid, qty in totals.items():
        if qty <= 0:
            if qty < 0:
                log.warning("visit %s: product %s sums to %d in the cart; shown as 0", visit.pk, pid, qty)
            continue
        p = products[pid]
        unit = price_to_minor(p.price, currency)
        line_senses = senses_union(senses[pid])
        lines.append({"product_id": pid, "barcode": p.barcode, "name": p.name, "quantity": qty,
                      "unit_price_minor": unit, "line_total_minor": unit * qty,
                      "senses": list(line_senses) if line_senses is not None else None})
    return lines


def _receipt_line_data(cart: list[dict], currency: str, *, tagged: set[int] = frozenset()) -> list[ReceiptLineData]:
    """``cart_lines`` rows as billing's ``ReceiptLineData`` (:func:`carts.selectors.cart_line_data`: each with its
    product's tax category and rate now; no category: not taxed), with the rows' senses; ``tagged``: products an
    RFID tag that left with the shopper confirmed (their lines gain ``tag``). One query."""
    from .selectors import cart_line_data

    products = Product.objects.select_related("tax_category").in_bulk([ln["product_id"] for ln in cart])
    out = []
    for line in cart:
        data = cart_line_data(products[line["product_id"]], line["quantity"], currency)
        if data.unit_price_minor != line["unit_price_minor"]:  # the price changed between the two reads
            data = replace(data, unit_price_minor=line["unit_price_minor"])
        senses = line.get("senses")
        if line["product_id"] in tagged:
            senses = senses_union([senses, [TAG]])
        out.append(replace(data, senses=senses_checked(senses)))
    return out


def cart_snapshot(*, visit: Visit, under_review: int | None = None) -> dict:
    """The snapshot pushed to the shopper (module docstring), built from the ledger; ``seq`` from ``Cart``.
    ``under_review``: the count of ``review_undecided_for(visit)[0]`` when the caller has it (a batch of snapshots
    counts them for every visit in one pass, :func:`review_undecided_counts`); None: counted here."""
    cart, _ = Cart.objects.get_or_create(visit=visit)
    lines = cart_lines(visit=visit)
    if under_review is None:
        under_review = len(review_undecided_for(visit=visit)[0])  # a decision held for undo is decided already
    receipt = getattr(visit, "receipt", None)
    _, tax, total = receipt_amounts(_receipt_line_data(lines, visit.store.currency))
    return {
        "visit": visit.pk,
        "seq": cart.seq,
        "state": visit.state,
        "currency": visit.store.currency,
        "lines": [{k: v for k, v in line.items() if k != "product_id"} for line in lines],
        "under_review": under_review,
        "tax_minor": tax,
        "total_minor": total,
        "receipt": receipt.pk if receipt else None,
        "trip": trip_status(visit=visit),
    }


#: Review items name a visit only for shelf events decided while it was in the store or settling after its exit
#: (``carts.fusion.eligible_tracks``); :func:`review_open_for` reads the store's items whose event lies within
#: this margin (s) of the visit, so its cost follows the crowd at the time, not the reviews left open all day. An
#: hour is far more than any settle time or clock offset between a shelf controller and the gate.
REVIEW_VISIT_MARGIN_S = 3600.0


def _naming(items, visit_ids):
    """``items`` (a ReviewItem queryset) narrowed in the database to a superset of those that name one of
    ``visit_ids`` among their candidates or in their resolution: their JSON text holds ``"visit": <id>``. Callers
    check each item exactly; decoding every undecided item's candidates in Python was the cost of a crowd's reviews
    (hundreds of items, each read again for every cart snapshot and checkout)."""
    ids = "|".join(str(int(v)) for v in visit_ids)
    if not ids:
        return items.none()
    pattern = rf'"visit"\s*:\s*({ids})([^0-9]|$)'
    return items.annotate(_candidates_text=Cast("candidates", TextField()),
                          _resolution_text=Cast("resolution", TextField())).filter(
        Q(_candidates_text__regex=pattern) | Q(_resolution_text__regex=pattern))


def review_open_for(*, visit: Visit, now: datetime | None = None) -> list[ReviewItem]:
    """Review items not decided for good (open, waiting for the review of a pick, or decided by a person but still
    undoable: ``undo_until`` after ``now``) that name ``visit`` among their candidates or, for a waiting put-back,
    as the visit it goes to: its checkout waits for them."""
    now = now or timezone.now()
    undecided = Q(status__in=(ReviewItem.Status.OPEN, ReviewItem.Status.WAITING)) | Q(undo_until__gt=now)
    margin = timedelta(seconds=REVIEW_VISIT_MARGIN_S)
    items = ReviewItem.objects.filter(undecided, shelf_event__store_id=visit.store_id,
                                      shelf_event__t_end__gte=visit.entered_at - margin)
    if visit.exited_at is not None:
        items = items.filter(shelf_event__t_start__lte=visit.exited_at + margin)
    items = _naming(items, [visit.pk])
    return [
        r for r in items
        if any(c.get("visit") == visit.pk for c in r.candidates) or (r.resolution or {}).get("visit") == visit.pk
    ]


def review_undecided_counts(visits: list[Visit], now: datetime | None = None) -> dict[int, int]:
    """Visit id → ``len(review_undecided_for(visit=…)[0])`` for each of ``visits``, read in one query per store
    (the review items of the store near the earliest visit, each checked against every visit it names) instead of
    one per visit: a step of the store loop that changes many carts reads the store's open reviews once."""
    now = now or timezone.now()
    margin = timedelta(seconds=REVIEW_VISIT_MARGIN_S)
    out = {v.pk: 0 for v in visits}
    by_store: dict[int, dict[int, Visit]] = {}
    for v in visits:
        by_store.setdefault(v.store_id, {})[v.pk] = v
    for store_id, mine in by_store.items():
        undecided = Q(status__in=(ReviewItem.Status.OPEN, ReviewItem.Status.WAITING)) | Q(undo_until__gt=now)
        rows = _naming(ReviewItem.objects.filter(
            undecided, shelf_event__store_id=store_id,
            shelf_event__t_end__gte=min(v.entered_at for v in mine.values()) - margin,
        ), mine).values_list("status", "undo_until", "candidates", "resolution", "shelf_event__t_start",
                             "shelf_event__t_end")
        for status, undo_until, candidates, resolution, t_start, t_end in rows:
            if status not in (ReviewItem.Status.OPEN, ReviewItem.Status.WAITING) and undo_until is not None \
                    and undo_until > now:
                continue  # held in its undo window: decided for the shopper (review_held)
            named = {c.get("visit") for c in candidates} | {(resolution or {}).get("visit")}
            for visit_id in named & mine.keys():
                v = mine[visit_id]
                if t_end >= v.entered_at - margin and (v.exited_at is None or t_start <= v.exited_at + margin):
                    out[visit_id] += 1
    return out


def review_held(item: ReviewItem, now: datetime | None = None) -> bool:
    """True when ``item`` is decided by a person but still in its undo window (``undo_until`` after ``now``, tz-aware
    UTC, default the clock): the visits it names wait for it, yet for the shopper it is decided, not under review."""
    now = now or timezone.now()
    return (item.status not in (ReviewItem.Status.OPEN, ReviewItem.Status.WAITING)
            and item.undo_until is not None and item.undo_until > now)


def review_undecided_for(*, visit: Visit, now: datetime | None = None) -> tuple[list[ReviewItem], list[ReviewItem]]:
    """:func:`review_open_for` split for what the shopper is told: ``(undecided, held)``: the items nobody decided
    yet (open or waiting) and those a person decided that are only held in their undo window
    (:func:`review_held`). The checkout waits for both; only the first are "under review" to the shopper."""
    now = now or timezone.now()
    items = review_open_for(visit=visit, now=now)
    held = [r for r in items if review_held(r, now)]
    return [r for r in items if r not in held], held


def _party_visits(visit: Visit) -> list[Visit]:
    """``visit`` first, then the other visits of its party (one account's visits billed together)."""
    lead_id = visit.party_lead_id or visit.pk
    others = Visit.objects.filter(Q(pk=lead_id) | Q(party_lead_id=lead_id)).exclude(pk=visit.pk).order_by("pk")
    return [visit, *others]


def review_followers_settle(*, item: ReviewItem) -> list[Visit]:
    """Settle the put-backs waiting for ``item`` (``ReviewItem.follows``) once it is decided: each applies as
    fusion decided it (a cart event of source ``fusion``, evidence ``follows_review``) to its visit or a party
    member holding the item, and is marked ``resolved`` by ``fusion``; when nobody in the party holds it (the
    review gave the pick to someone else, or dismissed it) the item opens for people. Call inside the
    transaction that decided ``item``. Returns the visits the settled items name, as candidates or as the visit
    the put-back went to (their checkouts may proceed)."""
    touched: list[Visit] = []
    for f in ReviewItem.objects.select_for_update().select_related("shelf_event").filter(
            follows=item, status=ReviewItem.Status.WAITING):
        res = dict(f.resolution or {})
        before = {"reason": f.reason, "resolution": dict(res)}  # what review_undo puts back
        visit = Visit.objects.filter(pk=res.get("visit")).first()
        product = Product.objects.filter(store_id=f.shelf_event.store_id, barcode=res.get("barcode")).first()
        event = None
        if visit is not None and product is not None and item.status == ReviewItem.Status.RESOLVED:
            for target in _party_visits(visit):
                if target.state not in _REVIEW_TAKES_EVENTS:
                    continue
                change = CartChange(visit=target, product=product, quantity=int(res.get("quantity", 0)),
                                    confidence=float(res.get("confidence", 0.0)),
                                    evidence={**(res.get("evidence") or {}), "follows_review": item.pk},
                                    senses=res.get("senses"))
                try:
                    event = cart_apply(change=change, shelf_event=f.shelf_event)
                    break
                except ValueError:
                    continue
        if event is not None:
            f.status, f.resolved_by, f.resolved_at = ReviewItem.Status.RESOLVED, "fusion", timezone.now()
            f.resolution = {**res, "visit": event.visit_id, "cart_event": event.pk, "settled_by": before}
            touched.append(event.visit)
        else:
            f.status = ReviewItem.Status.OPEN
            f.resolution = {**res, "settled_by": before}
            f.reason = (f"review {item.pk} of the pick did not give the item to this party: {f.reason}")[:200]
            if visit is not None:
                touched.append(visit)
        f.save(update_fields=["status", "resolved_by", "resolved_at", "resolution", "reason"])
        named = [c.get("visit") for c in f.candidates or [] if isinstance(c, dict) and isinstance(c.get("visit"), int)]
        touched += list(Visit.objects.filter(pk__in=named))  # their checkouts may have waited for this item too
        log.info("review %s (waiting for %s) %s", f.pk, item.pk, f.status)
    return touched


_batch = threading.local()


@contextmanager
def cart_publish_batch() -> Iterator[None]:
    """Within it, :func:`cart_publish` only notes the visit; at its end each noted visit is published once (its
    sequence bumped, the snapshot of its state then pushed after commit). A store-loop step that changes many
    carts (a review naming six shoppers, a crowd's takes) sends each phone one snapshot of the step's outcome
    instead of one per change, and builds each snapshot once. A batch inside another joins the outer one."""
    if getattr(_batch, "visits", None) is not None:
        yield
        return
    _batch.visits = {}
    try:
        yield
    finally:
        visits, _batch.visits = _batch.visits, None
        if visits:
            _publish_many(list(visits.values()))


def cart_publish(*, visit: Visit) -> int | None:
    """Bump the visit's cart sequence number and, after commit, push the snapshot to its groups. Returns seq
    (None inside :func:`cart_publish_batch`, which publishes at its end)."""
    pending = getattr(_batch, "visits", None)
    if pending is not None:
        pending[visit.pk] = visit
        return None
    return _publish_now(visit)


def _publish_now(visit: Visit) -> int:
    with transaction.atomic():
        cart, _ = Cart.objects.select_for_update().get_or_create(visit=visit)
        cart.seq += 1
        cart.save(update_fields=["seq", "updated_at"])
    visit_id, user_id = visit.pk, visit.shopper_id

    def send() -> None:
        fresh = Visit.objects.select_related("store").get(pk=visit_id)
        message = {"type": "cart.snapshot", "snapshot": cart_snapshot(visit=fresh)}
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(cart_group(visit_id), message)
            async_to_sync(layer.group_send)(shopper_group(user_id), message)
        except Exception:  # the live push is best-effort; the ledger is the truth and clients resync
            log.exception("could not push the cart of visit %s", visit_id)

    transaction.on_commit(send)
    dashboard_notify(reason="cart", store_id=visit.store_id)
    return cart.seq


def _publish_many(visits: list[Visit]) -> None:
    """:func:`_publish_now` for several visits at once (the end of a :func:`cart_publish_batch`): their sequence
    numbers bumped in one transaction, and after it commits their snapshots pushed in one go (one trip to the
    channel layer, not two per visit), the dashboards told once per store."""
    with transaction.atomic():
        for visit in visits:
            cart, _ = Cart.objects.select_for_update().get_or_create(visit=visit)
            cart.seq += 1
            cart.save(update_fields=["seq", "updated_at"])
    ids = [(visit.pk, visit.shopper_id) for visit in visits]

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        fresh = Visit.objects.select_related("store").in_bulk([visit_id for visit_id, _ in ids])
        counts = review_undecided_counts(list(fresh.values()))
        out = []
        for visit_id, user_id in ids:
            if visit_id not in fresh:  # deleted since (a test's teardown): nothing to show
                continue
            message = {"type": "cart.snapshot",
                       "snapshot": cart_snapshot(visit=fresh[visit_id], under_review=counts[visit_id])}
            out += [(visit_id, cart_group(visit_id), message), (visit_id, shopper_group(user_id), message)]
        async_to_sync(_group_send_all)(layer, out)

    transaction.on_commit(send)
    for store_id in dict.fromkeys(visit.store_id for visit in visits):
        dashboard_notify(reason="cart", store_id=store_id)


async def _group_send_all(layer, messages: list[tuple[int, str, dict]]) -> None:
    """Send each (visit id, group, message) in order; a failed push is logged (best effort, as in
    :func:`_publish_now`) and the rest still go."""
    for visit_id, group, message in messages:
        try:
            await layer.group_send(group, message)
        except Exception:  # the live push is best-effort; the ledger is the truth and clients resync
            log.exception("could not push the cart of visit %s", visit_id)


@dataclass(frozen=True)
class CartChange:
    """A decided change to a visit's cart: ``quantity`` signed units of ``product`` (+ taken, − put back).
    ``senses``: what supported it (``store.billing.senses.SENSES``; None: unknown); ValueError names a bad one."""

    visit: Visit
    product: Product
    quantity: int
    confidence: float
    evidence: dict
    senses: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "senses", senses_checked(self.senses))


def cart_apply(*, change: CartChange, shelf_event: ShelfEvent | None,
               source: str = CartEvent.Source.FUSION) -> CartEvent:
    """Append one cart event and push the new snapshot. Refuses to put back more than the cart holds.

    Raises ``ValueError`` when a put-back exceeds what the visit holds of that product (the caller sends such an
    event to review instead).
    """
    with transaction.atomic():
        Visit.objects.select_for_update().filter(pk=change.visit.pk).first()
        if change.quantity < 0:
            held = change.visit.cart_events.filter(product=change.product).aggregate(s=Sum("quantity"))["s"] or 0
            if held + change.quantity < 0:
                raise ValueError(
                    f"visit {change.visit.pk} holds {held} of {change.product.barcode}; cannot put back "
                    f"{-change.quantity}"
                )
        event = CartEvent.objects.create(
            visit=change.visit, product=change.product, quantity=change.quantity, shelf_event=shelf_event,
            source=source, confidence=change.confidence, evidence=change.evidence,
            senses=list(change.senses) if change.senses is not None else None,
        )
        cart_publish(visit=change.visit)
    log.info("visit %s: %+d × %s (confidence %.2f)", change.visit.pk, change.quantity, change.product.barcode,
             change.confidence)
    return event


def visit_checkout(*, visit: Visit, at: datetime | None = None):
    """Bill an exited visit: receipt lines from the cart ledger → ``billing.receipt_issue`` (capture) → ``billed``.

    A visit with open review items touching it goes ``under_review`` instead and is billed once they are resolved.
    On a payment failure the visit goes ``payment_failed``. Returns the Receipt, or None when not billed now.
    Idempotent: a billed visit returns its receipt.

    ``at`` (default now) is on the store's clock, which is the devices' (the recording's, in a replay; running
    ``--speed`` times faster than the wall in an emulation): a visit is never billed, and its receipt never issued,
    before it left (``exited_at``), so every stored time of a visit is in order (event ≤ exit ≤ billed = issued)
    even where a wall-clock caller (the checkout sweeper, a review resolved) bills a visit whose store clock ran ahead.
    """
    at = at or timezone.now()
    visit.refresh_from_db()
    if visit.exited_at is not None and at < visit.exited_at:
        at = visit.exited_at
    if visit.state == Visit.State.BILLED:
        return visit.receipt
    open_reviews = review_open_for(visit=visit)
    if open_reviews:
        visit_transition(visit=visit, to_state=Visit.State.UNDER_REVIEW, at=at,
                         reason=f"{len(open_reviews)} shelf event(s) await review")
        cart_publish(visit=visit)
        return None
    from sensors.models import RfidTag

    tagged = set(RfidTag.objects.filter(sold_visit=visit, product__isnull=False).values_list("product_id", flat=True))
    lines = _receipt_line_data(cart_lines(visit=visit), visit.store.currency, tagged=tagged)
    try:
        receipt = receipt_issue(visit=visit, lines=lines, at=at)
    except PaymentFailed as exc:
        # the goods left the store either way: the stock ledger records the sale; billing retries the payment
        receipt = Receipt.objects.filter(visit=visit).first()
        if receipt is not None:
            stock_record_sale(receipt=receipt)
        visit_transition(visit=visit, to_state=Visit.State.PAYMENT_FAILED, at=at, reason=str(exc))
        cart_publish(visit=visit)
        return None
    stock_record_sale(receipt=receipt)
    visit_transition(visit=visit, to_state=Visit.State.BILLED, at=at, reason=f"receipt {receipt.pk} captured")
    cart_publish(visit=visit)
    receipt_email_schedule(receipt=receipt)  # the shopper's email copy, after commit (carts.emails)
    return receipt


def visit_exit_tags_apply(*, visit: Visit, tags, at: datetime):
    """Put the RFID tags that left with ``visit``'s shopper (``sensors.rfid.ExitTag`` s) on its cart, by the rules
    of ``sensors.rfid.exit_charges``: a serial sold on any receipt (another visit's, or this one's in an earlier
    attempt) is never charged again; a tag of a product the cart holds by weight confirms a unit (recorded on the tag,
    no new cart event); any other tag of a catalogue product is a +1 cart event (source ``fusion``, confidence 1,
    evidence ``{"sense": "tag", "tag": {...}}``). Each tag is claimed by one conditional update
    (``sensors.rfid_live.tag_sell``), so two attempts charge it once. Returns the ``TagCharge`` s decided."""
    from sensors.rfid import exit_charges
    from sensors.rfid_live import barcode_of_gtin, tag_sell, tags_sold

    from sensors.models import RfidTag

    store = visit.store
    keys = {(t.gtin, t.serial) for t in tags}
    sold = tags_sold(store=store, keys=keys)
    new = [t for t in tags if sold.get((t.gtin, t.serial)) != visit.pk]      # this visit's own: done before
    weight: dict[str, int] = {}
    for barcode, q, ev in visit.cart_events.values_list("product__barcode", "quantity", "evidence"):
        if not (isinstance(ev, dict) and ev.get("sense") == "tag"):
            weight[barcode] = weight.get(barcode, 0) + q
    confirmed: dict[str, int] = {}
    for barcode in RfidTag.objects.filter(sold_visit=visit, charged=False).values_list("product__barcode", flat=True):
        if barcode:
            confirmed[barcode] = confirmed.get(barcode, 0) + 1
    products = {p.barcode: p for p in Product.objects.filter(store=store)}
    charges = exit_charges(new, cart=weight, sold={k for k, v in sold.items() if v != visit.pk},
                           barcode_of=barcode_of_gtin(store=store), confirmed=confirmed)
    for c in charges:
        tag = c.tag
        if c.action == "paid":
            log.info("visit %s: tag %s.%s left again; paid on an earlier receipt, not charged", visit.pk, tag.gtin,
                     tag.serial)
        elif c.action == "unknown":
            log.warning("visit %s: tag %s.%s left; GTIN not in the catalogue, not charged", visit.pk, tag.gtin,
                        tag.serial)
        else:
            with transaction.atomic():
                if not tag_sell(store=store, gtin=tag.gtin, serial=tag.serial, epc=tag.epc, visit=visit,
                                charged=c.action == "charge", at=at):
                    continue
                RfidTag.objects.filter(store=store, gtin=tag.gtin, serial=tag.serial).update(
                    product=products.get(c.barcode))
                if c.action == "charge":
                    cart_apply(change=CartChange(visit=visit, product=products[c.barcode], quantity=1, confidence=1.0,
                                                 evidence={"sense": "tag", "tag": tag.as_dict()}, senses=(TAG,)),
                               shelf_event=None)
            log.info("visit %s: tag %s.%s %s (%s)", visit.pk, tag.gtin, tag.serial,
                     "charged" if c.action == "charge" else "confirms a unit charged by weight", c.barcode)
    return charges


def receipt_line_senses(*, receipt: Receipt) -> dict[int, list[str] | None]:
    """Which senses supported each line of ``receipt``, as stored when it was issued: ``{line id: [sense, …]}`` in
    ``store.billing.senses.SENSES`` order (``weight``, ``hand``, ``image``, ``tag``, ``staff``), or ``None`` for a line
    issued before senses were recorded (unknown)."""
    return {pk: (list(senses) if senses is not None else None)
            for pk, senses in receipt.lines.values_list("pk", "senses")}


def review_senses(*, candidate: dict | None, shelf_event: ShelfEvent | None) -> tuple[str, ...]:
    """The senses of a person's review decision: ``staff``, with ``weight`` for a shelf event, ``hand`` when the
    chosen candidate's hand scored ``store.billing.senses.HAND_MIN_SCORE`` or more, ``tag`` when a shelf antenna's tags
    were shown with it (``candidate``: the review item's candidate dict for the chosen visit, or None)."""
    from store.billing.senses import HAND, HAND_MIN_SCORE

    out = [STAFF]
    if shelf_event is not None:
        out.append(WEIGHT)
    if isinstance(candidate, dict):
        score = candidate.get("score")
        if isinstance(score, (int, float)) and score >= HAND_MIN_SCORE:
            out.append(HAND)
        if candidate.get("tags"):
            out.append(TAG)
    return senses_checked(out)


class ReviewError(ValueError):
    """A review decision that cannot be applied (the message says why, for the manager)."""


@dataclass(frozen=True)
class ReviewOutcome:
    """What :func:`review_resolve` did.

    ``item``: the review item, now ``resolved`` or ``dismissed``. ``cart_event``: the CartEvent appended (None when
    nobody was charged). ``checkouts``: visits checked out because their last open review closed, as ``{visit id:
    Receipt or None}`` (None: not billed now, e.g. payment failed). ``checkout_errors``: ``{visit id: message}`` for
    checkouts that raised; the decision itself is committed either way. ``correction``: for a decision on an
    already billed visit, the refund or supplementary-charge PaymentAttempt (None otherwise, or when a charge was
    not answered: see ``checkout_errors``).
    """

    item: ReviewItem
    cart_event: CartEvent | None
    checkouts: dict
    checkout_errors: dict
    correction: PaymentAttempt | None = None


#: Visit states whose cart still takes events without touching a payment (a billed visit's review decision is
#: corrected through billing as well: :func:`review_resolve`).
_REVIEW_TAKES_EVENTS = {Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED, Visit.State.UNDER_REVIEW}


def _correction_charge(*, visit: Visit, product: Product, quantity: int, key: str) -> PaymentAttempt:
    """Charge ``quantity`` units of ``product`` (> 0) off-session to the payer's card (the party lead's for a
    guest), captured at once, for a review decision made after the visit was billed. One ledger row
    (``PaymentAttempt`` kind ``charge``, idempotency key ``key``), written by billing's own helper. Raises
    :class:`PaymentFailed` when no card is usable or the provider does not answer (no row); a declined charge
    returns its failed row. Where the product's tax category has a rate, its tax is charged with it (rounded
    half-up on this charge, ``store.billing.services.tax_minor``)."""
    from store.billing.services import (  # billing's helpers
        _attempt_record, _payer_profile, _profile_provider, tax_minor,
    )

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
    from store.billing.providers import get_provider
    from store.billing.services import _attempt_record

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
        left = (line.quantity - _line_refunded_units(line)) if line is not None else 0
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
    from store.billing.services import _refundable_payment

    refunded = PaymentAttempt.objects.filter(visit=visit, kind=PaymentAttempt.Kind.REFUND,
                                             status=PaymentAttempt.Status.SUCCEEDED,
                                             intent_ref=preferred.intent_ref).aggregate(s=Sum("amount_minor"))["s"] or 0
    if preferred.amount_minor - refunded >= amount:
        return preferred
    return _refundable_payment(visit=visit, amount_minor=amount)


def _review_lines_check(lines: list[tuple[Visit, Product, int]]) -> None:
    """Raise :class:`ReviewError` when a put-back among ``lines`` (visit, product, signed units, applied in order)
    exceeds what its visit's cart holds then: checked before any refund or charge is made."""
    held: dict[tuple[int, int], int] = {}
    for visit, product, q in lines:
        key = (visit.pk, product.pk)
        if key not in held:
            held[key] = visit.cart_events.filter(product=product).aggregate(s=Sum("quantity"))["s"] or 0
        if held[key] + q < 0:
            raise ReviewError(f"visit {visit.pk} holds {held[key]} of {product.barcode}; cannot put back {-q}")
        held[key] += q


def _billed_correction(*, visit: Visit, product: Product, quantity: int, evidence: dict, key: str,
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


def review_undo_s() -> float:
    """Seconds a person's review decision made in the console can be undone (``settings.WALKOUT["REVIEW_UNDO_S"]``,
    default 10); the visits it names are billed only after that."""
    from django.conf import settings

    return float(settings.WALKOUT.get("REVIEW_UNDO_S", 10.0))


def review_resolve(*, item: ReviewItem, visit_id: int | None, barcode: str | None, quantity: int,
                   by: str, hold_s: float = 0.0, extra_lines: Sequence[tuple[int, str, int]] = ()) -> ReviewOutcome:
    """Decide an open review item: who took what from the shelf event behind it.

    ``hold_s`` (seconds, ≥ 0): hold the decision that long so a person can take it back (:func:`review_undo`):
    ``ReviewItem.undo_until`` is set, and the checkouts the decision would start wait for
    :func:`review_holds_release` (``ReviewOutcome.checkouts`` stays empty). 0 (the default): final at once. A
    decision that made a refund or a charge (a billed visit) is final whatever ``hold_s`` says.

    ``visit_id``: the visit that gets the event, or None when nobody does (the item is then ``dismissed``; with a
    visit it is ``resolved``). ``barcode``: a product of the shelf event's store; with a visit, a CartEvent of
    ``quantity`` signed units (+ taken, − put back, never 0) is appended via :func:`cart_apply` with
    ``source="review"``, confidence 1.0, the shelf event, and evidence ``{"review", "by", "reason", "candidate",
    "hypothesis"}`` (the candidate and hypothesis dicts the decision matches, or None). A visit without a barcode is
    recorded as the item's resolution with no cart event. ``by``: who decided (a username), kept on the item.

    The put-backs waiting for this item are settled in the same transaction (:func:`review_followers_settle`).
    Afterwards every visit the item names (its candidates, the chosen visit and the settled followers' visits) that
    is ``under_review`` with no other open or waiting item is checked out with :func:`visit_checkout` (after the
    decision commits); the other candidates get a fresh snapshot, since their ``under_review`` count fell.

    ``extra_lines``: more ``(visit id, barcode, signed quantity)`` the same shelf event is decided to be (a mixed
    grab: a second product in one event), each appended as one more review cart event (evidence ``part: "extra
    line"``) in the same transaction and by the same rules, billed visits included; recorded in the resolution's
    ``extra``. They stand or fall with the decision: nothing of them is written when it raises.

    A decision on an already **billed** visit is corrected through billing, never by editing the receipt, so that
    what the card paid net always equals the value of the cart: the cart event is appended (evidence
    ``correction``, :func:`_billed_correction`); a take (quantity > 0) is charged off-session to the payer's card
    (``ReviewOutcome.correction``); a put-back (quantity < 0) takes back first units a review added whose charge
    was never collected, then units a review charged (refunded from that charge), then units of the product's
    receipt line (``billing.receipt_refund_line``): never more than was captured and charged. A refused refund
    undoes the whole decision (ReviewError); a declined or unanswered charge keeps the decision and is reported in
    ``checkout_errors``.

    Raises :class:`ReviewError` (nothing written) when the item is not open any more, the visit does not exist, is
    in another store or cannot take the decision (closed, refused, payment_failed; billed without a product), the
    barcode is not in the store's catalogue, the quantity is 0, the put-back exceeds what the visit holds, or the
    refund of a billed visit is refused.
    """
    hold = float(hold_s or 0.0)
    if not (hold >= 0 and hold < float("inf")):
        raise ReviewError(f"hold_s must be a number of seconds ≥ 0, got {hold_s!r}")
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().select_related("shelf_event").get(pk=item.pk)
        if locked.status != ReviewItem.Status.OPEN:
            raise ReviewError(f"review item {locked.pk} is already {locked.status}")
        shelf_event = locked.shelf_event
        candidates = [c for c in locked.candidates or [] if isinstance(c, dict)]
        visit = product = None
        if visit_id is not None:
            visit = Visit.objects.select_related("store").filter(pk=visit_id).first()
            if visit is None or visit.store_id != shelf_event.store_id:
                raise ReviewError(f"visit {visit_id} is not a visit of this store")
            if visit.state not in _REVIEW_TAKES_EVENTS and not (visit.state == Visit.State.BILLED and barcode):
                raise ReviewError(f"visit {visit_id} is {visit.state}: correct it by a refund or a charge instead")
        if barcode:
            product = Product.objects.filter(store_id=shelf_event.store_id, barcode=barcode).first()
            if product is None:
                raise ReviewError(f"no product with barcode {barcode!r} in this store")
        event = None
        correction = None
        extras = []
        for extra_visit_id, extra_barcode, extra_q in extra_lines:
            ev_visit = Visit.objects.select_related("store").filter(pk=extra_visit_id).first()
            if ev_visit is None or ev_visit.store_id != shelf_event.store_id:
                raise ReviewError(f"visit {extra_visit_id} is not a visit of this store")
            if ev_visit.state not in _REVIEW_TAKES_EVENTS | {Visit.State.BILLED}:
                raise ReviewError(f"visit {extra_visit_id} is {ev_visit.state}: correct it by a refund or a charge "
                                  "instead")
            ev_product = Product.objects.filter(store_id=shelf_event.store_id, barcode=extra_barcode).first()
            if ev_product is None:
                raise ReviewError(f"no product with barcode {extra_barcode!r} in this store")
            if not isinstance(extra_q, int) or extra_q == 0:
                raise ReviewError("the quantity must not be 0")
            extras.append((ev_visit, ev_product, extra_q))
        if extras and (visit is None or product is None):
            raise ReviewError("extra lines need a decision that gives the item to a visit")
        applied: list[CartEvent] = []
        corrections: list[PaymentAttempt] = []
        errors_of: dict[int, str] = {}
        if visit is not None and product is not None:
            if quantity == 0:
                raise ReviewError("the quantity must not be 0")
            lines = [(visit, product, quantity), *extras]
            _review_lines_check(lines)  # a put-back beyond the cart, before any money moves
            for n, (line_visit, line_product, line_q) in enumerate(lines):
                candidate = next((c for c in candidates if c.get("visit") == line_visit.pk), None)
                hypothesis = next((h for h in shelf_event.hypotheses or [] if isinstance(h, dict)
                                   and h.get("barcode") == line_product.barcode and h.get("quantity") == line_q), None)
                evidence = {"review": locked.pk, "by": by, "reason": locked.reason, "candidate": candidate,
                            "hypothesis": hypothesis, **({"part": "extra line"} if n else {})}
                attempts, error = _billed_correction(visit=line_visit, product=line_product, quantity=line_q,
                                                     evidence=evidence, key=f"review:{locked.pk}" + (f":{n}" if n else ""),
                                                     reason=f"review {locked.pk} by {by}: put back")
                corrections += attempts
                if error:
                    errors_of[line_visit.pk] = error
                change = CartChange(visit=line_visit, product=line_product, quantity=line_q, confidence=1.0,
                                    evidence=evidence,
                                    senses=review_senses(candidate=candidate, shelf_event=shelf_event))
                try:
                    applied.append(cart_apply(change=change, shelf_event=shelf_event, source=CartEvent.Source.REVIEW))
                except ValueError as exc:
                    raise ReviewError(str(exc)) from exc
            event = applied[0]
            correction = corrections[0] if corrections else None
        locked.status = ReviewItem.Status.RESOLVED if visit is not None else ReviewItem.Status.DISMISSED
        locked.resolved_at = timezone.now()
        locked.resolved_by = by[:150]
        history = (locked.resolution or {}).get("undone") or []
        locked.resolution = {"visit": visit.pk if visit else None, "barcode": barcode or None,
                             "quantity": quantity if product is not None else None,
                             "cart_event": event.pk if event else None,
                             **({"correction": correction.pk} if correction is not None else {}),
                             **({"extra": [{"visit": e.visit_id, "barcode": b, "quantity": e.quantity,
                                            "cart_event": e.pk} for e, (_, b, _) in
                                           zip(applied[1:], extra_lines)]} if extra_lines else {}),
                             **({"undone": history} if history else {})}
        final = hold == 0 or correction is not None or any("correction" in e.evidence for e in applied)
        locked.undo_until = None if final else locked.resolved_at + timedelta(seconds=hold)
        locked.save(update_fields=["status", "resolved_at", "resolved_by", "resolution", "undo_until"])
        named = {c.get("visit") for c in candidates if isinstance(c.get("visit"), int)}
        named |= {v.pk for v in review_followers_settle(item=locked)}
        if visit is not None:
            named.add(visit.pk)
        named |= {e.visit_id for e in applied}
        affected = list(Visit.objects.select_related("store").filter(pk__in=named))
        to_check_out = [v for v in affected if v.state == Visit.State.UNDER_REVIEW and not review_open_for(visit=v)]
        for v in affected:  # their "under_review" count fell; the chosen one was published by cart_apply
            if v not in to_check_out and v.state in _REVIEW_TAKES_EVENTS and (event is None or v.pk != visit.pk):
                cart_publish(visit=v)
    log.info("review %s %s by %s: visit %s, %s × %s", locked.pk, locked.status, by, visit_id, quantity, barcode)
    if locked.undo_until is not None:
        _release_schedule(item_id=locked.pk, at=locked.undo_until)
    checkouts, errors = _checkouts_run(to_check_out, locked.pk)
    errors.update(errors_of)
    return ReviewOutcome(item=locked, cart_event=event, checkouts=checkouts, checkout_errors=errors,
                         correction=correction)


def _checkouts_run(visits: list[Visit], item_id: int) -> tuple[dict, dict]:
    """Check out ``visits`` (after a decision committed): ``({visit id: Receipt or None}, {visit id: error})``."""
    checkouts, errors = {}, {}
    for v in visits:
        try:
            checkouts[v.pk] = visit_checkout(visit=v)
        except Exception as exc:  # the decision is committed; report the failed checkout to the manager
            log.exception("visit %s: checkout after review %s failed", v.pk, item_id)
            errors[v.pk] = str(exc) or exc.__class__.__name__
    return checkouts, errors


def _named_visits(item: ReviewItem) -> set[int]:
    """Visit ids an item names: its candidates, the visit its decision chose, and its followers' visits."""
    named = {c.get("visit") for c in item.candidates or [] if isinstance(c, dict) and isinstance(c.get("visit"), int)}
    chosen = (item.resolution or {}).get("visit")
    if isinstance(chosen, int):
        named.add(chosen)
    for f in ReviewItem.objects.filter(follows=item):
        named |= {c.get("visit") for c in f.candidates or [] if isinstance(c, dict)
                  and isinstance(c.get("visit"), int)}
        if isinstance((f.resolution or {}).get("visit"), int):
            named.add(f.resolution["visit"])
    return named


def _release_schedule(*, item_id: int, at: datetime) -> None:
    """Release ``item_id``'s hold at ``at`` (after the decision commits): a Celery task with a countdown where a
    broker runs tasks; where tasks run eagerly in-process (the embedded profile) a timer thread of this process.
    The beat task ``review_holds_release_task`` is the backstop either way (a lost task or a restarted process)."""
    from django.conf import settings

    delay = max(0.0, (at - timezone.now()).total_seconds()) + 0.05

    def schedule() -> None:
        from .tasks import review_holds_release_task

        if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
            import threading

            def run() -> None:
                from django.db import close_old_connections

                try:
                    review_holds_release()
                except Exception:  # logged; the beat task or the next decision releases it
                    log.exception("review %s: releasing the hold failed", item_id)
                finally:
                    close_old_connections()

            timer = threading.Timer(delay, run)
            timer.daemon = True
            timer.start()
            return
        try:
            review_holds_release_task.apply_async(countdown=delay)
        except Exception as exc:  # the beat backstop releases it
            log.error("review %s: the release task could not be queued (%s)", item_id, exc)

    transaction.on_commit(schedule)


def review_holds_release(*, now: datetime | None = None) -> dict:
    """Make final every held decision whose undo window has passed (``undo_until <= now``, ``now`` tz-aware UTC,
    default the clock) and check out the visits it kept waiting (``under_review`` with nothing else open).

    Each item is claimed by a conditional UPDATE (two releasers never check a visit out twice). Idempotent; called
    by the timer or task :func:`review_resolve` schedules and by the beat task ``review_holds_release_task``.
    Returns ``{visit id: Receipt or None}`` of the checkouts it ran (errors are logged)."""
    now = now or timezone.now()
    out: dict = {}
    for item in ReviewItem.objects.filter(undo_until__isnull=False, undo_until__lte=now).order_by("undo_until"):
        if ReviewItem.objects.filter(pk=item.pk, undo_until=item.undo_until).update(undo_until=None) != 1:
            continue
        visits = Visit.objects.select_related("store").filter(pk__in=_named_visits(item),
                                                                state=Visit.State.UNDER_REVIEW)
        due = [v for v in visits if not review_open_for(visit=v, now=now)]
        for v in visits:
            if v not in due:
                cart_publish(visit=v)
        checkouts, errors = _checkouts_run(due, item.pk)
        out.update(checkouts)
        for vid, err in errors.items():
            log.error("visit %s: checkout after the hold of review %s failed: %s", vid, item.pk, err)
        log.info("review %s: decision final; checked out %s", item.pk, sorted(checkouts))
    return out


@dataclass(frozen=True)
class UndoOutcome:
    """What :func:`review_undo` did: ``item`` (open again, or as it was when nothing was undone), ``reverted``: the
    compensating CartEvents appended, ``undone``: False when the decision had been undone already (idempotent)."""

    item: ReviewItem
    reverted: list
    undone: bool


def review_undo(*, item: ReviewItem, by: str, decided_at: datetime | None = None,
                now: datetime | None = None) -> UndoOutcome:
    """Take back a person's decision on ``item`` while it is held (``now < item.undo_until``): the item is open
    again and the cart ledger is put back by appending the opposite CartEvent of the decision's (source
    ``review``, evidence ``{"undo_of", "review", "by"}``) and of each waiting put-back it settled (those wait
    again). Nothing was billed: the hold kept the visits' checkouts waiting.

    ``decided_at``: the ``resolved_at`` of the decision being undone (what the console's undo button carries); when
    the item was decided again since, or the decision is undone already, nothing is done and ``undone`` is False
    (so a second click changes nothing). Raises :class:`ReviewError` (nothing written) when the window has passed
    (the message says when it closed), when the decision is final (made by fusion, with no hold, or a refund or a
    charge was made), or when the cart no longer holds what would be taken back.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().select_related("shelf_event").get(pk=item.pk)
        if locked.status in (ReviewItem.Status.OPEN, ReviewItem.Status.WAITING) or (
                decided_at is not None and locked.resolved_at != decided_at):
            return UndoOutcome(item=locked, reverted=[], undone=False)
        res = dict(locked.resolution or {})
        if locked.undo_until is None or now >= locked.undo_until:
            if res.get("correction") is not None:
                raise ReviewError("this decision refunded or charged the card already: it is final; correct it by "
                                  "a refund or a charge from the visit's page")
            window = review_undo_s()
            closed = (locked.undo_until or locked.resolved_at)
            if closed is None:
                raise ReviewError("this decision cannot be undone")
            ago = (now - closed).total_seconds()
            raise ReviewError(f"too late to undo: a decision can be undone for {window:g} s and this one became "
                              f"final {ago:.0f} s ago; correct it from the visit's page (refund or charge)")
        reverted: list[CartEvent] = []

        def revert(event_id: int, evidence: dict) -> None:
            ev = CartEvent.objects.select_related("visit__store", "product").filter(pk=event_id).first()
            if ev is None:
                return
            try:
                reverted.append(cart_apply(change=CartChange(visit=ev.visit, product=ev.product,
                                                             quantity=-ev.quantity, confidence=1.0,
                                                             evidence={**evidence, "undo_of": ev.pk},
                                                             senses=senses_union([ev.senses, [STAFF]])),
                                           shelf_event=ev.shelf_event, source=CartEvent.Source.REVIEW))
            except ValueError as exc:
                raise ReviewError(f"cannot undo: {exc}") from exc

        for f in ReviewItem.objects.select_for_update().filter(follows=locked):
            before = (f.resolution or {}).get("settled_by")
            if not isinstance(before, dict):
                continue
            if f.status == ReviewItem.Status.RESOLVED and f.resolved_by == "fusion" and \
                    isinstance(f.resolution.get("cart_event"), int):
                revert(f.resolution["cart_event"], {"review": f.pk, "by": by, "follows_review": locked.pk})
            elif f.status != ReviewItem.Status.OPEN:
                continue  # decided by a person since: theirs stands
            f.status, f.resolved_at, f.resolved_by = ReviewItem.Status.WAITING, None, ""
            f.reason, f.resolution = before.get("reason", f.reason), before.get("resolution") or {}
            f.save(update_fields=["status", "resolved_at", "resolved_by", "reason", "resolution"])
        for extra in reversed(res.get("extra") or []):
            if isinstance(extra, dict) and isinstance(extra.get("cart_event"), int):
                revert(extra["cart_event"], {"review": locked.pk, "by": by})
        if isinstance(res.get("cart_event"), int):
            revert(res["cart_event"], {"review": locked.pk, "by": by})
        entry = {k: res.get(k) for k in ("visit", "barcode", "quantity", "cart_event")}
        entry.update({"by": locked.resolved_by, "decided_at": locked.resolved_at.isoformat(),
                      "undone_by": by[:150], "undone_at": now.isoformat()})
        locked.status, locked.resolved_at, locked.resolved_by, locked.undo_until = (
            ReviewItem.Status.OPEN, None, "", None)
        locked.resolution = {"undone": [*(res.get("undone") or []), entry]}
        locked.save(update_fields=["status", "resolved_at", "resolved_by", "undo_until", "resolution"])
        touched = {ev.visit_id for ev in reverted}
        for v in Visit.objects.select_related("store").filter(pk__in=_named_visits(locked) - touched):
            if v.state in _REVIEW_TAKES_EVENTS:
                cart_publish(visit=v)  # its "under review" count rose again
    log.info("review %s: decision undone by %s (%d cart event(s) reverted)", locked.pk, by, len(reverted))
    return UndoOutcome(item=locked, reverted=reverted, undone=True)


# --------------------------------------------------------------------------------------------------------- disputes
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
    from django.conf import settings

    return float(settings.WALKOUT.get("DISPUTE_WINDOW_H", 72))


def _line_refunded_units(line: ReceiptLine) -> int:
    return line.refund_attempts.filter(status=PaymentAttempt.Status.SUCCEEDED).aggregate(
        q=Sum("quantity"))["q"] or 0


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
    from django.db import IntegrityError

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
    left = line.quantity - _line_refunded_units(line)
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
    from store.billing.services import PaymentFailed, RefundRejected, receipt_refund_line

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
