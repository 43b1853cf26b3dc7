"""The manager's dashboard as a read model (``carts.dashboard`` renders it; nothing else imports it): visits of
the day with their carts, the latest shelf events, the review queue, occupancy, today's sales, open carts and the
alerts (low stock, sensors, the live store). Money in integer minor units with ``*_display`` strings for the
templates; times aware UTC.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from sensors.models import ShelfEvent
from store.accounts.demo import THROWAWAY_USERNAME_RE, is_throwaway_shopper
from store.billing.models import Receipt, ReceiptLine
from store.billing.money import money_display
from store.billing.services import ReceiptLineData, receipt_amounts
from store.gates.models import Visit
from store.inventory.models import Product
from store.inventory.selectors import low_stock_products
from store.layout.models import Store

from .models import CartEvent, ReviewItem, StoreAlert
from .selectors import OPEN_STATES
from .services.ledger import cart_line_data


def _cart_data(visits: list[Visit]) -> dict[int, list[ReceiptLineData]]:
    """``{visit id: its cart as ReceiptLineData, by product id}`` from the cart ledgers of ``visits``, in two
    queries; the same rule as ``carts.services.ledger.cart_lines`` (products summing to ≤ 0 are not in the cart;
    catalogue prices and tax categories now)."""
    currency = {v.pk: v.store.currency for v in visits}
    rows = list(CartEvent.objects.filter(visit_id__in=list(currency)).values("visit_id", "product_id")
                .annotate(q=Sum("quantity")).filter(q__gt=0).order_by("visit_id", "product_id"))
    products = Product.objects.select_related("tax_category").in_bulk({r["product_id"] for r in rows})
    out: dict[int, list[ReceiptLineData]] = {pk: [] for pk in currency}
    for r in rows:
        out[r["visit_id"]].append(cart_line_data(products[r["product_id"]], r["q"], currency[r["visit_id"]]))
    return out


def cart_totals(visits: list[Visit]) -> dict[int, tuple[int, int]]:
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
    totals = cart_totals(visits)
    open_counts = open_review_counts()
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


def open_review_counts() -> dict[int, int]:
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
    ``store.accounts.demo.is_throwaway_shopper``): deciding it bills only the test card."""

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
    (``store.accounts.demo.is_throwaway_shopper``) are left out; live and emulated sessions (``make demo``) count, as the
    devices' traffic is the store's."""
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
    "quantity", "line_total_display"}`` (the ``carts.services.ledger.cart_lines`` rule: products summing to ≤ 0 are not
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
    reviews = open_review_counts()
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
    return list(StoreAlert.objects.filter(resolved_at__isnull=True).select_related("store")[:limit])
