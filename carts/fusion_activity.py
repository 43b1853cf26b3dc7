"""Activity in fusion: a hand of a shopper who walks past the bin says less than one of a shopper who stopped to
reach (pure NumPy, no Django).

:func:`walking_hands` multiplies the hand score of each candidate whose body moved faster than
``FusionConfig.walking_speed_m_s`` around the weight change by ``FusionConfig.walking_factor`` (1: off, the
default). Speed as ``vision.activity`` measures it (``body_speed``: first to last floor position within a window
centred on the change; its ``walk_speed_m_s`` 0.45 m/s threshold, docs/activity.md), from the ``neck`` (else
``head``) keypoints the store loop keeps for ``vision.identity``.
"""
from __future__ import annotations

import numpy as np

from store.recording import TrackObservations

from .fusion_config import FusionConfig
from .fusion_hands import HandEvidence


def track_speeds(bodies: TrackObservations, tracks, t0: float, t1: float, *, window_s: float = 1.0
                 ) -> dict[str, float]:
    """track → body speed (m/s on the floor) over ``[t0 − w, t1 + w]`` (``w`` = ``window_s`` / 2) from its
    ``neck`` sightings (else ``head``): first to last position over their time apart; tracks seen fewer than twice
    or over less than ``window_s`` / 4 are left out (unknown)."""
    out: dict[str, float] = {}
    lo, hi = t0 - window_s / 2, t1 + window_s / 2
    w = bodies[(bodies.t >= lo) & (bodies.t <= hi)]
    for track in tracks:
        m = w[w.track_id == track]
        for name in ("neck", "head"):
            k = m[m.keypoint == name]
            if len(k) >= 2:
                break
        if len(k) < 2:
            continue
        order = np.argsort(k.t, kind="stable")
        t, xy = k.t[order], k.xyz[order, :2]
        dt = float(t[-1] - t[0])
        if dt < window_s / 4:
            continue
        out[str(track)] = float(np.hypot(*(xy[-1] - xy[0]))) / dt
    return out


def walking_hands(ev: HandEvidence, event, bodies: TrackObservations, config: FusionConfig) -> HandEvidence:
    """``ev`` with the score of each track that walked around its hand's closest approach to the bin
    (``t_closest`` ± 0.5 s) multiplied by ``config.walking_factor``, rows re-sorted best first. Unchanged when the
    factor is 1 or no track walked. ``event``: the shelf event (kept for the signature of the other evidence
    steps)."""
    if config.walking_factor >= 1.0 or len(ev) == 0:
        return ev
    # speed around each hand's closest approach (the moment it counts for), not the weight change: a taker who
    # walks off while the plate still swings stood still when they reached
    walking = np.array([track_speeds(bodies, [str(t)], float(tc), float(tc)).get(str(t), 0.0)
                        > config.walking_speed_m_s for t, tc in zip(ev.track_id, ev.t_closest)])
    if not walking.any():
        return ev
    score = np.where(walking, ev.score * config.walking_factor, ev.score)
    order = np.argsort(-score, kind="stable")
    return HandEvidence(ev.track_id[order], ev.distance_m[order], ev.effective_m[order], ev.t_closest[order],
                        ev.motion_m[order], score[order], ev.hand_xyz[order])
