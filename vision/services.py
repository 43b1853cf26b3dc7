"""Vision services: cameras and their calibration, compact per-session outputs, the live store map.

Writes only vision's own tables. Per-frame data stays out of the database: tracking writes one row per per-camera
track (:class:`vision.models.CameraTrack`) and per zone interval (:class:`vision.models.ZoneInterval`).
The live store map (latest shopper positions per store) lives in Django's cache: per process in the embedded
profile, shared when a shared cache (e.g. Redis) is configured.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone as dt_timezone
from typing import Iterable

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from store.layout.models import Store
from store.checks import T_UTC_MAX, T_UTC_MIN
from store.recording import BODY_KEYPOINTS, KEYPOINTS, TrackObservations

from .geometry import CameraModel, FloorCalibration, calibrate_floor, CalibrationError
from .models import Camera, CameraTrack, ShopperTrack, ZoneInterval, TrackerSource
from .tracking import TrackInterval
from .zones import ZoneEvents
from .activity import ActivityTracker

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


def store_map_publish(*, store_code: str, t: float, positions: dict[str, tuple[float, float]],
                      states: dict[str, str] | None = None) -> None:
    """Publish the latest floor positions (metres) of the shoppers in a store at ``t`` (s UTC) for the live map,
    with each one's activity (``states``: track → one of ``vision.activity.STATES``; absent: unknown).
    Shoppers missing from ``positions`` keep their last position until it is ``MAP_TTL_S`` old."""
    current = cache.get(_map_key(store_code)) or {}
    merged = {sid: p for sid, p in current.items() if t - p["t"] <= MAP_TTL_S}
    for sid, (x, y) in positions.items():
        merged[str(sid)] = {"x": round(float(x), 3), "y": round(float(y), 3), "t": float(t),
                            "state": (states or {}).get(str(sid))}
    cache.set(_map_key(store_code), merged, MAP_TTL_S)


#: Per store, the live activity of its tracks (``vision.activity.ActivityTracker``), derived in this process from
#: the observations it publishes on the map: a restart starts empty and refills within the tracker's window (4 s).
_ACTIVITY: dict[str, object] = {}


#: The map's keypoints: the activity tracker's body points in its order of preference (``floor``, then
#: ``store.recording.BODY_KEYPOINTS``' others), then the wrists (:func:`_keypoint_codes`' codes are these indices).
_ACTIVITY_KEYPOINTS = ("floor",) + tuple(k for k in BODY_KEYPOINTS if k != "floor") + ("l_wrist", "r_wrist")
_KEYPOINT_CODE = {k: i for i, k in enumerate(_ACTIVITY_KEYPOINTS)}
_N_BODY = len(_ACTIVITY_KEYPOINTS) - 2


def _keypoint_codes(obs) -> np.ndarray:
    """(n,) int: each row's index in ``_ACTIVITY_KEYPOINTS``, −1 for any other keypoint."""
    get = _KEYPOINT_CODE.get
    return np.fromiter((get(k, -1) for k in obs.keypoint.tolist()), dtype=np.intp, count=len(obs))


def store_activity_update(*, store_code: str, obs, kp_codes: np.ndarray | None = None) -> dict[str, str]:
    """Feed one observations block (store metres: the body point as the map takes it, ``floor`` else
    ``neck``/``head``/shoulders, and the ``l_wrist``/``r_wrist`` keypoints) to the store's activity tracker, one
    sample per track and time (tracks in sorted order, times increasing; each keypoint's first row at that time);
    returns the current state of every track it knows (``vision.activity.STATES``). ``kp_codes``: the block's
    :func:`_keypoint_codes`, where the caller has them."""
    tracker = _ACTIVITY.get(store_code)
    if tracker is None:
        tracker = _ACTIVITY[store_code] = ActivityTracker()

    kp = _keypoint_codes(obs) if kp_codes is None else kp_codes
    rows = np.flatnonzero((kp >= 0) & ~np.isnan(obs.t))  # a NaN time matches no time: never a sample
    if rows.size:
        names, track = np.unique(obs.track_id[rows], return_inverse=True)
        t = obs.t[rows]
        order = np.lexsort((rows, t, track))  # by track, time, then row
        rows, t, track = rows[order], t[order], track[order]
        new = np.ones(rows.size, bool)
        new[1:] = (track[1:] != track[:-1]) | (t[1:] != t[:-1])
        group = np.cumsum(new) - 1
        # each (track, time)'s first row of each keypoint: the first occurrence of its key in that order
        key = group * len(_ACTIVITY_KEYPOINTS) + kp[rows]
        _, first = np.unique(key, return_index=True)
        table = np.full((int(group[-1]) + 1, len(_ACTIVITY_KEYPOINTS)), -1, dtype=np.intp)
        table.reshape(-1)[key[first]] = rows[first]
        body = table[:, :_N_BODY]
        has_body = (body >= 0).any(axis=1)
        where = body[np.arange(body.shape[0]), (body >= 0).argmax(axis=1)]
        heads = np.flatnonzero(new)[has_body]
        table, where = table[has_body], where[has_body]
        samples = np.full((table.shape[0], 9), np.nan)  # t, floor x y, l/r wrist x y z (NaN: no such keypoint)
        samples[:, 0] = t[heads]
        samples[:, 1:3] = obs.xyz[where, :2]
        for side in (0, 1):
            got = table[:, _N_BODY + side] >= 0
            samples[got, 3 + 3 * side:6 + 3 * side] = obs.xyz[table[got, _N_BODY + side]]
        tracker.add_many([str(v) for v in names[track[heads]].tolist()], samples)
    return tracker.states()


def store_map_positions(*, store_code: str, max_age_s: float = 5.0) -> list[dict]:
    """The shoppers on the live map: ``[{"id", "x", "y", "t", "state"}]`` metres, s UTC, activity (None: unknown),
    no older than ``max_age_s`` than the newest."""
    current = cache.get(_map_key(store_code)) or {}
    if not current:
        return []
    newest = max(p["t"] for p in current.values())
    return sorted(({"id": sid, **p} for sid, p in current.items() if newest - p["t"] <= max_age_s),
                  key=lambda d: d["id"])


def store_map_publish_observations(*, store_code: str, obs) -> int:
    """Publish the latest floor position of each shopper track in ``obs`` (a
    :class:`store.recording.TrackObservations` block, e.g. the one a replay step feeds the pipeline) on the live
    map: its ``floor`` keypoint, else the (x, y) of ``neck``/``head``/shoulders (``store.recording.BODY_KEYPOINTS``),
    and its activity from the floor and wrist keypoints (:func:`store_activity_update`). Returns the number of
    shoppers published."""

    if len(obs) == 0:
        return 0
    kp = _keypoint_codes(obs)
    rows = np.flatnonzero((kp >= 0) & (kp < _N_BODY))
    positions: dict[str, tuple[float, float]] = {}
    t_last = float(obs.t.max())
    if rows.size:
        # per track, its latest time's most preferred body keypoint (neck, head, l_shoulder, r_shoulder, floor:
        # ``BODY_KEYPOINTS``' order), the first row of it
        names, track = np.unique(obs.track_id[rows], return_inverse=True)
        rank = _MAP_RANK[kp[rows]]
        order = np.lexsort((rows, rank, -obs.t[rows], track))
        best = rows[order][np.r_[True, track[order][1:] != track[order][:-1]]]
        for name, (x, y) in zip(names.tolist(), obs.xyz[best, :2].tolist()):
            positions[str(name)] = (x, y)
    if positions:
        states = store_activity_update(store_code=store_code, obs=obs, kp_codes=kp)
        store_map_publish(store_code=store_code, t=t_last, positions=positions, states=states)
    return len(positions)


#: The live map's preference among a track's body keypoints at its latest time, by ``_ACTIVITY_KEYPOINTS`` code:
#: ``BODY_KEYPOINTS``' order (``floor`` last).
_MAP_RANK = np.array([BODY_KEYPOINTS.index(k) for k in _ACTIVITY_KEYPOINTS[:_N_BODY]] + [99, 99])


class TrackerInputError(ValueError):
    """A tracker registration or an observations body that cannot be used; the message says why. ``reason`` is a
    short code (``bad_request``, ``too_large``, ``bad_row``, ``clock_ahead``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Most observation rows one request may carry (15 Hz × 1 s × 200 shoppers × 10 keypoints ≈ 30,000).
MAX_OBSERVATION_ROWS = 50_000


def tracker_key_hash(api_key: str) -> str:
    """SHA-256 hex of a tracker's API key (only the hash is stored)."""
    import hashlib

    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def tracker_create(*, store: Store, name: str):
    """Register an external tracker of ``store``; returns (TrackerSource, API key shown once). Raises
    :class:`TrackerInputError` for a bad or taken name."""
    import re
    import secrets

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name or ""):
        raise TrackerInputError("bad_request", f"tracker name {name!r} must be 1–64 letters, digits, - or _")
    if TrackerSource.objects.filter(store=store, name=name).exists():
        raise TrackerInputError("bad_request", f"store {store.code} already has a tracker named {name!r}")
    key = secrets.token_urlsafe(32)
    return TrackerSource.objects.create(store=store, name=name, api_key_hash=tracker_key_hash(key)), key


def tracker_authenticate(*, api_key: str):
    """The active TrackerSource whose key is ``api_key``, or None."""
    return (TrackerSource.objects.select_related("store")
            .filter(api_key_hash=tracker_key_hash(api_key), active=True).first())


#: Largest plausible store coordinate, metres (each of x, y, z, either sign, in store coordinates): the largest
#: retail buildings are a few hundred metres across (a hypermarket floor is ~200 × 150 m), so a point farther than
#: 1 km from the store's origin is a unit (mm, cm) or frame error, never a shopper.
STORE_COORDINATE_MAX_M = 1_000.0


#: How far a tracker's times (``t_last``, each row's ``t``) may run ahead of the server's clock, seconds. A tracker
#: stamps a sighting when its camera took it and posts it after, so its times trail the server's by the network delay;
#: they lead only by the two clocks' difference. NTP keeps that to milliseconds, and an unsynchronised quartz clock
#: (±20 ppm) drifts about 1 min a month: 5 minutes passes months of drift and refuses a clock that is plainly wrong
#: (set to another time zone, a year, 2096), whose sightings the store loop would take as shoppers of the future
#: (issue #11). Times in the past have no such bound beyond ``T_UTC_MIN`` (a store's tracker may catch up after an
#: outage).
TRACKER_CLOCK_AHEAD_MAX_S = 300.0
#: The same bound for the emulator's own tracker (``TrackerSource.emulated``, ``carts.offline.emulator``), seconds: it
#: plays a recording on the recording's clock moved to now, faster than real time where ``--speed`` > 1, so its times
#: lead the wall clock by up to the recording's length × (1 − 1/speed), plus whatever lead an earlier fast run left
#: on the store's clock. A day, as the gate API allows every scanner (``store.gates.serializers.SCAN_CLOCK_SKEW_S``),
#: which the emulator's gate scans must meet as well.
EMULATED_TRACKER_CLOCK_AHEAD_MAX_S = 86_400.0


def _finite(v: int | float) -> bool:
    """``math.isfinite(v)``, False for an integer too large for a float (JSON allows 4,300 digits)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _observation_columns(rows: list, latest: float) -> TrackObservations | None:
    """The observations of ``rows`` when every row is usable (see :func:`observations_parse`) and none is later
    than ``latest`` (s UTC), checked a column at a time; None when any is not (the caller then finds the first
    such row and says why). Builds exactly the arrays the row-by-row checks would (n ≥ 1 rows)."""
    n = len(rows)
    if not all(type(r) is list and len(r) == 7 for r in rows):
        return None
    track, t, kp, x, y, z, score = zip(*rows)
    numbers = (t, x, y, z, score)
    if (not {type(v) for v in track} <= {str, int} or {type(v) for v in kp} != {str}
            or not all({type(v) for v in col} <= {int, float} for col in numbers)):
        return None  # (bool is its own type: never taken as a number here)
    if not set(kp) <= KEYPOINTS:  # every known keypoint is 1–32 characters
        return None
    tracks = [str(v) for v in track]
    lengths = np.fromiter(map(len, tracks), dtype=np.intp, count=n)
    if lengths.min() == 0 or lengths.max() > 64 or not all(v.isprintable() for v in tracks):
        return None
    try:
        cols = np.array(numbers, dtype=np.float64)  # (5, n): t, x, y, z, score; the same float() of each number
    except OverflowError:  # an integer beyond a float
        return None
    ts, xyz, sc = cols[0], cols[1:4].T, cols[4]
    with np.errstate(invalid="ignore"):
        if not (np.isfinite(cols).all() and (sc >= 0.0).all() and (sc <= 1.0).all() and (ts >= T_UTC_MIN).all()
                and (ts <= T_UTC_MAX).all() and (np.abs(xyz) <= STORE_COORDINATE_MAX_M).all()
                and (ts <= latest).all()):
            return None
    obj = lambda v: np.array(v, dtype=object).reshape(n)  # noqa: E731
    return TrackObservations(obj(tracks), ts.copy(), obj(list(kp)), np.ascontiguousarray(xyz), sc.copy())


def _observation_row_problem(row) -> str | None:
    """Why ``row`` is not a usable ``[track, t, keypoint, x, y, z, score]`` (see :func:`observations_parse`), or
    None when it is."""

    shape = "must be [track, t, keypoint, x, y, z, score] with finite numbers and 0 ≤ score ≤ 1"
    if not isinstance(row, list) or len(row) != 7:
        return f"{shape}: got {type(row).__name__ if not isinstance(row, list) else f'{len(row)} values'}"
    if isinstance(row[0], bool) or not isinstance(row[0], (str, int)) or not 0 < len(str(row[0])) <= 64:
        return f"{shape}: the track id must be a string or integer of 1–64 characters"
    if not isinstance(row[2], str) or not 0 < len(row[2]) <= 32:
        return f"{shape}: the keypoint must be a name (string of 1–32 characters)"
    names = ("t", "x", "y", "z", "score")
    for name, v in zip(names, (row[1], row[3], row[4], row[5], row[6])):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
            return f"{shape}: {name} must be a finite number"
    if not 0.0 <= row[6] <= 1.0:
        return f"{shape}: score {row[6]:g} is outside 0–1"
    if not str(row[0]).isprintable():
        return ("has a track id with a control or unpaired surrogate character (a NUL cannot be stored in "
                "PostgreSQL text)")
    if row[2] not in KEYPOINTS:
        return (f"has an unknown keypoint {row[2][:32]!r}; known: {', '.join(sorted(KEYPOINTS))} "
                "(store.recording.KEYPOINTS)")
    if not T_UTC_MIN <= row[1] <= T_UTC_MAX:
        return f"has t = {row[1]:g}: a time must be from 2000-01-01 to 2100-01-01 UTC in seconds since the epoch"
    if any(abs(v) > STORE_COORDINATE_MAX_M for v in (row[3], row[4], row[5])):
        return (f"has a coordinate beyond ±{STORE_COORDINATE_MAX_M:g} m (x, y, z are metres in store coordinates, "
                "STORE_COORDINATE_MAX_M)")
    return None


def observations_parse(doc, *, now: float,
                       ahead_max_s: float = TRACKER_CLOCK_AHEAD_MAX_S) -> tuple[TrackObservations, float | None]:
    """An observations body → (TrackObservations, t_last). The body (version 1)::

        {"v": 1, "t_last": 1587531994.7,     # optional: the tracker's clock has reached this (s UTC), even
                                             # where nobody was seen
         "rows": [[track, t, keypoint, x, y, z, score], ...]}   # s UTC, metres in store coordinates, score 0–1

    Raises :class:`TrackerInputError` for anything else: wrong types, non-finite numbers, too many rows
    (``MAX_OBSERVATION_ROWS``; reason ``too_large``), a keypoint not in ``store.recording.KEYPOINTS``, a time
    (``t`` or ``t_last``) outside 2000-01-01 … 2100-01-01 UTC (``store.checks.T_UTC_MIN``/``T_UTC_MAX``, the
    weights API's bounds), a coordinate beyond ±``STORE_COORDINATE_MAX_M`` (reason ``bad_row`` for a row,
    ``bad_request`` for ``t_last``); a time more than ``ahead_max_s`` seconds after ``now`` (the server's clock, s
    UTC; ``TRACKER_CLOCK_AHEAD_MAX_S``, or ``EMULATED_TRACKER_CLOCK_AHEAD_MAX_S`` for the emulator's own tracker)
    with reason ``clock_ahead``, the message naming the field (``t_last = …`` or ``row <i> t = …``)."""
    latest = now + ahead_max_s

    def ahead(field: str, t: float) -> TrackerInputError:
        return TrackerInputError("clock_ahead", f"{field} = {t:.3f} is {t - now:.0f} s ahead of the server's clock "
                                                f"({now:.3f} s UTC); a tracker's clock may lead it by at most "
                                                f"{ahead_max_s:g} s: set the tracker's clock (NTP)")

    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("rows"), list):
        raise TrackerInputError("bad_request", 'the body must be {"v": 1, "rows": [...]}')
    rows = doc["rows"]
    if len(rows) > MAX_OBSERVATION_ROWS:
        raise TrackerInputError("too_large", f"{len(rows)} rows; at most {MAX_OBSERVATION_ROWS} per request")
    t_last = doc.get("t_last")
    if t_last is not None and (isinstance(t_last, bool) or not isinstance(t_last, (int, float))
                               or not _finite(t_last)):
        raise TrackerInputError("bad_request", "t_last must be a finite number (s UTC)")
    if t_last is not None and not T_UTC_MIN <= t_last <= T_UTC_MAX:
        raise TrackerInputError("bad_request", f"t_last = {t_last:g} must be a time from 2000-01-01 to 2100-01-01 "
                                               "UTC in seconds since the epoch")
    if t_last is not None and t_last > latest:
        raise ahead("t_last", t_last)
    fast = _observation_columns(rows, latest) if rows else None
    if fast is not None:
        return fast, (None if t_last is None else float(t_last))
    tracks, ts, kps, xyz, scores = [], [], [], [], []
    for i, row in enumerate(rows):  # the first row that is not usable, and why (or all of them, every one usable)
        problem = _observation_row_problem(row)
        if problem is not None:
            raise TrackerInputError("bad_row", f"row {i} {problem}")
        if row[1] > latest:
            raise ahead(f"row {i} t", row[1])
        tracks.append(str(row[0]))
        ts.append(float(row[1]))
        kps.append(row[2])
        xyz.append((float(row[3]), float(row[4]), float(row[5])))
        scores.append(float(row[6]))
    obj = lambda v: np.array(v, dtype=object).reshape(len(v))  # noqa: E731
    obs = TrackObservations(obj(tracks), np.array(ts, dtype=np.float64), obj(kps),
                            np.array(xyz, dtype=np.float64).reshape(-1, 3), np.array(scores, dtype=np.float64))
    return obs, (None if t_last is None else float(t_last))


#: A camera's recent frame (drawn with its tracks) is kept this long (s) after the camera worker last published one;
#: older, the camera page says no worker is publishing. Frames are published every ``CameraWorker.frame_every_s``.
FRAME_TTL_S = 120
#: Widest recent frame kept (pixels; larger frames are scaled down), and its JPEG quality.
FRAME_MAX_WIDTH_PX = 960
FRAME_JPEG_QUALITY = 75


def _frame_key(camera_id: int) -> str:
    return f"vision:frame:{camera_id}"


def camera_frame_draw(image: np.ndarray, tracks, *, scale: float = 1.0) -> np.ndarray:
    """A copy of ``image`` ((H, W, 3) uint8 BGR) with ``tracks`` (a ``vision.tracking.FrameTracks``, pixel boxes of
    the image before ``scale``) drawn: a box per person, labelled "person <track number>" in white on a dark band of
    a fixed 18 px (readable whatever the source's size). ``scale`` (> 0): the image was
    resized by this factor after the tracks were found; boxes are scaled with it (OpenCV primitives, no font
    files)."""
    import cv2

    out = image.copy()
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    for i in range(len(tracks)):
        x1, y1, x2, y2 = (int(round(v * scale)) for v in tracks.xyxy[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 220, 255), 2)
        label = f"person {int(tracks.raw_id[i])}"
        (tw, th), _ = cv2.getTextSize(label, font, size, thick)
        top = max(0, y1 - 18)
        cv2.rectangle(out, (x1, top), (x1 + tw + 8, top + 18), (30, 30, 30), -1)
        cv2.putText(out, label, (x1 + 4, top + 9 + th // 2), font, size, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def camera_frame_publish(*, camera_id: int, image: np.ndarray, tracks, t: float) -> int:
    """Keep ``image`` with ``tracks`` drawn (:func:`camera_frame_draw`, after scaling the image down to at most
    ``FRAME_MAX_WIDTH_PX`` wide, so labels keep their size) as camera ``camera_id``'s recent frame, as a JPEG in the
    cache for ``FRAME_TTL_S``; ``t`` is the frame's time (s UTC). Returns the JPEG's size in bytes. Raises
    ``ValueError`` when the image cannot be encoded."""
    import cv2

    h, w = image.shape[:2]
    scale = 1.0
    if w > FRAME_MAX_WIDTH_PX:
        scale = FRAME_MAX_WIDTH_PX / w
        image = cv2.resize(image, (FRAME_MAX_WIDTH_PX, int(round(h * scale))), interpolation=cv2.INTER_AREA)
    drawn = camera_frame_draw(image, tracks, scale=scale)
    ok, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, FRAME_JPEG_QUALITY])
    if not ok:
        raise ValueError(f"camera {camera_id}: the frame could not be encoded")
    data = jpeg.tobytes()
    cache.set(_frame_key(camera_id), {"jpeg": data, "t": float(t), "tracks": int(len(tracks)),
                                      "published": time.time()}, FRAME_TTL_S)
    return len(data)


def camera_frame_recent(*, camera_id: int) -> dict | None:
    """The recent frame of camera ``camera_id``: ``{"jpeg": bytes, "t": s UTC of the frame, "tracks": n drawn,
    "published": s UTC when it was kept}``, or None when no camera worker published one in ``FRAME_TTL_S``."""
    return cache.get(_frame_key(camera_id))
