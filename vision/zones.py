"""Zones on the store floor and the intervals shoppers spend in them (no Django).

- :class:`Zone`: a named floor polygon (metres) of a kind: ``entry``, ``exit``, ``floor`` (from ``store.json``
  ``zones``) or ``shelf`` (the interaction zone in front of a gondola, derived from its bins by
  :func:`shelf_zones`).
- :class:`ZoneTracker`: fed shopper floor positions in time order, it emits :class:`ZoneEvents` intervals
  (shopper, zone, start, end) with hysteresis: a shopper leaves a zone only after being seen outside it for
  ``leave_s`` (so a jittery foot point on a zone's edge does not produce a burst of events).
- :func:`hand_at_bin_intervals`: from hand keypoints (:class:`store.recording.TrackObservations`), the intervals
  a shopper's hand was within ``radius_m`` of a bin (shopper, bin, t_in, t_out, min distance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ZONE_KINDS = ("entry", "exit", "floor", "shelf")


@dataclass(frozen=True)
class Zone:
    """A floor zone: ``name`` unique in the store, ``kind`` one of ``ZONE_KINDS``, ``polygon`` (k, 2) metres
    (k ≥ 3, store coordinates)."""

    name: str
    kind: str
    polygon: np.ndarray

    def __post_init__(self) -> None:
        poly = np.asarray(self.polygon, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3:
            raise ValueError(f"zone {self.name}: polygon must be (k ≥ 3, 2), got {poly.shape}")
        if self.kind not in ZONE_KINDS:
            raise ValueError(f"zone {self.name}: kind must be one of {ZONE_KINDS}, not {self.kind!r}")
        object.__setattr__(self, "polygon", poly)

    def contains(self, xy: Any) -> np.ndarray:
        """Which points (n, 2) metres lie inside the polygon (even-odd rule); NaN points are outside."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        x, y = pts[:, 0:1], pts[:, 1:2]
        px, py = self.polygon[:, 0], self.polygon[:, 1]
        qx, qy = np.roll(px, -1), np.roll(py, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            crosses = ((py > y) != (qy > y)) & (x < (qx - px) * (y - py) / (qy - py) + px)
        return (crosses.sum(axis=1) % 2 == 1) & np.isfinite(pts).all(axis=1)


def zones_from_store(store: dict, *, reach_m: float = 0.6) -> list[Zone]:
    """The zones of a ``store.json`` dict: its ``zones`` (entry, exit, floor) plus one shelf interaction zone per
    gondola (:func:`shelf_zones`)."""
    out = [Zone(str(z["name"]), str(z["kind"]), np.asarray(z["polygon"], dtype=np.float64))
           for z in store.get("zones", [])]
    return out + shelf_zones(store, reach_m=reach_m)


def shelf_zones(store: dict, *, reach_m: float = 0.6) -> list[Zone]:
    """One ``shelf`` zone per gondola of a ``store.json`` dict: the smallest rectangle around the footprints of its
    bins (``width_m`` × ``depth_m`` turned by ``yaw_rad``), grown by ``reach_m`` on every side (where a shopper
    stands to reach it). Named ``gondola-<number>``."""
    import cv2

    zones = []
    for g in store.get("gondolas", []):
        corners = []
        for s in g.get("shelves", []):
            for b in s.get("bins", []):
                c, sn = math.cos(b.get("yaw_rad", 0.0)), math.sin(b.get("yaw_rad", 0.0))
                hw, hd = b["width_m"] / 2, b["depth_m"] / 2
                for dx, dy in ((-hw, -hd), (hw, -hd), (hw, hd), (-hw, hd)):
                    corners.append((b["x"] + c * dx - sn * dy, b["y"] + sn * dx + c * dy))
        if len(corners) < 3:
            continue
        (cx, cy), (w, h), ang = cv2.minAreaRect(np.asarray(corners, dtype=np.float32))
        box = cv2.boxPoints(((cx, cy), (w + 2 * reach_m, h + 2 * reach_m), ang))
        zones.append(Zone(f"gondola-{g['number']}", "shelf", box.astype(np.float64)))
    return zones


@dataclass(frozen=True)
class ZoneEvents:
    """Zone intervals: ``shopper`` (n,) object str, ``zone`` (n,) object str (zone name), ``kind`` (n,) object str,
    ``t_start``, ``t_end`` (n,) float64 s UTC (``t_end`` = last time seen inside)."""

    shopper: np.ndarray
    zone: np.ndarray
    kind: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray

    def __post_init__(self) -> None:
        n = self.shopper.shape[0]
        for name in ("zone", "kind", "t_start", "t_end"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return int(self.shopper.shape[0])

    def __getitem__(self, mask: Any) -> "ZoneEvents":
        return ZoneEvents(self.shopper[mask], self.zone[mask], self.kind[mask], self.t_start[mask],
                          self.t_end[mask])


class ZoneTracker:
    """Zone intervals of shoppers, fed in time order. ``leave_s``: seconds seen outside before an interval ends;
    ``min_s``: intervals shorter than this are dropped (a foot point flickering across an edge)."""

    def __init__(self, zones: list[Zone], *, leave_s: float = 0.5, min_s: float = 0.0):
        self.zones = list(zones)
        self.leave_s = float(leave_s)
        self.min_s = float(min_s)
        self._open: dict[tuple[str, int], list[float]] = {}  # (shopper, zone idx) -> [t_in, t_last_inside]
        self._closed: list[tuple[str, str, str, float, float]] = []

    def reset(self) -> None:
        """Forget open and closed intervals (a new session)."""
        self._open.clear()
        self._closed.clear()

    def prune(self, before: float) -> None:
        """Forget the closed intervals that ended before ``before`` (s UTC) and the open ones of shoppers last inside
        before it (a shopper gone from every camera is never updated again): a live stream keeps minutes, not the
        day (its intervals are not read back; a replay reads them all at :meth:`finish` and never prunes)."""
        self._closed = [r for r in self._closed if r[4] >= before]
        self._open = {k: iv for k, iv in self._open.items() if iv[1] >= before}

    def update(self, shopper: str, t: float, xy: Any) -> None:
        """Shopper ``shopper`` seen at floor ``xy`` (2,) metres at ``t`` s UTC."""
        p = np.asarray(xy, dtype=np.float64).reshape(1, 2)
        if not np.isfinite(p).all():
            return
        for zi, zone in enumerate(self.zones):
            inside = bool(zone.contains(p)[0])
            key = (shopper, zi)
            iv = self._open.get(key)
            if inside:
                if iv is None:
                    self._open[key] = [t, t]
                else:
                    iv[1] = t
            elif iv is not None and t - iv[1] > self.leave_s:
                self._close(key)

    def _close(self, key: tuple[str, int]) -> None:
        t0, t1 = self._open.pop(key)
        if t1 - t0 >= self.min_s:
            zone = self.zones[key[1]]
            self._closed.append((key[0], zone.name, zone.kind, t0, t1))

    def finish(self) -> ZoneEvents:
        """Close every open interval and return all intervals, ordered by start time."""
        for key in list(self._open):
            self._close(key)
        return self.events()

    def events(self) -> ZoneEvents:
        """Closed intervals so far, ordered by start time."""
        rows = sorted(self._closed, key=lambda r: (r[3], r[0], r[1]))
        return ZoneEvents(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=object),
                          np.array([r[2] for r in rows], dtype=object), np.array([r[3] for r in rows], dtype=float),
                          np.array([r[4] for r in rows], dtype=float))


@dataclass(frozen=True)
class HandAtBin:
    """Intervals when a shopper's hand was near a bin: ``shopper`` (n,) object str, ``bin`` (n,) object str (bin
    code), ``t_in``, ``t_out`` (n,) float64 s UTC, ``min_distance_m`` (n,) float64 metres (closest hand–bin-centre
    distance in the interval)."""

    shopper: np.ndarray
    bin: np.ndarray
    t_in: np.ndarray
    t_out: np.ndarray
    min_distance_m: np.ndarray

    def __len__(self) -> int:
        return int(self.shopper.shape[0])


def hand_at_bin_intervals(hands: Any, bin_codes: tuple[str, ...], centres: np.ndarray, *, radius_m: float = 0.3,
                          gap_s: float = 0.5) -> HandAtBin:
    """Hand-at-bin intervals from hand keypoints ``hands`` (a :class:`store.recording.TrackObservations`; only
    finite points are used) and bins ``bin_codes`` (B,) with top-face centres ``centres`` (B, 3) metres. A hand
    within ``radius_m`` of a bin centre is at it; samples of the same (shopper, bin) less than ``gap_s`` apart
    belong to one interval."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    rows: list[tuple[str, str, float, float, float]] = []
    ok = np.isfinite(hands.xyz).all(axis=1)
    h = hands[ok]
    if len(h) and centres.shape[0]:
        d = np.linalg.norm(h.xyz[:, None, :] - centres[None, :, :], axis=2)  # (n, B)
        ii, bb = np.nonzero(d <= radius_m)
        order = np.lexsort((h.t[ii], bb, h.track_id[ii].astype(str)))
        cur: list | None = None
        for k in order:
            i, b = ii[k], bb[k]
            sh, t, dist = str(h.track_id[i]), float(h.t[i]), float(d[i, b])
            if cur is not None and cur[0] == sh and cur[1] == bin_codes[b] and t - cur[3] <= gap_s:
                cur[3], cur[4] = t, min(cur[4], dist)
            else:
                if cur is not None:
                    rows.append(tuple(cur))
                cur = [sh, bin_codes[b], t, t, dist]
        if cur is not None:
            rows.append(tuple(cur))
    rows.sort(key=lambda r: r[2])
    return HandAtBin(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=object),
                     np.array([r[2] for r in rows], dtype=float), np.array([r[3] for r in rows], dtype=float),
                     np.array([r[4] for r in rows], dtype=float))
