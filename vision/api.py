"""The external-tracker adapter: ``POST /vision/api/observations/`` (a store's own vision system → the store loop).

Header ``Authorization: Tracker <api key>`` (``manage.py create_tracker``); body: ``vision.services.
observations_parse``'s version 1 (rows of [track, t, keypoint, x, y, z, score], s UTC and store metres). The rows
go onto the store's ``obs`` stream (``carts.runtime``) as source ``tracker:<name>``, and the live map is refreshed.
Answers 202 ``{"accepted": <rows>}``; 400 ``{"reason", "message"}`` for any body it cannot use (malformed or too
deep JSON, wrong fields, non-finite numbers, too many rows, an unknown keypoint, a time outside 2000–2100 UTC, a
time ahead of the server's clock by more than ``services.TRACKER_CLOCK_AHEAD_MAX_S`` (reason ``clock_ahead``; the
emulator's own tracker ``services.EMULATED_TRACKER_CLOCK_AHEAD_MAX_S``), a coordinate beyond
``services.STORE_COORDINATE_MAX_M``), counted on the tracker (``TrackerSource.rejected``); 401 without a valid key;
413 for a body over ``MAX_BODY_BYTES``; 429 from an address that sent too many bad keys (``store.throttle``);
503 where no store loop runs. Bad input never raises.
"""
from __future__ import annotations

import logging
import time

from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from store.jsonbody import BodyError, loads_safe
from store.throttle import api_key_failed, api_key_locked, client_address

from . import hooks
from .models import TrackerSource
from .services import (
    EMULATED_TRACKER_CLOCK_AHEAD_MAX_S, TRACKER_CLOCK_AHEAD_MAX_S, TrackerInputError, observations_parse,
    store_map_publish_observations, tracker_authenticate,
)

log = logging.getLogger(__name__)

#: Largest body accepted (bytes): 50,000 rows of ~80 bytes.
MAX_BODY_BYTES = 5_000_000


def _bad(tracker: TrackerSource | None, reason: str, message: str, status: int = 400) -> JsonResponse:
    if tracker is not None:
        TrackerSource.objects.filter(pk=tracker.pk).update(rejected=F("rejected") + 1)
    log.warning("tracker %s: observations rejected (%s): %s", tracker, reason, message)
    return JsonResponse({"reason": reason, "message": message}, status=status)


@csrf_exempt
@require_POST
def observations(request: HttpRequest) -> JsonResponse:
    """``POST /vision/api/observations/`` (module docstring)."""
    address = client_address(request)
    wait = api_key_locked(scope="tracker", address=address)
    if wait is not None:
        return JsonResponse({"reason": "throttled", "message": "too many failed tracker keys from this address; "
                                                               f"try again in {wait} s"}, status=429,
                            headers={"Retry-After": str(wait)})
    parts = request.headers.get("Authorization", "").split()
    if len(parts) != 2 or parts[0].lower() != "tracker":
        return JsonResponse({"reason": "unauthenticated", "message": "send Authorization: Tracker <api key>"},
                            status=401)
    tracker = tracker_authenticate(api_key=parts[1])
    if tracker is None:
        api_key_failed(scope="tracker", address=address)
        return JsonResponse({"reason": "unauthenticated", "message": "unknown or inactive tracker key"}, status=401)
    if len(request.body) > MAX_BODY_BYTES:
        return _bad(tracker, "too_large", f"the body is over {MAX_BODY_BYTES} bytes", status=413)
    try:  # not JSON, a 5,000-digit number, 100,000 nested brackets: a 400 with the reason, never a 500
        doc = loads_safe(request.body, where=f"tracker {tracker}")
    except BodyError as exc:
        return _bad(tracker, exc.reason, exc.message)
    try:
        obs, t_last = observations_parse(doc, now=time.time(), ahead_max_s=(
            EMULATED_TRACKER_CLOCK_AHEAD_MAX_S if tracker.emulated else TRACKER_CLOCK_AHEAD_MAX_S))
    except TrackerInputError as exc:
        return _bad(tracker, exc.reason, str(exc))
    if not hooks.store_loop_enabled():
        return _bad(tracker, "store_loop_off", "this deployment runs no store loop (WALKOUT_STORE_LOOP=off)",
                    status=503)
    # track ids are the tracker's own: namespace them so that two trackers never share one
    if len(obs):
        obs.track_id[:] = [f"{tracker.name}:{t}" for t in obs.track_id]
    if t_last is None and len(obs):  # no t_last: the tracker's clock has reached its newest row at least
        t_last = float(obs.t.max())
    hooks.publish_observations(tracker.store.code, f"tracker:{tracker.name}", obs, t_last)
    store_map_publish_observations(store_code=tracker.store.code, obs=obs)
    TrackerSource.objects.filter(pk=tracker.pk).update(observations=F("observations") + len(obs))
    return JsonResponse({"accepted": len(obs)}, status=202)
