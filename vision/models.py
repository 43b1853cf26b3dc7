"""Vision as stored: cameras with their calibration, and compact per-session outputs (track intervals, zone
intervals, shopper-track summaries). Per-frame data stays out of the database (DESIGN.md)."""
from __future__ import annotations

from django.db import models

from store.layout.models import Store


class ShopperTrack(models.Model):
    """One person's track across all cameras in one session (live, or a recording replayed)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shopper_tracks")
    session = models.CharField(max_length=100)
    track_id = models.CharField(max_length=64)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    observations = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["first_seen"]
        constraints = [
            models.UniqueConstraint(fields=["store", "session", "track_id"], name="shopper_track_unique")
        ]

    def __str__(self) -> str:
        return f"track {self.track_id} ({self.session})"


class Camera(models.Model):
    """A store camera: where its frames come from and how its pixels map to the store floor.

    ``source``: a file path, an RTSP/HTTP URL or a device index. Calibration (``vision.geometry.CameraModel``):
    ``intrinsics`` 3×3 pixels and ``distortion`` (OpenCV coefficients), ``rotation`` 3×3 and ``centre`` (3,)
    metres camera-to-store, ``homography`` 3×3 undistorted pixel → floor metres. ``calibration_points`` are the
    marked floor points ``[{"u", "v", "x", "y"}, ...]`` (pixels, metres) the homography is computed from
    (``vision.services.camera_calibrate``, admin action or ``manage.py calibrate``).
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="cameras")
    name = models.SlugField(max_length=64)
    source = models.CharField(max_length=500, help_text="video file, rtsp:// or http:// URL, or device index")
    fps = models.FloatField(default=10.0, help_text="frames per second to process")
    width = models.PositiveIntegerField(default=0, help_text="frame width, pixels (0: from the stream)")
    height = models.PositiveIntegerField(default=0, help_text="frame height, pixels (0: from the stream)")
    clock_offset_s = models.FloatField(default=0.0, help_text="added to the camera's frame times to get UTC")
    intrinsics = models.JSONField(null=True, blank=True, help_text="K, 3×3, pixels")
    distortion = models.JSONField(null=True, blank=True, help_text="OpenCV distortion coefficients")
    rotation = models.JSONField(null=True, blank=True, help_text="R, 3×3, camera axes in store coordinates")
    centre = models.JSONField(null=True, blank=True, help_text="camera centre [x, y, z], metres")
    homography = models.JSONField(null=True, blank=True, help_text="3×3, undistorted pixel → floor metres")
    calibration_points = models.JSONField(default=list, blank=True,
                                          help_text='[{"u": px, "v": px, "x": m, "y": m}, ...] at least 4')
    calibration_error_px = models.FloatField(null=True, blank=True, editable=False)
    calibration_error_cm = models.FloatField(null=True, blank=True, editable=False)
    calibrated_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["store", "name"]
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="camera_unique_name")]

    def __str__(self) -> str:
        return f"{self.store.code}:{self.name}"


class CameraTrack(models.Model):
    """One per-camera track of one session, summarised (key ``camera:session:raw id``; never a row per frame)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="camera_tracks")
    camera = models.ForeignKey(Camera, null=True, blank=True, on_delete=models.SET_NULL, related_name="tracks")
    session = models.CharField(max_length=100)
    key = models.CharField(max_length=200)
    shopper_id = models.CharField(max_length=64, blank=True)
    t_start = models.DateTimeField()
    t_end = models.DateTimeField()
    frames = models.PositiveIntegerField(default=0)
    mean_confidence = models.FloatField(default=0.0)

    class Meta:
        ordering = ["t_start"]
        constraints = [models.UniqueConstraint(fields=["store", "session", "key"], name="camera_track_unique")]


class ZoneInterval(models.Model):
    """A shopper track inside a zone (entry, exit, floor area, or a gondola's interaction zone) from ``t_start``
    to ``t_end``."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="zone_intervals")
    session = models.CharField(max_length=100)
    shopper_id = models.CharField(max_length=64)
    zone = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    t_start = models.DateTimeField()
    t_end = models.DateTimeField()

    class Meta:
        ordering = ["t_start"]
        constraints = [models.UniqueConstraint(fields=["store", "session", "shopper_id", "zone", "t_start"],
                                               name="zone_interval_unique")]


class TrackerSource(models.Model):
    """An external tracker: a store's own vision system that sends shopper-track keypoints in store metres to
    ``POST /vision/api/observations/`` (``vision.api``), authenticated by its API key (only a hash is kept).
    Registered with ``manage.py create_tracker STORE NAME``."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="tracker_sources")
    name = models.SlugField(max_length=64)
    api_key_hash = models.CharField(max_length=128, help_text="SHA-256 hex of the tracker's API key")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    observations = models.BigIntegerField(default=0, help_text="keypoint observations accepted")
    rejected = models.BigIntegerField(default=0, help_text="requests rejected (bad body)")
    emulated = models.BooleanField(default=False, help_text=(
        "registered by manage.py emulate_store for its own playback, never a real device: the emulator uses and "
        "re-keys only devices so marked, never one a manager registered"))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="tracker_unique_name")]

    def __str__(self) -> str:
        return f"{self.store.code}:{self.name}"
