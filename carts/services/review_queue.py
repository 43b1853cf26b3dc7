"""The review queue as a visit sees it: which review items still hold its checkout, which of them are undecided for
the shopper (a decision held in its undo window is decided), counted for many visits at once; and
:class:`ReviewError`, what a review decision that cannot be applied raises (``carts.services.review``,
``carts.services.corrections``). Read by the cart snapshot and the checkout, so it imports neither.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
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
    """``items`` (a ReviewItem queryset) narrowed in the database to those that name one of ``visit_ids`` among their
    candidates or as their resolution's visit: through ``ReviewItem.visits_named``, the index kept beside the JSON.
    Callers still check each item exactly. (Matching the JSON text of every undecided item of the store by a regular
    expression was PostgreSQL's costliest query at a 200-shopper exodus: docs/store-worker-load.md, eighteenth
    pass.)"""
    ids = sorted({int(v) for v in visit_ids})
    if not ids:
        return items.none()
    naming = ReviewItem.visits_named.through.objects.filter(visit_id__in=ids).values("reviewitem_id")
    return items.filter(pk__in=naming)


def review_open_for(*, visit: Visit, now: datetime | None = None) -> list[ReviewItem]:
    """Review items not decided for good (open, waiting for the review of a pick, or decided by a person but still
    undoable: ``undo_until`` after ``now``) that name ``visit`` among their candidates or, for a waiting put-back,
    as the visit it goes to: its checkout waits for them."""
    return review_open_by_visit([visit], now)[visit.pk]


def review_open_by_visit(visits: list[Visit], now: datetime | None = None) -> dict[int, list[ReviewItem]]:
    """Visit id → :func:`review_open_for` of each of ``visits`` (the same items, in the same order), read in one
    query per store (the store's undecided items near the visits, each decoded once and handed to every visit it
    names) instead of one per visit: a decision on an event among a crowd names dozens of visits, and reading the
    store's open items once per visit made each decision cost seconds. ``now``: tz-aware UTC, default the clock."""
    now = now or timezone.now()
    margin = timedelta(seconds=REVIEW_VISIT_MARGIN_S)
    out: dict[int, list[ReviewItem]] = {v.pk: [] for v in visits}
    by_store: dict[int, dict[int, Visit]] = {}
    for v in visits:
        by_store.setdefault(v.store_id, {})[v.pk] = v
    undecided = Q(status__in=(ReviewItem.Status.OPEN, ReviewItem.Status.WAITING)) | Q(undo_until__gt=now)
    for store_id, mine in by_store.items():
        items = ReviewItem.objects.select_related("shelf_event").filter(
            undecided, shelf_event__store_id=store_id,
            shelf_event__t_end__gte=min(v.entered_at for v in mine.values()) - margin)
        if all(v.exited_at is not None for v in mine.values()):
            items = items.filter(shelf_event__t_start__lte=max(v.exited_at for v in mine.values()) + margin)
        for r in _naming(items, mine):
            for visit_id in r.named_visit_ids() & mine.keys():
                v = mine[visit_id]
                if r.shelf_event.t_end >= v.entered_at - margin and \
                        (v.exited_at is None or r.shelf_event.t_start <= v.exited_at + margin):
                    out[visit_id].append(r)
    return out


def review_undecided_counts(visits: list[Visit], now: datetime | None = None) -> dict[int, int]:
    """Visit id → ``len(review_undecided_for(visit=…)[0])`` for each of ``visits``, read in one query per store
    (:func:`review_undecided_by_visit`): a step of the store loop that changes many carts reads the store's open
    reviews once."""
    return {visit_id: len(undecided) for visit_id, (undecided, _) in review_undecided_by_visit(visits, now).items()}


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
    return review_undecided_by_visit([visit], now)[visit.pk]


def review_undecided_by_visit(visits: list[Visit], now: datetime | None = None
                              ) -> dict[int, tuple[list[ReviewItem], list[ReviewItem]]]:
    """Visit id → :func:`review_undecided_for` of each of ``visits``, read as :func:`review_open_by_visit` reads
    them (one query per store)."""
    now = now or timezone.now()
    out = {}
    for visit_id, items in review_open_by_visit(visits, now).items():
        held = [r for r in items if review_held(r, now)]
        out[visit_id] = ([r for r in items if r not in held], held)
    return out
