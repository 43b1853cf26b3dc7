"""Shopper pages: sign up, log in/out, home, and the card on file. Thin: logic in services and ``payment``."""
from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .forms import DummyCardForm, EmailAuthenticationForm, SignUpForm
from .payment import CardRejected, shopper_card_attach
from .services import shopper_create, shopper_profile_get

log = logging.getLogger(__name__)

#: A Stripe PaymentMethod id as Stripe.js returns it.
PAYMENT_METHOD_RE = re.compile(r"^pm_[A-Za-z0-9_]{1,200}$")


def _safe_next(request: HttpRequest, default: str) -> str:
    """The ``next`` parameter if it points into this site, else ``default`` (no open redirects)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


class LoginView(auth_views.LoginView):
    """``/accounts/login/``: email + password."""

    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        log.info("failed login from %s", self.request.META.get("REMOTE_ADDR", "?"))
        return super().form_invalid(form)


class LogoutView(auth_views.LogoutView):
    """``/accounts/logout/``: POST only (Django's LogoutView refuses GET), then the login page."""


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """``/accounts/signup/``: create a shopper (email + password), log them in, and ask for a card."""
    if request.user.is_authenticated:
        return redirect("accounts:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = shopper_create(email=form.cleaned_data["email"], password=form.cleaned_data["password1"])
        except ValidationError as exc:
            log.info("sign-up refused: %s", "; ".join(exc.messages))
            for field, errors in exc.message_dict.items():
                form.add_error("password1" if field == "password" else field, errors)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome! Add a payment card to get your entry pass.")
            return redirect("accounts:card_add")
    return render(request, "accounts/signup.html", {"form": form}, status=400 if form.is_bound else 200)


@require_http_methods(["GET"])
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """``/``: the shopper's home: card on file (or a link to add one), entry pass, live cart, receipts."""
    return render(request, "accounts/home.html", {"profile": shopper_profile_get(user=request.user)})


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def card_add(request: HttpRequest) -> HttpResponse:
    """``/accounts/card/``: put a payment card on file (replacing any previous one).

    With the dummy provider (embedded profile): a form for a test card number, expiry and CVC; only the number
    reaches the provider (:func:`store.accounts.payment.shopper_card_attach`), only brand and last four digits are
    kept. With Stripe: Stripe Elements in the page create a PaymentMethod that is posted to :class:`CardAttachView`;
    the card never touches this server.
    """
    profile = shopper_profile_get(user=request.user)
    next_url = _safe_next(request, reverse("accounts:home"))
    if settings.PAYMENT_PROVIDER == "stripe":
        return render(request, "accounts/card_stripe.html", {
            "profile": profile, "next": next_url,
            "publishable_key": getattr(settings, "STRIPE_PUBLISHABLE_KEY", ""),
        })
    form = DummyCardForm(request.POST or None)
    status_code = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                profile = shopper_card_attach(user=request.user, card_token=form.cleaned_data["number"])
            except CardRejected as exc:
                log.info("user %s: card refused (%s)", request.user.pk, exc.code)
                form.add_error(None, f"Card not saved: {exc.reason}")
            else:
                messages.success(request, f"Your {profile.card_brand} card ending {profile.card_last4} is on file.")
                return redirect(next_url)
        else:
            log.info("user %s: card form invalid: %s", request.user.pk, list(form.errors))
        status_code = 400
    return render(request, "accounts/card_dummy.html", {"profile": profile, "form": form, "next": next_url},
                  status=status_code)


class CardAttachView(APIView):
    """``POST /accounts/card/attach/`` (Stripe page; session login and CSRF): ``{"payment_method": "pm_…"}``.

    Answers 200 ``{"status": "succeeded", "brand", "last4"}``; 402 ``{"status": "requires_action", "client_secret",
    "message"}`` when the bank wants 3-D Secure (the page runs ``stripe.handleNextAction`` and posts again);
    402 ``{"status": "failed", "code", "message"}`` when the card is refused; 400 for a malformed body.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        pm = request.data.get("payment_method") if hasattr(request.data, "get") else None
        if not isinstance(pm, str) or not PAYMENT_METHOD_RE.match(pm):
            log.warning("user %s: card attach refused: payment_method is not a pm_ id", request.user.pk)
            return Response({"status": "failed", "code": "bad_request",
                             "message": "payment_method must be a Stripe PaymentMethod id (pm_…)"},
                            status=status.HTTP_400_BAD_REQUEST)
        try:
            profile = shopper_card_attach(user=request.user, card_token=pm)
        except CardRejected as exc:
            log.info("user %s: card refused (%s)", request.user.pk, exc.code)
            if exc.client_secret:
                return Response({"status": "requires_action", "client_secret": exc.client_secret,
                                 "message": exc.reason}, status=status.HTTP_402_PAYMENT_REQUIRED)
            return Response({"status": "failed", "code": exc.code, "message": exc.reason},
                            status=status.HTTP_402_PAYMENT_REQUIRED)
        return Response({"status": "succeeded", "brand": profile.card_brand, "last4": profile.card_last4})
