"""Shelf events of a recording, offline (pure Python + NumPy, no Django): what ``manage.py shelf_events REC``
prints. The planogram comes from the recording's ``store.json`` (docs/recording-format.md), the samples from its
``shelves.csv`` (one detector per shelf controller, i.e. per time grid, fed in blocks as live; the store loop
itself detects per gondola of a controller and holds changes back to merge them, ``carts.loop``, so its events
can differ from these where shoppers are busy at several gondolas of one controller at once).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from store.recording import Recording, ShelfSamples

from sensors import weight


def planogram_from_store(store: dict) -> weight.Planogram:
    """``store.json`` (parsed) → :class:`sensors.weight.Planogram` over all its bins (sorted by code), with each
    bin's neighbours = the bins numbered ±1 on the same shelf. Product sd defaults to 0 when absent (the
    explanation floors it). Raises ``ValueError``/``KeyError`` for a store dict that breaks the format."""
    codes: list[str] = []
    by_shelf: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
    for g in store["gondolas"]:
        for s in g["shelves"]:
            for b in s.get("bins", []):
                codes.append(b["code"])
                by_shelf[(int(g["number"]), int(s["number"]))][int(b["number"])] = b["code"]
    neighbours: dict[str, tuple[str, ...]] = {}
    for numbers in by_shelf.values():
        for n, code in numbers.items():
            neighbours[code] = tuple(c for m in (n - 1, n + 1) if (c := numbers.get(m)))
    products = store["products"]
    pw = weight.ProductWeights(np.array([p["barcode"] for p in products], dtype=object),
                               np.array([float(p["unit_weight_g"]) for p in products], dtype=np.float64),
                               np.array([float(p.get("unit_weight_sd_g", 0.0)) for p in products], dtype=np.float64))
    facings: dict[str, list[str]] = defaultdict(list)
    for f in store["facings"]:
        if f["barcode"] not in facings[f["bin"]]:
            facings[f["bin"]].append(f["barcode"])
    return weight.Planogram(tuple(sorted(codes)), {k: tuple(v) for k, v in facings.items()}, pw, neighbours)


def _restricted(planogram: weight.Planogram, bin_codes: tuple[str, ...]) -> weight.Planogram:
    known = set(bin_codes)
    return weight.Planogram(bin_codes, {b: v for b, v in planogram.facings.items() if b in known},
                            planogram.products,
                            {b: tuple(n for n in v if n in known) for b, v in planogram.neighbours.items()
                             if b in known})


def shelf_events_of(shelves: Iterable[ShelfSamples], planogram: weight.Planogram, *, block: int = 12,
                    config: weight.DetectorConfig = weight.DetectorConfig()) -> list[weight.ShelfEvent]:
    """Run the streaming detector over each controller's samples in blocks of ``block`` rows (as live) and turn
    each block's changes into shelf events with that controller's planogram (as the pipeline does). Returns all
    events in order of ``t_start``. Raises ``ValueError`` for a bad block size or a bin unknown to the planogram."""
    if block < 1:
        raise ValueError(f"block must be ≥ 1, got {block}")
    events: list[weight.ShelfEvent] = []
    for s in shelves:
        if s.t.shape[0] == 0:
            continue
        plan = _restricted(planogram, s.bin_codes)
        rate = s.rate_hz or 60.0
        det = weight.WeightEventDetector(len(s.bin_codes), rate, config)
        for i in range(0, s.t.shape[0], block):
            ch = det.push(s.t[i:i + block], s.grams[i:i + block])
            if len(ch):
                events.extend(weight.shelf_events_from_changes(ch, plan))
        ch = det.flush()
        if len(ch):
            events.extend(weight.shelf_events_from_changes(ch, plan))
    events.sort(key=lambda e: (e.t_start, e.bin_codes))
    return events


def event_line(event: weight.ShelfEvent, t0: float = 0.0) -> str:
    """One printable line: time (s from ``t0``), bins, Δ grams, best product × quantity with its likelihood, the
    runner-up, and flags (misplaced, disturbance)."""
    hyps = event.hypotheses

    def fmt(h: weight.Hypothesis | None) -> str:
        if h is None:
            return "-"
        if h.unexplained:
            return f"unexplained ({h.likelihood:.3f})"
        return f"{h.barcode} × {h.quantity} ({h.likelihood:.3f})"

    best = hyps[0] if hyps else None
    runner = hyps[1] if len(hyps) > 1 else None
    flags = " ".join(f for f, on in (("misplaced", event.misplaced), ("disturbance", event.disturbance)) if on)
    line = (f"{event.t_start - t0:9.3f}–{event.t_end - t0:.3f} s  {','.join(event.bin_codes):<12} "
            f"{event.delta_g:+9.1f} g  best {fmt(best)}  runner-up {fmt(runner)}")
    return line + (f"  [{flags}]" if flags else "")


def recording_shelf_events(recording: Recording, *, block: int = 12) -> list[weight.ShelfEvent]:
    """All shelf events of ``recording`` (see :func:`shelf_events_of`)."""
    return shelf_events_of(recording.shelves, planogram_from_store(recording.store), block=block)
