"""Sensors routes, to be mounted at ``sensors/`` (``path("sensors/", include("sensors.urls"))``)."""
from django.urls import path

from . import api

app_name = "sensors"
urlpatterns = [
    path("api/weights/", api.WeightsView.as_view(), name="api_weights"),
    path("api/reads/", api.ReadsView.as_view(), name="api_reads"),
]
