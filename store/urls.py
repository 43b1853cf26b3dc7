"""URL routes. Each app owns its own ``urls.py``; this file only mounts them."""
from django.contrib import admin
from django.urls import include, path

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
