"""Gate routes, mounted at ``gates/``: the entry pass, the staff scanner, and the gate API."""
from django.urls import path

from . import api, views

app_name = "gates"
urlpatterns = [
    path("pass/", views.pass_page, name="pass"),
    path("pass/token/", api.PassTokenView.as_view(), name="pass_token"),
    path("scanner/", views.scanner_page, name="scanner"),
    path("api/scan/", api.GateScanView.as_view(), name="api_scan"),
    path("api/exit/", api.GateExitView.as_view(), name="api_exit"),
    path("api/staff-scan/", api.StaffScanView.as_view(), name="api_staff_scan"),
]
