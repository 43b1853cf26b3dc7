"""Login throttling (django-axes): too many failed logins for one account, or from one address, lock further
attempts for a while — the right password included — with one message that never says whether the account exists.

Why: without it, 100 wrong passwords in 33 s and then the right one logged in (issue #12 item 8). Settings:
``AXES_*`` in ``store/settings.py`` (limit ``WALKOUT_LOGIN_FAILURE_LIMIT``, lock ``WALKOUT_LOGIN_LOCKOUT_MIN``).
Failed API keys of gates and shelf controllers are throttled per address in ``store.throttle``.
"""
from __future__ import annotations

import logging

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

log = logging.getLogger(__name__)

#: What a locked-out login is told, the same for every account name, known or not.
LOCKOUT_MESSAGE = ("Too many failed log-in attempts for this account or from this network. Try again in "
                   "{minutes} minutes, or reset your password.")


def lockout_minutes() -> int:
    """How long a lockout lasts, whole minutes (``settings.AXES_COOLOFF_TIME`` is in hours)."""
    return max(1, round(float(settings.AXES_COOLOFF_TIME) * 60))


class LockoutBackend(AxesStandaloneBackend):
    """Axes' check before the password backends: a locked-out account or address cannot log in. A call without
    an HTTP request (an internal check, the test client's ``login``) has nothing to throttle and is let through to
    the next backend."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def username_of(request: HttpRequest, credentials: dict | None) -> str | None:
    """The account name axes counts failures for: the login form's email, trimmed and lower-cased (so ``Ann@X``
    and ``ann@x`` share one counter)."""
    name = (credentials or {}).get("username")
    if name is None and request is not None:
        name = request.POST.get("username")
    return name.strip().lower() if isinstance(name, str) else None


def lockout_response(request: HttpRequest, credentials: dict | None = None, *args) -> HttpResponse:
    """429 with :data:`LOCKOUT_MESSAGE` (JSON for a JSON client, else the login page with the message)."""
    message = LOCKOUT_MESSAGE.format(minutes=lockout_minutes())
    log.warning("login locked out from %s", request.META.get("REMOTE_ADDR", "?"))
    headers = {"Retry-After": str(lockout_minutes() * 60), "Cache-Control": "no-store"}
    if "application/json" in request.headers.get("Accept", ""):
        from django.http import JsonResponse

        return JsonResponse({"reason": "locked_out", "message": message}, status=429, headers=headers)
    response = render(request, "accounts/locked_out.html", {"message": message}, status=429)
    for k, v in headers.items():
        response[k] = v
    return response
