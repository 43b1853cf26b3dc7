"""The cart ledger: decided changes appended as cart events, the cart's lines read back from them, and the
snapshot pushed live to the shopper's phone (the write side of a cart; reviews, checkout and disputes build on it).

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
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Iterator

from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from sensors.models import ShelfEvent
from store.billing.senses import TAG, senses_checked, senses_union
from store.billing.services import ReceiptLineData, price_to_minor, receipt_amounts
from store.dashboard_events import dashboard_notify
from store.pushes import send_groups
from store.gates.models import Visit
from store.inventory.models import Product

from ..models import Cart, CartEvent
from ..trip import trip_status
from .review_queue import review_undecided_by_visit, review_undecided_for

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
    rows = visit.cart_events.order_by("id").values_list("product_id", "quantity", "senses")
    totals, senses = _sums(rows)
    products = Product.objects.in_bulk([pid for pid, q in totals.items() if q > 0])
    return _lines(visit.pk, totals, senses, products, visit.store.currency)


def _sums(rows) -> tuple[OrderedDict[int, int], dict[int, list]]:
    """(product id → summed quantity, in order of first appearance; product id → its events' senses) of one
    visit's cart event ``rows`` (product id, quantity, senses), in id order."""
    totals: OrderedDict[int, int] = OrderedDict()
    senses: dict[int, list] = {}
    for product_id, qty, sense in rows:
        totals[product_id] = totals.get(product_id, 0) + qty
        senses.setdefault(product_id, []).append(sense)
    return totals, senses


def _lines(visit_id: int, totals: OrderedDict[int, int], senses: dict[int, list], products: dict[int, Product],
           currency: str) -> list[dict]:
    """:func:`cart_lines`' rows from :func:`_sums` and the products (id → Product) of the lines > 0."""
    lines = []
    for pid, qty in totals.items():
        if qty <= 0:
            if qty < 0:
                log.warning("visit %s: product %s sums to %d in the cart; shown as 0", visit_id, pid, qty)
            continue
        p = products[pid]
        unit = price_to_minor(p.price, currency)
        line_senses = senses_union(senses[pid])
        lines.append({"product_id": pid, "barcode": p.barcode, "name": p.name, "quantity": qty,
                      "unit_price_minor": unit, "line_total_minor": unit * qty,
                      "senses": list(line_senses) if line_senses is not None else None})
    return lines


def cart_line_data(product: Product, quantity: int, currency: str) -> ReceiptLineData:
    """One cart line (``quantity`` ≥ 1 units of ``product`` at its catalogue price now, in ``currency``'s minor
    units) as the receipt would bill it, with the product's tax category and rate now (no category: not taxed).
    Load ``product`` with ``select_related("tax_category")`` (else one query per call). Totals and tax of such
    lines: ``store.billing.services.receipt_amounts``, for the shopper's cart and the dashboard alike."""
    category = product.tax_category
    return ReceiptLineData(product_id=product.pk, barcode=product.barcode, name=product.name, quantity=quantity,
                           unit_price_minor=price_to_minor(product.price, currency),
                           tax_rate_percent=category.rate_percent if category else Decimal(0),
                           tax_category=category.name if category else "")


def cart_receipt_lines(cart: list[dict], currency: str, *, tagged: set[int] = frozenset(),
                       products: dict[int, Product] | None = None) -> list[ReceiptLineData]:
    """``cart_lines`` rows as billing's ``ReceiptLineData`` (:func:`cart_line_data`: each with its
    product's tax category and rate now; no category: not taxed), with the rows' senses; ``tagged``: products an
    RFID tag that left with the shopper confirmed (their lines gain ``tag``). One query, none when ``products``
    (id → Product loaded with ``select_related("tax_category")``, every line's product among them) is given."""
    if products is None:
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
    return _snapshot(visit, cart.seq, lines, under_review, cart_receipt_lines(lines, visit.store.currency))


def cart_snapshots(visits: list[Visit], pending: dict[int, tuple[list, list]]) -> dict[int, dict]:
    """Visit id → :func:`cart_snapshot` of each of ``visits`` (loaded with ``select_related("store", "receipt")``;
    ``pending``: visit id → its ``review_undecided_for`` pair, read for all of them at once by
    :func:`review_undecided_by_visit`: the count under review and the trip status come from it), the same dicts,
    read in three queries whatever their number (the carts' ``seq``, every visit's cart events, their products)
    instead of five per visit; :func:`carts.trip.trip_status` reads what else it needs per visit (nothing for a
    shopper inside)."""
    ids = [v.pk for v in visits]
    seqs = dict(Cart.objects.filter(visit_id__in=ids).values_list("visit_id", "seq"))
    rows: dict[int, list] = {pk: [] for pk in ids}
    for visit_id, product_id, qty, sense in (CartEvent.objects.filter(visit_id__in=ids).order_by("id")
                                             .values_list("visit_id", "product_id", "quantity", "senses")):
        rows[visit_id].append((product_id, qty, sense))
    sums = {pk: _sums(rows[pk]) for pk in ids}
    products = Product.objects.select_related("tax_category").in_bulk(
        sorted({pid for totals, _ in sums.values() for pid, q in totals.items() if q > 0}))
    out = {}
    for visit in visits:
        if visit.pk not in seqs:  # no cart yet (cart_snapshot makes it)
            seqs[visit.pk] = Cart.objects.get_or_create(visit=visit)[0].seq
        currency = visit.store.currency
        lines = _lines(visit.pk, *sums[visit.pk], products, currency)
        out[visit.pk] = _snapshot(visit, seqs[visit.pk], lines, len(pending[visit.pk][0]),
                                  cart_receipt_lines(lines, currency, products=products), pending=pending[visit.pk])
    return out


def _snapshot(visit: Visit, seq: int, lines: list[dict], under_review: int,
              receipt_lines: list[ReceiptLineData], pending: tuple[list, list] | None = None) -> dict:
    """The snapshot dict (module docstring) of ``visit`` from its parts (``pending``: :func:`cart_snapshots`)."""
    receipt = getattr(visit, "receipt", None)
    _, tax, total = receipt_amounts(receipt_lines)
    return {
        "visit": visit.pk,
        "seq": seq,
        "state": visit.state,
        "currency": visit.store.currency,
        "lines": [{k: v for k, v in line.items() if k != "product_id"} for line in lines],
        "under_review": under_review,
        "tax_minor": tax,
        "total_minor": total,
        "receipt": receipt.pk if receipt else None,
        "trip": trip_status(visit=visit, pending=pending),
    }


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


def cart_publish_flush() -> int:
    """Inside a :func:`cart_publish_batch`: publish the visits noted so far now, each once (a long store-loop step
    pushes what it decided every fraction of a second, not only at its end); the batch goes on. Returns the visits
    published (0 outside a batch or with nothing noted)."""
    visits = getattr(_batch, "visits", None)
    if not visits:
        return 0
    _batch.visits = {}
    _publish_many(list(visits.values()))
    return len(visits)


def cart_publish(*, visit: Visit) -> None:
    """Bump the visit's cart sequence number and, after commit, push the snapshot to its groups (inside
    :func:`cart_publish_batch`, only noted: the batch publishes at its end). Alone it is a batch of one (the same
    snapshot, read in fewer queries than :func:`cart_snapshot` and sent in one trip to the channel layer)."""
    pending = getattr(_batch, "visits", None)
    if pending is not None:
        pending[visit.pk] = visit
        return
    _publish_many([visit])


def _publish_many(visits: list[Visit]) -> None:
    """Publish ``visits`` (:func:`cart_publish`; all at once at the end of a :func:`cart_publish_batch`): their sequence
    numbers bumped in one transaction of three statements (lock the carts, make the missing ones, bump them all),
    and after it commits their snapshots built together (:func:`cart_snapshots`) and pushed in one go (one trip to
    the channel layer, not two per visit), the dashboards told once per store."""
    with transaction.atomic():
        have = set(Cart.objects.select_for_update().filter(visit_id__in=[v.pk for v in visits])
                   .order_by("visit_id").values_list("visit_id", flat=True))
        for visit in visits:
            if visit.pk not in have:  # its first snapshot (get_or_create: another writer may make it first)
                Cart.objects.select_for_update().get_or_create(visit=visit)
        Cart.objects.filter(visit_id__in=[v.pk for v in visits]).update(seq=F("seq") + 1, updated_at=timezone.now())
    ids = [(visit.pk, visit.shopper_id) for visit in visits]

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        fresh = Visit.objects.select_related("store", "receipt").in_bulk([visit_id for visit_id, _ in ids])
        pending = review_undecided_by_visit(list(fresh.values()))
        snapshots = cart_snapshots([fresh[visit_id] for visit_id, _ in ids if visit_id in fresh], pending)
        out = []
        for visit_id, user_id in ids:
            if visit_id not in fresh:  # deleted since (a test's teardown): nothing to show
                continue
            message = {"type": "cart.snapshot", "snapshot": snapshots[visit_id]}
            out += [(visit_id, cart_group(visit_id), message), (visit_id, shopper_group(user_id), message)]
        send_groups(layer, out)  # the store worker: handed to its sender thread (store.pushes)

    transaction.on_commit(send)
    for store_id in dict.fromkeys(visit.store_id for visit in visits):
        dashboard_notify(reason="cart", store_id=store_id)


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
        list(Visit.objects.select_for_update().filter(pk=change.visit.pk).values_list("pk", flat=True))  # the lock
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
