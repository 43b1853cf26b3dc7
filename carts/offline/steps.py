"""A recording fed in time order (pure NumPy, no Django): :func:`recording_steps` merges a recording's sources into
steps of a few tenths of a second, as the replay, the emulator and the offline benchmarks feed the store loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from store.recording import TrackObservations


@dataclass(frozen=True)
class Step:
    """One step of a recording fed in time order (:func:`recording_steps`): everything with a time in
    ``[t, t_next)``: ``gates`` (``store.recording.GateScan``), ``tracks`` (observations), ``shelves`` (per controller:
    bin codes, t (n,), grams (n, B), rate Hz)."""

    t: float
    t_next: float
    gates: list
    tracks: TrackObservations
    shelves: list[tuple[tuple[str, ...], np.ndarray, np.ndarray, float]]


def _span(recording, tracks: TrackObservations, gates: list) -> tuple[float, float]:
    """(first, last) time of anything in ``recording`` (its own ``t_start``/``t_end`` where it has them)."""
    if hasattr(recording, "t_start") and hasattr(recording, "t_end"):
        return float(recording.t_start), float(recording.t_end)
    starts = [float(b.t[0]) for b in recording.shelves if len(b.t)] + [g.t for g in gates[:1]]
    ends = [float(b.t[-1]) for b in recording.shelves if len(b.t)] + [g.t for g in gates[-1:]]
    if len(tracks):
        starts.append(float(tracks.t[0]))
        ends.append(float(tracks.t[-1]))
    return (min(starts), max(ends)) if starts else (0.0, 0.0)


def recording_steps(recording, *, step_s: float = 0.2) -> Iterable[Step]:
    """A recording's sources merged in time order, in steps of ``step_s`` seconds of recording time (the last
    step also carries the gate scans after the end). ``recording``: a ``store.recording.Recording`` or anything
    with ``gates``, ``tracks``, ``shelves``, ``t_start``, ``t_end``. Raises ValueError for ``step_s`` ≤ 0."""
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    tracks = recording.tracks
    tracks = tracks[np.argsort(tracks.t, kind="stable")]
    gates = sorted(recording.gates, key=lambda g: g.t)
    gi = ti = 0
    si = [0] * len(recording.shelves)
    rates = [block.rate_hz for block in recording.shelves]  # a median over the whole block: once, not per step
    t, t_end = _span(recording, tracks, gates)
    while t <= t_end + step_s:
        t_next = t + step_s
        g0 = gi
        while gi < len(gates) and gates[gi].t < t_next:
            gi += 1
        tj = int(np.searchsorted(tracks.t, t_next, side="left"))
        shelves = []
        for k, block in enumerate(recording.shelves):
            j = int(np.searchsorted(block.t, t_next, side="left"))
            if j > si[k]:
                shelves.append((block.bin_codes, block.t[si[k]:j], block.grams[si[k]:j], rates[k]))
                si[k] = j
        last = t_next > t_end + step_s
        yield Step(t, t_next, gates[g0:gi] + (gates[gi:] if last else []), tracks[ti:tj], shelves)
        if last:
            gi = len(gates)
        ti = tj
        t = t_next


def feed_live(loop, step: Step, *, party_of: dict[str, str], door_of: dict[str, str],
              inside: dict[str, list[str]]) -> None:
    """Feed ``step`` to ``loop`` (a ``carts.loop.StoreLoop``) as the live store gets it: each entry scan a visit
    (keyed by its recorded track) for the loop to bind through its door's entry zone (``door_of``: track → the gate
    named like the zone; ``party_of``: track → its party's lead), and each exit scan given to every open visit of
    its account at once, as one pass's scan exits them all at the gate (``store.gates.services.visit_exit_scan``);
    ``inside``: account → its open visits, kept by the caller across steps. Then the step's observations and shelf
    blocks; the caller advances the loop."""
    for g in step.gates:
        if g.kind == "entry":
            lead = party_of.get(g.track, g.track)
            loop.on_gate_entry(visit=g.track, t=g.t, party_lead=None if lead == g.track else lead,
                               gate=door_of.get(g.track, ""))
            inside.setdefault(g.account, []).append(g.track)
        else:
            for visit in inside.pop(g.account, []):
                loop.on_visit_exit(visit=visit, t=g.t)
    loop.on_observations(step.tracks)
    for codes, t, grams, rate in step.shelves:
        loop.on_samples(bin_codes=codes, t=t, grams=grams, rate_hz=rate)
