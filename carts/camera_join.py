"""The production camera join: a store with several cameras has each ``run_camera --join`` publish its tracked
frames on the store's ``cam`` stream (:func:`cam_record`), and the store worker, which sees every camera, joins them
into shoppers with one ``vision.shoppers.ShopperStream`` per store (:class:`CameraJoin`): one person seen by two
cameras is one shopper, a wrist only one camera sees is that shopper's, ``vision.shoppers.LIVE_LAG_S`` behind the
slowest camera. The joined observations reach the store loop as one source, :data:`CAMERAS_JOINED`; a camera silent
for the worker's ``source_down_s`` is no longer waited for, and joins again when it sends. The join is pickled with
the worker's checkpoint (the ``ShopperStream`` itself). README "The live store".
"""
from __future__ import annotations

import logging
import math
import uuid
from typing import Mapping

import numpy as np

from django.utils import timezone

from store.layout.models import Zone as ZoneRow
from store.recording import TrackObservations
from vision.config import vision_settings
from vision.models import Camera
from vision.shoppers import LIVE_LAG_S, ShopperStream
from vision.tracking import FrameTracks
from vision.zones import Zone

from .models import StoreAlert
from .records import RecordError, array_b64, b64_array

log = logging.getLogger(__name__)

#: Source name of the store worker's join of its cameras' ``cam`` records (its clock: how far the join has written).
CAMERAS_JOINED = "cameras"


def cam_record(*, camera: str, frames: list, t_last: float) -> dict:
    """A camera's tracked frames for the store worker's join: ``frames`` (``vision.tracking.FrameTracks`` of
    ``camera``, time order, s UTC with the camera's clock offset applied; boxes are not sent) up to ``t_last`` (s UTC:
    a frame with nobody in it, or none at all, still moves the camera's clock). Raises ValueError for a frame of
    another camera, frames out of order or after ``t_last``."""
    out, prev = [], -math.inf
    for ft in frames:
        if ft.camera != camera:
            raise ValueError(f"frame of camera {ft.camera!r} in a record of {camera!r}")
        if not prev <= ft.t <= t_last:
            raise ValueError(f"frame times must be in order and at most t_last {t_last}, got {ft.t}")
        prev = ft.t
        n = len(ft)
        out.append({"session": ft.session, "frame": int(ft.frame), "t": float(ft.t), "n": n,
                    "key": [str(k) for k in ft.key], "raw_id": array_b64(ft.raw_id, "<i8"),
                    "confidence": array_b64(ft.confidence, "<f8"), "floor_xy": array_b64(ft.floor_xy, "<f8"),
                    "wrists_xyz": array_b64(ft.wrists_xyz, "<f8"), "wrist_score": array_b64(ft.wrist_score, "<f8"),
                    "hands_source": ft.hands_source,
                    "wrist_rays": None if ft.wrist_rays is None else array_b64(ft.wrist_rays, "<f8")})
    return {"camera": camera, "t_last": float(t_last), "frames": out}


def decode_cam(rec: dict) -> tuple[str, list, float]:
    """(camera, [``vision.tracking.FrameTracks``] in time order, t_last s UTC) of a :func:`cam_record`; boxes are
    zeros. Raises RecordError: missing fields, sizes that do not match ``n``, non-finite times or infinite positions
    (NaN is "not placed"), frames out of order or after ``t_last``."""
    try:
        camera = str(rec["camera"])
        t_last = float(rec["t_last"])
        if not camera or not math.isfinite(t_last):
            raise RecordError("no camera or a non-finite t_last")
        frames, prev = [], -math.inf
        for f in rec["frames"]:
            n, t = int(f["n"]), float(f["t"])
            if n < 0 or not (math.isfinite(t) and prev <= t <= t_last):
                raise RecordError(f"frame at {t} out of order, after t_last or with {n} tracks")
            prev = t
            key = np.array([str(k) for k in f["key"]], dtype=object).reshape(n)
            rays = f.get("wrist_rays")
            ft = FrameTracks(camera=camera, session=str(f["session"]), frame=int(f["frame"]), t=t, key=key,
                             raw_id=b64_array(f["raw_id"], "<i8", n).copy(), xyxy=np.zeros((n, 4), np.float32),
                             confidence=b64_array(f["confidence"], "<f8", n).copy(),
                             floor_xy=b64_array(f["floor_xy"], "<f8", 2 * n).reshape(n, 2).copy(),
                             wrists_xyz=b64_array(f["wrists_xyz"], "<f8", 6 * n).reshape(n, 2, 3).copy(),
                             wrist_score=b64_array(f["wrist_score"], "<f8", 2 * n).reshape(n, 2).copy(),
                             hands_source=str(f.get("hands_source") or "none"),
                             wrist_rays=None if rays is None else b64_array(rays, "<f8", 12 * n).reshape(n, 2, 6).copy())
            if any(np.isinf(a).any() for a in (ft.floor_xy, ft.wrists_xyz, ft.confidence, ft.wrist_score)) or \
                    (ft.wrist_rays is not None and np.isinf(ft.wrist_rays).any()):
                raise RecordError(f"infinite values in the frame at {t}")
            frames.append(ft)
        return camera, frames, t_last
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(f"bad camera record: {exc}") from None


class CameraJoin:
    """The store worker's join of its cameras (module docstring) for the store ``store`` (a ``Store`` row).

    ``stream``: the ``vision.shoppers.ShopperStream``, built at the first ``cam`` record (:meth:`add`) or restored
    with the checkpoint; None while no camera sends frames (single cameras publish observations). ``since``:
    monotonic s of the first ``cam`` record (or of the restore): a camera never heard of is given up that long after.
    ``fed``: a ``cam`` record was added since the join last wrote (its clock moves at the next :meth:`step`)."""

    def __init__(self, store, *, stream: ShopperStream | None = None, since: float | None = None) -> None:
        self.store = store
        self.stream = stream
        self.since = since
        self.fed = False
        self.unjoined: set[str] = set()  # camera sources refused for sending unjoined tracks (alerted once each)

    def _joiner(self) -> ShopperStream:
        """The join, built on first use: a ``ShopperStream`` waiting for the store's enabled cameras (a camera that
        never sends is given up after ``source_down_s``), placing people on its floor zones (the store's zones; a
        store without floor zones places everyone), association as ``vision.config.vision_settings`` says, ids
        ``j<random>-S<n>``: never an id of an earlier join the loop may still hold. The camera workers apply their
        clock offsets (``Camera.clock_offset_s``) to the frames' times, so the stream adds none."""
        if self.stream is None:
            cfg = vision_settings()
            cameras = list(Camera.objects.filter(store=self.store, enabled=True).order_by("name")
                           .values_list("name", flat=True))
            zones = []
            for z in ZoneRow.objects.filter(store=self.store).order_by("name"):
                try:
                    zones.append(Zone(z.name, z.kind, np.asarray(z.polygon, dtype=np.float64)))
                except (TypeError, ValueError) as exc:  # a zone the join cannot use: left out, not fatal
                    log.warning("store %s: zone %s left out of the camera join: %s", self.store.code, z.name, exc)
            self.stream = ShopperStream(cameras, zones, gate_m=float(cfg["GATE_M"]),
                                        max_gap_s=float(cfg["MAX_GAP_S"]), lag_s=LIVE_LAG_S,
                                        prefix=f"j{uuid.uuid4().hex[:6]}-S")
        return self.stream

    def camera_tracks(self, track: str) -> list[str]:
        """The per-camera track keys the join made the loop's track ``track`` of ([] while there is no join or for
        a track it did not make, e.g. an external tracker's): the keys its cameras' hand crops are filed under."""
        return self.stream.camera_tracks(track) if self.stream is not None else []

    def refuses(self, source: str) -> bool:
        """Whether the store worker must refuse an ``obs`` record of ``source``: a camera's own tracks
        (``camera:<name>``, ``run_camera --no-join``) while this join runs, since the same person would be a shopper
        of the join and another of that camera, and a scan could bind either. The first refusal per camera raises a
        store-worker alert telling the manager to restart it with ``--join``; its first ``cam`` record settles the
        alert (:meth:`add`)."""
        if not (source.startswith("camera:") and self.stream is not None):
            return False
        if source not in self.unjoined:
            self.unjoined.add(source)
            message = (f"{source} sends its own tracks as shoppers (run_camera --no-join) while the store worker "
                       f"joins the store's cameras: its records are refused; restart it with --join")
            StoreAlert.objects.update_or_create(store=self.store, kind=StoreAlert.Kind.WORKER,
                                                key=f"unjoined:{source}",
                                                defaults={"message": message, "resolved_at": None})
            log.error("store %s: %s", self.store.code, message)
        return True

    def add(self, rec: dict, *, now: float) -> tuple[str, float]:
        """Add the frames of the ``cam`` record ``rec`` to the join (built first when there is none) and move its
        camera's clock to the record's ``t_last``; ``now``: monotonic s of the worker's read. Returns ``(camera,
        t_last)``. Raises RecordError (:func:`decode_cam`: all of the record or nothing)."""
        camera, frames, t_last = decode_cam(rec)
        join = self._joiner()
        for ft in frames:
            join.add(ft)
        join.reached(camera, t_last)
        if f"camera:{camera}" in self.unjoined:  # restarted with --join: the manager's alert is settled
            self.unjoined.discard(f"camera:{camera}")
            StoreAlert.objects.filter(store=self.store, kind=StoreAlert.Kind.WORKER, key=f"unjoined:camera:{camera}",
                                      resolved_at__isnull=True).update(resolved_at=timezone.now())
        if self.since is None:
            self.since = now
        self.fed = True
        return camera, t_last

    def step(self, *, wall: float, sources: Mapping[str, list[float]],
             down_s: float) -> tuple[TrackObservations, list[tuple[str, float]], float | None]:
        """Stop waiting for the cameras silent for ``down_s`` s (``sources``: the worker's ``{source: [latest t,
        monotonic s it came]}``; ``wall``: monotonic s of its latest read), then write what the join now can.
        Returns ``(observations, never heard, t_written)``: the joined observations for the loop, ``(source,
        silent s)`` of each camera given up that never sent (the worker alerts them; the others it alerts itself),
        and how far the join has written (s UTC) when a record was added since the last step, else None."""
        join = self.stream
        never_heard = []
        for camera in join.waiting_for:
            source = f"cam:{camera}"
            entry = sources.get(source)
            seen = entry[1] if entry is not None else self.since
            if seen is None or wall - seen <= down_s:
                continue
            join.stop_waiting(camera)
            log.warning("store %s: the join no longer waits for camera %s", self.store.code, camera)
            if entry is None:
                never_heard.append((source, wall - seen))
        obs = join.advance()
        t_written = None
        if self.fed:
            self.fed = False
            t_written = join.t_written
        return obs, never_heard, t_written
