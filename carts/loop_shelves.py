"""The store loop's shelves (pure NumPy, no Django): shelf controllers' sample blocks detected per gondola, changes
held back until their gondola settles, then released as shelf events (and the reach look's events) for fusion.
:class:`ShelfIntake` holds these methods of ``carts.loop.StoreLoop``, which inherits them: they read and write the
loop's state (its detectors, held changes, pending events, the reach look) and are no object of their own."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from sensors import weight

from .loop_state import LoopState


def controller_planogram(planogram: weight.Planogram, bin_codes: tuple[str, ...]) -> weight.Planogram:
    """``planogram`` restricted to one controller's bins, in its column order (the detector's bin index)."""
    known = set(bin_codes)
    return weight.Planogram(bin_codes=bin_codes,
                            facings={b: v for b, v in planogram.facings.items() if b in known},
                            products=planogram.products,
                            neighbours={b: tuple(n for n in v if n in known)
                                        for b, v in planogram.neighbours.items() if b in known})


def gondola_blocks(bin_codes: tuple[str, ...]) -> list[tuple[tuple[str, ...], np.ndarray | None]]:
    """A controller's bins (``bin_codes``, its column order) as its gondolas: ``[(gondola's bin codes, their
    column indices (k,) int64)]`` in order of first appearance, bins coded ``"<gondola>-<shelf>-<bin>"`` grouped by
    the part before the first ``-``. Columns are None when the whole controller is one group (one gondola, or
    codes without a ``-``, where the gondola is unknown and the controller stays whole). Changes merge into one
    shelf event only on neighbouring plates of one shelf, so a gondola is the widest unit detection needs."""
    groups: dict[str, list[int]] = {}
    for j, code in enumerate(bin_codes):
        if "-" not in code:
            return [(bin_codes, None)]
        groups.setdefault(code.split("-", 1)[0], []).append(j)
    if len(groups) <= 1:
        return [(bin_codes, None)]
    return [(tuple(bin_codes[j] for j in cols), np.asarray(cols, dtype=np.int64)) for cols in groups.values()]


def _check_block(t: np.ndarray, grams: np.ndarray, n_bins: int) -> None:
    """Raise ValueError unless ``grams`` is (len(t), ``n_bins``): a malformed block is refused whole, before any
    gondola's detector takes its share."""
    shape = np.shape(grams)
    if np.ndim(t) != 1 or shape != (np.shape(t)[0], n_bins):
        raise ValueError(f"a block of {n_bins} bins needs grams of shape (n, {n_bins}) for t (n,), got "
                         f"{shape} for t {np.shape(t)}")


class ShelfIntake(LoopState):
    """The shelf side of :class:`carts.loop.StoreLoop` (module docstring): sample blocks in, shelf events out to the
    sink and the loop's pending events. A mixin: the attributes it reads are the loop's (``carts.loop_state``)."""

    def on_samples(self, *, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray, rate_hz: float) -> None:
        """Feed one block of a shelf controller's samples: ``t`` (n,) s, ``grams`` (n, B) for ``bin_codes``.
        Detected per gondola (:func:`gondola_blocks`): one detector, one hold and one release of changes per
        gondola of the controller, so that the shelf events do not depend on how the store's gondolas are wired to
        controllers (no change is ever merged across gondolas, and a change is never held back by a shopper at
        another gondola). Raises ValueError from the detector on malformed samples (no gondola takes the block)."""
        parts = self._gondolas.get(bin_codes)
        if parts is None:
            parts = self._gondolas[bin_codes] = gondola_blocks(bin_codes)
        if len(parts) > 1:
            _check_block(t, grams, len(bin_codes))
        for codes, cols in parts:
            self._on_gondola(codes, t, grams if cols is None else grams[:, cols], rate_hz)

    def _on_gondola(self, codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray, rate_hz: float) -> None:
        det = self._detectors.get(codes)
        if det is None:
            det = self._detectors[codes] = weight.WeightEventDetector(len(codes), rate_hz, self.detector_config)
        self.stats.samples += int(grams.size)
        changes = det.push(t, grams)
        self._look.on_samples(codes, t, grams)
        if len(changes):
            self._held.setdefault(codes, []).append(changes)
        if codes in self._held:  # released as soon as this gondola's detector has settled past them
            self._release(force=False, only=codes)

    def shelves_restocked(self, bin_codes: Iterable[str]) -> int:
        """Forget the weight baselines (detectors), held changes and plate levels of every gondola with a bin in
        ``bin_codes``: its plates were refilled while no samples came (an emulation replaying a recording from its
        start on a store resumed from its checkpoint), so their next samples set a new baseline instead of reading
        as a put-back by nobody. Events already stored are kept. Returns the gondolas forgotten."""
        codes = set(bin_codes)
        gone = [g for g in set(self._detectors) | set(self._held) if codes & set(g)]
        for g in gone:
            self._detectors.pop(g, None)
            self._held.pop(g, None)
        self._look.forget(codes)
        return len(gone)

    def _release(self, *, force: bool, only: tuple[str, ...] | None = None) -> None:
        """Held changes of a gondola become shelf events once its detector has settled ``hold_gap_s`` past them,
        or none came for ``hold_s`` (or the oldest waited ``hold_max_s``): changes on neighbouring plates that
        settle a moment apart (two shoppers side by side, an item across two plates) then merge into one event as
        a batch detection would merge them."""
        if only is None:
            items = list(self._held.items())
        else:  # one gondola's (each block's case): looked up, not searched for among every gondola holding changes
            items = [(only, self._held[only])] if only in self._held else []
        for codes, parts in items:
            newest = max(float(c.t_end.max()) for c in parts)
            oldest = min(float(c.t_end.min()) for c in parts)
            det = self._detectors.get(codes)
            settled = det is not None and det.settled_until() >= newest + self.config.hold_gap_s
            if force or settled or self.now - newest >= self.config.hold_s or \
                    self.now - oldest >= self.config.hold_max_s:
                del self._held[codes]
                for event in weight.shelf_events_from_changes(weight.WeightChanges.concat(parts),
                                                              self._controller_planogram(codes)):
                    self._store_event(event)

    def _reach_events(self) -> None:
        """Shelf events of the reach-triggered look (``carts.reach_look``) whose windows are in."""
        for event in self._look.scan(self.now, settled=self._settled_until, holdings=self.sink.holdings):
            self._store_event(event)

    def _settled_until(self, codes: tuple[str, ...]) -> float:
        """Source time (s) before which every change of gondola ``codes`` (its bin codes) is a stored event (the detector has
        emitted it and the loop released it)."""
        det = self._detectors.get(codes)
        until = det.settled_until() if det is not None else -math.inf
        held = self._held.get(codes)
        if held:
            until = min(until, min(float(c.t_start.min()) for c in held))
        return until

    def _store_event(self, event: weight.ShelfEvent) -> None:
        self._look.on_event(event)
        self.stats.shelf_events += 1
        key = self.sink.shelf_event(event)
        if key is not None:
            self._pending.append((key, event))

    def _controller_planogram(self, codes: tuple[str, ...]) -> weight.Planogram:
        cached = self._planograms.get(codes)
        if cached is None:
            cached = self._planograms[codes] = controller_planogram(self.planogram, codes)
        return cached
