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
