"""Gate JSON API (Django REST framework). Thin: validate, call :mod:`store.gates.services`, shape the answer.

* ``POST /gates/api/scan/`` — a gate device scans a pass. Header ``Authorization: Gate <api key>``
  (:class:`GateKeyAuthentication`), body ``{"token": "<QR text>"}``. Answers 200
  ``{"admitted": true, "visit": <id>}``, 403 ``{"admitted": false, "reason": <code>, "message": <text>}`` (codes of
  :class:`~store.gates.services.GateRefusal`), optional ``"t"``: the device's scan time, s UTC (default: when the
  server receives it; within a day of the server's clock), 400 for a malformed body (reason ``bad_request``, or
  ``malformed_json`` for a body that is not JSON), 401 without a valid gate key, 429 (reason ``throttled``) from an
  address that sent too many bad keys (``store.throttle``). Every error body has ``reason`` and ``message``.
  Scanning a pass again at the same gate admits a guest when the pass declared guests ("bring guests",
  ``services.guest_policy``); the answer then has ``"guest_of": <lead visit id>``.
* ``POST /gates/api/exit/`` — the optional exit scan, same authentication and body: 200 ``{"exited": true,
  "visits": [<id>, ...]}`` (billed after the settle time; also when the task queue is down, by the stuck-visit
  sweeper), 403 ``{"exited": false, "reason", "message"}``
  (reason ``no_visit`` when the holder is not inside, or a pass refusal code), 400 (``{"exited": false, "reason":
  "bad_request", ...}``), 401 as above.
* ``POST /gates/api/staff-scan/`` — the same for the staff scanner page: session login of an ``is_staff`` user
  (CSRF enforced), body ``{"gate": <gate id>, "token": "<QR text>", "direction": "entry" | "exit"}`` (default
  entry; the answer's key is ``admitted`` or ``exited`` as for the gate, errors included); an unknown or inactive
  gate is a 400 with reason ``unknown_gate``. Without a staff session: 403.
* ``POST /gates/pass/token/`` — a logged-in shopper asks for a fresh entry pass (CSRF enforced); optional body or
  query ``store=<code>``, ``guests=<n>`` (party members brought, a whole number 0 … ``PASS_GUESTS_MAX`` = 99, admitted up to
  ``GUEST_CAP``; anything else is a 400). Answers 200 with the token and its QR code as SVG markup (see :class:`PassTokenView`),
  403 ``{"reason": "no_payment_method", ...}`` without a card, 400 when the store is unknown or must be chosen.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone as dt_timezone
from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.urls import reverse
from rest_framework import status
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from store.throttle import api_key_failed, api_key_locked, client_address

from .models import Gate, Visit
from .serializers import ScanSerializer, StaffScanSerializer
from .services import (
    GateRefusal, PassUnavailable, gate_authenticate, gate_get_active, pass_qr_svg, pass_request, pass_store_resolve,
    pass_timing, visit_enter, visit_exit_scan,
)

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}


class GateKeyAuthentication(BaseAuthentication):
    """Authenticates a gate device by the header ``Authorization: Gate <api key>``.

    No ``Gate`` header: not this scheme (returns None, so the request is unauthenticated → 401). A ``Gate`` header
    that is malformed or names no active gate: 401 with the reason; after ``API_KEY_FAILURE_LIMIT`` such failures
    from one address, 429 (reason ``throttled``) for every keyed request from it (``store.throttle``). On success ``request.auth`` is the
    :class:`~store.gates.models.Gate` and ``request.user`` is anonymous (a device is not a person).
    """

    keyword = "gate"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, Gate] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        address = client_address(request)
        wait = api_key_locked(scope="gate", address=address)
        if wait is not None:
            log.warning("gate auth refused: %s is locked out after failed keys", address)
            raise Throttled(wait=wait, detail="too many failed gate API keys from this address; try again later.")
        try:
            return self._check(request, parts)
        except AuthenticationFailed:
            api_key_failed(scope="gate", address=address)
            raise

    def _check(self, request: Request, parts: list[bytes]) -> tuple[AnonymousUser, Gate]:
        if len(parts) != 2:
            log.warning("gate auth refused: malformed Authorization header from %s", _client(request))
            raise AuthenticationFailed("malformed header: send 'Authorization: Gate <api key>'")
        try:
            api_key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            log.warning("gate auth refused: non-ASCII API key from %s", _client(request))
            raise AuthenticationFailed("the gate API key must be ASCII") from None
        gate = gate_authenticate(api_key=api_key)
        if gate is None:
            log.warning("gate auth refused: unknown or inactive API key from %s", _client(request))
            raise AuthenticationFailed("unknown or inactive gate API key")
        return AnonymousUser(), gate

    def authenticate_header(self, request: Request) -> str:
        return 'Gate realm="walkout"'


class IsGate(BasePermission):
    """The request was authenticated as a gate device (:class:`GateKeyAuthentication`)."""

    message = "only a gate device may call this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, Gate)


def _client(request: Request) -> str:
    return request.META.get("REMOTE_ADDR", "?")


def _bad_request(request: Request, errors: dict, what: str, outcome: str = "admitted") -> Response:
    """A 400 for a body that fails its serializer: ``{outcome: false, "reason": "bad_request", "message",
    "errors"}``, where ``outcome`` is the key a success would set (``admitted`` for an entry scan, ``exited`` for an
    exit scan), so that a client reads one key whatever the answer."""
    log.warning("%s refused from %s: bad input %s", what, _client(request), errors)
    return Response(
        {outcome: False, "reason": "bad_request", "message": "the request body is not valid", "errors": errors},
        status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE,
    )


def _at(t: float | None):
    """The device's scan time (s UTC) as an aware datetime, or None (now)."""
    return None if t is None else datetime.fromtimestamp(t, tz=dt_timezone.utc)


def _scan(*, token: str, gate: Gate, extra: Callable[[Visit], dict] | None = None, t: float | None = None) -> Response:
    """Admit or refuse the holder of ``token`` at ``gate`` (scanned at ``t`` s UTC on the device's clock, default
    now) and shape the answer (200 admitted, 403 refused); ``extra(visit)`` adds fields to an admission."""
    try:
        visit = visit_enter(token=token, gate=gate, at=_at(t))
    except GateRefusal as refusal:
        return Response({"admitted": False, "reason": refusal.code, "message": refusal.message},
                        status=status.HTTP_403_FORBIDDEN, headers=NO_STORE)
    body = {"admitted": True, "visit": visit.pk}
    if visit.party_lead_id:
        body["guest_of"] = visit.party_lead_id
    if extra:
        body.update(extra(visit))
    return Response(body, status=status.HTTP_200_OK, headers=NO_STORE)


def _exit_scan(*, token: str, gate: Gate, t: float | None = None) -> Response:
    """Exit the holder of ``token`` at ``gate`` (at ``t`` s UTC, default now) and shape the answer (200 exited,
    403 refused)."""
    try:
        visits = visit_exit_scan(token=token, gate=gate, at=_at(t))
    except GateRefusal as refusal:
        return Response({"exited": False, "reason": refusal.code, "message": refusal.message},
                        status=status.HTTP_403_FORBIDDEN, headers=NO_STORE)
    return Response({"exited": True, "visits": [v.pk for v in visits]}, status=status.HTTP_200_OK, headers=NO_STORE)


class _GateTokenView(APIView):
    """A gate device posts a scanned token; subclasses name what the scan does (``what``), the answer's outcome key
    (``outcome``: ``admitted`` or ``exited``, also in a 400) and who answers it."""

    authentication_classes = [GateKeyAuthentication]
    permission_classes = [IsGate]
    what = "scan"
    outcome = "admitted"

    def answer(self, *, token: str, gate: Gate, t: float | None = None) -> Response:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        gate: Gate = request.auth
        serializer = ScanSerializer(data=request.data)
        if not serializer.is_valid():
            return _bad_request(request, serializer.errors, f"{self.what} at gate {gate}", self.outcome)
        return self.answer(token=serializer.validated_data["token"], gate=gate, t=serializer.validated_data.get("t"))


class GateExitView(_GateTokenView):
    """``POST /gates/api/exit/``: a gate device's exit scan (module docstring)."""

    what = "exit scan"
    outcome = "exited"

    def answer(self, *, token: str, gate: Gate, t: float | None = None) -> Response:
        return _exit_scan(token=token, gate=gate, t=t)


class GateScanView(_GateTokenView):
    """``POST /gates/api/scan/``: a gate device scans an entry pass (module docstring)."""

    def answer(self, *, token: str, gate: Gate, t: float | None = None) -> Response:
        return _scan(token=token, gate=gate, t=t)


class StaffScanView(APIView):
    """``POST /gates/api/staff-scan/``: the staff scanner page scans a pass at a chosen gate (module docstring)."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAdminUser]

    def post(self, request: Request) -> Response:
        serializer = StaffScanSerializer(data=request.data)
        asked_exit = hasattr(request.data, "get") and request.data.get("direction") == "exit"
        outcome = "exited" if asked_exit else "admitted"
        if not serializer.is_valid():
            return _bad_request(request, serializer.errors, f"staff scan by user {request.user.pk}", outcome)
        gate = gate_get_active(gate_id=serializer.validated_data["gate"])
        if gate is None:
            log.warning("staff scan by user %s refused: gate %s unknown or inactive", request.user.pk,
                        serializer.validated_data["gate"])
            return Response({outcome: False, "reason": "unknown_gate", "message": "no active gate with this id"},
                            status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
        direction = serializer.validated_data.get("direction", "entry")
        log.info("staff user %s scans a pass at gate %s (%s)", request.user.pk, gate, direction)
        if direction == "exit":
            return _exit_scan(token=serializer.validated_data["token"], gate=gate)
        return _scan(token=serializer.validated_data["token"], gate=gate,
                     extra=lambda visit: {"shopper": visit.shopper.get_username()})


#: The most party members a pass request may declare (``guests``): a sanity bound on the request (two decimal
#: digits), not the gate's policy; the pass then admits at most ``GUEST_CAP`` of them (``services.pass_issue``
#: clamps). Larger or other values are a 400.
PASS_GUESTS_MAX = 99


def _guests_parse(request: Request) -> int | None:
    """The ``guests`` of a pass request, from the body or else the query string (absent: 0): an int 0 …
    :data:`PASS_GUESTS_MAX`, or None when the value given is not one (negative, fractional, boolean, text, too big)."""
    raw = request.data.get("guests") if hasattr(request.data, "get") else None
    if raw is None or raw == "":
        raw = request.query_params.get("guests")
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(PASS_GUESTS_MAX)):
            return None
        raw = int(raw)
    if not isinstance(raw, int):
        return None
    return raw if 0 <= raw <= PASS_GUESTS_MAX else None


class PassTokenView(APIView):
    """``POST /gates/pass/token/``: a fresh entry pass for the logged-in shopper (rotation; CSRF enforced).

    200 body: ``{"token", "svg" (QR markup), "store": {"code", "name"}, "issued_at", "expires_at" (ISO 8601 UTC),
    "max_age_s", "expires_in_s", "refresh_in_s"}``; the client counts down ``expires_in_s`` from the moment it got
    the answer (no trust in its own clock) and asks again after ``refresh_in_s`` seconds.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        code = request.data.get("store") if hasattr(request.data, "get") else None
        code = code or request.query_params.get("store")
        if code is not None and (not isinstance(code, str) or len(code) > 64):
            log.warning("pass token for user %s refused: bad store parameter", request.user.pk)
            return Response({"reason": "bad_request", "message": "store must be a store code"},
                            status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
        guests = _guests_parse(request)
        if guests is None:
            log.warning("pass token for user %s refused: bad guests parameter", request.user.pk)
            return Response({"reason": "bad_request",
                             "message": f"guests must be a whole number from 0 to {PASS_GUESTS_MAX}"},
                            status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
        try:
            store = pass_store_resolve(code=code)
            entry_pass, token = pass_request(shopper=request.user, store=store, guests=guests)
        except PassUnavailable as exc:
            log.info("pass token for user %s refused: %s", request.user.pk, exc.code)
            body = {"reason": exc.code, "message": exc.message}
            if exc.code == "no_payment_method":
                body["card_url"] = reverse("accounts:card_add")
                return Response(body, status=status.HTTP_403_FORBIDDEN, headers=NO_STORE)
            return Response(body, status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
        return Response(
            {"token": token, "svg": pass_qr_svg(token=token), "store": {"code": store.code, "name": store.name},
             "pass_id": entry_pass.pk, "guests": entry_pass.guests,
             "issued_at": entry_pass.issued_at.isoformat(), "expires_at": entry_pass.expires_at.isoformat(),
             **pass_timing()},
            status=status.HTTP_200_OK, headers=NO_STORE,
        )
