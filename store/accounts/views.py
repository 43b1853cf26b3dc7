"""Shopper pages: sign up, log in/out, password reset, home, the card on file, deleting the account, and the PWA
files (web app manifest, service worker, icons). Thin: logic in services and ``payment``."""
from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_http_methods
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .forms import AccountDeleteForm, DummyCardForm, EmailAuthenticationForm, EmailPasswordResetForm, SignUpForm
from .payment import CardRejected, shopper_card_attach
from .services import AccountDeleteRefused, shopper_create, shopper_delete, shopper_profile_get

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


class PasswordResetView(auth_views.PasswordResetView):
    """``/accounts/password/reset/``: ask for a reset link by email (Django's token generator; the link works once,
    for ``PASSWORD_RESET_TIMEOUT`` seconds). The page answers the same whether or not the address has an account.
    The embedded profile's file e-mail backend writes the message to var/mail/ (settings.EMAIL_FILE_PATH)."""

    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    form_class = EmailPasswordResetForm
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    """``/accounts/password/reset/sent/``: "check your email"."""

    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """``/accounts/password/reset/<uidb64>/<token>/``: choose a new password (AUTH_PASSWORD_VALIDATORS apply)."""

    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")

    def form_invalid(self, form):
        log.info("password reset: new password refused for a valid link")
        return super().form_invalid(form)


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    """``/accounts/password/reset/done/``: the password is changed; log in."""

    template_name = "accounts/password_reset_complete.html"


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


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def account_delete(request: HttpRequest) -> HttpResponse:
    """``/accounts/delete/``: delete the account and personal data after the password is typed again
    (:func:`store.accounts.services.shopper_delete` says what is kept for accounting). Then logged out."""
    form = AccountDeleteForm(request.POST or None, user=request.user)
    status_code = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                outcome = shopper_delete(user=request.user)
            except AccountDeleteRefused as exc:
                log.info("user %s: account deletion refused (%s)", request.user.pk, exc.code)
                form.add_error(None, exc.message)
            else:
                logout(request)
                messages.success(request, "Your account is deleted." if outcome == "deleted" else
                                 "Your account is deleted. Receipts of past visits are kept for accounting, "
                                 "without your name, email or card.")
                return redirect("accounts:login")
        else:
            log.info("user %s: account deletion form invalid: %s", request.user.pk, list(form.errors))
        status_code = 400
    return render(request, "accounts/delete.html", {"form": form}, status=status_code)


#: The installable web app's files, served from ``static/pwa/`` at fixed root paths (a service worker's scope is
#: its own path's folder, so ``/sw.js`` can serve ``/gates/pass/``): URL name → (file, content type).
PWA_FILES = {
    "manifest": ("manifest.webmanifest", "application/manifest+json"),
    "sw": ("sw.js", "text/javascript; charset=utf-8"),
    "icon-192": ("icon-192.png", "image/png"),
    "icon-512": ("icon-512.png", "image/png"),
}


def _pwa_file(name: str) -> HttpResponse:
    filename, content_type = PWA_FILES[name]
    path = settings.BASE_DIR / "static" / "pwa" / filename
    if not path.is_file():
        log.error("PWA file %s is missing", path)
        raise Http404("not found")
    return FileResponse(path.open("rb"), content_type=content_type)


@require_http_methods(["GET", "HEAD"])
@cache_control(max_age=3600, public=True)
def pwa_manifest(request: HttpRequest) -> HttpResponse:
    """``/manifest.webmanifest``: the web app manifest (name, icons, start URL, standalone display)."""
    return _pwa_file("manifest")


@require_http_methods(["GET", "HEAD"])
@cache_control(no_cache=True)
def pwa_service_worker(request: HttpRequest) -> HttpResponse:
    """``/sw.js``: the service worker (``static/pwa/sw.js``): the entry pass page offline, nothing else.
    ``no-cache`` so that a new version reaches the phones at once."""
    return _pwa_file("sw")


@require_http_methods(["GET", "HEAD"])
@cache_control(max_age=86400, public=True)
def pwa_icon(request: HttpRequest, size: int) -> HttpResponse:
    """``/pwa/icon-<size>.png`` (192 or 512): the app icon."""
    if f"icon-{size}" not in PWA_FILES:
        raise Http404("no such icon")
    return _pwa_file(f"icon-{size}")
