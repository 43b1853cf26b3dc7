"""Multi-camera association: per-camera tracks of the same person joined into one shopper track (no Django).

A per-camera track (key ``camera:session:raw``, :func:`vision.tracking.track_key`) is joined to a shopper when its
floor positions stay close to that shopper's recent positions: over its first ``confirm`` floor observations, the
median distance to the shopper's nearest-in-time position (within ``max_gap_s``) must be under ``gate_m``, and the
shopper must not be held at the same time by another live track of the same camera (one camera never sees one
person twice, except for a tracker's id swap or a second box on the same person: ``handover_s``,
``duplicate_m``). The closest such shopper wins; otherwise the track starts a new shopper. Because a shopper's
position outlives its tracks by ``max_gap_s``, a person walking out of one camera's view into another's keeps their
id (hand-over), as does a track re-born in the same camera after an occlusion.

Shopper ids are ``"<prefix><n>"`` with a counter per associator (one per store session), so they are stable for the
session and never reused. Limits: a joined track is not split again if it later drifts away (an id switch inside
one camera's tracker carries over); two people who stay within ``gate_m`` of each other and are seen by disjoint
cameras may be merged.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Shopper:
    sid: str
    history: deque = field(default_factory=lambda: deque(maxlen=256))  # (t, x, y)
    keys: dict = field(default_factory=dict)  # key -> (camera, last_t)

    def position_near(self, t: float, max_gap_s: float) -> np.ndarray | None:
        best, best_dt = None, max_gap_s
        for tt, x, y in self.history:
            dt = abs(tt - t)
            if dt <= best_dt:
                best, best_dt = (x, y), dt
        return None if best is None else np.asarray(best)

    @property
    def last_t(self) -> float:
        return self.history[-1][0] if self.history else -math.inf


class ShopperAssociator:
    """Joins per-camera tracks into shopper tracks for one store session.

    ``gate_m`` (metres): largest median floor distance for a track to join a shopper; ``max_gap_s`` (s): how long a
    shopper's last position stays joinable (hand-over between cameras, re-birth after occlusion); ``confirm``:
    floor observations gathered before a new track is decided (fewer are decided by :meth:`flush`);
    ``prefix`` of shopper ids; ``handover_s`` (s): a new track of a camera may continue a shopper that camera's
    tracker still held this long after the new track began (the tracker swapped ids: measured on cps-test-01, cam1
    ended track 1 and began track 8 on the same frame while the shopper reached); ``duplicate_m`` (m): a new track
    this close to a shopper the same camera holds is a second box on the same person (a split box), not a second
    person. Feed observations in time order with :meth:`add`.
    """

    def __init__(self, *, gate_m: float = 1.0, max_gap_s: float = 2.0, confirm: int = 3, prefix: str = "S",
                 handover_s: float = 0.5, duplicate_m: float = 0.3):
        self.gate_m = float(gate_m)
        self.handover_s = float(handover_s)
        self.duplicate_m = float(duplicate_m)
        self.max_gap_s = float(max_gap_s)
        self.confirm = max(1, int(confirm))
        self.prefix = prefix
        self._count = 0
        self._shoppers: dict[str, _Shopper] = {}
        self._of: dict[str, str] = {}
        self._pending: dict[str, tuple[str, list[tuple[float, float, float]]]] = {}
        #: keys of tracks left without a shopper at :meth:`flush`: fewer than its ``min_new`` floor observations
        #: and near no shopper
        self.unconfirmed: list[str] = []

    # ---------------------------------------------------------------------------------------------- reading
    def shopper_of(self, key: str) -> str | None:
        """The shopper id a per-camera track was joined to (None while undecided or never on the floor)."""
        return self._of.get(key)

    @property
    def assignments(self) -> dict[str, str]:
        """Per-camera track key → shopper id, for every decided track."""
        return dict(self._of)

    def prune(self, before: float) -> int:
        """Forget the shoppers last seen before ``before`` (s UTC) with their per-camera track keys, the undecided
        tracks whose newest floor observation is older, and all but the newest 100 :attr:`unconfirmed` keys: none
        of them can be joined again (a track joins a shopper seen within ``max_gap_s`` of it), so a live join's
        state is what the last minutes need, not the day's. Returns how many shoppers were forgotten."""
        gone = {sid for sid, s in self._shoppers.items() if s.last_t < before}
        for sid in gone:
            del self._shoppers[sid]
        if gone:
            self._of = {k: sid for k, sid in self._of.items() if sid not in gone}
        self._pending = {k: v for k, v in self._pending.items() if v[1][-1][0] >= before}
        del self.unconfirmed[:-100]
        return len(gone)

    def camera_tracks(self, sid: str) -> list[str]:
        """The per-camera track keys joined to shopper ``sid`` (sorted; [] for an unknown id): what the camera
        workers file that shopper's hand crops under (``vision.hand_crops``)."""
        return sorted(k for k, s in self._of.items() if s == sid)

    @property
    def shopper_ids(self) -> list[str]:
        """Shopper ids in order of creation."""
        return list(self._shoppers)

    def positions(self, t: float, max_age_s: float = 1.0) -> dict[str, tuple[float, float]]:
        """Latest floor position (x, y) metres of each shopper seen within ``max_age_s`` before ``t``."""
        out = {}
        for sid, s in self._shoppers.items():
            if s.history and t - s.last_t <= max_age_s:
                _, x, y = s.history[-1]
                out[sid] = (float(x), float(y))
        return out

    # ---------------------------------------------------------------------------------------------- feeding
    def add(self, camera: str, key: str, t: float, xy: np.ndarray | tuple[float, float]) -> str | None:
        """One floor observation ``xy`` (2,) metres at ``t`` (s UTC) of per-camera track ``key``. NaN positions
        (feet not visible, uncalibrated camera) are ignored. Returns the track's shopper id once decided."""
        x, y = float(xy[0]), float(xy[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            return self._of.get(key)
        sid = self._of.get(key)
        if sid is not None:
            s = self._shoppers[sid]
            s.history.append((t, x, y))
            s.keys[key] = (camera, t)
            return sid
        cam, obs = self._pending.setdefault(key, (camera, []))
        obs.append((t, x, y))
        if len(obs) >= self.confirm:
            return self._decide(key)
        return None

    def add_frame(self, ft) -> list[str | None]:
        """All tracks of one :class:`vision.tracking.FrameTracks`; returns each track's shopper id (or None)."""
        return [self.add(ft.camera, str(ft.key[i]), ft.t, ft.floor_xy[i]) for i in range(len(ft))]

    def flush(self, min_new: int = 1, before: float = math.inf) -> None:
        """Decide every undecided track that has at least one floor observation (end of stream or of a batch): it
        joins the nearest shopper within the gate; one near no shopper starts a new shopper when it has at least
        ``min_new`` observations, else none (listed in :attr:`unconfirmed`). 1 suits stills (one observation per
        camera); video passes ``confirm``: a box on one or two frames of a 10 fps stream is not a person seen.
        ``before`` (s UTC): only tracks whose first floor observation is older (a live stream decides a track that
        had that long to gather ``confirm`` observations and did not, as the end of a replay would)."""
        for key in sorted(self._pending, key=lambda k: self._pending[k][1][0][0]):
            if key in self._pending and self._pending[key][1][0][0] < before:
                self._decide(key, create=len(self._pending[key][1]) >= min_new)

    def _decide(self, key: str, create: bool = True) -> str | None:
        camera, obs = self._pending.pop(key)
        t_first = obs[0][0]
        best, best_d = None, self.gate_m
        for s in self._shoppers.values():
            if s.last_t < t_first - self.max_gap_s:
                continue
            dists = []
            for t, x, y in obs:
                p = s.position_near(t, self.max_gap_s)
                if p is not None:
                    dists.append(math.hypot(x - p[0], y - p[1]))
            d = float(np.median(dists)) if dists else math.inf
            if d >= self.duplicate_m and any(cam == camera and last_t >= t_first + self.handover_s
                                             for k, (cam, last_t) in s.keys.items() if k != key):
                continue  # the same camera sees that shopper as someone else right now
            if dists:
                if d < best_d:
                    best, best_d = s, d
        if best is None and not create:
            self.unconfirmed.append(key)
            return None
        if best is None:
            self._count += 1
            best = self._shoppers.setdefault(f"{self.prefix}{self._count}", _Shopper(f"{self.prefix}{self._count}"))
        self._of[key] = best.sid
        for t, x, y in obs:
            best.history.append((t, x, y))
        best.keys[key] = (camera, obs[-1][0])
        hist = sorted(best.history)
        best.history.clear()
        best.history.extend(hist)
        return best.sid
