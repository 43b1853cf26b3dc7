"""Shelf-controller HTTP API (Django REST framework), for controllers without MQTT. Thin: authenticate, hand the
body to :mod:`sensors.live` (or forward it to the broker), shape the answer.

* ``POST /sensors/api/weights/`` — one block of samples, the same JSON payload as over MQTT
  (:mod:`sensors.ingest`, the ``key`` field not needed). Header ``Authorization: Controller <api key>``.
  Answers:

  - 202 ``{"accepted": true, "blocks": <n>, "samples": <rows>, "problems": [{"reason", "message", "repaired"}]}``
    when the message was used (held for reordering counts as used; repaired problems are listed);
  - 200 ``{"accepted": true, "duplicate": true, ...}`` for a retry of a message already taken (counted as a
    ``duplicate``; nothing is fed twice);
  - 400 ``{"accepted": false, "reason": <reason>, "message": <text>, "problems": [...]}`` when it was rejected
    (malformed JSON or base64, wrong shape, late…; reasons of ``sensors.ingest.REASONS``);
  - 401 without a valid controller key (logged; counted for the controller when the key names a known one);
  - 429 ``{"reason": "throttled"}`` from an address that sent too many bad keys (``store.throttle``);
  - 503 ``{"reason": "broker_unavailable"}`` in production when the broker cannot take the message (retry).

  Production profile (``MQTT_URL`` set): the endpoint checks the JSON and the controller name, then forwards the
  message (with its key) to the controller's MQTT topic, so the one ingestion worker keeps all detector state;
  it answers 202 ``{"accepted": true, "forwarded": true}``. Embedded profile: processed in this process.
"""
from __future__ import annotations

import json
import logging
import threading

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from store.jsonbody import BodyError, loads_safe
from store.throttle import api_key_failed, api_key_locked, client_address

from .ingest import MAX_PAYLOAD_BYTES, IngestProblem, weights_topic
from .models import ShelfController, RfidReader
from .services import controller_authenticate, controller_problems_record
from .mqtt import Publisher
from .live import http_ingestor
from .rfid import MAX_PAYLOAD_BYTES as READS_MAX, ReadProblem, reads_topic
from .rfid_live import http_rfid_ingestor, reader_authenticate, reader_problems_record

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}


class ControllerKeyAuthentication(BaseAuthentication):
    """``Authorization: Controller <api key>`` → ``request.auth`` is the :class:`ShelfController` (user anonymous).
    No such header: unauthenticated (401). A malformed header or an unknown/inactive key: 401 with the reason;
    after ``API_KEY_FAILURE_LIMIT`` such failures from one address, 429 ``throttled`` (``store.throttle``)."""

    keyword = "controller"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ShelfController] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        address = client_address(request)
        wait = api_key_locked(scope="controller", address=address)
        if wait is not None:
            log.warning("controller auth refused: %s is locked out after failed keys", address)
            raise Throttled(wait=wait, detail="too many failed controller API keys from this address; try again "
                                              "later")
        try:
            return self._check(request, parts)
        except AuthenticationFailed:
            api_key_failed(scope="controller", address=address)
            raise

    def _check(self, request: Request, parts: list[bytes]) -> tuple[AnonymousUser, ShelfController]:
        client = request.META.get("REMOTE_ADDR", "?")
        if len(parts) != 2:
            log.warning("controller auth refused: malformed Authorization header from %s", client)
            raise AuthenticationFailed("malformed header: send 'Authorization: Controller <api key>'")
        try:
            api_key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            log.warning("controller auth refused: non-ASCII key from %s", client)
            raise AuthenticationFailed("the controller API key must be ASCII") from None
        controller = controller_authenticate(api_key=api_key)
        if controller is None:
            log.warning("controller auth refused: unknown or inactive API key from %s", client)
            raise AuthenticationFailed("unknown or inactive controller API key")
        request._controller_key = api_key
        return AnonymousUser(), controller

    def authenticate_header(self, request: Request) -> str:
        return 'Controller realm="walkout"'


class IsController(BasePermission):
    """The request was authenticated as a shelf controller."""

    message = "only a shelf controller may call this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, ShelfController)


_publisher_lock = threading.Lock()
_publisher = None


def _forward(topic: str, payload: bytes) -> bool:
    """Publish to the broker of ``settings.MQTT_URL`` (one connection per process); False if it failed."""
    global _publisher

    with _publisher_lock:
        try:
            if _publisher is None:
                _publisher = Publisher(settings.MQTT_URL).__enter__()
            info = _publisher.publish(topic, payload)
            info.wait_for_publish(timeout=5.0)
            return info.is_published()
        except (ConnectionError, OSError, RuntimeError, ValueError) as exc:
            log.error("forwarding a controller message to %s failed: %s", settings.MQTT_URL, exc)
            _publisher = None
            return False


class WeightsView(APIView):
    """``POST /sensors/api/weights/``: one block of a controller's samples (module docstring)."""

    authentication_classes = [ControllerKeyAuthentication]
    permission_classes = [IsController]
    parser_classes: list = []  # the body is read raw: the same bytes as an MQTT payload

    def post(self, request: Request) -> Response:
        controller: ShelfController = request.auth
        body = request.body
        if len(body) > MAX_PAYLOAD_BYTES:
            return self._rejected(controller, "malformed_json", f"body of {len(body)} bytes exceeds "
                                                                f"{MAX_PAYLOAD_BYTES}", [])
        if getattr(settings, "MQTT_URL", ""):
            return self._forward(request, controller, body)

        ingestor, lock = http_ingestor()
        with lock:
            outcome = ingestor.handle(controller=controller, payload=body)
        problems = [{"reason": p.reason, "message": p.message, "repaired": p.repaired} for p in outcome.problems]
        if outcome.blocks == 0 and [p.reason for p in outcome.problems] == ["duplicate"]:
            # a retry of a message already taken (the controller missed our answer): idempotent success
            return Response({"accepted": True, "duplicate": True, "blocks": 0, "samples": 0, "problems": problems},
                            status=status.HTTP_200_OK, headers=NO_STORE)
        if outcome.rejected:
            first = next(p for p in outcome.problems if not p.repaired)
            return Response({"accepted": False, "reason": first.reason, "message": first.message,
                             "problems": problems}, status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
        return Response({"accepted": True, "blocks": outcome.blocks, "samples": outcome.samples,
                         "problems": problems}, status=status.HTTP_202_ACCEPTED, headers=NO_STORE)

    def _rejected(self, controller: ShelfController, reason: str, message: str, problems: list) -> Response:
        text = f"controller {controller.name}: {message}"
        controller_problems_record(controller=controller, problems=[IngestProblem(controller.name, reason, text)])
        return Response({"accepted": False, "reason": reason, "message": text, "problems": problems},
                        status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)

    def _forward(self, request: Request, controller: ShelfController, body: bytes) -> Response:
        try:
            doc = loads_safe(body, where=f"controller {controller.name}", constants=True)
        except BodyError as exc:
            return self._rejected(controller, exc.reason, exc.message, [])
        if not isinstance(doc, dict):
            return self._rejected(controller, "malformed_json", "payload must be a JSON object", [])
        if doc.get("controller") != controller.name:
            return self._rejected(controller, "wrong_controller", f"payload names controller "
                                                                  f"{doc.get('controller')!r}", [])
        doc["key"] = request._controller_key
        topic = weights_topic(controller.store.code, controller.name)
        if not _forward(topic, json.dumps(doc, separators=(",", ":")).encode()):
            return Response({"accepted": False, "reason": "broker_unavailable",
                             "message": "the message broker did not take the message; retry"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=NO_STORE)
        return Response({"accepted": True, "forwarded": True}, status=status.HTTP_202_ACCEPTED, headers=NO_STORE)


# ------------------------------------------------------------------------------------------------ RFID readers
class ReaderKeyAuthentication(ControllerKeyAuthentication):
    """``Authorization: Reader <api key>`` → ``request.auth`` is the :class:`sensors.models.RfidReader`; the same
    401s and the same failed-key throttle (scope ``reader``) as controllers."""

    keyword = "reader"

    def authenticate(self, request: Request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        address = client_address(request)
        wait = api_key_locked(scope="reader", address=address)
        if wait is not None:
            log.warning("reader auth refused: %s is locked out after failed keys", address)
            raise Throttled(wait=wait, detail="too many failed reader API keys from this address; try again later.")
        try:
            if len(parts) != 2:
                raise AuthenticationFailed("malformed header: send 'Authorization: Reader <api key>'")
            try:
                api_key = parts[1].decode("ascii")
            except UnicodeDecodeError:
                raise AuthenticationFailed("the reader API key must be ASCII") from None

            reader = reader_authenticate(api_key=api_key)
            if reader is None:
                log.warning("reader auth refused: unknown or inactive API key from %s", address)
                raise AuthenticationFailed("unknown or inactive reader API key")
        except AuthenticationFailed:
            api_key_failed(scope="reader", address=address)
            raise
        request._reader_key = api_key
        return AnonymousUser(), reader

    def authenticate_header(self, request: Request) -> str:
        return 'Reader realm="walkout"'


class IsReader(BasePermission):
    """The request was authenticated as an RFID reader."""

    message = "only an RFID reader may call this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, RfidReader)


class ReadsView(APIView):
    """``POST /sensors/api/reads/``: one message of an RFID reader's tag reads (payload: :mod:`sensors.rfid`, no
    ``key`` field), header ``Authorization: Reader <api key>``. Answers 202 ``{"accepted": true, "reads": n,
    "events": n, "problems": [{"reason", "message", "reads_lost"}]}`` (reads with a bad EPC or antenna are listed
    and counted, the others used); 200 ``{"accepted": true, "duplicate": true}`` for a retry of a message taken;
    400 ``{"accepted": false, "reason", "message"}`` when the whole message was refused (malformed JSON, a bad
    field, another reader's or another store's payload); 401/429 as for controllers. Production profile
    (``MQTT_URL`` set): checked, then forwarded to the reader's MQTT topic (202 ``{"forwarded": true}``), so the one
    ingestion worker keeps the shelf-tag state."""

    authentication_classes = [ReaderKeyAuthentication]
    permission_classes = [IsReader]
    parser_classes: list = []

    def post(self, request: Request) -> Response:
        reader = request.auth
        body = request.body
        if len(body) > READS_MAX or getattr(settings, "MQTT_URL", ""):
            try:
                if len(body) > READS_MAX:
                    raise BodyError("malformed_json", f"body of {len(body)} bytes exceeds {READS_MAX}")
                doc = loads_safe(body, where=f"reader {reader.name}")
                if not isinstance(doc, dict):
                    raise BodyError("malformed_json", "payload must be a JSON object")
                for field_, want, reason in (("store", reader.store.code, "wrong_store"),
                                             ("reader", reader.name, "wrong_reader")):
                    if doc.get(field_) != want:
                        raise BodyError(reason, f"payload names {field_} {str(doc.get(field_))[:64]!r}")
            except BodyError as exc:
                text = f"reader {reader.name}: {exc.message}"
                reader_problems_record(reader=reader, problems=[ReadProblem(exc.reason, text)])
                return Response({"accepted": False, "reason": exc.reason, "message": text, "problems": []},
                                status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
            doc["key"] = request._reader_key
            if not _forward(reads_topic(reader.store.code, reader.name), json.dumps(doc).encode()):
                return Response({"accepted": False, "reason": "broker_unavailable",
                                 "message": "the message broker did not take the message; retry"},
                                status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=NO_STORE)
            return Response({"accepted": True, "forwarded": True}, status=status.HTTP_202_ACCEPTED, headers=NO_STORE)
        ingestor, lock = http_rfid_ingestor()
        with lock:
            outcome = ingestor.handle(reader=reader, payload=body)
        problems = [{"reason": p.reason, "message": p.message, "reads_lost": p.reads_lost} for p in outcome.problems]
        if outcome.duplicate:
            return Response({"accepted": True, "duplicate": True, "reads": 0, "events": 0, "problems": problems},
                            status=status.HTTP_200_OK, headers=NO_STORE)
        if outcome.rejected:
            first = outcome.problems[0]
            return Response({"accepted": False, "reason": first.reason, "message": first.message,
                             "problems": problems}, status=status.HTTP_400_BAD_REQUEST, headers=NO_STORE)
        return Response({"accepted": True, "reads": outcome.reads, "events": outcome.events, "problems": problems},
                        status=status.HTTP_202_ACCEPTED, headers=NO_STORE)
