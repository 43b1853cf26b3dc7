"""Replay of a recording's camera video: video → shopper tracks (``TrackObservations``) for the store pipeline.

The same code as the live workers: one :class:`vision.tracking.CameraTracker` per camera of ``cameras.json``
(docs/recording-format.md), frames merged in time order across cameras, per-camera tracks joined into shopper
tracks by :class:`vision.shoppers.ShopperStream` (the live store worker's joiner: multi-camera association, triangulated
and single-view wrists, zones).

Hook for ``carts.replay``: ``recording = carts.offline.video.apply_video(recording)`` before the tracks are read. It
returns the recording unchanged when it has no cameras; otherwise a copy whose ``tracks`` come from the video and
whose gate scans name the video's shopper ids (:func:`gates_for_video`).
"""
from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from store.recording import GateScan, Recording, TrackObservations
from vision.config import vision_settings
from vision.detector import PersonDetector
from vision.geometry import CalibrationError, CameraModel
from vision.shoppers import ShopperStream
from vision.tracking import CameraTracker, FrameSource, FrameTracks, SourceError, TrackInterval, TrackSummary
from vision.zones import ZoneEvents, zones_from_store
from .clock import offsets_to_apply, recording_clock_offsets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoTracking:
    """What tracking a recording's video produced: ``observations`` (shopper keypoints: ``floor`` and, where the
    calibration allows, ``l_wrist``/``r_wrist``, metres, track id = shopper id); ``zone_events``; ``intervals``
    per-camera track summaries; ``assignments`` per-camera track key → shopper id; ``hands_source``; ``problems``;
    ``frames`` every camera's :class:`FrameTracks` in time order, boxes dropped (only with ``keep_frames``: for
    :func:`carts.offline.clock.clock_offsets`), else None; ``clock`` camera → its :class:`carts.offline.clock.ClockOffset`
    found against the shelf events ({} when not looked for), ``applied`` camera → the offset (s, shelf − camera)
    added to its frames' times before association (:func:`carts.offline.clock.offsets_to_apply`)."""

    observations: TrackObservations
    zone_events: ZoneEvents
    intervals: list[TrackInterval]
    assignments: dict[str, str]
    hands_source: str
    problems: list[str]
    frames: list[FrameTracks] | None = None
    clock: dict = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)


def _merged(streams: list[Iterator[FrameTracks]]) -> Iterator[FrameTracks]:
    heads = []
    for i, it in enumerate(streams):
        ft = next(it, None)
        if ft is not None:
            heads.append((ft.t, i, ft))
    heapq.heapify(heads)
    while heads:
        _, i, ft = heapq.heappop(heads)
        yield ft
        nxt = next(streams[i], None)
        if nxt is not None:
            heapq.heappush(heads, (nxt.t, i, nxt))


def recorded_cameras(recording: Recording, *, session: str, model: str | None = None, tracker: str | None = None,
                     stride: int = 1, max_frames: int | None = None, within: bool = False,
                     ) -> tuple[list[tuple[CameraTracker, FrameSource]], list[str]]:
    """Each usable camera of ``recording`` as (its :class:`vision.tracking.CameraTracker` in ``session``, its
    opened :class:`vision.tracking.FrameSource`), and problem lines for the cameras skipped (no usable video or
    calibration). ``model``/``tracker`` default to :func:`vision_settings`; ``stride``, ``max_frames`` as
    FrameSource's; ``within``: only the frames inside the recording's span ``[t_start, t_end]`` (a recording cut
    from a longer session keeps its cameras' whole files). Raises nothing for bad video (logged)."""
    cfg = vision_settings()
    problems: list[str] = []
    out = []
    for cam in recording.cameras:
        try:
            model_cam = CameraModel.from_dict({**cam.calibration, "name": cam.name, "source": str(cam.video)})
            start, count = 0, max_frames
            if within:
                fps = float(cam.fps or model_cam.fps or 10.0)
                start = max(0, math.ceil((recording.t_start - cam.t_start) * fps - 1e-6))
                last = math.floor((recording.t_end - cam.t_start) * fps + 1e-6)
                count = max(0, last - start + 1) if count is None else min(count, max(0, last - start + 1))
            src = FrameSource(cam.video, t0=cam.t_start, fps=cam.fps, stride=stride, max_frames=count,
                              name=cam.name, start_frame=start)
        except (CalibrationError, SourceError) as exc:
            problems.append(f"camera {cam.name}: {exc}; skipped")
            log.warning("%s", problems[-1])
            continue
        if not model_cam.has_floor:
            problems.append(f"camera {cam.name}: no floor calibration; its tracks cannot be placed, skipped")
            log.warning("%s", problems[-1])
            continue
        det = PersonDetector(model or cfg["MODEL"], imgsz=cfg["IMGSZ"], conf=float(cfg["CONF"]),
                             tracker=tracker or cfg["TRACKER"], pose=cfg.get("POSE_MODEL"))
        if det.pose_problem:
            problems.append(f"camera {cam.name}: {det.pose_problem}")
        out.append((CameraTracker(model_cam, det, session), src))
    return out, problems


def track_recording(recording: Recording, *, session: str | None = None, model: str | None = None,
                    tracker: str | None = None, stride: int | None = None,
                    max_frames: int | None = None, keep_frames: bool = False, align_clocks: bool = True
                    ) -> VideoTracking:
    """Run detection, tracking, floor projection, association and zones on every camera of ``recording``.

    Cameras without a usable video or calibration are skipped with a problem line; the others still run.
    ``model``, ``tracker``, ``stride`` default to :func:`vision_settings`; ``keep_frames`` keeps the per-camera frames
    in the result. ``align_clocks``: each camera's clock offset to the shelves is found from the tracked frames
    (:func:`carts.offline.clock.recording_clock_offsets`: reaches against two or more weight changes); where it is
    trustworthy (:func:`carts.offline.clock.offsets_to_apply`) the camera's frames are shifted by it and associated again
    (tracking is not repeated), with a problem line per camera moved. Raises nothing for bad video (logged).
    """
    cfg = vision_settings()
    trackers, problems = recorded_cameras(recording, session=session or recording.name, model=model,
                                          tracker=tracker, stride=stride or int(cfg["STRIDE"]),
                                          max_frames=max_frames)
    streams = [ct.run(src) for ct, src in trackers]
    stream = ShopperStream([ct.camera.name for ct, _ in trackers], zones_from_store(recording.store),
                           gate_m=float(cfg["GATE_M"]), max_gap_s=float(cfg["MAX_GAP_S"]), lag_s=math.inf,
                           keep_frames=True)
    summary = TrackSummary()
    if trackers:
        stream.hands_source = trackers[0][0].detector.hands_source
    for ft in _merged(streams):
        summary.add(stream.push(ft))
    obs, zones = stream.finish()
    clock: dict = {}
    applied: dict[str, float] = {}
    if align_clocks and trackers:
        fps = float(recording.cameras[0].fps or 10.0) / (stride or int(cfg["STRIDE"]))
        clock = recording_clock_offsets(recording, stream.frames, stream.assoc.assignments, fps=fps)
        applied = offsets_to_apply(clock)
    if applied:
        first = stream
        stream = ShopperStream([ct.camera.name for ct, _ in trackers], zones_from_store(recording.store),
                               gate_m=float(cfg["GATE_M"]), max_gap_s=float(cfg["MAX_GAP_S"]), lag_s=math.inf,
                               keep_frames=True, offsets=applied)
        stream.hands_source = first.hands_source
        for ft in sorted((stream.shifted(ft) for ft in first.frames), key=lambda ft: (ft.t, ft.camera)):
            stream.push(ft)
        obs, zones = stream.finish()
        for cam, off in sorted(applied.items()):
            o = clock[cam]
            problems.append(f"camera {cam}: clock {off:+.2f} ± {o.spread_s:.2f} s off the shelves' (from {o.events} "
                            f"shelf events); its frames moved by it")
            log.warning("%s", problems[-1])
    problems += stream.problems
    for ct, src in trackers:
        problems.extend(src.problems)
        problems.extend(ct.problems)
    return VideoTracking(observations=obs, zone_events=zones, intervals=list(summary.intervals.values()),
                         assignments=stream.assoc.assignments, hands_source=stream.hands_source, problems=problems,
                         frames=stream.frames if keep_frames else None, clock=clock, applied=applied)


def tracks_from_video(recording: Recording, **kwargs) -> TrackObservations:
    """Shopper keypoints (store metres, track id = shopper id) from the recording's camera video; see
    :func:`track_recording` for the keyword arguments. Empty when the recording has no usable camera."""
    return track_recording(recording, **kwargs).observations


def gates_for_video(recording: Recording, result: VideoTracking) -> list[GateScan]:
    """Gate scans naming the video's shopper ids. A recorded scan is bound to the shopper in the entry (exit) zone
    nearest in time (within 3 s; else the shopper first (last) seen nearest to the scan); without recorded scans,
    each shopper enters at its first sighting and exits at its last (``source="inferred"``)."""
    obs = result.observations
    shoppers = obs.track_ids()
    if not shoppers:
        return []
    spans = {s: obs.span(s) for s in shoppers}
    ev = result.zone_events
    if not recording.gates:
        out = []
        for s, (t0, t1) in spans.items():
            out += [GateScan(t=t0, track=s, kind="entry", source="inferred"),
                    GateScan(t=t1, track=s, kind="exit", source="inferred")]
        return sorted(out, key=lambda g: g.t)
    out = []
    for scan in recording.gates:
        in_zone = [(abs(scan.t - 0.5 * (a + b)), str(s)) for s, k, a, b in zip(ev.shopper, ev.kind, ev.t_start,
                                                                            ev.t_end)
                   if k == scan.kind and a - 3.0 <= scan.t <= b + 3.0]
        if in_zone:
            track = min(in_zone)[1]
        else:
            idx = 0 if scan.kind == "entry" else 1
            track = min(shoppers, key=lambda s: abs(spans[s][idx] - scan.t))
        out.append(replace(scan, track=track))
    return out


def apply_video(recording: Recording, **kwargs) -> Recording:
    """The replay hook: ``recording`` itself when it has no cameras, else a copy whose ``tracks`` come from its
    video (:func:`track_recording`) and whose gate scans name the video's shoppers (:func:`gates_for_video`)."""
    if not recording.cameras:
        return recording
    result = track_recording(recording, **kwargs)
    log.info("video: %d shopper tracks from %d cameras (hands: %s)", len(result.observations.track_ids()),
             len(recording.cameras), result.hands_source)
    gates = gates_for_video(recording, result)
    tracks, gates = name_shoppers_by_scans(result.observations, recording.gates, gates)
    return replace(recording, tracks=tracks, gates=gates, problems=list(recording.problems) + result.problems)


def name_shoppers_by_scans(obs: TrackObservations, recorded: list[GateScan], bound: list[GateScan]
                           ) -> tuple[TrackObservations, list[GateScan]]:
    """Give each video shopper bound to a recorded entry scan that scan's track id (the name the gate, and the
    recording's truth, know the person by): ``recorded`` and ``bound`` are the same scans before and after
    :func:`gates_for_video`. A video shopper bound to two different recorded names keeps its own id (ambiguous);
    a recorded name already used by another video shopper is not given twice. Returns (observations, scans)."""
    names: dict[str, set[str]] = {}
    for before, after in zip(recorded, bound):
        if before.kind == "entry" and before.track and before.track != after.track:
            names.setdefault(after.track, set()).add(before.track)
    ids = set(obs.track_ids())
    rename: dict[str, str] = {}
    taken: set[str] = set()
    for shopper, cand in names.items():
        if len(cand) == 1:
            (name,) = cand
            if name not in taken and name not in ids:
                rename[shopper] = name
                taken.add(name)
    if not rename:
        return obs, bound
    track_id = np.array([rename.get(str(t), str(t)) for t in obs.track_id], dtype=object)
    obs = TrackObservations(track_id, obs.t, obs.keypoint, obs.xyz, obs.score)
    return obs, [replace(g, track=rename.get(g.track, g.track)) for g in bound]
