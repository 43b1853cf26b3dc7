"""Shopper pages: the live cart and the receipts. Login required; a shopper sees only their own visits and receipts
(another's answer 404, exactly as a missing one); managers (``is_staff``) may open any. Reads: ``carts.selectors``.

URLs (``carts.urls``, mounted at ``/visits/``, namespace ``carts``):

* ``current/`` (``carts:current``): the live cart of the shopper's open visit (admitted, shopping, exited,
  under_review), or a waiting page that listens on ``ws/shopper/`` and turns into the cart when a visit starts.
* ``<visit_id>/`` (``carts:visit``): the live cart of one visit (any state).
* ``receipts/`` (``carts:receipts``) and ``receipts/<receipt_id>/`` (``carts:receipt``): the receipts, and one
  receipt with the cart events behind each line, its payment state, and each line's dispute.
* ``receipts/<receipt_id>/lines/<line_id>/dispute/`` (``carts:dispute_open``): POST (CSRF), the shopper disputes a
  line (``carts.forms.DisputeForm``; ``carts.services.disputes.dispute_open``); back to the receipt with a message.
* ``disputes/`` (``carts:disputes``, managers only): the dispute queue; ``disputes/<id>/decide/``
  (``carts:dispute_decide``): POST (CSRF), accept (refund the line) or reject
  (``carts.services.disputes.dispute_decide``).
"""
from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe, require_POST

from store.billing.money import money_format_table

from . import selectors, selectors_disputes
from .forms import DisputeDecisionForm, DisputeForm
from .models import Dispute
from .services.disputes import DisputeError, dispute_decide, dispute_open
from .services.ledger import cart_snapshot
from .trip import trip_status

log = logging.getLogger(__name__)


def _cart_page(request: HttpRequest, visit) -> HttpResponse:
    """The live cart page for ``visit``, or the waiting page when None. The page script gets the raw snapshot
    (``json_script``; None while waiting), the receipts URL and the money-format rules; the HTML is rendered on the
    server too, so the page reads without JavaScript."""
    snapshot = cart_snapshot(visit=visit) if visit is not None else None
    last = selectors.visit_last_ended_for(user=request.user) if visit is None else None
    return render(request, "carts/cart.html", {
        "snapshot": selectors.snapshot_display(snapshot) if snapshot else None,
        "last_trip": trip_status(visit=last) if last is not None else None,
        "page_data": {
            "snapshot": snapshot,
            "receipts_url": reverse("carts:receipts"),
            "money": money_format_table(),
        },
    })


@require_safe
@login_required
def cart_current(request: HttpRequest) -> HttpResponse:
    """``GET /visits/current/``: the shopper's own live visit, or the waiting page."""
    return _cart_page(request, selectors.visit_current_for(user=request.user))


@require_safe
@login_required
def cart_visit(request: HttpRequest, visit_id: int) -> HttpResponse:
    """``GET /visits/<visit_id>/``: one visit's live cart; 404 unless the user is its shopper or a manager."""
    visit = selectors.visit_for_viewer(user=request.user, visit_id=visit_id)
    if visit is None:
        raise Http404("no such visit")
    return _cart_page(request, visit)


@require_safe
@login_required
def receipt_list(request: HttpRequest) -> HttpResponse:
    """``GET /visits/receipts/``: the user's own receipts, newest first."""
    return render(request, "billing/receipt_list.html", {"receipts": selectors.receipts_for(user=request.user)})


def _receipt_page(request: HttpRequest, receipt, *, form: DisputeForm | None = None, form_line: int | None = None,
                  status: int = 200) -> HttpResponse:
    """The receipt page; ``form``/``form_line``: a dispute form sent for that line and refused, shown again with
    what the shopper wrote and why it was refused."""
    disputes = selectors_disputes.disputes_by_line(receipt=receipt)
    view = selectors.receipt_detail(receipt=receipt)
    return render(request, "billing/receipt_detail.html", {
        "receipt": view,
        "line_disputes": [(line, disputes.get(line.id)) for line in view.lines],
        "can_dispute": receipt.visit.shopper_id == request.user.pk
        and selectors_disputes.dispute_open_allowed(receipt=receipt),
        "dispute_deadline": selectors_disputes.dispute_deadline(receipt=receipt),
        "dispute_form": form or DisputeForm(),
        "form_line": form_line,
    }, status=status)


@require_safe
@login_required
def receipt_detail(request: HttpRequest, receipt_id: int) -> HttpResponse:
    """``GET /visits/receipts/<receipt_id>/``: lines, total, payment state and, per line, the cart events behind it
    (when, confidence, shelf bin), in the store's local time. 404 unless the user is the visit's shopper or a
    manager."""
    receipt = selectors.receipt_for_viewer(user=request.user, receipt_id=receipt_id)
    if receipt is None:
        raise Http404("no such receipt")
    return _receipt_page(request, receipt)


@require_POST
@login_required
def dispute_open_view(request: HttpRequest, receipt_id: int, line_id: int) -> HttpResponse:
    """``POST /visits/receipts/<receipt_id>/lines/<line_id>/dispute/``: dispute one line of one's own receipt.
    404 unless the user may see the receipt and the line is on it. A refused dispute shows the receipt again (400)
    with the form as the shopper filled it (their note kept) and the reason; a sent one redirects with a message."""
    receipt = selectors.receipt_for_viewer(user=request.user, receipt_id=receipt_id)
    line = receipt.lines.filter(pk=line_id).first() if receipt is not None else None
    if line is None:
        raise Http404("no such receipt line")
    back = reverse("carts:receipt", args=[receipt.pk])
    form = DisputeForm(request.POST)
    if not form.is_valid():
        log.info("user %s: dispute form for line %s invalid: %s", request.user.pk, line.pk, list(form.errors))
        return _receipt_page(request, receipt, form=form, form_line=line.pk, status=400)
    data = form.cleaned_data
    try:
        dispute_open(receipt_line=line, user=request.user, kind=data["kind"],
                     quantity_taken=data.get("quantity_taken"), note=data.get("note") or "")
    except DisputeError as exc:
        log.info("user %s: dispute of line %s refused (%s)", request.user.pk, line.pk, exc.code)
        form.add_error(None, str(exc)[:1].upper() + str(exc)[1:] + ".")
        return _receipt_page(request, receipt, form=form, form_line=line.pk, status=400)
    messages.success(request, f"Thanks: we will check “{line.name}” and refund it if we got it wrong. "
                              "We'll e-mail you the decision.")
    return redirect(back)


def _manager_or_login(request: HttpRequest) -> HttpResponse | None:
    """None for an active manager; else the login redirect (anonymous) or PermissionDenied (403)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not (request.user.is_active and request.user.is_staff):
        log.warning("user %s refused the manager page %s", request.user.pk, request.path)
        raise PermissionDenied("managers only")
    return None


@require_safe
def dispute_list(request: HttpRequest) -> HttpResponse:
    """``GET /visits/disputes/`` (managers): open disputes first, each with the line, the refund it would make and
    a link to the visit's full record; then the latest decided ones."""
    denied = _manager_or_login(request)
    if denied:
        return denied
    return render(request, "carts/disputes.html", {"rows": selectors_disputes.dispute_queue()})


@require_POST
def dispute_decide_view(request: HttpRequest, dispute_id: int) -> HttpResponse:
    """``POST /visits/disputes/<dispute_id>/decide/`` (managers; CSRF): accept (refund) or reject one dispute."""
    denied = _manager_or_login(request)
    if denied:
        return denied
    dispute = Dispute.objects.filter(pk=dispute_id).first()
    if dispute is None:
        raise Http404("no such dispute")
    form = DisputeDecisionForm(request.POST)
    back = reverse("carts:disputes")
    if not form.is_valid():
        log.info("manager %s: dispute %s decision form invalid: %s", request.user.pk, dispute.pk, list(form.errors))
        messages.error(request, f"Dispute {dispute.pk}: choose accept or reject.")
        return redirect(back)
    try:
        decided = dispute_decide(dispute=dispute, accept=form.cleaned_data["decision"] == "accept",
                                 by=request.user.get_username(), note=form.cleaned_data["note"])
    except DisputeError as exc:
        messages.error(request, f"Dispute {dispute.pk}: {exc}")
        return redirect(back)
    messages.success(request, f"Dispute {decided.pk} {decided.status}"
                              + (f": {decided.quantity} unit(s) refunded." if decided.refund_id else "."))
    return redirect(back)
