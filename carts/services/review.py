"""Review decisions: a person decides who took what from a shelf event fusion was unsure of (:func:`review_resolve`),
may take the decision back while it is held (:func:`review_undo`), and the held decisions become final
(:func:`review_holds_release`); the put-backs waiting for a pick's review are settled with it. A decision appends
cart events (``carts.services.ledger``), corrects a billed visit's money (``carts.services.corrections``) and
checks out the visits it kept waiting (``carts.services.checkout``).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from sensors.models import ShelfEvent
from store.billing.models import PaymentAttempt
from store.billing.senses import HAND, HAND_MIN_SCORE, STAFF, TAG, WEIGHT, senses_checked, senses_union
from store.gates.models import Visit
from store.inventory.models import Product

from ..models import CartEvent, ReviewItem
from .checkout import visit_checkout
from .corrections import billed_correction
from .ledger import CartChange, cart_apply, cart_publish, cart_publish_batch
from .review_queue import ReviewError, review_open_by_visit

log = logging.getLogger(__name__)


def review_senses(*, candidate: dict | None, shelf_event: ShelfEvent | None) -> tuple[str, ...]:
    """The senses of a person's review decision: ``staff``, with ``weight`` for a shelf event, ``hand`` when the
    chosen candidate's hand scored ``store.billing.senses.HAND_MIN_SCORE`` or more, ``tag`` when a shelf antenna's tags
    were shown with it (``candidate``: the review item's candidate dict for the chosen visit, or None)."""
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


def _party_visits(visit: Visit) -> list[Visit]:
    """``visit`` first, then the other visits of its party (one account's visits billed together)."""
    lead_id = visit.party_lead_id or visit.pk
    others = Visit.objects.filter(Q(pk=lead_id) | Q(party_lead_id=lead_id)).exclude(pk=visit.pk).order_by("pk")
    return [visit, *others]


def review_followers_settle(*, item: ReviewItem) -> list[Visit]:
    """Settle the put-backs waiting for ``item`` (``ReviewItem.follows``) once it is decided, oldest first (as
    ``carts.offline.evaluation.sink_receipts`` settles them offline): each applies as
    fusion decided it (a cart event of source ``fusion``, evidence ``follows_review``) to its visit or a party
    member holding the item, and is marked ``resolved`` by ``fusion``; when nobody in the party holds it (the
    review gave the pick to someone else, or dismissed it) the item opens for people. Call inside the
    transaction that decided ``item``. Returns the visits the settled items name, as candidates or as the visit
    the put-back went to (their checkouts may proceed)."""
    touched: list[Visit] = []
    # in the order fusion decided them (the model's default order is newest first): a put-back that finds the cart
    # already emptied by a later one would open for people in place of that later one
    for f in ReviewItem.objects.select_for_update().select_related("shelf_event").filter(
            follows=item, status=ReviewItem.Status.WAITING).order_by("pk"):
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


def review_undo_s() -> float:
    """Seconds a person's review decision made in the console can be undone (``settings.WALKOUT["REVIEW_UNDO_S"]``,
    default 10); the visits it names are billed only after that."""
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
    ``correction``, :func:`billed_correction`); a take (quantity > 0) is charged off-session to the payer's card
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
    # every cart the decision changes is pushed once, after it commits (a decision among a crowd names dozens)
    with cart_publish_batch(), transaction.atomic():
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
                attempts, error = billed_correction(visit=line_visit, product=line_product, quantity=line_q,
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
        still_open = review_open_by_visit([v for v in affected if v.state == Visit.State.UNDER_REVIEW])
        to_check_out = [v for v in affected if v.state == Visit.State.UNDER_REVIEW and not still_open[v.pk]]
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
    delay = max(0.0, (at - timezone.now()).total_seconds()) + 0.05

    def schedule() -> None:
        if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
            def run() -> None:
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
            # by name, as beat sends it (settings.CELERY_BEAT_SCHEDULE): the task module calls this one
            current_app.send_task("carts.tasks.review_holds_release_task", countdown=delay)
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
        still_open = review_open_by_visit(list(visits), now)
        due = [v for v in visits if not still_open[v.pk]]
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
