"""Camera clock offsets found in the data (cameras whose frames carry no timestamps).

A camera that sees a hand at shelf events is aligned to the shelf clock (:func:`reach_offsets`): a reach ends
when the item leaves the plate, i.e. when the weight change ends. The reach's onset is not used: a shopper may
hover at the shelf before taking (cps-test-01's FIJI reach starts 1.5 s before the weight moves). Offsets are
``clock_offset_s`` values: shelf time − camera time, s. :func:`clock_offsets` gives every camera's.

Figures on cps-test-01 are in docs/cps-test-video.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vision.tracking import FrameTracks
from carts.fusion_config import BinGeometry
from carts.offline.shelf_events import recording_shelf_events

log = logging.getLogger(__name__)

#: A wrist ray passing this close (m) to the volume above an event's bins is a hand at them. cps-test-01: the
#: reaching wrists of cam3 pass 0.16-0.29 m from it (calibration error at the shelf), resting ones 0.6-1.2 m.
NEAR_M = 0.3
#: Wrists below this pose score are not used.
MIN_SCORE = 0.5
#: A reach must be near the bins over at least this share of the weight change to be the one that took.
MIN_COVER = 0.5
#: Samples of a reach further apart than this (s) are two reaches.
MAX_GAP_S = 0.25
#: How far (s) before and after a weight change a reach is looked for (the pipeline copes with ±1 s).
SEARCH_S = 1.5


@dataclass(frozen=True)
class ClockOffset:
    """One camera's clock offset: ``offset_s`` (shelf time − camera time, s; None when not found), ``spread_s``
    (half the range of the per-event estimates, at least half a frame), ``events`` how many shelf events gave it,
    ``source`` ``"reach"`` or ``"none"``."""

    camera: str
    offset_s: float | None
    spread_s: float | None
    events: int
    source: str


def _ray_distance(ray: np.ndarray, bins, codes: Sequence[str], clearance_m: float) -> float:
    """Least distance (m) from a ray (6,) = centre, unit direction to the volume above any of ``codes``."""
    s = np.linspace(0.3, 6.0, 120)
    pts = ray[:3] + s[:, None] * ray[3:]
    return float(min(bins.distance(pts, c, clearance_m).min() for c in codes))


def reach_lags(frames: Sequence[FrameTracks], assignments: dict[str, str], event, bins, *,
               clearance_m: float = 0.35) -> dict[str, list[float]]:
    """Per camera: candidate lags (s) of ``event`` in that camera's clock, each the end of one reach at the
    event's bins − the end of the weight change.

    ``frames`` one or more cameras' frames with ``wrist_rays``; ``assignments`` track key → shopper id (tracks not
    in it are ignored); ``event`` has ``bin_codes``, ``t_start``, ``t_end`` (s); ``bins`` a
    :class:`carts.fusion_config.BinGeometry`. A reach is a run of frames whose wrist ray passes within :data:`NEAR_M` of
    the bins (gaps up to :data:`MAX_GAP_S`) lasting at least :data:`MIN_COVER` of the change, ending within
    ±:data:`SEARCH_S` of its end."""
    lo, hi = event.t_start - 2 * SEARCH_S, event.t_end + SEARCH_S
    near: dict[str, list[float]] = {}
    for ft in frames:
        if ft.wrist_rays is None or not lo <= ft.t <= hi:
            continue
        for k in range(len(ft)):
            if assignments.get(str(ft.key[k])) is None:
                continue
            if any(ft.wrist_score[k, side] >= MIN_SCORE and np.isfinite(ft.wrist_rays[k, side]).all()
                   and _ray_distance(ft.wrist_rays[k, side], bins, event.bin_codes, clearance_m) <= NEAR_M
                   for side in (0, 1)):
                near.setdefault(ft.camera, []).append(ft.t)
                break
    out: dict[str, list[float]] = {}
    span = max(event.t_end - event.t_start, 1e-6)
    for cam, ts in near.items():
        t = np.unique(ts)
        cuts = np.flatnonzero(np.diff(t) > MAX_GAP_S)
        for a, b in zip(np.r_[0, cuts + 1], np.r_[cuts, len(t) - 1]):
            if t[b] - t[a] >= MIN_COVER * span and abs(t[b] - event.t_end) <= SEARCH_S:
                out.setdefault(cam, []).append(float(t[b] - event.t_end))
    return out


#: Per-event lags of one camera agreeing within this (s) are one clock offset.
AGREE_S = 0.2


def reach_offsets(frames: Sequence[FrameTracks], assignments: dict[str, str], events, bins, *, fps: float = 10.0,
                  clearance_m: float = 0.35) -> dict[str, ClockOffset]:
    """Per camera seen reaching at two or more ``events`` with lags (:func:`reach_lags`) that agree within
    :data:`AGREE_S`: offset = −their median. One event alone cannot tell a reach from a wrist ray that merely
    passes the bins (cps-test-01's cam5 looks down past the Taco Bell plates as the shopper walks up)."""
    per: dict[str, list[list[float]]] = {}
    for ev in events:
        for cam, lags in reach_lags(frames, assignments, ev, bins, clearance_m=clearance_m).items():
            per.setdefault(cam, []).append(lags)
    out = {}
    for cam, cands in per.items():
        best = None
        for centre in sorted({x for c in cands for x in c}):
            chosen = [min(c, key=lambda x: abs(x - centre)) for c in cands]
            chosen = [x for x in chosen if abs(x - centre) <= AGREE_S]
            if len(chosen) >= 2 and (best is None or (len(chosen), -np.ptp(chosen)) > (len(best), -np.ptp(best))):
                best = chosen
        if best is not None:
            v = np.asarray(best)
            out[cam] = ClockOffset(cam, float(-np.median(v)), max(float(np.ptp(v)) / 2, 0.5 / fps), len(v), "reach")
    return out


def clock_offsets(frames: Sequence[FrameTracks], assignments: dict[str, str], events, bins, *, fps: float = 10.0,
                  clearance_m: float = 0.35) -> dict[str, ClockOffset]:
    """Every camera of ``frames``: its reach offset (:func:`reach_offsets`), else ``source="none"`` (offset None:
    the pipeline keeps ``clock_offset_s`` and fusion's ``pad_s`` covers it)."""
    out = reach_offsets(frames, assignments, events, bins, fps=fps, clearance_m=clearance_m)
    return {c: out.get(c, ClockOffset(c, None, None, 0, "none")) for c in sorted({ft.camera for ft in frames})}


#: s. A camera's offset is applied (:func:`offsets_to_apply`) only from this far from 0: one frame at 10 fps.
#: Smaller ones change nothing fusion can see (cps-test-01's cam3 as recorded: +0.03 ± 0.05 s).
MIN_APPLY_S = 0.1


def offsets_to_apply(offsets: dict[str, ClockOffset]) -> dict[str, float]:
    """Camera → offset (s, shelf time − camera time) of the ``offsets`` worth applying: found from two or more
    agreeing shelf events (:func:`reach_offsets`), at least :data:`MIN_APPLY_S` from 0 and larger than their
    spread. Cameras not named keep their clock."""
    return {c: o.offset_s for c, o in offsets.items()
            if o.offset_s is not None and o.events >= 2 and abs(o.offset_s) >= max(MIN_APPLY_S, o.spread_s or 0.0)}


def recording_clock_offsets(recording, frames: Sequence[FrameTracks], assignments: dict[str, str], *,
                            fps: float = 10.0) -> dict[str, ClockOffset]:
    """:func:`clock_offsets` of ``frames`` against the shelf events of ``recording`` (a
    ``store.recording.Recording``; its store's bins); {} when it has fewer than two shelf events (no camera can
    get an offset then) or its store has no bins. Raises nothing for a store without a planogram (logged)."""
    try:
        events = recording_shelf_events(recording)
        if len(events) < 2:
            return {}
        bins = BinGeometry.from_store(recording.store)
    except (KeyError, ValueError, LookupError) as exc:
        log.warning("clock offsets: no shelf events or bins (%s)", exc)
        return {}
    return clock_offsets(frames, assignments, events, bins, fps=fps)
