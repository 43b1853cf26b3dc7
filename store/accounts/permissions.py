"""Who may open a manager page: one decorator for every staff view (dashboard, inventory, gates, cameras)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a view for managers only: anonymous → the login page (with ``next``); logged in but not an active
    ``is_staff`` user → ``PermissionDenied`` (403), logged with the user id and path."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            log.warning("user %s refused the staff page %s", user.pk, request.path)
            raise PermissionDenied("managers only")
        return view(request, *args, **kwargs)

    return wrapped
