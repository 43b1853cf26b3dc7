"""Id switches between neighbouring shopper tracks: find them from motion continuity and undo them (pure NumPy).

A tracker that loses two people standing close together may give each the other's id for a few frames (an
**id switch**; MOT's IDSW counts them). In store coordinates the switch shows as both tracks jumping at once,
each onto where the other just was: ``|a(t) − a(t−)| + |b(t) − b(t−)|`` is about twice their separation, while
the crossed pairing ``|b(t) − a(t−)| + |a(t) − b(t−)|`` is only the walking step and keypoint noise. Reading the
pair frame by frame and flipping the pairing whenever the crossed one is cheaper by more than ``margin_m`` is
the greedy form of the frame-to-frame assignment every tracker makes (ByteTrack's and SORT's IoU/Hungarian
matching; here on floor positions after the fact, Bewley et al., "Simple Online and Realtime Tracking", ICIP
2016). It runs forward in time only, so it works online as well as on a whole recording.

Fusion undoes the switches around each shelf event (:func:`repair`) before it reads whose hand was at the bin:
during a switch the hand that reached is labelled with the neighbour's id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from store.recording import TrackObservations

#: Body keypoints whose floor position stands for the track, best first.
BODY_KEYPOINTS = ("neck", "head")


@dataclass(frozen=True)
class Swap:
    """Tracks ``a`` and ``b`` carry each other's ids from ``t_from`` (inclusive) to ``t_to`` (exclusive), seconds
    since epoch UTC."""

    a: str
    b: str
    t_from: float
    t_to: float


def _positions(bodies: TrackObservations, frame_s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Track → (frames (m,) int64, floor xy (m, 2) metres): the mean body position per frame, from the first of
    :data:`BODY_KEYPOINTS` the track has."""
    out = {}
    for track in np.unique(bodies.track_id):
        m = bodies[bodies.track_id == track]
        for name in BODY_KEYPOINTS:
            k = m[m.keypoint == name]
            if len(k):
                break
        else:
            continue
        f = np.round(k.t / frame_s).astype(np.int64)
        frames, inv = np.unique(f, return_inverse=True)
        xy = np.zeros((frames.size, 2))
        np.add.at(xy, inv, k.xyz[:, :2])
        xy /= np.bincount(inv, minlength=frames.size)[:, None]
        out[str(track)] = (frames, xy)
    return out


def find_swaps(bodies: TrackObservations, *, tracks: Sequence[str] | None = None, frame_s: float = 0.1,
               near_m: float = 1.0, margin_m: float = 0.25, noise_k: float = 2.5, smooth: float = 0.5,
               velocity_gain: float = 0.2, max_gap_s: float = 1.0, warmup: int = 10, max_swap_s: float = 5.0
               ) -> list[Swap]:
    """Id switches between pairs of ``tracks`` (None: all) in ``bodies`` (body keypoints, store metres).

    Per pair that comes within ``near_m`` metres, frames of ``frame_s`` seconds are read in time order with a
    constant-velocity alpha-beta filter per identity (gains ``smooth`` on position, ``velocity_gain`` on
    velocity; Kalata, "The tracking index", IEEE Trans. AES 1984) predicting where each should be; the
    pairing flips when the crossed assignment is cheaper than the current one by more than the margin: the larger
    of ``margin_m`` metres and ``noise_k`` × the sum of both filters' RMS prediction errors (a noisier tracker
    needs a bigger jump before a switch is believed; module docstring), once both filters have ``warmup``
    sightings (their velocity has converged: a walking track read from a standstill guess looks like a jump).
    A sighting farther from its identity's prediction than the margin does not update the filter (gating, as
    every tracker does): at a switch's edge one of the two is often missed for a frame, and the other's jump
    must not drag its filter along. A swap whose end is not seen within ``max_swap_s`` ends there (the labels
    stand again, both filters restart): the end of a switch between people who drifted close is a small jump and
    can be missed, and carrying a swap on forever would misattribute everything both do afterwards, while
    trackers re-identify within seconds (ByteTrack keeps a lost track 30 frames; re-identification does the
    rest). The labels at the pair's first common frame are taken as right. An identity unseen for more than
    ``max_gap_s`` restarts its filter from the current labels (and warms up again). Defaults: 0.25 m is
    five times the per-frame sd of a body keypoint in store coordinates (~5 cm) and more than the step of a
    person walking at 1.5 m/s in 0.1 s, so neither noise nor walking flips a pair; a switch between people
    0.2 m apart or more costs twice that. Returns the swaps, earliest first. Raises ValueError for
    non-positive ``frame_s``, ``near_m`` or ``margin_m``, or ``smooth`` outside (0, 1].
    """
    if not (frame_s > 0 and near_m > 0 and margin_m > 0 and 0 < smooth <= 1):
        raise ValueError("find_swaps: frame_s, near_m and margin_m must be > 0 and smooth in (0, 1]")
    w = bodies[np.isin(bodies.keypoint, BODY_KEYPOINTS)]
    if tracks is not None:
        w = w[np.isin(w.track_id, np.asarray(list(tracks), dtype=object))]
    pos = _positions(w, frame_s)
    names = sorted(pos)
    gap = max(1, int(round(max_gap_s / frame_s)))
    longest = max(1, int(round(max_swap_s / frame_s)))
    out: list[Swap] = []
    for i, a in enumerate(names):
        fa, xa = pos[a]
        for b in names[i + 1:]:
            fb, xb = pos[b]
            common, ia, ib = np.intersect1d(fa, fb, return_indices=True)
            if common.size < 2 or np.min(np.hypot(*(xa[ia] - xb[ib]).T)) > near_m:
                continue
            # every frame where either is seen, from the first sighting of either, in time order
            lo, hi = min(int(fa[0]), int(fb[0])), int(common[-1])
            frames = np.union1d(fa[(fa >= lo) & (fa <= hi)], fb[(fb >= lo) & (fb <= hi)])
            da = dict(zip(fa.tolist(), xa))
            db = dict(zip(fb.tolist(), xb))
            # per identity: [xy (m), velocity (m per frame), last frame, RMS prediction error (m), sightings]
            filt: list[list | None] = [None, None]
            swapped, since = False, 0
            for f in frames.tolist():
                if swapped and f - since > longest:  # no end seen: the labels stand again from here
                    out.append(Swap(a, b, since * frame_s - frame_s / 2, (since + longest) * frame_s - frame_s / 2))
                    swapped, filt = False, [None, None]
                pa, pb = da.get(f), db.get(f)
                obs = [pb, pa] if swapped else [pa, pb]  # what identity a and identity b show this frame
                pred = [None, None]
                for k in (0, 1):
                    st = filt[k]
                    if st is not None and f - st[2] > gap:  # lost for a while: start that filter again
                        filt[k] = st = None
                    if st is not None:
                        pred[k] = st[0] + st[1] * (f - st[2])
                settled = all(st is not None and st[4] >= warmup for st in filt)
                if settled and all(o is not None for o in obs) and f >= common[0]:
                    keep = math.dist(obs[0], pred[0]) + math.dist(obs[1], pred[1])
                    cross = math.dist(obs[1], pred[0]) + math.dist(obs[0], pred[1])
                    margin = max(margin_m, noise_k * (filt[0][3] + filt[1][3]))
                    if cross + margin < keep:
                        if swapped:
                            out.append(Swap(a, b, since * frame_s - frame_s / 2, f * frame_s - frame_s / 2))
                        else:
                            since = f
                        swapped = not swapped
                        obs = obs[::-1]
                for k in (0, 1):  # alpha-beta filter update (constant velocity)
                    o = obs[k]
                    if o is None:
                        continue
                    st = filt[k]
                    if st is None:
                        filt[k] = [np.asarray(o, dtype=float), np.zeros(2), f, margin_m / (2 * noise_k), 1]
                        continue
                    r = o - pred[k]
                    if math.hypot(*r) > max(margin_m, noise_k * st[3]):
                        continue  # gated out: a sighting this far from the prediction is not this identity's
                    st[4] += 1
                    st[3] = math.sqrt(0.9 * st[3] ** 2 + 0.1 * float(r @ r))  # RMS prediction error, metres
                    st[0] = pred[k] + smooth * r
                    st[1] = st[1] + velocity_gain * r / max(f - st[2], 1)
                    st[2] = f
            if swapped:
                out.append(Swap(a, b, since * frame_s - frame_s / 2, math.inf))
    out.sort(key=lambda s: s.t_from)
    return out


def apply_swaps(obs: TrackObservations, swaps: Sequence[Swap]) -> TrackObservations:
    """``obs`` with the ids of each swap's two tracks exchanged over its interval (swaps applied in order).
    Returns ``obs`` itself when there is nothing to undo."""
    if not swaps or len(obs) == 0:
        return obs
    ids = obs.track_id.copy()
    for s in swaps:
        inside = (obs.t >= s.t_from) & (obs.t < s.t_to)
        ia, ib = inside & (ids == s.a), inside & (ids == s.b)
        ids[ia], ids[ib] = s.b, s.a
    return TrackObservations(ids, obs.t, obs.keypoint, obs.xyz, obs.score)


def repair(hands: TrackObservations, bodies: TrackObservations, t0: float, t1: float, *,
           tracks: Sequence[str] | None = None, lookback_s: float = 60.0, **kwargs) -> tuple[TrackObservations,
                                                                                             list[Swap]]:
    """The hand observations of ``[t0, t1]`` (s UTC) with the id switches between ``tracks`` undone, read from
    ``bodies`` over ``[t0 − lookback_s, t1]`` (the labels at the start of that window are taken as right), and
    the swaps found. ``kwargs`` go to :func:`find_swaps`."""
    w_hands = hands.between(t0, t1)
    swaps = find_swaps(bodies.between(t0 - lookback_s, t1), tracks=tracks, **kwargs)
    return apply_swaps(w_hands, swaps), swaps
