"""Manager dashboard, mounted at ``/manage/`` (see ``carts.dashboard``); inventory pages under ``inventory/``."""
from django.urls import include, path

from . import dashboard

app_name = "dashboard"
urlpatterns = [
    path("", dashboard.home, name="home"),
    path("visits/<int:visit_id>/", dashboard.visit, name="visit"),
    path("reviews/<int:review_id>/", dashboard.review_console_view, name="review"),
    path("reviews/<int:review_id>/resolve/", dashboard.review_resolve_view, name="review_resolve"),
    path("reviews/<int:review_id>/undo/", dashboard.review_undo_view, name="review_undo"),
    path("reviews/<int:review_id>/clip/<slug:camera>/<str:file>", dashboard.review_clip_frame, name="review_clip"),
    path("reports/", dashboard.reports, name="reports"),
    path("replay/", dashboard.live_replay_view, name="live_replay"),
    path("inventory/", include("store.inventory.urls")),
]
