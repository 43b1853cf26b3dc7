"""Throttle failed API keys per client address (gate devices, shelf controllers): after ``API_KEY_FAILURE_LIMIT``
failed keys from one address, every keyed request from it answers 429 (reason ``throttled``) for
``API_KEY_LOCKOUT_S`` seconds, so a key cannot be guessed. A valid key is refused too while the address is locked,
or the answer would tell a right guess. Counters live in Django's cache (Redis in production, shared by every
process); when the cache is down the throttle lets requests through and logs it (the keys are 256-bit anyway).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

log = logging.getLogger(__name__)


def client_address(request: HttpRequest) -> str:
    """The client's address as the login throttle sees it (axes' ipware rules: ``REMOTE_ADDR`` unless
    ``WALKOUT_PROXY_COUNT`` trusted proxies stand in front)."""
    from axes.helpers import get_client_ip_address

    return get_client_ip_address(request) or request.META.get("REMOTE_ADDR", "") or "?"


def _key(scope: str, address: str) -> str:
    return f"walkout:keyfail:{scope}:{address}"


def _limits() -> tuple[int, int]:
    w = settings.WALKOUT
    return int(w.get("API_KEY_FAILURE_LIMIT", 20)), int(w.get("API_KEY_LOCKOUT_S", 900))


def api_key_locked(*, scope: str, address: str) -> int | None:
    """Seconds to wait when ``address`` is locked out of ``scope`` ("gate", "controller"), else None."""
    limit, lockout_s = _limits()
    try:
        failures = cache.get(_key(scope, address), 0)
    except Exception as exc:  # the cache (Redis) is down: do not take the API down with it
        log.error("API key throttle unavailable (%s); request let through", exc)
        return None
    return lockout_s if failures >= limit else None


def api_key_failed(*, scope: str, address: str) -> int:
    """Count one failed key from ``address`` for ``scope``; the lockout window restarts. Returns the count."""
    _, lockout_s = _limits()
    key = _key(scope, address)
    try:
        cache.add(key, 0, timeout=lockout_s)
        n = cache.incr(key)
        cache.touch(key, timeout=lockout_s)
    except Exception as exc:
        log.error("API key throttle unavailable (%s); failure not counted", exc)
        return 0
    if n == _limits()[0]:
        log.warning("%s API: %d failed keys from %s; locked out for %d s", scope, n, address, lockout_s)
    return n
