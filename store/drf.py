"""DRF glue for every API: bodies parsed through :func:`store.jsonbody.loads_safe`, and one error shape.

Why: DRF's ``JSONParser`` lets ``RecursionError`` through (a 500 for ``[`` × 100 000), and its error bodies
(``{"detail": …}``) differ from the ``{"reason", "message"}`` the gate and controller APIs answer. Both are set
for all views in ``settings.REST_FRAMEWORK``.
"""
from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.views import exception_handler

from .jsonbody import BodyError, count_refusal, loads_safe


class BodyParseError(exceptions.ParseError):
    """DRF's 400 for an unparseable body, carrying a reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SafeJSONParser(JSONParser):
    """DRF's JSON parser through :func:`loads_safe`: any bad body is a 400 (``malformed_json``), never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context.get("request")
        where = request.path if request is not None else ""
        try:
            raw = stream.read() if stream is not None else b""
        except (OSError, ValueError) as exc:
            raise BodyParseError("malformed_json", f"could not read the body: {exc}") from None
        try:
            return loads_safe(raw, where=where)
        except BodyError as exc:
            raise BodyParseError(exc.reason, exc.message) from None


#: reason codes of DRF's own errors
_REASONS = {
    exceptions.ParseError: "malformed_body",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "bad_request",
}


def api_exception_handler(exc: Exception, context: dict):
    """DRF's handler, plus ``reason`` (a code) and ``message`` (the text) in every error body; ``detail`` stays for
    clients that read it. A ``RecursionError`` anywhere in a view (a structure nested too deeply for some later
    step) is a 400 ``too_deep`` rather than a 500."""
    if isinstance(exc, RecursionError):
        count_refusal("too_deep", "a structure nested too deeply", "")
        exc = BodyParseError("too_deep", "the body is nested too deeply")
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    reason = getattr(exc, "reason", None)
    if reason is None:
        reason = next((code for cls, code in _REASONS.items() if isinstance(exc, cls)), "error")
    data = response.data
    if isinstance(data, dict) and "detail" in data:
        data = {"reason": reason, "message": str(data["detail"]), **data}
    elif response.status_code == status.HTTP_400_BAD_REQUEST:
        data = {"reason": reason, "message": "the request body is not valid", "errors": data}
    response.data = data
    return response
