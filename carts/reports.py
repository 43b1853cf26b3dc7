"""The shop owner's figures over time, per store: sales per day, top sellers, and how often a shelf event needed a
person (review rate per day); and a plain server-side SVG bar chart to draw a series with (no JavaScript, no chart
library: the page works printed, offline and in every browser).

Days are the store's local days (``Store.timezone``, see ``store.layout.timezones``), counted back from today
inclusive. Money is integer minor units of the store's currency; refunds are not subtracted from sales (they are
payment attempts, shown on each receipt). A day with nothing to count says so (``None``), never 0 %.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from html import escape

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from sensors.models import ShelfEvent
from store.billing.models import Receipt, ReceiptLine
from store.layout.models import Store
from store.layout.timezones import store_zone

from .models import ReviewItem
from store.billing.money import money_display


def local_days(*, store: Store, days: int, now: datetime | None = None) -> tuple[list[date], datetime, datetime]:
    """The last ``days`` (≥ 1) local days of ``store`` ending today, and their ``[start, end)`` as aware times."""
    if days < 1:
        raise ValueError(f"days must be ≥ 1, got {days}")
    zone = store_zone(store)
    today = timezone.localtime(now or timezone.now(), zone).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=zone)
    return [first + timedelta(days=i) for i in range(days)], start, end


@dataclass(frozen=True)
class SalesDay:
    """One local day of one store: receipts issued, units on them, their total (minor units)."""

    day: date
    receipts: int
    units: int
    total_minor: int


def sales_by_day(*, store: Store, days: int = 30, now: datetime | None = None) -> list[SalesDay]:
    """Receipts of ``store`` per local day over the last ``days`` days, oldest first, every day present (0 when no
    receipt). Two queries."""
    day_list, start, end = local_days(store=store, days=days, now=now)
    zone = store_zone(store)
    receipts = Receipt.objects.filter(visit__store=store, issued_at__gte=start, issued_at__lt=end)
    totals = {r["d"]: r for r in receipts.annotate(d=TruncDate("issued_at", tzinfo=zone)).values("d")
              .annotate(n=Count("id"), total=Sum("total_minor"))}
    units = {r["d"]: r["u"] for r in ReceiptLine.objects.filter(receipt__in=receipts)
             .annotate(d=TruncDate("receipt__issued_at", tzinfo=zone)).values("d").annotate(u=Sum("quantity"))}
    return [SalesDay(day=d, receipts=totals.get(d, {}).get("n", 0), units=units.get(d) or 0,
                     total_minor=totals.get(d, {}).get("total") or 0) for d in day_list]


@dataclass(frozen=True)
class TopSeller:
    """A product's sales over the period: units sold and revenue (minor units) on receipts, as issued."""

    product_id: int
    barcode: str
    name: str
    units: int
    revenue_minor: int


def top_sellers(*, store: Store, days: int = 30, limit: int = 10, now: datetime | None = None) -> list[TopSeller]:
    """The ``limit`` products of ``store`` with the most units on receipts over the last ``days`` local days, most
    first (ties: more revenue first, then name). Names are the catalogue's today. One query."""
    _, start, end = local_days(store=store, days=days, now=now)
    rows = (ReceiptLine.objects.filter(receipt__visit__store=store, receipt__issued_at__gte=start,
                                       receipt__issued_at__lt=end)
            .values("product_id", "product__barcode", "product__name")
            .annotate(units=Sum("quantity"), revenue=Sum("line_total_minor"))
            .order_by("-units", "-revenue", "product__name")[:limit])
    return [TopSeller(product_id=r["product_id"], barcode=r["product__barcode"], name=r["product__name"],
                      units=r["units"] or 0, revenue_minor=r["revenue"] or 0) for r in rows]


@dataclass(frozen=True)
class ReviewDay:
    """One local day: shelf events detected, how many went to a person (review items, not those fusion settled by
    itself), and their share (``rate`` 0–1; None when there was no shelf event: no data, not 0 %)."""

    day: date
    shelf_events: int
    reviews: int
    rate: float | None


def review_rate_by_day(*, store: Store, days: int = 30, now: datetime | None = None) -> list[ReviewDay]:
    """Per local day (by the shelf event's start), the share of ``store``'s shelf events that a person had to
    decide, oldest first, every day present. Replays of recordings count like live trading (they are the store's
    events too); waiting put-backs that fusion settled are not counted as reviews. One query."""
    day_list, start, end = local_days(store=store, days=days, now=now)
    zone = store_zone(store)
    for_people = (Q(review__isnull=False) & ~Q(review__status=ReviewItem.Status.WAITING)
                  & ~Q(review__resolved_by="fusion"))
    rows = {r["d"]: r for r in ShelfEvent.objects.filter(store=store, t_start__gte=start, t_start__lt=end)
            .annotate(d=TruncDate("t_start", tzinfo=zone)).values("d")
            .annotate(n=Count("id"), r=Count("id", filter=for_people))}
    out = []
    for d in day_list:
        n, r = rows.get(d, {}).get("n", 0), rows.get(d, {}).get("r", 0)
        out.append(ReviewDay(day=d, shelf_events=n, reviews=r, rate=(r / n) if n else None))
    return out


def bar_chart_svg(values: list[float | None], labels: list[str], *, title: str, value_labels: list[str] | None = None,
                  height: int = 240, colour: str = "#0b6e4f") -> str:
    """An accessible SVG bar chart (a string of markup, every text escaped): one bar per value (None: no bar and a
    grey "no data" tick), a label under every ``ceil(n / 10)``-th bar counted back from the last, a ``<title>`` per
    bar with its label and value (``value_labels`` or the number), and the largest value marked on the axis.

    As wide as its container and ``height`` CSS pixels tall: bars are placed in percent of the width and texts are
    12 px whatever the width (no ``viewBox``, which shrank the labels with the chart: about 4 px on a phone). In a
    chart under 600 px wide (a phone, a half-width card; the ``div.chart-box`` around it is the query container)
    only every 2nd (up to 10 days) or 3rd day label is shown where more than 5 are drawn (the others have class
    ``day minor``), so they do not run into each other. Raises ``ValueError`` when ``values`` and ``labels`` differ
    in length."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values but {len(labels)} labels")
    texts = value_labels or [("no data" if v is None else f"{v:g}") for v in values]
    left, bottom, top = 1.0, 22, 18  # left margin in % of the width; bottom and top in px
    n = max(len(values), 1)
    peak = max([v for v in values if v is not None] or [0]) or 1
    slot = (100 - left * 2) / n
    bar_w = slot * 0.7
    plot_h = height - bottom - top
    every = max(1, -(-n // 10))  # counted back from the last day, which is always labelled
    ticks = [i for i in range(len(values)) if (n - 1 - i) % every == 0]
    thin = len(ticks) > 5  # in a narrow chart only every 2nd (up to 10 days) or 3rd of them, the last one kept
    sparse = every * (2 if n <= 10 else 3)
    parts = ['<div class="chart-box" style="container-type:inline-size">',
             f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" height="{height}" role="img" class="chart" '
             f'aria-label="{escape(title)}" style="height:{height}px">',
             "<style>svg.chart text{font-size:12px;fill:#5f6b66} "
             "@container (max-width:600px){svg.chart text.minor{display:none}}</style>",
             f"<title>{escape(title)}</title>",
             f'<line x1="{left}%" y1="{height - bottom}" x2="{100 - left}%" y2="{height - bottom}" stroke="#c9d2ce"/>']
    top_text = value_labels[values.index(peak)] if value_labels and peak in values else f"{peak:g}"
    parts.append(f'<text x="{left}%" y="13">max {escape(top_text)}</text>')
    for i, (v, label, text) in enumerate(zip(values, labels, texts)):
        x = left + i * slot + (slot - bar_w) / 2
        if v is None:
            parts.append(f'<rect class="nodata" x="{x:.2f}%" y="{height - bottom - 2}" width="{bar_w:.2f}%" height="2" '
                         f'fill="#c9d2ce"><title>{escape(label)}: no data</title></rect>')
        else:
            h = plot_h * (v / peak) if peak else 0
            parts.append(f'<rect class="bar" data-value="{v:g}" x="{x:.2f}%" y="{height - bottom - h:.1f}" '
                         f'width="{bar_w:.2f}%" height="{max(h, 0):.1f}" fill="{colour}">'
                         f"<title>{escape(label)}: {escape(text)}</title></rect>")
        if i in ticks:  # the first and last label end at their bar's outer edge, not past the chart's
            cls = "day minor" if thin and (n - 1 - i) % sparse else "day"
            anchor, at = (("start", x) if i == 0 and n > 1 else ("end", x + bar_w) if i == n - 1 and n > 1
                          else ("middle", x + bar_w / 2))
            parts.append(f'<text class="{cls}" x="{at:.2f}%" y="{height - bottom + 15}" '
                         f'text-anchor="{anchor}">{escape(label)}</text>')
    parts.append("</svg></div>")
    return "".join(parts)


@dataclass(frozen=True)
class WeekGlance:
    """One store's last ``days`` local days at a glance, for the dashboard: ``sales_display`` their total,
    ``receipts``, ``chart`` a small sales-per-day SVG (:func:`bar_chart_svg`), ``top`` the best seller (None: nothing
    sold), ``top_units``, ``review_words`` the share of shelf events a person decided ("12 % (3 of 25)", or "no data"
    without a shelf event), ``days``."""

    store_code: str
    store_name: str
    days: int
    sales_display: str
    receipts: int
    chart: str
    top: str | None
    top_units: int
    review_words: str


def week_glance(*, days: int = 7, now: datetime | None = None) -> list[WeekGlance]:
    """:class:`WeekGlance` of every store, by code (five queries a store)."""
    out = []
    for store in Store.objects.order_by("code"):
        sales = sales_by_day(store=store, days=days, now=now)
        reviews = review_rate_by_day(store=store, days=days, now=now)
        top = top_sellers(store=store, days=days, limit=1, now=now)
        events, decided = sum(d.shelf_events for d in reviews), sum(d.reviews for d in reviews)
        out.append(WeekGlance(
            store_code=store.code, store_name=store.name, days=days,
            sales_display=money_display(sum(d.total_minor for d in sales), store.currency),
            receipts=sum(d.receipts for d in sales),
            chart=bar_chart_svg([d.total_minor for d in sales], [d.day.strftime("%a") for d in sales],
                                title=f"Sales per day, {store.name}, last {days} days",
                                value_labels=[money_display(d.total_minor, store.currency) for d in sales],
                                height=90),
            top=top[0].name if top else None, top_units=top[0].units if top else 0,
            review_words=(f"{100 * decided / events:.0f} % ({decided} of {events})" if events else "no data")))
    return out
