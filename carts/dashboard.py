"""Manager dashboard: visits of the day, latest shelf events, the review queue with one-click decisions, and one
visit's full record. Managers only (``is_staff``): anonymous users are sent to log in, other users get 403.

URLs (``carts.dashboard_urls``, mounted at ``/manage/``, namespace ``dashboard``):

* ``""`` (``dashboard:home``): GET, the overview: occupancy per store, today's sales, alerts (low stock; sensor
  health and misplaced items when ``sensors.selectors`` provides them), open visits with their carts, the review
  queue, today's visits, the latest shelf events, and a slot for the store map (``vision/_store_map.html``).
* ``visits/<visit_id>/`` (``dashboard:visit``): GET, transitions, cart events with evidence, payments, receipt.
* ``reviews/<review_id>/resolve/`` (``dashboard:review_resolve``): POST (CSRF), form fields ``visit`` (visit id, or
  empty: nobody took it), ``barcode`` (or empty), ``quantity`` (signed units, + taken, − put back); calls
  ``carts.services.review.review_resolve`` and redirects back to the queue with a message.
  The decision is held for ``WALKOUT["REVIEW_UNDO_S"]`` seconds (undoable; its visits are billed after). Field
  ``next=console``: go on to the next open item's console instead of the dashboard.
* ``reviews/<review_id>/`` (``dashboard:review``): GET, the review console (``carts.review_console``): sentences,
  weight trace, shelf plan, camera clips, answers; ``?answer=KEY`` shows the confirmation of one answer, naming
  the customer and the amount, before anything is posted.
* ``reviews/<review_id>/undo/`` (``dashboard:review_undo``): POST (CSRF), field ``decided_at`` (ISO time of the
  decision); ``carts.services.review.review_undo``; refused after the window with the reason.
* ``reviews/<review_id>/clip/<camera>/<file>`` (``dashboard:review_clip``): GET, one JPEG frame of a review clip.
* ``reports/`` (``dashboard:reports``): GET ``?store=<code>&days=7|30|90``: sales per day (a chart), top sellers and
  the review rate per day of one store (``carts.reports``).
* ``inventory/…`` (``dashboard:inventory:…``): the manager's inventory pages (``store.inventory.urls``).

Live: the page opens ``ws/dashboard/`` (``carts.dashboard_consumers``) and re-fetches its ``data-live`` sections
when told something changed (``store.dashboard_events.dashboard_notify``).
"""
from __future__ import annotations

from datetime import datetime

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe, require_POST

from store.accounts.demo import DEMO_PASSWORD, DEMO_SHOPPER
from store.accounts.permissions import staff_required
from store.billing.money import money_display
from store.dashboard_events import dashboard_notify
from store.gates.models import Visit
from store.layout.models import Store
from store.recording import RecordingError, read_recording
from vision.clips import clip_store

from . import reports as rep
from . import selectors_dashboard, selectors_visit
from .live import LiveReplayBusy, live_replay_start, recording_cast, recordings_available, visits_waiting
from .models import ReviewItem
from .reports import week_glance
from .review_console import custom_answer, review_console
from .services.review import review_resolve, review_undo, review_undo_s
from .services.review_queue import ReviewError

#: Templates other parts may provide; the dashboard includes each one only when it exists.
STORE_MAP_TEMPLATE = "vision/_store_map.html"
SENSOR_HEALTH_TEMPLATE = "dashboard/_sensor_health.html"


def _template_if_present(name: str) -> str | None:
    """``name`` if the template loads, else None (the page then leaves its slot out)."""
    try:
        get_template(name)
    except TemplateDoesNotExist:
        return None
    return name


def _store_map_url(store_code: str) -> str | None:
    """The vision part's live store map page for ``store_code``, or None while ``vision:store_map`` is not routed."""
    try:
        return reverse("vision:store_map", args=[store_code])
    except NoReverseMatch:
        return None


@require_safe
@staff_required
def home(request: HttpRequest) -> HttpResponse:
    """``GET /manage/``: occupancy, today's sales, alerts, open visits with their carts, the review queue, today's
    visits and the latest shelf events. Its sections (``data-live``) refresh when ``ws/dashboard/`` says so."""
    low_count, low_items = selectors_dashboard.low_stock_alerts(limit=15)
    return render(request, "dashboard/home.html", {
        "occupancy": [(o, _store_map_url(o.store_code)) for o in selectors_dashboard.store_occupancy()],
        "sales": selectors_dashboard.sales_today(),
        "week": _week_glance(),
        "open_carts": selectors_dashboard.open_visit_carts(),
        "low_stock_count": low_count,
        "low_stock": low_items,
        "visits": selectors_dashboard.dashboard_visits(),
        "shelf_events": selectors_dashboard.shelf_events_latest(limit=30),
        "reviews": (reviews := selectors_dashboard.review_queue(limit=100)),
        "review_cards": _review_rows(reviews),
        "undo": _undo_offer(request),
        "recordings": [p.name for p in recordings_available()],
        "inside_waiting": _inside_waiting(),
        "demo_account": DEMO_SHOPPER, "demo_password": DEMO_PASSWORD,
        "store_map_template": _template_if_present(STORE_MAP_TEMPLATE),
        "sensor_health_template": _template_if_present(SENSOR_HEALTH_TEMPLATE),
        "store_alerts": selectors_dashboard.store_alerts_open(limit=20),
        **selectors_dashboard.sensor_alerts_context(),
    })


def _week_glance() -> list:
    """Each store's last 7 days (``carts.reports.week_glance``)."""
    return week_glance(days=7)


def _review_rows(rows: list) -> list[tuple]:
    """Each open review row with its console summary (``carts.review_console``, without drawings)."""
    items = {i.pk: i for i in ReviewItem.objects.filter(pk__in=[r.id for r in rows])}
    return [(r, review_console(items[r.id], drawings=False)) for r in rows if r.id in items]


def _inside_waiting() -> list:
    """Visits admitted and not yet seen by a camera, in every store (the dashboard's replay hint names them)."""
    codes = Visit.objects.filter(state=Visit.State.ADMITTED, track_id="").values_list("store__code", flat=True)
    return [v for code in sorted(set(codes)) for v in visits_waiting(store_code=code)]


@require_safe
@staff_required
def visit(request: HttpRequest, visit_id: int) -> HttpResponse:
    """``GET /manage/visits/<visit_id>/``: everything recorded about one visit; 404 if there is none."""
    detail = selectors_visit.visit_detail(visit_id=visit_id)
    if detail is None:
        raise Http404("no such visit")
    return render(request, "dashboard/visit.html", {"d": detail})


class ReviewDecisionForm(forms.Form):
    """A manager's decision on a review item: ``visit`` empty means nobody took it."""

    visit = forms.IntegerField(required=False, min_value=1)
    barcode = forms.CharField(required=False, max_length=32)
    quantity = forms.IntegerField(required=False, min_value=-1000, max_value=1000)

    def clean(self):
        data = super().clean()
        if data.get("visit") and data.get("barcode") and not data.get("quantity"):
            raise forms.ValidationError("give a quantity other than 0")
        return data


@require_POST
@staff_required
def review_resolve_view(request: HttpRequest, review_id: int) -> HttpResponse:
    """``POST /manage/reviews/<review_id>/resolve/``: apply one decision; 404 for an unknown item; the outcome (or
    why it was refused) is shown as a message on the dashboard."""
    item = get_object_or_404(ReviewItem, pk=review_id)
    form = ReviewDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Review {item.pk}: " + "; ".join(e for errs in form.errors.values() for e in errs))
        return redirect(reverse("dashboard:home") + "#reviews")
    data = form.cleaned_data
    to_console = request.POST.get("next") == "console"
    try:
        outcome = review_resolve(item=item, visit_id=data["visit"], barcode=data["barcode"] or None,
                                 quantity=data["quantity"] or 0, by=request.user.get_username(),
                                 hold_s=review_undo_s())
    except ReviewError as exc:
        messages.error(request, f"Review {item.pk}: {exc}")
        return redirect(reverse("dashboard:review", args=[item.pk]) if to_console
                        else reverse("dashboard:home") + "#reviews")
    decided = outcome.item
    if decided.undo_until is not None:
        request.session["review_undo"] = {
            "item": decided.pk, "decided_at": decided.resolved_at.isoformat(),
            "until": decided.undo_until.isoformat(), "text": request.POST.get("said", "")[:300]
            or f"Review {decided.pk} decided."}
    if outcome.cart_event is not None:
        ev = outcome.cart_event
        messages.success(request, f"Review {item.pk}: {ev.quantity:+d} × {ev.product.name} to visit {ev.visit_id}.")
    else:
        messages.success(request, f"Review {item.pk}: {outcome.item.status}.")
    for visit_id, receipt in outcome.checkouts.items():
        text = f"receipt {receipt.pk} issued" if receipt is not None else "not billed (see the visit)"
        messages.info(request, f"Visit {visit_id} checked out: {text}.")
    for visit_id, error in outcome.checkout_errors.items():
        messages.error(request, f"Visit {visit_id}: checkout failed: {error}")
    dashboard_notify(reason="review", store_id=item.shelf_event.store_id)
    if to_console:
        following = (ReviewItem.objects.filter(status=ReviewItem.Status.OPEN).exclude(pk=item.pk)
                     .order_by("created_at", "id").first())
        return redirect(reverse("dashboard:review", args=[following.pk]) if following
                        else reverse("dashboard:home") + "#reviews")
    return redirect(reverse("dashboard:home") + "#reviews")


def _undo_offer(request: HttpRequest) -> dict | None:
    """The last decision of this manager while it can still be undone (from the session), else None:
    ``{"item", "decided_at", "until", "text", "left_s"}``."""
    offer = request.session.get("review_undo")
    if not offer:
        return None
    try:
        until = datetime.fromisoformat(offer["until"])
    except (KeyError, TypeError, ValueError):
        request.session.pop("review_undo", None)
        return None
    left = (until - timezone.now()).total_seconds()
    if left <= 0:
        request.session.pop("review_undo", None)
        return None
    return {**offer, "left_s": int(left + 0.999)}


@require_safe
@staff_required
def review_console_view(request: HttpRequest, review_id: int) -> HttpResponse:
    """``GET /manage/reviews/<review_id>/``: the review console of one item (module docstring); 404 if unknown."""
    item = get_object_or_404(ReviewItem.objects.select_related("shelf_event"), pk=review_id)
    console = review_console(item)
    key = request.GET.get("answer", "")
    chosen = None
    if item.status == ReviewItem.Status.OPEN and key == "custom":
        chosen = custom_answer(console, visit_id=request.GET.get("visit", ""), barcode=request.GET.get("barcode", ""),
                               quantity=request.GET.get("quantity", ""))
        if chosen is None:
            messages.error(request, "That answer names no visit and product of this store: check the visit number, "
                                    "the barcode and the units (not 0).")
    elif item.status == ReviewItem.Status.OPEN and key:
        chosen = console.answer(key)
    queue = list(ReviewItem.objects.filter(status=ReviewItem.Status.OPEN).order_by("created_at", "id")
                 .values_list("pk", flat=True)[:500])
    return render(request, "dashboard/review.html", {
        "c": console, "item": item, "chosen": chosen, "undo": _undo_offer(request),
        "queue_left": len(queue), "position": queue.index(item.pk) + 1 if item.pk in queue else None,
        "undo_s": review_undo_s(),
        "clip_retention_h": float(settings.WALKOUT.get("REVIEW_CLIP_RETENTION_H", 72.0)),
    })


@require_POST
@staff_required
def review_undo_view(request: HttpRequest, review_id: int) -> HttpResponse:
    """``POST /manage/reviews/<review_id>/undo/``: take the decision back (``carts.services.review.review_undo``) and
    show the item again; after the window, the refusal and its reason as a message."""
    item = get_object_or_404(ReviewItem, pk=review_id)
    try:
        decided_at = datetime.fromisoformat(request.POST.get("decided_at", ""))
    except ValueError:
        decided_at = None
    try:
        out = review_undo(item=item, by=request.user.get_username(), decided_at=decided_at)
    except ReviewError as exc:
        messages.error(request, f"Not undone: {exc}.")
    else:
        messages.success(request, "Undone: nothing was charged; decide it again." if out.undone
                         else "That decision was undone already.")
        dashboard_notify(reason="review", store_id=item.shelf_event.store_id)
    request.session.pop("review_undo", None)
    return redirect(reverse("dashboard:review", args=[item.pk]))


@require_safe
@staff_required
def review_clip_frame(request: HttpRequest, review_id: int, camera: str, file: str) -> HttpResponse:
    """``GET /manage/reviews/<id>/clip/<camera>/<file>``: one JPEG frame of a review clip; 404 when gone."""
    path = clip_store().frame_path(review_id, camera, file)
    if path is None:
        raise Http404("no such clip frame (clips are deleted after their retention)")
    return FileResponse(path.open("rb"), content_type="image/jpeg")


class LiveReplayForm(forms.Form):
    """Which recording (a folder name under ``settings.RECORDINGS_DIR``) to replay, and how fast."""

    recording = forms.CharField(max_length=200)
    speed = forms.FloatField(min_value=0.1, max_value=20.0, initial=1.0)


@require_POST
async def live_replay_view(request: HttpRequest) -> HttpResponse:
    """``POST /manage/replay/``: replay a recording live (its clock shifted to now, paced at ``speed``), so the
    shoppers' phones and this dashboard see it happen. Managers only; CSRF. See ``carts.live``."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not (user.is_active and user.is_staff):
        raise PermissionDenied("managers only")
    form = LiveReplayForm(request.POST)
    names = {p.name: p for p in await sync_to_async(recordings_available)()}
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        await sync_to_async(messages.error)(request, f"Replay not started: {errors}")
        return redirect(reverse("dashboard:home"))
    if form.cleaned_data["recording"] not in names:
        await sync_to_async(messages.error)(request, "Choose one of the recordings listed.")
        return redirect(reverse("dashboard:home"))
    from .offline.replay import session_name  # lazy: offline tooling, loaded when a manager starts a replay

    path = names[form.cleaned_data["recording"]]
    try:
        recording = await sync_to_async(read_recording)(path)
        session = session_name(recording)
    except RecordingError as exc:
        await sync_to_async(messages.error)(request, f"Replay not started: {exc}")
        return redirect(reverse("dashboard:home"))
    cast = await sync_to_async(_replay_cast)(recording)
    try:
        await live_replay_start(path=path, session=session, speed=form.cleaned_data["speed"],
                                bind_visits=[v for _, v in cast if v is not None])
    except LiveReplayBusy as exc:
        await sync_to_async(messages.error)(request, f"Replay not started: {exc}.")
        return redirect(reverse("dashboard:home"))
    await sync_to_async(messages.success)(request, f"Replaying the recorded session {path.name} live. "
                                                   + _cast_words(cast))
    return redirect(reverse("dashboard:home"))


def _replay_cast(recording) -> list[tuple[str, int | None]]:
    """Who plays ``recording``'s shoppers if it starts now (``carts.live.replay_cast``)."""
    return recording_cast(recording)


def _cast_words(cast: list[tuple[str, int | None]]) -> str:
    """The replay message's sentence naming who to log in as to watch the cart fill."""
    inside = [f"{who} (visit {visit})" for who, visit in cast if visit is not None]
    demo = any(who == DEMO_SHOPPER for who, _ in cast)
    words = []
    if inside:
        words.append(f"Its first shopper{'s are' if len(inside) > 1 else ' is'} who is inside now: {', '.join(inside)}"
                     " — their live cart fills as the recording's shopper takes things.")
    if demo:
        words.append(f"{'The next shopper' if inside else 'Its shopper'} plays as {DEMO_SHOPPER} (password "
                     f"{DEMO_PASSWORD}): log in as that account and open the live cart to watch.")
    return " ".join(words)


#: Periods the reports page offers (days).
REPORT_PERIODS = (7, 30, 90)


@require_safe
@staff_required
def reports(request: HttpRequest) -> HttpResponse:
    """``GET /manage/reports/``: one store's sales per day (chart and table), top sellers and review rate per day
    over the last ``days`` local days (7, 30 or 90; another value is refused with 400 and the choices)."""
    stores = list(Store.objects.order_by("code"))
    code = request.GET.get("store")
    store = next((s for s in stores if s.code == code), None) if code else (stores[0] if stores else None)
    if code and store is None:
        raise Http404("no such store")
    raw_days = request.GET.get("days", "30")
    status = 200
    try:
        days = int(raw_days)
    except ValueError:
        days = -1
    if days not in REPORT_PERIODS:
        messages.error(request, f"Show 7, 30 or 90 days, not {raw_days[:20]!r}; showing 30.")
        days, status = 30, 400
    ctx: dict = {"stores": stores, "store": store, "days": days, "periods": REPORT_PERIODS}
    if store is not None:
        cur = store.currency
        sales = rep.sales_by_day(store=store, days=days)
        reviews = rep.review_rate_by_day(store=store, days=days)
        labels = [d.day.strftime("%d %b") for d in sales]
        ctx.update({
            "sales": [(d, money_display(d.total_minor, cur)) for d in reversed(sales)],
            "sales_total": money_display(sum(d.total_minor for d in sales), cur),
            "receipts_total": sum(d.receipts for d in sales),
            "sales_chart": rep.bar_chart_svg(
                [d.total_minor for d in sales], labels, title=f"Sales per day, {store.name}, last {days} days",
                value_labels=[money_display(d.total_minor, cur) for d in sales]),
            "top": [(t, money_display(t.revenue_minor, cur)) for t in rep.top_sellers(store=store, days=days)],
            "reviews": list(reversed(reviews)),
            "review_chart": rep.bar_chart_svg(
                [None if d.rate is None else round(100 * d.rate, 1) for d in reviews], labels,
                title=f"Share of shelf events sent to a person per day, {store.name}, last {days} days",
                value_labels=["no data" if d.rate is None else f"{100 * d.rate:.1f} % ({d.reviews} of "
                              f"{d.shelf_events})" for d in reviews], colour="#b35c00"),
            "zone": store.timezone or "the site's time zone",
        })
    return render(request, "dashboard/reports.html", ctx, status=status)
