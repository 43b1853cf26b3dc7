"""Vision manager pages; mount with ``path("manage/vision/", include("vision.urls"))``."""
from django.urls import path

from . import views

app_name = "vision"
urlpatterns = [
    path("map/<slug:store_code>/", views.store_map, name="store_map"),
    path("map/<slug:store_code>.json", views.store_map_json, name="store_map_json"),
    path("cameras/<int:camera_id>/", views.camera_page, name="camera"),
    path("cameras/<int:camera_id>/recent.jpg", views.camera_recent, name="camera_recent"),
    path("cameras/<int:camera_id>/snapshot.png", views.camera_snapshot, name="camera_snapshot"),
]
