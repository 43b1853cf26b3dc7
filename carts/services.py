"""Cart services: apply fusion decisions to the append-only cart ledger, build cart snapshots, push them live,
and check a visit out at exit (cart → receipt → capture).

Snapshot contract (DESIGN.md "carts → shopper"), plain JSON types, money in integer minor units::

    {"visit": 12, "seq": 3, "state": "shopping", "currency": "usd",
     "lines": [{"barcode", "name", "quantity", "unit_price_minor", "line_total_minor"}],
     "under_review": 1, "total_minor": 398, "receipt": null}

Every change bumps ``Cart.seq`` and, after the transaction commits, sends ``{"type": "cart.snapshot",
"snapshot": …}`` to the groups ``cart_group(visit id)`` and ``shopper_group(user id)``. A client that sees a gap in
``seq`` asks for a fresh snapshot (group messages can be dropped: channels docs, "Groups").
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from sensors.models import ShelfEvent
from store.billing.services import PaymentFailed, ReceiptLineData, price_to_minor, receipt_issue
from store.gates.models import Visit
from store.gates.services import visit_transition
from store.inventory.models import Product

from .models import Cart, CartEvent, ReviewItem

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

    Returns ``[{"product_id", "barcode", "name", "quantity", "unit_price_minor", "line_total_minor"}]`` in order
    of first appearance. Prices are the catalogue's current ``Decimal`` prices in minor units.
    """
    totals: OrderedDict[int, int] = OrderedDict()
    for product_id, qty in visit.cart_events.order_by("id").values_list("product_id", "quantity"):
        totals[product_id] = totals.get(product_id, 0) + qty
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
        lines.append({"product_id": pid, "barcode": p.barcode, "name": p.name, "quantity": qty,
                      "unit_price_minor": unit, "line_total_minor": unit * qty})
    return lines


def cart_snapshot(*, visit: Visit) -> dict:
    """The snapshot pushed to the shopper (module docstring), built from the ledger; ``seq`` from ``Cart``."""
    cart, _ = Cart.objects.get_or_create(visit=visit)
    lines = cart_lines(visit=visit)
    under_review = len(review_open_for(visit=visit))
    receipt = getattr(visit, "receipt", None)
    return {
        "visit": visit.pk,
        "seq": cart.seq,
        "state": visit.state,
        "currency": visit.store.currency,
        "lines": [{k: v for k, v in line.items() if k != "product_id"} for line in lines],
        "under_review": under_review,
        "total_minor": sum(line["line_total_minor"] for line in lines),
        "receipt": receipt.pk if receipt else None,
    }


def review_open_for(*, visit: Visit) -> list[ReviewItem]:
    """Open review items that name ``visit`` among their candidates."""
    return [
        r for r in ReviewItem.objects.filter(status=ReviewItem.Status.OPEN, shelf_event__store_id=visit.store_id)
        if any(c.get("visit") == visit.pk for c in r.candidates)
    ]


def cart_publish(*, visit: Visit) -> int:
    """Bump the visit's cart sequence number and, after commit, push the snapshot to its groups. Returns seq."""
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
    return cart.seq


@dataclass(frozen=True)
class CartChange:
    """A decided change to a visit's cart: ``quantity`` signed units of ``product`` (+ taken, − put back)."""

    visit: Visit
    product: Product
    quantity: int
    confidence: float
    evidence: dict


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
    """
    at = at or timezone.now()
    visit.refresh_from_db()
    if visit.state == Visit.State.BILLED:
        return visit.receipt
    open_reviews = review_open_for(visit=visit)
    if open_reviews:
        visit_transition(visit=visit, to_state=Visit.State.UNDER_REVIEW, at=at,
                         reason=f"{len(open_reviews)} shelf event(s) await review")
        cart_publish(visit=visit)
        return None
    lines = [
        ReceiptLineData(product_id=line["product_id"], barcode=line["barcode"], name=line["name"],
                        quantity=line["quantity"], unit_price_minor=line["unit_price_minor"])
        for line in cart_lines(visit=visit)
    ]
    try:
        receipt = receipt_issue(visit=visit, lines=lines)
    except PaymentFailed as exc:
        visit_transition(visit=visit, to_state=Visit.State.PAYMENT_FAILED, at=at, reason=str(exc))
        cart_publish(visit=visit)
        return None
    visit_transition(visit=visit, to_state=Visit.State.BILLED, at=at, reason=f"receipt {receipt.pk} captured")
    cart_publish(visit=visit)
    return receipt


class ReviewError(ValueError):
    """A review decision that cannot be applied (the message says why, for the manager)."""


@dataclass(frozen=True)
class ReviewOutcome:
    """What :func:`review_resolve` did.

    ``item``: the review item, now ``resolved`` or ``dismissed``. ``cart_event``: the CartEvent appended (None when
    nobody was charged). ``checkouts``: visits checked out because their last open review closed, as ``{visit id:
    Receipt or None}`` (None: not billed now, e.g. payment failed). ``checkout_errors``: ``{visit id: message}`` for
    checkouts that raised; the decision itself is committed either way.
    """

    item: ReviewItem
    cart_event: CartEvent | None
    checkouts: dict
    checkout_errors: dict


#: Visit states whose cart still takes events (a billed visit is corrected by refund, never by a new cart event).
_REVIEW_TAKES_EVENTS = {Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED, Visit.State.UNDER_REVIEW}


def review_resolve(*, item: ReviewItem, visit_id: int | None, barcode: str | None, quantity: int,
                   by: str) -> ReviewOutcome:
    """Decide an open review item: who took what from the shelf event behind it.

    ``visit_id``: the visit that gets the event, or None when nobody does (the item is then ``dismissed``; with a
    visit it is ``resolved``). ``barcode``: a product of the shelf event's store; with a visit, a CartEvent of
    ``quantity`` signed units (+ taken, − put back, never 0) is appended via :func:`cart_apply` with
    ``source="review"``, confidence 1.0, the shelf event, and evidence ``{"review", "by", "reason", "candidate",
    "hypothesis"}`` (the candidate and hypothesis dicts the decision matches, or None). A visit without a barcode is
    recorded as the item's resolution with no cart event. ``by``: who decided (a username), kept on the item.

    Afterwards every visit the item names (its candidates and the chosen visit) that is ``under_review`` with no
    other open item is checked out with :func:`visit_checkout` (after the decision commits); the other candidates
    get a fresh snapshot, since their ``under_review`` count fell.

    Raises :class:`ReviewError` (nothing written) when the item is not open any more, the visit does not exist, is
    in another store or no longer takes cart events (billed, closed, refused, payment_failed), the barcode is not
    in the store's catalogue, the quantity is 0, or the put-back exceeds what the visit holds.
    """
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
            if visit.state not in _REVIEW_TAKES_EVENTS:
                raise ReviewError(f"visit {visit_id} is {visit.state}: correct it by a refund or a charge instead")
        if barcode:
            product = Product.objects.filter(store_id=shelf_event.store_id, barcode=barcode).first()
            if product is None:
                raise ReviewError(f"no product with barcode {barcode!r} in this store")
        event = None
        if visit is not None and product is not None:
            if quantity == 0:
                raise ReviewError("the quantity must not be 0")
            candidate = next((c for c in candidates if c.get("visit") == visit.pk), None)
            hypothesis = next((h for h in shelf_event.hypotheses or [] if isinstance(h, dict)
                               and h.get("barcode") == barcode and h.get("quantity") == quantity), None)
            change = CartChange(visit=visit, product=product, quantity=quantity, confidence=1.0, evidence={
                "review": locked.pk, "by": by, "reason": locked.reason, "candidate": candidate,
                "hypothesis": hypothesis,
            })
            try:
                event = cart_apply(change=change, shelf_event=shelf_event, source=CartEvent.Source.REVIEW)
            except ValueError as exc:
                raise ReviewError(str(exc)) from exc
        locked.status = ReviewItem.Status.RESOLVED if visit is not None else ReviewItem.Status.DISMISSED
        locked.resolved_at = timezone.now()
        locked.resolved_by = by[:150]
        locked.resolution = {"visit": visit.pk if visit else None, "barcode": barcode or None,
                             "quantity": quantity if product is not None else None,
                             "cart_event": event.pk if event else None}
        locked.save(update_fields=["status", "resolved_at", "resolved_by", "resolution"])
        named = {c.get("visit") for c in candidates if isinstance(c.get("visit"), int)}
        if visit is not None:
            named.add(visit.pk)
        affected = list(Visit.objects.select_related("store").filter(pk__in=named))
        to_check_out = [v for v in affected if v.state == Visit.State.UNDER_REVIEW and not review_open_for(visit=v)]
        for v in affected:  # their "under_review" count fell; the chosen one was published by cart_apply
            if v not in to_check_out and v.state in _REVIEW_TAKES_EVENTS and (event is None or v.pk != visit.pk):
                cart_publish(visit=v)
    log.info("review %s %s by %s: visit %s, %s × %s", locked.pk, locked.status, by, visit_id, quantity, barcode)
    checkouts, errors = {}, {}
    for v in to_check_out:
        try:
            checkouts[v.pk] = visit_checkout(visit=v)
        except Exception as exc:  # the decision is committed; report the failed checkout to the manager
            log.exception("visit %s: checkout after review %s failed", v.pk, locked.pk)
            errors[v.pk] = str(exc) or exc.__class__.__name__
    return ReviewOutcome(item=locked, cart_event=event, checkouts=checkouts, checkout_errors=errors)
