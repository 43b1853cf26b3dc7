"""URL routes. Each app owns its own ``urls.py``; this file only mounts them, and answers a request Django refuses
before a view runs (a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``) in JSON on the device APIs."""
import logging

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults

from vision import api as vision_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("billing/", include("store.billing.urls")),
    path("sensors/", include("sensors.urls")),
    path("gates/", include("store.gates.urls")),
    path("visits/", include("carts.urls")),
    path("manage/vision/", include("vision.urls")),
    path("vision/api/observations/", vision_api.observations, name="vision_observations"),
    path("manage/", include("carts.dashboard_urls")),
    path("", include("store.accounts.urls")),
]

log = logging.getLogger(__name__)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: on a device API (a path with ``/api/``, or a JSON body) a JSON answer with a reason, as every other refusal
    of those APIs: ``too_large`` (413) for a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, else ``bad_request``;
    elsewhere Django's page. Logged either way (the device is not known yet: the body was never read)."""
    too_large = isinstance(exception, RequestDataTooBig)
    log.warning("refused %s %s before its view: %s", request.method, request.path,
                "body too large" if too_large else exception)
    if "/api/" not in request.path and request.content_type != "application/json":
        return defaults.bad_request(request, exception)
    if too_large:
        return JsonResponse({"reason": "too_large", "message": f"the body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
                            status=413)
    return JsonResponse({"reason": "bad_request", "message": "the request could not be read"}, status=400)


handler400 = bad_request
