"""The live joiner of a store's cameras: per-camera frames (``vision.tracking.FrameTracks``) in, shopper
observations (``store.recording.TrackObservations``: floor point, triangulated wrists, single-view wrist rays) out.

One path for every way video reaches the store loop: a recording's replay (``carts.offline.video.track_recording``: every
frame, then :meth:`ShopperStream.finish`), the device emulator's recorded cameras (``vision.worker.StoreCameras``)
and the live store worker (``carts.runtime.StoreWorker``: the ``cam`` records each ``run_camera`` publishes, joined
:data:`LIVE_LAG_S` behind the slowest camera, a camera silent too long no longer waited for:
:meth:`ShopperStream.stop_waiting`). Per-camera tracks are joined into shoppers by
:class:`vision.association.ShopperAssociator`; zones by :class:`vision.zones.ZoneTracker`. No Django: the store
worker pickles a stream with its checkpoint.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np

from store.recording import TrackObservations, WRIST_RAY_KEYPOINTS

from .association import ShopperAssociator
from .tracking import FrameTracks
from .zones import ZoneEvents, ZoneTracker
from .geometry import triangulate

log = logging.getLogger(__name__)

#: s. How far behind the slowest camera a live :class:`ShopperStream` writes a frame's shoppers: a new track's
#: first frames wait for its association (``confirm`` floor points, or this long for a track seen on the floor
#: fewer times: then it joins the nearest shopper, as at a replay's end), and a wrist seen by a camera that does not
#: see the feet reads the other cameras' floor points up to :data:`FLOOR_FROM_OTHERS_S` later. Fusion waits
#: ``pad_s`` (1.5 s) after an event anyway; the store loop's clock runs this much behind the cameras'. On
#: cps-test-01 3 s writes exactly the replay's observations (docs/cps-test-video.md).
LIVE_LAG_S = 3.0
#: s. How long a live :class:`ShopperStream` remembers a shopper no camera sees any more (and its zone intervals):
#: a track joins only a shopper seen within ``max_gap_s`` (2 s) of it, and the hand crops the store worker reads
#: through :meth:`ShopperStream.camera_tracks` expire after 20 s (``vision.hand_crops.HandCropStore``); a minute
#: covers both with room, and keeps the join's state (pickled with every checkpoint) flat over a day.
FORGET_AFTER_S = 60.0


class ShopperStream:
    """Per-camera frames in, shopper observations out: the one path from video to the store loop's hands, for a
    replay (``carts.offline.video.track_recording``: every frame, then :meth:`finish`) and for the live cameras of a
    store (the store worker on its cameras' ``cam`` records, ``carts.runtime.StoreWorker``, or the emulator's
    ``vision.worker.StoreCameras``: :meth:`add` per camera as frames come, :meth:`advance` to what every camera
    waited for has reached, :meth:`stop_waiting` for one gone silent). Frames are merged in time order across ``cameras`` (names), placed on the shop floor
    (:func:`on_floor`, ``zones``: the store's ``vision.zones.Zone`` list), joined into shoppers
    (:class:`vision.association.ShopperAssociator` with ``gate_m`` m, ``max_gap_s`` s, ids ``<prefix><n>``) and
    written as keypoints (:func:`_observations`: floor point, triangulated wrists, single-view wrist rays) once
    they are ``lag_s`` behind the slowest camera (:data:`LIVE_LAG_S`; ``math.inf``: only at :meth:`finish`, as a
    replay does). Memory: the frames of ``lag_s`` plus :data:`FLOOR_FROM_OTHERS_S` (all of them with
    ``keep_frames``). ``problems`` lists what it noticed (tracks too short to be a shopper). ``offsets``: camera →
    seconds added to its frames' times in :meth:`add` and :meth:`reached` (a clock offset, shelf − camera:
    :mod:`carts.offline.clock`); :meth:`push` takes frames already on the stream's clock (:meth:`shifted`)."""

    def __init__(self, cameras: list[str], zones: list, *, gate_m: float = 1.0, max_gap_s: float = 2.0,
                 lag_s: float = LIVE_LAG_S, prefix: str = "S", keep_frames: bool = False,
                 offsets: dict[str, float] | None = None) -> None:
        if not lag_s >= SAME_MOMENT_S:
            raise ValueError(f"lag_s must be >= {SAME_MOMENT_S} s (one moment), got {lag_s}")
        self.assoc = ShopperAssociator(gate_m=gate_m, max_gap_s=max_gap_s, prefix=prefix)
        self.zones = list(zones)
        self.floor = [z for z in self.zones if z.kind == "floor"]
        self.ztrack = ZoneTracker(self.zones)
        self.lag_s = float(lag_s)
        self.keep_frames = keep_frames
        self.offsets = {c: float(v) for c, v in (offsets or {}).items()}
        self.hands_source = "none"
        self.problems: list[str] = []
        #: merged frames (boxes dropped), time order: the ones still to write and their context
        self.frames: list[FrameTracks] = []
        self._starts: list[bool] = []  # per buffered frame: it begins a moment (SAME_MOMENT_S)
        self._moment_t = -math.inf  # time of the latest moment's first frame
        self._base = 0  # number of frames dropped from the front of the buffer
        self._written = 0  # frames written so far (absolute count)
        self._queues: dict[str, list[FrameTracks]] = {c: [] for c in cameras}
        self._reached: dict[str, float] = {c: -math.inf for c in cameras}
        self.t_merged = -math.inf  # every camera's frames up to here are in the buffer
        self.t_written = -math.inf  # observations are written up to here
        self.late = 0  # frames dropped by add(): older than what was already merged

    # ---------------------------------------------------------------------------------------- live feeding
    def shifted(self, ft: FrameTracks) -> FrameTracks:
        """``ft`` on the stream's clock: its camera's offset (``offsets``, s) added to its time."""
        off = self.offsets.get(ft.camera, 0.0)
        return replace(ft, t=ft.t + off) if off else ft

    def add(self, ft: FrameTracks) -> bool:
        """One camera's frame (its cameras' frames in time order; a camera not named at construction, or one
        :meth:`stop_waiting` gave up on, joins). A frame at or before :attr:`t_merged` comes too late to be merged
        in time order (a camera back from an outage, or one that joined behind the others): it is dropped and
        counted in :attr:`late`, and False returned."""
        ft = self.shifted(ft)
        self._reached[ft.camera] = max(self._reached.get(ft.camera, -math.inf), ft.t)
        if ft.t <= self.t_merged:
            self.late += 1
            return False
        self._queues.setdefault(ft.camera, []).append(ft)
        return True

    def reached(self, camera: str, t: float) -> None:
        """``camera`` has given every frame up to ``t`` (s UTC; frames with nobody in them need not be added)."""
        t = float(t) + self.offsets.get(camera, 0.0)
        self._reached[camera] = max(self._reached.get(camera, -math.inf), t)

    def stop_waiting(self, camera: str) -> None:
        """Stop waiting for ``camera`` (silent: its worker died, its stream dropped): :meth:`advance` goes on with
        the other cameras; the frames it gave are still merged. It is waited for again from its next :meth:`add`
        or :meth:`reached` (frames it then sends from before :attr:`t_merged` are :attr:`late`). No-op for a
        camera not waited for."""
        self._reached.pop(camera, None)

    def camera_tracks(self, sid: str) -> list[str]:
        """The per-camera track keys joined into shopper ``sid`` (an id of the observations this stream wrote;
        :meth:`vision.association.ShopperAssociator.camera_tracks`)."""
        return self.assoc.camera_tracks(sid)

    @property
    def waiting_for(self) -> list[str]:
        """The cameras :meth:`advance` waits for (sorted names)."""
        return sorted(self._reached)

    def advance(self, t: float | None = None) -> TrackObservations:
        """Merge the frames up to ``t`` (default: what the slowest camera has reached, :meth:`reached`) and return
        the shoppers' observations of the frames now ``lag_s`` behind it (possibly empty); :attr:`t_written` says
        how far they go."""
        t_all = min(self._reached.values(), default=-math.inf)
        t = t_all if t is None else min(float(t), t_all)
        if t > self.t_merged:
            heads = sorted((ft for q in self._queues.values() for ft in q if ft.t <= t),
                           key=lambda ft: (ft.t, ft.camera))
            for cam, q in self._queues.items():
                self._queues[cam] = [ft for ft in q if ft.t > t]
            for ft in heads:
                self.push(ft)
            self.t_merged = t
        return self._write(self.t_merged - self.lag_s) if math.isfinite(self.lag_s) else TrackObservations.empty()

    # ------------------------------------------------------------------------------------------- common
    def push(self, ft: FrameTracks) -> FrameTracks:
        """The next frame of the merged stream (time order across cameras): placed, associated, buffered.
        Returns it as placed (:func:`on_floor`)."""
        ft = on_floor(ft, self.floor)
        self.assoc.add_frame(ft)
        start = ft.t - self._moment_t > SAME_MOMENT_S
        if start:
            self._moment_t = ft.t
        self.frames.append(_compact(ft))
        self._starts.append(start)
        self.hands_source = ft.hands_source if len(ft) else self.hands_source
        return ft

    def finish(self) -> tuple[TrackObservations, ZoneEvents]:
        """End of the stream: merge what is queued, decide every track left (one seen on the floor fewer than
        ``confirm`` times near no shopper is no shopper: a problem line), write the rest. Returns (the observations
        not written before, the zone events of the whole stream)."""
        for ft in sorted((ft for q in self._queues.values() for ft in q), key=lambda ft: (ft.t, ft.camera)):
            self.push(ft)
        self._queues = {c: [] for c in self._queues}
        self.assoc.flush(min_new=self.assoc.confirm)
        if self.assoc.unconfirmed:
            self.problems.append(f"{len(self.assoc.unconfirmed)} per-camera track(s) seen on the floor fewer than "
                                 f"{self.assoc.confirm} times near no shopper: not counted as shoppers "
                                 f"({', '.join(self.assoc.unconfirmed[:5])})")
            log.warning("%s", self.problems[-1])
        obs = self._write(math.inf)
        return obs, self.ztrack.finish()

    def _write(self, cutoff: float) -> TrackObservations:
        """Observations of the buffered frames not yet written whose moment began at or before ``cutoff``."""
        if math.isfinite(cutoff):  # tracks seen in the frames written, that had lag_s to be placed and were not:
            # decided as at the end (a moment begun by the cutoff holds frames up to SAME_MOMENT_S after it)
            self.assoc.flush(min_new=self.assoc.confirm, before=cutoff + SAME_MOMENT_S + 1e-9)
            self.t_written = max(self.t_written, cutoff)
            if not self.keep_frames:  # live: the day's shoppers gone for a minute are forgotten
                self.assoc.prune(cutoff - FORGET_AFTER_S)
                self.ztrack.prune(cutoff - FORGET_AFTER_S)
        lo = self._written - self._base
        hi = lo
        n = len(self.frames)
        while hi < n and not (self._starts[hi] and self.frames[hi].t > cutoff):
            hi += 1
        if hi == lo:
            return TrackObservations.empty()
        obs = _window_observations(self.frames, self.assoc.assignments, self.ztrack, lo, hi)
        self._written += hi - lo
        if not math.isfinite(cutoff):
            self.t_written = max(self.t_written, self.frames[hi - 1].t)
        if not self.keep_frames and hi < n:  # keep the context the next frames' wrists read
            keep_from = self.frames[hi].t - FLOOR_FROM_OTHERS_S - 1e-6
            drop = 0
            while drop < hi and self.frames[drop].t < keep_from:
                drop += 1
            del self.frames[:drop], self._starts[:drop]
            self._base += drop
        return obs


def on_floor(ft: FrameTracks, floor: list) -> FrameTracks:
    """``ft`` with people whose foot point lies outside every ``floor`` zone (``vision.zones.Zone`` of kind
    ``floor``: the shop floor) made unplaced (floor point and wrists NaN): people seen through a glass wall are
    not shoppers. Unchanged when the store has no floor zone."""
    if not floor or len(ft) == 0:
        return ft
    ok = np.isfinite(ft.floor_xy).all(axis=1)
    inside = np.zeros(len(ft), bool)
    for z in floor:
        inside[ok] |= z.contains(ft.floor_xy[ok])
    if inside[ok].all():
        return ft
    out = ~inside & ok
    floor_xy, wrists = ft.floor_xy.copy(), ft.wrists_xyz.copy()
    floor_xy[out] = np.nan
    wrists[out] = np.nan
    return replace(ft, floor_xy=floor_xy, wrists_xyz=wrists)


def _compact(ft: FrameTracks) -> FrameTracks:
    """Drop what the replay does not need after association (boxes) to keep memory per frame small."""
    return replace(ft, xyxy=np.zeros((len(ft), 4), np.float32))


#: Frames of different cameras this close in time (s) are one moment for triangulating wrists (half a frame at
#: 10 fps).
SAME_MOMENT_S = 0.05
#: Largest distance (m) from a triangulated wrist to any of its rays for the rays to be one wrist (a wrong
#: left/right label or another person's wrist misses by more).
TRIANGULATION_MAX_M = 0.12


def triangulated_wrists(frames: list[FrameTracks], assignments: dict[str, str]
                        ) -> dict[tuple[int, str, int], np.ndarray]:
    """Wrists seen by two or more cameras at one moment, triangulated: (index in ``frames`` of the moment's first
    frame, shopper id, side 0 left / 1 right) → (3,) metres. Frames must be in time order; frames within
    :data:`SAME_MOMENT_S` of a moment's first frame belong to it. A wrist whose rays miss their least-squares point
    by more than :data:`TRIANGULATION_MAX_M` is left out (a left/right mix-up between views, or the wrong person)."""
    out: dict[tuple[int, str, int], np.ndarray] = {}
    i = 0
    while i < len(frames):
        j = i
        rays: dict[tuple[str, int], list[np.ndarray]] = {}
        while j < len(frames) and frames[j].t - frames[i].t <= SAME_MOMENT_S:
            ft = frames[j]
            if ft.wrist_rays is not None:
                for k in range(len(ft)):
                    sid = assignments.get(str(ft.key[k]))
                    if sid is None:
                        continue
                    for side in (0, 1):
                        r = ft.wrist_rays[k, side]
                        if np.isfinite(r).all():
                            rays.setdefault((sid, side), []).append(r)
            j += 1
        for (sid, side), rs in rays.items():
            if len(rs) >= 2:
                r = np.asarray(rs)
                X, spread = triangulate(r[:, :3], r[:, 3:])
                if spread <= TRIANGULATION_MAX_M:
                    out[(i, sid, side)] = X
        i = j
    return out


def _observations(frames: list[FrameTracks], assignments: dict[str, str],
                  zones) -> tuple[TrackObservations, ZoneEvents]:
    """Shopper keypoints of ``frames`` (time order) and their zone events (:func:`_window_observations` on all of
    them, with a :class:`vision.zones.ZoneTracker` of ``zones``)."""
    ztrack = ZoneTracker(zones)
    return _window_observations(frames, assignments, ztrack, 0, len(frames)), ztrack.finish()


def _window_observations(frames: list[FrameTracks], assignments: dict[str, str], ztrack: ZoneTracker,
                         lo: int, hi: int) -> TrackObservations:
    """Shopper keypoints of ``frames[lo:hi]`` (``lo`` begins a moment, ``hi`` ends one: :data:`SAME_MOMENT_S`;
    the other frames are context for the floor points, zones fed to ``ztrack``): per shopper and frame time, the mean floor point of the cameras
    that see them (``floor``, z = 0) and each wrist (``l_wrist``, ``r_wrist``): triangulated where two or more
    cameras saw it at that moment (:func:`triangulated_wrists`); else each camera's view of it as the stretch of
    its ray within an arm's reach of the shopper's floor point (:func:`wrist_stretch`; rows ``…_ray_a``,
    ``…_ray_b``, ``store.recording.WRIST_RAY_KEYPOINTS``): one camera does not tell how deep along its ray the
    wrist is, and fusion reads the stretch's point nearest to an event's bins. The floor point is the camera's own,
    or, for a camera that sees the wrists but not the feet (cut by the frame's edge), where the other cameras put
    the shopper (within :data:`FLOOR_FROM_OTHERS_S`)."""
    tid, ts, kp, xyz, sc = [], [], [], [], []

    def add_ray(sid: str, t: float, name: str, ray: np.ndarray, foot: np.ndarray, score: float) -> None:
        ends = wrist_stretch(ray, foot)
        if ends is not None:
            for key, point in zip(WRIST_RAY_KEYPOINTS[name], ends):
                tid.append(sid), ts.append(t), kp.append(key), xyz.append(tuple(point)), sc.append(score)

    tri = triangulated_wrists(frames[lo:hi], assignments)
    where = _shopper_floor(frames, assignments)
    written: set[tuple[int, str, int]] = set()
    moment = 0
    for n in range(hi - lo):
        ft = frames[lo + n]
        if ft.t - frames[lo + moment].t > SAME_MOMENT_S:
            moment = n
        per: dict[str, list[int]] = {}
        for i in range(len(ft)):
            sid = assignments.get(str(ft.key[i]))
            if sid is not None and np.isfinite(ft.floor_xy[i]).all():
                per.setdefault(sid, []).append(i)
            elif sid is not None and ft.wrist_rays is not None and sid in where:
                # feet out of this camera's view: its wrists stand where the other cameras put the shopper
                p = _floor_near(where[sid], ft.t)
                if p is None:
                    continue
                for side, name in ((0, "l_wrist"), (1, "r_wrist")):
                    if (moment, sid, side) in tri:
                        continue
                    add_ray(sid, ft.t, name, ft.wrist_rays[i, side], p, float(ft.wrist_score[i, side]))
        for sid, idx in per.items():
            p = ft.floor_xy[idx].mean(axis=0)
            tid.append(sid), ts.append(ft.t), kp.append("floor"), xyz.append((p[0], p[1], 0.0))
            sc.append(float(ft.confidence[idx].mean()))
            ztrack.update(sid, ft.t, p)
            for side, name in ((0, "l_wrist"), (1, "r_wrist")):
                w = ft.wrists_xyz[idx, side]
                ok = np.isfinite(w).all(axis=1)
                X = tri.get((moment, sid, side))
                if X is not None:
                    if (moment, sid, side) not in written:  # once per moment, not once per camera
                        written.add((moment, sid, side))
                        tid.append(sid), ts.append(ft.t), kp.append(name), xyz.append(tuple(X))
                        sc.append(float(ft.wrist_score[idx, side].max()))
                    continue
                if ft.wrist_rays is not None:
                    for i in idx:
                        add_ray(sid, ft.t, name, ft.wrist_rays[i, side], ft.floor_xy[i], float(ft.wrist_score[i, side]))
                elif ok.any():  # frames without rays (none from CameraTracker): the camera's own 3-D estimate
                    tid.append(sid), ts.append(ft.t), kp.append(name), xyz.append(tuple(w[ok].mean(axis=0)))
                    sc.append(float(ft.wrist_score[idx, side][ok].mean()))
    if not ts:
        return TrackObservations.empty()
    return TrackObservations(np.array(tid, dtype=object), np.asarray(ts, float), np.array(kp, dtype=object),
                             np.asarray(xyz, float).reshape(-1, 3), np.asarray(sc, float))


#: How far in time (s) a shopper's floor position from one camera places the wrists another camera sees.
FLOOR_FROM_OTHERS_S = 0.5


def _shopper_floor(frames: list[FrameTracks], assignments: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Shopper id → (times (k,) s, floor points (k, 2) m) from every camera's placed tracks, in time order."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for ft in frames:
        for i in range(len(ft)):
            sid = assignments.get(str(ft.key[i]))
            if sid is not None and np.isfinite(ft.floor_xy[i]).all():
                rows.setdefault(sid, []).append((ft.t, *ft.floor_xy[i]))
    return {sid: (np.array([r[0] for r in v]), np.array([r[1:] for r in v])) for sid, v in rows.items()}


def _floor_near(track: tuple[np.ndarray, np.ndarray], t: float) -> np.ndarray | None:
    """The mean floor point (2,) of a shopper within :data:`FLOOR_FROM_OTHERS_S` of ``t``, or None."""
    ts, xy = track
    near = np.abs(ts - t) <= FLOOR_FROM_OTHERS_S
    return xy[near].mean(axis=0) if near.any() else None


#: m. How far (horizontally) a wrist can be from the shopper's floor point: an arm's length (0.6–0.75 m from the
#: shoulder) plus the shoulder's offset from the body's centre line and a lean.
ARM_REACH_M = 0.8
#: m. Heights a wrist can be at: from hanging low to reaching up to the top shelf.
WRIST_HEIGHT_M = (0.2, 2.2)


def wrist_stretch(ray: np.ndarray, foot_xy: np.ndarray, *, reach_m: float = ARM_REACH_M,
                  height_m: tuple[float, float] = WRIST_HEIGHT_M) -> tuple[np.ndarray, np.ndarray] | None:
    """The stretch of a wrist ray (6,) = camera centre, unit direction (store metres) where the wrist can be: in
    front of the camera, within ``reach_m`` horizontally of the floor point ``foot_xy`` (2,) and at a height
    within ``height_m``. Returns its two ends ((3,), (3,), nearer the camera first), or None when the ray is
    unknown or no point of it qualifies (the ray passes farther than an arm from the body: another person's
    wrist, or a wrong floor point)."""
    if not np.isfinite(ray).all() or not np.isfinite(foot_xy).all():
        return None
    C, d = ray[:3], ray[3:]
    lo, hi = 0.0, math.inf
    # horizontal distance to the foot point ≤ reach_m: a·s² + b·s + c ≤ 0
    q = C[:2] - np.asarray(foot_xy, float)
    a, b, c = float(d[:2] @ d[:2]), 2.0 * float(d[:2] @ q), float(q @ q) - reach_m ** 2
    if a < 1e-12:
        if c > 0:
            return None
    else:
        disc = b * b - 4 * a * c
        if disc < 0:
            return None
        r = math.sqrt(disc)
        lo, hi = max(lo, (-b - r) / (2 * a)), min(hi, (-b + r) / (2 * a))
    # height within height_m
    if abs(d[2]) < 1e-12:
        if not height_m[0] <= C[2] <= height_m[1]:
            return None
    else:
        s0, s1 = sorted(((height_m[0] - C[2]) / d[2], (height_m[1] - C[2]) / d[2]))
        lo, hi = max(lo, s0), min(hi, s1)
    if not hi > lo or not math.isfinite(hi):
        return None
    return C + lo * d, C + hi * d
