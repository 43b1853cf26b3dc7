"""Gate pages: the shopper's entry pass and the staff scanner. Thin: the logic is in :mod:`store.gates.services`."""
from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .models import Gate
from django.utils import timezone

from store.layout.timezones import store_zone

from store.accounts.permissions import staff_required

from .services import (
    PassUnavailable, guest_policy, pass_qr_svg, pass_request, pass_store_resolve, pass_timing, stores_listed,
    visit_inside_for,
)

log = logging.getLogger(__name__)

#: HTTP status of the pass page when no pass can be shown, by ``PassUnavailable.code``.
UNAVAILABLE_STATUS = {"no_payment_method": 403, "choose_store": 200, "unknown_store": 404, "no_store": 404}



@require_safe
@never_cache
@login_required
def pass_page(request: HttpRequest) -> HttpResponse:
    """``GET /gates/pass/[?store=<code>]``: the shopper's rotating entry pass (QR code as inline SVG).

    Which store: the only listed one (``Store.listed``: never a test run's throwaway store), else ``?store=<code>``
    (a list of the listed stores to choose from is shown otherwise). Without a card on file no pass is issued: the
    page says so and links to the add-card page (403).
    """
    code = request.GET.get("store")
    try:
        store = pass_store_resolve(code=code)
        entry_pass, token = pass_request(shopper=request.user, store=store)
    except PassUnavailable as exc:
        log.info("pass page for user %s: %s", request.user.pk, exc.code)
        stores = stores_listed() if exc.code in {"choose_store", "unknown_store"} else []
        return render(request, "gates/pass_unavailable.html", {"reason": exc.code, "message": exc.message,
                                                               "stores": stores},
                      status=UNAVAILABLE_STATUS.get(exc.code, 400))
    window_s, cap = guest_policy()
    inside = visit_inside_for(shopper_id=request.user.pk)
    response = render(request, "gates/pass.html", {
        "inside": inside,
        "inside_since": timezone.localtime(inside.entered_at, store_zone(inside.store)).strftime("%H:%M")
        if inside else "",
        "store": store, "token": token, "qr_svg": pass_qr_svg(token=token), "entry_pass": entry_pass,
        "timing": pass_timing(), "several_stores": stores_listed().count() > 1,
        "guest_cap": cap, "guest_window_s": window_s, "guest_choices": range(cap + 1),
    })
    response["X-Walkout-Pass"] = "1"  # the service worker keeps only real pass pages for offline use
    return response


@require_safe
@never_cache
@staff_required
def scanner_page(request: HttpRequest) -> HttpResponse:
    """``GET /gates/scanner/`` (staff only): a door tablet's scanner. Reads QR codes with the camera
    (``BarcodeDetector`` where the browser has it) or a pasted token, and posts them to the staff scan API."""
    gates = Gate.objects.filter(active=True).select_related("store").order_by("store__name", "name")
    return render(request, "gates/scanner.html", {"gates": gates})
