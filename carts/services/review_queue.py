"""The review queue as a visit sees it: which review items still hold its checkout, which of them are undecided for
the shopper (a decision held in its undo window is decided), counted for many visits at once; and
:class:`ReviewError`, what a review decision that cannot be applied raises (``carts.services.review``,
``carts.services.corrections``). Read by the cart snapshot and the checkout, so it imports neither.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from store.gates.models import Visit

from ..models import ReviewItem


class ReviewError(ValueError):
    """A review decision that cannot be applied (the message says why, for the manager)."""


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
    items = ReviewItem.objects.select_related("shelf_event").filter(
        undecided, shelf_event__store_id=visit.store_id, shelf_event__t_end__gte=visit.entered_at - margin)
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
