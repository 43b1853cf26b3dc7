"""Vision services: cameras and their calibration, compact per-session outputs, the live store map.

Writes only vision's own tables. Per-frame data stays out of the database: tracking writes one row per per-camera
track (:class:`vision.models.CameraTrack`) and per zone interval (:class:`vision.models.ZoneInterval`).
The live store map (latest shopper positions per store) lives in Django's cache: per process in the embedded
profile, shared when a shared cache (e.g. Redis) is configured.
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Iterable

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from store.layout.models import Store

from .geometry import CameraModel, FloorCalibration, calibrate_floor
from .models import Camera, CameraTrack, ShopperTrack, ZoneInterval
from .tracking import TrackInterval
from .zones import ZoneEvents

MAP_TTL_S = 30


def utc(t: float) -> datetime:
    """Seconds since the epoch → timezone-aware UTC datetime."""
    return datetime.fromtimestamp(float(t), tz=dt_timezone.utc)


def shopper_track_record(*, store: Store, session: str, track_id: str, first_seen: datetime, last_seen: datetime,
                         observations: int) -> ShopperTrack:
    """Create or extend the summary row of one shopper track (first/last sighting, observation count)."""
    track, created = ShopperTrack.objects.get_or_create(
        store=store, session=session, track_id=track_id,
        defaults={"first_seen": first_seen, "last_seen": last_seen, "observations": observations},
    )
    if not created:
        track.first_seen = min(track.first_seen, first_seen)
        track.last_seen = max(track.last_seen, last_seen)
        track.observations += observations
        track.save(update_fields=["first_seen", "last_seen", "observations"])
    return track


def camera_model_for(*, camera: Camera) -> CameraModel:
    """The pure :class:`vision.geometry.CameraModel` of a Camera row. Raises CalibrationError if its stored
    calibration is malformed."""
    return CameraModel.from_dict({
        "name": camera.name, "source": camera.source, "fps": camera.fps, "width": camera.width,
        "height": camera.height, "clock_offset_s": camera.clock_offset_s, "K": camera.intrinsics,
        "dist": camera.distortion, "R": camera.rotation, "C": camera.centre, "H": camera.homography,
    })


def camera_calibrate(*, camera: Camera, points: list[dict] | None = None) -> FloorCalibration:
    """Compute and save ``camera``'s floor homography from marked points (``points`` or the stored
    ``calibration_points``: ``[{"u", "v", "x", "y"}]`` pixels, metres), undistorting with its intrinsics where
    known. Saves the homography and the RMS reprojection error (px, cm). Raises CalibrationError (fewer than 4
    points, collinear marks, no fit) and leaves the row unchanged then."""
    from .geometry import CalibrationError

    pts = camera.calibration_points if points is None else points
    try:
        arr = np.asarray([[float(p["u"]), float(p["v"]), float(p["x"]), float(p["y"])] for p in pts or []],
                         dtype=np.float64).reshape(-1, 4)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration points must be objects with u, v, x, y numbers ({exc})") from None
    K = np.asarray(camera.intrinsics, float) if camera.intrinsics else None
    dist = np.asarray(camera.distortion, float) if camera.distortion else None
    cal = calibrate_floor(arr[:, :2], arr[:, 2:], K=K, dist=dist)
    camera.calibration_points = [{"u": u, "v": v, "x": x, "y": y} for u, v, x, y in arr.tolist()]
    camera.homography = cal.H.tolist()
    camera.calibration_error_px = round(cal.rmse_px, 3)
    camera.calibration_error_cm = round(cal.rmse_cm, 2)
    camera.calibrated_at = timezone.now()
    camera.save(update_fields=["calibration_points", "homography", "calibration_error_px", "calibration_error_cm",
                               "calibrated_at"])
    return cal


@transaction.atomic
def camera_tracks_record(*, store: Store, session: str, intervals: Iterable[TrackInterval],
                         assignments: dict[str, str] | None = None, camera: Camera | None = None) -> int:
    """Create or extend one CameraTrack row per per-camera track interval (idempotent: a chunk processed twice
    leaves the same rows). Returns the number of rows written."""
    n = 0
    for iv in intervals:
        row, created = CameraTrack.objects.get_or_create(
            store=store, session=session, key=iv.key,
            defaults={"camera": camera, "t_start": utc(iv.t_start), "t_end": utc(iv.t_end), "frames": iv.frames,
                      "mean_confidence": iv.mean_confidence,
                      "shopper_id": (assignments or {}).get(iv.key, "")})
        if not created:
            if utc(iv.t_end) <= row.t_end:
                continue  # this chunk was already recorded
            total = row.frames + iv.frames
            row.mean_confidence = (row.mean_confidence * row.frames + iv.mean_confidence * iv.frames) / total
            row.frames, row.t_end = total, utc(iv.t_end)
            row.save(update_fields=["frames", "t_end", "mean_confidence"])
        n += 1
    return n


@transaction.atomic
def zone_intervals_record(*, store: Store, session: str, events: ZoneEvents) -> int:
    """Save zone intervals (idempotent on store, session, shopper, zone, start). Returns the rows written."""
    for i in range(len(events)):
        ZoneInterval.objects.update_or_create(
            store=store, session=session, shopper_id=str(events.shopper[i]), zone=str(events.zone[i]),
            t_start=utc(events.t_start[i]), defaults={"kind": str(events.kind[i]), "t_end": utc(events.t_end[i])})
    return len(events)


def _map_key(store_code: str) -> str:
    return f"vision:map:{store_code}"


def store_map_publish(*, store_code: str, t: float, positions: dict[str, tuple[float, float]]) -> None:
    """Publish the latest floor positions (metres) of the shoppers in a store at ``t`` (s UTC) for the live map.
    Shoppers missing from ``positions`` keep their last position until it is ``MAP_TTL_S`` old."""
    current = cache.get(_map_key(store_code)) or {}
    merged = {sid: p for sid, p in current.items() if t - p["t"] <= MAP_TTL_S}
    for sid, (x, y) in positions.items():
        merged[str(sid)] = {"x": round(float(x), 3), "y": round(float(y), 3), "t": float(t)}
    cache.set(_map_key(store_code), merged, MAP_TTL_S)


def store_map_positions(*, store_code: str, max_age_s: float = 5.0) -> list[dict]:
    """The shoppers on the live map: ``[{"id", "x", "y", "t"}]`` metres, s UTC, no older than ``max_age_s`` than
    the newest."""
    current = cache.get(_map_key(store_code)) or {}
    if not current:
        return []
    newest = max(p["t"] for p in current.values())
    return sorted(({"id": sid, **p} for sid, p in current.items() if newest - p["t"] <= max_age_s),
                  key=lambda d: d["id"])


def store_map_publish_observations(*, store_code: str, obs) -> int:
    """Publish the latest floor position of each shopper track in ``obs`` (a
    :class:`store.recording.TrackObservations` block, e.g. the one a replay step feeds the pipeline) on the live
    map: its ``floor`` keypoint, else the (x, y) of ``neck``/``head``/shoulders (``store.recording.BODY_KEYPOINTS``).
    Returns the number of shoppers published."""
    from store.recording import BODY_KEYPOINTS

    if len(obs) == 0:
        return 0
    body = obs[np.isin(obs.keypoint, BODY_KEYPOINTS)]
    positions: dict[str, tuple[float, float]] = {}
    t_last = float(obs.t.max())
    for track in np.unique(body.track_id):
        mine = body[body.track_id == track]
        latest = mine[mine.t == mine.t.max()]
        rank = {k: i for i, k in enumerate(("floor",) + tuple(BODY_KEYPOINTS))}
        best = min(range(len(latest)), key=lambda i: rank.get(str(latest.keypoint[i]), 99))
        positions[str(track)] = (float(latest.xyz[best, 0]), float(latest.xyz[best, 1]))
    if positions:
        store_map_publish(store_code=store_code, t=t_last, positions=positions)
    return len(positions)
