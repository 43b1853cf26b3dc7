"""Safe parsing of untrusted JSON bodies (plain Python: the sensors core uses it too, with no Django import).

Why: ``json.loads`` raises more than ``JSONDecodeError`` on hostile input — ``RecursionError`` for deep nesting
(``[`` × 100 000), ``ValueError`` for an integer of more than 4 300 digits (CPython's int-string limit) — and DRF's
``JSONParser`` catches neither of the first, so such a body was a 500. Every JSON body (DRF views and the raw
shelf-controller payloads, HTTP and MQTT) goes through :func:`loads_safe`; every API error answers
``{"reason": <code>, "message": <text>}`` (``store.drf.api_exception_handler``). Refused bodies are logged and counted
(:data:`BAD_BODIES`, by reason).
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

#: Bodies refused as unparseable since the process started, by reason (``malformed_json``).
BAD_BODIES: Counter[str] = Counter()
_lock = threading.Lock()


class BodyError(ValueError):
    """A body that is not usable JSON. ``reason`` is ``malformed_json``; ``message`` says why (no input echoed
    beyond the parser's position)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def count_refusal(reason: str, message: str, where: str) -> None:
    """Log one refused body (``where``: the endpoint or topic) and count it in :data:`BAD_BODIES` under ``reason``."""
    with _lock:
        BAD_BODIES[reason] += 1
    log.warning("refused a body%s: %s (%s)", f" at {where}" if where else "", message, reason)


def loads_safe(raw: bytes | bytearray | str, *, where: str = "", constants: bool = False) -> Any:
    """``json.loads(raw)`` that raises only :class:`BodyError`, for any input: bad UTF-8, bad JSON, nesting deeper
    than the interpreter's recursion limit, integers past the int-string limit, and (unless ``constants``) the
    NaN/Infinity constants, which are not JSON. ``where`` names the caller in the log line. Each refusal is
    counted in :data:`BAD_BODIES`."""
    try:
        if isinstance(raw, (bytes, bytearray)):
            raw = bytes(raw).decode("utf-8")
        return json.loads(raw, parse_constant=None if constants else _refuse_constant)
    except RecursionError:
        message = "JSON nested too deeply"
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        message = f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # the int-string limit, or a NaN/Infinity constant
        message = f"not usable JSON: {str(exc)[:120]}"
    except (TypeError, MemoryError) as exc:
        message = f"not usable JSON: {type(exc).__name__}"
    count_refusal("malformed_json", message, where)
    raise BodyError("malformed_json", message)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
