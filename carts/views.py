"""Shopper pages: the live cart and the receipts. Login required; a shopper sees only their own visits and receipts
(another's answer 404, exactly as a missing one); managers (``is_staff``) may open any. Reads: ``carts.selectors``.

URLs (``carts.urls``, mounted at ``/visits/``, namespace ``carts``):

* ``current/`` (``carts:current``): the live cart of the shopper's open visit (admitted, shopping, exited,
  under_review), or a waiting page that listens on ``ws/shopper/`` and turns into the cart when a visit starts.
* ``<visit_id>/`` (``carts:visit``): the live cart of one visit (any state).
* ``receipts/`` (``carts:receipts``) and ``receipts/<receipt_id>/`` (``carts:receipt``): the receipts, and one
  receipt with the cart events behind each line and its payment state.
"""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import selectors
from .services import cart_snapshot


def _cart_page(request: HttpRequest, visit) -> HttpResponse:
    """The live cart page for ``visit``, or the waiting page when None. The page script gets the raw snapshot
    (``json_script``; None while waiting), the receipts URL and the money-format rules; the HTML is rendered on the
    server too, so the page reads without JavaScript."""
    snapshot = cart_snapshot(visit=visit) if visit is not None else None
    return render(request, "carts/cart.html", {
        "snapshot": selectors.snapshot_display(snapshot) if snapshot else None,
        "page_data": {
            "snapshot": snapshot,
            "receipts_url": reverse("carts:receipts"),
            "money": selectors.money_format_table(),
        },
    })


@require_GET
@login_required
def cart_current(request: HttpRequest) -> HttpResponse:
    """``GET /visits/current/``: the shopper's own live visit, or the waiting page."""
    return _cart_page(request, selectors.visit_current_for(user=request.user))


@require_GET
@login_required
def cart_visit(request: HttpRequest, visit_id: int) -> HttpResponse:
    """``GET /visits/<visit_id>/``: one visit's live cart; 404 unless the user is its shopper or a manager."""
    visit = selectors.visit_for_viewer(user=request.user, visit_id=visit_id)
    if visit is None:
        raise Http404("no such visit")
    return _cart_page(request, visit)


@require_GET
@login_required
def receipt_list(request: HttpRequest) -> HttpResponse:
    """``GET /visits/receipts/``: the user's own receipts, newest first."""
    return render(request, "billing/receipt_list.html", {"receipts": selectors.receipts_for(user=request.user)})


@require_GET
@login_required
def receipt_detail(request: HttpRequest, receipt_id: int) -> HttpResponse:
    """``GET /visits/receipts/<receipt_id>/``: lines, total, payment state and, per line, the cart events behind it
    (when, confidence, shelf bin). 404 unless the user is the visit's shopper or a manager."""
    receipt = selectors.receipt_for_viewer(user=request.user, receipt_id=receipt_id)
    if receipt is None:
        raise Http404("no such receipt")
    return render(request, "billing/receipt_detail.html", {"receipt": selectors.receipt_detail(receipt=receipt)})
