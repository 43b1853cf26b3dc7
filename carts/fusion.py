"""Fusion: which shopper caused a shelf event (pure NumPy, no Django).

Evidence used now: the distance from each shopper track's hand keypoints to the event's bin(s) during the event
(padded by ``FusionConfig.pad_s`` each side, as a hand reaches in before the weight changes and leaves after it
settles). A bin is the volume above its plate: its rectangle on the shelf surface, up to ``clearance_m`` above.

Score of a track: ``exp(−d² / 2σ²)`` with ``d`` its closest hand-to-bin distance (metres) and ``σ = sigma_m``;
confidence of the best track = its share of the summed scores (how clearly it beats the others) times a
plausibility factor that falls from 1 to 0 as ``d`` goes from ``reach_m`` to ``2·reach_m``. No track with a hand
within ``2·reach_m`` → no candidate. ``sigma_m`` (0.25 m) is about the spread we measured between a wrist
keypoint and the plate it takes from on BENCHMARK-1 (the wrist stays 0.1–0.2 m in front of the shelf edge), and
``reach_m`` (0.6 m) is a generous arm's length past it; both are knobs, to be fitted on the simulator's benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from store.recording import TrackObservations


class _Event(Protocol):
    bin_codes: tuple[str, ...]
    t_start: float
    t_end: float


@dataclass(frozen=True)
class BinGeometry:
    """Bins as oriented boxes in store coordinates.

    ``codes`` (B,) str; ``centre`` (B, 3) metres (centre of the plate's top face); ``half_size`` (B, 2) metres
    (half width along the shelf, half depth into it); ``yaw`` (B,) radians (shelf long axis from store +x).
    """

    codes: tuple[str, ...]
    centre: np.ndarray
    half_size: np.ndarray
    yaw: np.ndarray
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        b = len(self.codes)
        if self.centre.shape != (b, 3) or self.half_size.shape != (b, 2) or self.yaw.shape != (b,):
            raise ValueError(f"expected centre ({b}, 3), half_size ({b}, 2), yaw ({b},); got "
                             f"{self.centre.shape}, {self.half_size.shape}, {self.yaw.shape}")
        object.__setattr__(self, "index", {c: i for i, c in enumerate(self.codes)})

    def distance(self, points: np.ndarray, code: str, clearance_m: float) -> np.ndarray:
        """Euclidean distance (metres) from each of ``points`` (n, 3) to the volume above bin ``code``:
        its rectangle, from the plate surface up to ``clearance_m`` above. 0 inside. Raises KeyError for an
        unknown bin."""
        i = self.index[code]
        d = points - self.centre[i]
        c, s = math.cos(self.yaw[i]), math.sin(self.yaw[i])
        along = d[:, 0] * c + d[:, 1] * s
        into = -d[:, 0] * s + d[:, 1] * c
        ex = np.maximum(np.abs(along) - self.half_size[i, 0], 0.0)
        ey = np.maximum(np.abs(into) - self.half_size[i, 1], 0.0)
        ez = np.maximum(np.maximum(-d[:, 2], d[:, 2] - clearance_m), 0.0)
        return np.sqrt(ex * ex + ey * ey + ez * ez)


@dataclass(frozen=True)
class FusionConfig:
    """Knobs of :func:`attribute_event` (module docstring has their sources)."""

    pad_s: float = 1.0
    sigma_m: float = 0.25
    reach_m: float = 0.6
    clearance_m: float = 0.35
    min_hand_score: float = 0.2


@dataclass(frozen=True)
class Candidate:
    """One shopper track's evidence for an event: closest hand distance (m) and when (s UTC), and its score."""

    track_id: str
    distance_m: float
    t_closest: float
    score: float


@dataclass(frozen=True)
class Attribution:
    """Fusion's answer for one shelf event: the track to charge (None: nobody), confidence in [0, 1], and the
    candidates best first (the evidence a reviewer sees)."""

    track_id: str | None
    confidence: float
    candidates: tuple[Candidate, ...]
    reason: str


def attribute_event(event: _Event, hands: TrackObservations, bins: BinGeometry,
                    config: FusionConfig = FusionConfig(), *, eligible: Sequence[str] | None = None) -> Attribution:
    """Give ``event`` to the shopper track whose hand was closest to its bin(s) during it.

    ``hands`` holds hand keypoints (``TrackObservations.hands()``); ``eligible`` restricts the candidates to tracks
    bound to an open visit (None: every track). Raises KeyError if the event names a bin not in ``bins``.
    """
    window = hands.between(event.t_start - config.pad_s, event.t_end + config.pad_s)
    window = window[window.score >= config.min_hand_score]
    if eligible is not None:
        window = window[np.isin(window.track_id, list(eligible))]
    if len(window) == 0:
        return Attribution(None, 0.0, (), "no shopper's hand was seen during the event")
    dist = np.min(np.stack([bins.distance(window.xyz, code, config.clearance_m) for code in event.bin_codes]),
                  axis=0)
    candidates = []
    for track in np.unique(window.track_id):
        m = window.track_id == track
        k = int(np.argmin(dist[m]))
        d = float(dist[m][k])
        if d > 2 * config.reach_m:
            continue
        candidates.append(Candidate(str(track), d, float(window.t[m][k]),
                                    math.exp(-d * d / (2 * config.sigma_m ** 2))))
    if not candidates:
        return Attribution(None, 0.0, (), f"no hand came within {2 * config.reach_m:.1f} m of the bin")
    candidates.sort(key=lambda c: c.distance_m)
    best = candidates[0]
    total = sum(c.score for c in candidates)
    share = best.score / total if total > 0 else 0.0
    plausible = float(np.clip((2 * config.reach_m - best.distance_m) / config.reach_m, 0.0, 1.0))
    confidence = share * plausible
    reason = (f"hand of track {best.track_id} came within {best.distance_m:.2f} m"
              + (f"; next track at {candidates[1].distance_m:.2f} m" if len(candidates) > 1 else "; no other track near"))
    return Attribution(best.track_id, confidence, tuple(candidates), reason)
