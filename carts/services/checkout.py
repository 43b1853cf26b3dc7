"""Checkout at exit: a visit's cart becomes a receipt and its hold is captured (``store.billing``), unless a review
still names it (then ``under_review``); the RFID tags that left with the shopper are put on the cart first.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from sensors.models import RfidTag
from sensors.rfid import exit_charges
from sensors.rfid_live import barcode_of_gtin, tag_sell, tags_sold
from store.billing.models import Receipt
from store.billing.senses import TAG
from store.billing.services import PaymentFailed, receipt_issue
from store.gates.models import Visit
from store.gates.services import visit_transition
from store.inventory.models import Product
from store.inventory.services import stock_record_sale

from ..emails import receipt_email_schedule
from .ledger import CartChange, cart_apply, cart_lines, cart_publish, cart_receipt_lines
from .review_queue import review_open_for

log = logging.getLogger(__name__)


def visit_checkout(*, visit: Visit, at: datetime | None = None):
    """Bill an exited visit: receipt lines from the cart ledger → ``billing.receipt_issue`` (capture) → ``billed``.

    A visit with open review items touching it goes ``under_review`` instead and is billed once they are resolved.
    On a payment failure the visit goes ``payment_failed``. Returns the Receipt, or None when not billed now.
    Idempotent: a billed visit returns its receipt.

    ``at`` (default now) is on the store's clock, which is the devices' (the recording's, in a replay; running
    ``--speed`` times faster than the wall in an emulation): a visit is never billed, and its receipt never issued,
    before it left (``exited_at``), so every stored time of a visit is in order (event ≤ exit ≤ billed = issued)
    even where a wall-clock caller (the checkout sweeper, a review resolved) bills a visit whose store clock ran ahead.

    One transaction, with the visit's row locked from the start (``visit`` is refreshed from it): two checkouts of
    one visit at once (two billing workers, the sweeper, a review resolved) run one after the other, and the second
    finds the visit billed and returns its receipt (no second capture, stock sale, transition or e-mail). The push to
    the shopper's app and the receipt e-mail (a task of its own) go after the commit.
    """
    at = at or timezone.now()
    with transaction.atomic():
        # the visit row only (of=self): locking the store row too would queue every checkout of the store
        visit.refresh_from_db(from_queryset=Visit.objects.select_for_update(of=("self",)).select_related("store"))
        return _checkout_locked(visit=visit, at=at)


def _checkout_locked(*, visit: Visit, at: datetime):
    """:func:`visit_checkout` with ``visit``'s row locked and fresh, in its transaction."""
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
    tagged = set(RfidTag.objects.filter(sold_visit=visit, product__isnull=False).values_list("product_id", flat=True))
    lines = cart_receipt_lines(cart_lines(visit=visit), visit.store.currency, tagged=tagged)
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
    receipt_email_schedule(receipt=receipt)  # the shopper's email copy, a task queued after commit (carts.emails)
    return receipt


def visit_exit_tags_apply(*, visit: Visit, tags, at: datetime):
    """Put the RFID tags that left with ``visit``'s shopper (``sensors.rfid.ExitTag`` s) on its cart, by the rules
    of ``sensors.rfid.exit_charges``: a serial sold on any receipt (another visit's, or this one's in an earlier
    attempt) is never charged again; a tag of a product the cart holds by weight confirms a unit (recorded on the tag,
    no new cart event); any other tag of a catalogue product is a +1 cart event (source ``fusion``, confidence 1,
    evidence ``{"sense": "tag", "tag": {...}}``). Each tag is claimed by one conditional update
    (``sensors.rfid_live.tag_sell``), so two attempts charge it once. Returns the ``TagCharge`` s decided."""
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
