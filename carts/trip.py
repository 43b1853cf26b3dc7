"""Where a shopper's trip stands, in words a shopper reads: the status block of the cart snapshot.

One visit goes through these stages the shopper sees (issue #15, item 2):

* ``inside`` (visit ``admitted`` or ``shopping``): "You're in".
* ``leaving`` (``exited``): the cart is being added up; an honest expected time from the visit's
  ``checkout_due_at`` (the settle time) and, once that is past, a sentence that says it takes longer than usual.
* ``charged`` (``billed`` or ``closed``): the amount, the card (brand and last 4) and the receipt's link.
* ``review`` (``under_review``): what is checked (the products in question), why (in plain words), and by when
  (``settings.WALKOUT["REVIEW_WITHIN_H"]`` hours after the exit, default 2).
* ``decided`` (``under_review``, but every item a person decided is only held in its undo window,
  ``ReviewItem.undo_until``, or waits for the release that bills it): the item was just checked and the receipt
  follows within about N seconds (``due_in_s``: the last window's end plus :data:`BILLING_MARGIN_S`). An item
  still undecided keeps the stage ``review``, naming only the undecided items.
* ``payment_failed`` and ``refused``: what went wrong and what to do.

:func:`trip_status` returns plain JSON (it travels in the snapshot over the WebSocket); the page shows ``title``
and ``text`` and, where given, a link (``link_url``, ``link_text``). Times in sentences are the store's local time.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from store.billing.money import money_display
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.timezones import store_zone

from .services.review_queue import review_undecided_for

S = Visit.State

#: Seconds the store loop usually needs past the settle time to bill a visit (deciding its last events, capture).
BILLING_MARGIN_S = 5


def review_within_h() -> float:
    """Hours after the exit by which a person decides a visit under review (``WALKOUT["REVIEW_WITHIN_H"]``, 2)."""
    return float(settings.WALKOUT.get("REVIEW_WITHIN_H", 2.0))


def store_local(dt: datetime, store) -> datetime:
    """``dt`` (aware UTC) in the store's local time zone (``Store.timezone``; the site's when empty)."""
    return timezone.localtime(dt, store_zone(store))


def _card_words(visit: Visit) -> str:
    """"your Visa ending 4242" from the receipt's card (as charged), else the card on file; "your card" if unknown."""
    receipt = getattr(visit, "receipt", None)
    brand = getattr(receipt, "card_brand", "") if receipt is not None else ""
    last4 = getattr(receipt, "card_last4", "") if receipt is not None else ""
    if not last4:
        profile = getattr(visit.shopper, "shopper", None)
        brand, last4 = (profile.card_brand, profile.card_last4) if profile is not None else ("", "")
    if not last4:
        return "your card"
    return f"your {(brand or 'card').title()} ending {last4}"


def _review_words(visit: Visit, items: list) -> tuple[list[str], str]:
    """What ``items`` (review items naming ``visit``) are about (product names, best guess first) and why, in plain
    words."""
    names: list[str] = []
    whys: set[str] = set()
    barcodes = {}
    for item in items:
        hyps = [h for h in item.shelf_event.hypotheses or [] if isinstance(h, dict)]
        if hyps:
            barcodes[item.pk] = hyps[0].get("barcode", "")
        others = [c for c in item.candidates or [] if isinstance(c, dict) and c.get("visit") not in (None, visit.pk)]
        whys.add("another shopper was at the same shelf" if others else "our sensors were not sure enough")
    known = dict(Product.objects.filter(store_id=visit.store_id, barcode__in=set(barcodes.values()))
                 .values_list("barcode", "name"))
    for item in items:
        names.append(known.get(barcodes.get(item.pk, ""), "an item"))
    return names, " and ".join(sorted(whys))


def _names_text(names: list[str]) -> str:
    """"Cola, Chips, Water and 2 more" (at most three names)."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def trip_status(*, visit: Visit, receipt_total_minor: int | None = None, now: datetime | None = None,
                pending: tuple[list, list] | None = None) -> dict:
    """The status block of ``visit`` (module docstring): ``{"stage", "title", "text", "link_url", "link_text",
    "due_in_s"}`` (``due_in_s``: seconds until the receipt is expected, ``leaving`` and ``decided`` only, else
    None). ``now``: tz-aware UTC, default the clock. ``pending``: the visit's
    ``review_undecided_for`` pair when the caller has read it (a batch of snapshots); None: read here."""
    now = now or timezone.now()
    store = visit.store
    out = {"stage": "", "title": "", "text": "", "link_url": "", "link_text": "", "due_in_s": None}
    state = visit.state
    if state in (S.ADMITTED, S.SHOPPING):
        since = store_local(visit.entered_at, store).strftime("%H:%M")
        out.update(stage="inside", title="You're in",
                   text=f"You came into {store.name} at {since}. Take what you like: it appears here as you go. "
                        "When you're done, just walk out.")
    elif state == S.EXITED:
        due = visit.checkout_due_at or now
        left = (due - now).total_seconds() + BILLING_MARGIN_S
        if left > 0:
            n = max(1, math.ceil(left))
            out.update(stage="leaving", title="Adding up your cart", due_in_s=n,
                       text=f"You've left the store. We're checking the last things you took; your receipt should be "
                            f"ready in about {n} seconds.")
        else:
            out.update(stage="leaving", title="Adding up your cart", due_in_s=0,
                       text="You've left the store. This is taking longer than usual: we will e-mail your receipt "
                            "as soon as it is ready. Nothing is charged until then.")
    elif state in (S.BILLED, S.CLOSED):
        receipt = getattr(visit, "receipt", None)
        total = receipt.total_minor if receipt is not None else (receipt_total_minor or 0)
        amount = money_display(total, store.currency)
        if total:
            text = f"We charged {amount} to {_card_words(visit)}. Thanks for shopping at {store.name}!"
            title = f"Charged {amount}"
        else:
            text = f"You took nothing, so nothing was charged and the hold on {_card_words(visit)} is released."
            title = "No charge"
        out.update(stage="charged", title=title, text=text)
        if receipt is not None:
            out.update(link_url=reverse("carts:receipt", args=[receipt.pk]), link_text="See your receipt")
    elif state == S.UNDER_REVIEW and not (pending := pending or review_undecided_for(visit=visit, now=now))[0]:
        held = pending[1]
        names, _ = _review_words(visit, held)
        what = _names_text(names) if names else "your visit"
        if held:
            n = max(1, math.ceil(max((r.undo_until - now).total_seconds() for r in held) + BILLING_MARGIN_S))
            out.update(stage="decided", title="Checked: your receipt is coming", due_in_s=n,
                       text=f"A person has just checked {what}. Your receipt follows in about {n} seconds; you "
                            "pay only for what you took.")
        else:  # the window is over and the release that bills the visit is on its way
            out.update(stage="decided", title="Checked: your receipt is coming", due_in_s=0,
                       text=f"A person has checked {what}. Your receipt is being prepared; we will e-mail it as "
                            "soon as it is ready.")
    elif state == S.UNDER_REVIEW:
        names, why = _review_words(visit, pending[0])
        exited = visit.exited_at or visit.entered_at
        by = store_local(max(exited, visit.entered_at) + timedelta(hours=review_within_h()), store)
        what = _names_text(names) if names else "an item"
        out.update(stage="review", title="A person is checking your visit",
                   text=f"We want to be sure about {what}: {why or 'our sensors were not sure enough'}. "
                        f"Someone checks by {by.strftime('%H:%M')}; you pay only for what you took, and we'll "
                        "e-mail your receipt.")
    elif state == S.PAYMENT_FAILED:
        out.update(stage="payment_failed", title="Your card was not charged",
                   text=f"We could not charge {_card_words(visit)}. Add another card and we will try again.",
                   link_url=reverse("accounts:card_add"), link_text="Update your card")
    elif state == S.REFUSED:
        out.update(stage="refused", title="Not admitted",
                   text="The gate did not let you in (your card was declined). Add another card and try again.",
                   link_url=reverse("accounts:card_add"), link_text="Update your card")
    return out
