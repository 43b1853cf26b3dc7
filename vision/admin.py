"""Admin: cameras (with calibration from marked floor points) and read-only vision outputs (one writer,
``vision``)."""
from __future__ import annotations

from django.contrib import admin, messages

from store.admin_mixins import ReadOnlyMixin

from .geometry import CalibrationError
from .models import Camera, CameraTrack, ShopperTrack, ZoneInterval
from .services import camera_calibrate


@admin.register(ShopperTrack)
class ShopperTrackAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Shopper tracks (one person across cameras, bound to a visit): read-only."""
    list_display = ("track_id", "store", "session", "first_seen", "last_seen", "observations")
    list_filter = ("store", "session")
    search_fields = ("track_id",)
    list_select_related = ("store",)
    date_hierarchy = "first_seen"


@admin.register(CameraTrack)
class CameraTrackAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Per-camera tracks (tracker ids and their time spans), joined into shopper tracks: read-only."""
    list_display = ("key", "shopper_id", "camera", "session", "t_start", "t_end", "frames", "mean_confidence")
    list_filter = ("store", "session", "camera")
    search_fields = ("key", "shopper_id")


@admin.register(ZoneInterval)
class ZoneIntervalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """When a track was inside each floor zone (entry, exit): read-only."""
    list_display = ("shopper_id", "zone", "kind", "session", "t_start", "t_end")
    list_filter = ("store", "session", "kind")


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    """Cameras. Enter at least 4 marked floor points (pixel u, v ↔ store x, y metres) in *calibration points*
    and save, or run the *Compute floor homography* action: the homography and its reprojection error (px, cm)
    are stored."""

    list_display = ("name", "store", "source", "fps", "calibration_error_px", "calibration_error_cm",
                    "calibrated_at", "enabled")
    list_filter = ("store", "enabled")
    readonly_fields = ("calibration_error_px", "calibration_error_cm", "calibrated_at")
    actions = ["calibrate"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if "calibration_points" in form.changed_data and obj.calibration_points:
            self._calibrate(request, obj)

    def _calibrate(self, request, camera: Camera) -> None:
        try:
            cal = camera_calibrate(camera=camera)
        except CalibrationError as exc:
            self.message_user(request, f"{camera}: not calibrated: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"{camera}: {cal.summary()}", messages.SUCCESS)

    @admin.action(description="Compute floor homography from the marked points")
    def calibrate(self, request, queryset) -> None:
        for camera in queryset:
            self._calibrate(request, camera)
