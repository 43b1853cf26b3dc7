"""Shelf events: settled changes merged over adjacent plates of a shelf and explained as products (pure NumPy).

Events (:func:`shelf_events_from_changes`):

8. Changes on the same or adjacent bins of a shelf that overlap in time join into one event; Δ = ΣΔ (an item
   taken and put back within one event nets to ~0 and gives nothing). More than :data:`MAX_EVENT_BINS` (4, the
   most plates any of the 237 labelled AutoCheckout events spans) is a disturbance — a shopper pressing or
   leaning on the shelf — never explained as products. A lean that sways (postural sway keeps the load moving,
   Winter, Gait & Posture 1995) keeps its plates active, so it settles, if at all, only when released, and nets
   out. A small change simultaneous with a ≥ 33× larger one on the same shelf is crosstalk (measured on
   BENCHMARK-1, :data:`CROSSTALK_RATIO`). A joined group that no facing product explains but whose bins each are
   explained by their own facings is two takes at one shelf at once: on two bins, one event with its parts for
   fusion to cut and decide jointly; on more, split into one event per bin.
9. A put-back that only a product facing another bin explains is flagged ``misplaced`` (a restock task, not a
   wrong credit); drift never becomes an event because the baseline (the tare) follows the level while idle.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from store.checks import rejected

from .changes import WeightChanges
from .explain import (FALLBACK_TAKE_WEIGHT, FALLBACK_WEIGHT, GROUP_SURE_P, UNEXPLAINED, Hypothesis, Planogram,
                      explain_change, hidden_share_hypotheses)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinChange:
    """The share of one bin in a :class:`ShelfEvent`: ``code``; ``t_start``, ``t_end`` float s since epoch UTC (that
    bin's own change interval); ``delta_g`` grams (after − before on that bin); ``noise_sd_g`` grams."""

    code: str
    t_start: float
    t_end: float
    delta_g: float
    noise_sd_g: float


@dataclass(frozen=True)
class ShelfEvent:
    """A weight change on one or more adjacent bins of one shelf, explained (the ``sensors`` → ``carts`` contract).

    ``bin_codes`` bins involved (detector column order); ``t_start``, ``t_end`` float s since epoch UTC;
    ``delta_g`` grams (after − before, summed over the bins; negative: a pick); ``noise_sd_g`` grams, sd of one
    level estimate of the summed bins; ``hypotheses`` ranked best first, including the unexplained outcome.

    ``misplaced``: the best explanation is a put-back (quantity < 0) of a product that does not face any of these
    bins (found by the store-wide fallback): the item is on the wrong shelf, a restock task should move it.
    ``disturbance``: the change spans more bins than any real pick does (:data:`MAX_EVENT_BINS`), e.g. a shopper
    pressing on the shelf; it is never explained as products (hypotheses = the unexplained outcome only).
    ``parts``: one :class:`BinChange` per detector change (ordered by bin, in ``bin_codes`` order, then by time; a
    bin touched twice with a stable moment between has two) when the event was merged from several changes —
    what fusion needs to tell apart two shoppers' takes side by side or one after the other (:func:`sub_event`);
    empty for an event built without them.
    ``weak``: a loss on one plate that passed only the detector's weak gate, with no full change beside it, kept
    because it fits one unit of a product facing that plate (a light item on a noisy plate); fusion takes it for
    a take only where a shopper's hand reached into the bin, and for noise elsewhere.
    Raises ``ValueError`` for no bins, ``t_end < t_start``, or parts that do not name exactly the event's bins.
    """

    bin_codes: tuple[str, ...]
    t_start: float
    t_end: float
    delta_g: float
    noise_sd_g: float
    hypotheses: tuple[Hypothesis, ...]
    misplaced: bool = False
    disturbance: bool = False
    parts: tuple[BinChange, ...] = ()
    weak: bool = False

    def __post_init__(self) -> None:
        if not self.bin_codes:
            raise ValueError("ShelfEvent.bin_codes must name at least one bin")
        if not self.t_end >= self.t_start:
            raise ValueError(f"ShelfEvent: t_end ({self.t_end}) < t_start ({self.t_start})")
        if self.parts and {p.code for p in self.parts} != set(self.bin_codes):
            raise ValueError(f"ShelfEvent.parts name bins {[p.code for p in self.parts]}, the event "
                             f"{list(self.bin_codes)}")

    @property
    def best(self) -> Hypothesis | None:
        """The top hypothesis, or None when the unexplained outcome ranks first (send to review)."""
        if not self.hypotheses or self.hypotheses[0].unexplained:
            return None
        return self.hypotheses[0]


#: Largest share of a simultaneous change on the same shelf that another group of plates may show and still be
#: taken for mechanical crosstalk (the shelf flexes and redistributes load). Measured on BENCHMARK-1: when 623 g
#: left plate 1-5-11, plate 1-5-9 (two plates away) settled 9–15 g lower (1.5–2.4 %) and plate 1-5-10 4 g lower.
CROSSTALK_RATIO = 0.03

#: Most bins one real pick or put-back spans. The 237 hand-labelled events of the AutoCheckout competition
#: (``labels/events_v14.json``, 46 test cases of this store) span 1 plate (119), 2 (105), 3 (11) or 4 (2): a
#: simultaneous change on more adjacent plates is a disturbance (a shopper pressing on the shelf), not items.
MAX_EVENT_BINS = 4


def _explain_bins(delta: float, noise: float, bin_codes: tuple[str, ...], planogram: Planogram,
                  max_quantity: int, gate_sigma: float, *, allow_fallback: bool = True, hidden_shares: bool = True,
                  ) -> tuple[list[Hypothesis], bool, tuple[str, ...]]:
    """Explain Δ on ``bin_codes``: facing products first, then (if allowed and nothing fits) the whole store with
    :data:`FALLBACK_WEIGHT`. Returns (hypotheses, whether the fallback was used, the facing barcodes)."""
    facing = tuple(dict.fromkeys(p for c in bin_codes for p in planogram.facings.get(c, ())))
    hyps: list[Hypothesis] = []
    if facing:
        hyps = explain_change(delta, noise, planogram.products.select(facing), max_quantity=max_quantity,
                              gate_sigma=gate_sigma)
    if not hyps or hyps[0].unexplained:  # no facing product fits better than the reject option
        hidden = hidden_share_hypotheses(delta, noise, bin_codes, planogram) if hidden_shares else []
        if hidden:
            log.info("bins %s: Δ=%.1f g fits no facing product whole; it may be the share of an item standing "
                     "across to a neighbouring plate that saw too little to detect", ",".join(bin_codes), delta)
        if allow_fallback:
            if facing:
                log.info("bins %s: Δ=%.1f g fits none of the facing products; trying the whole store",
                         ",".join(bin_codes), delta)
            return explain_change(delta, noise, planogram.products, max_quantity=max_quantity,
                                  gate_sigma=gate_sigma, extra=hidden,
                                  candidate_weight=FALLBACK_TAKE_WEIGHT if delta < 0 else FALLBACK_WEIGHT), True, facing
        if hidden:
            hyps = explain_change(delta, noise, planogram.products.select(()), gate_sigma=gate_sigma, extra=hidden)
    if not hyps:
        hyps = [Hypothesis(UNEXPLAINED, 0, 1.0, float(delta))]
    return hyps, False, facing


def _event(bin_codes: tuple[str, ...], t0: float, t1: float, delta: float, noise: float,
           hyps: list[Hypothesis], fallback: bool, facing: tuple[str, ...],
           parts: tuple[BinChange, ...] = ()) -> ShelfEvent:
    best = hyps[0] if hyps and not hyps[0].unexplained else None
    misplaced = bool(fallback and best is not None and best.quantity < 0 and best.barcode not in facing)
    if misplaced and best is not None:
        log.info("bins %s: Δ=%+.1f g is a put-back of %s × %d, which does not face these bins: misplaced",
                 ",".join(bin_codes), delta, best.barcode, -best.quantity)
    return ShelfEvent(bin_codes, t0, t1, delta, noise, tuple(hyps), misplaced=misplaced,
                      parts=parts if len(parts) > 1 else ())


def _parts(changes: WeightChanges, idx: np.ndarray, codes: tuple[str, ...]) -> tuple[BinChange, ...]:
    """One :class:`BinChange` per change of a merged group, by bin (column order) then by start time."""
    order = sorted((int(i) for i in idx), key=lambda i: (int(changes.bin_index[i]), float(changes.t_start[i])))
    return tuple(BinChange(codes[int(changes.bin_index[i])], float(changes.t_start[i]), float(changes.t_end[i]),
                           float(changes.delta_g[i]), float(changes.noise_sd_g[i])) for i in order)


def sub_event(event: ShelfEvent, which: Sequence[str] | Sequence[BinChange], planogram: Planogram, *,
              max_quantity: int = 6, gate_sigma: float = 5.0) -> ShelfEvent:
    """A part of a merged ``event`` as an event of its own: ``which`` names bins (every change of the event on
    them) or is a subset of :attr:`ShelfEvent.parts` (e.g. its earlier changes, when one shopper's take followed
    another's on the same plates). Δ = the sum of those changes, noise = √Σnoise², the union of their intervals,
    explained over the products facing their bins only (no store-wide fallback: a part of a merged event is a
    neighbour's take, not a misplaced item; and no hidden share, :func:`hidden_share_hypotheses`: the rest of an
    item standing across is the other part, seen). Fusion uses it to try a merged event as two takes.

    Raises ``ValueError`` when the event has no :attr:`ShelfEvent.parts` or ``which`` is empty or not a subset of
    its bins or parts."""
    if not event.parts:
        raise ValueError("sub_event: the event has no parts (it merged one change)")
    if which and all(isinstance(w, BinChange) for w in which):
        parts = tuple(p for p in event.parts if p in set(which))
        if len(parts) != len(set(which)):
            raise ValueError("sub_event: the changes given are not parts of the event")
    else:
        want = set(which)
        parts = tuple(p for p in event.parts if p.code in want)
        if not parts or {p.code for p in parts} != want:
            raise ValueError(f"sub_event: bins {sorted(map(str, want))} are not a non-empty subset of {list(event.bin_codes)}")
    delta = float(sum(p.delta_g for p in parts))
    noise = float(math.sqrt(sum(p.noise_sd_g ** 2 for p in parts)))
    codes = tuple(dict.fromkeys(p.code for p in parts))
    hyps, fallback, facing = _explain_bins(delta, noise, codes, planogram, max_quantity, gate_sigma,
                                           allow_fallback=False, hidden_shares=False)
    return _event(codes, min(p.t_start for p in parts), max(p.t_end for p in parts), delta, noise, hyps,
                  fallback, facing, parts)


def _split_by_bin(changes: WeightChanges, idx: np.ndarray, codes: tuple[str, ...], planogram: Planogram,
                  max_quantity: int, gate_sigma: float) -> list[ShelfEvent] | None:
    """One event per bin of a merged group when every bin's own Δ fits a product facing it; else None."""
    out: list[ShelfEvent] = []
    for b in sorted({int(x) for x in changes.bin_index[idx]}):
        sel = idx[changes.bin_index[idx] == b]
        code = (codes[b],)
        delta = float(changes.delta_g[sel].sum())
        noise = float(math.sqrt(float((changes.noise_sd_g[sel] ** 2).sum())))
        hyps, fallback, facing = _explain_bins(delta, noise, code, planogram, max_quantity, gate_sigma,
                                               allow_fallback=False, hidden_shares=False)
        if hyps[0].unexplained or hyps[0].likelihood < 0.5:
            return None
        out.append(_event(code, float(changes.t_start[sel].min()), float(changes.t_end[sel].max()), delta, noise,
                          hyps, fallback, facing))
    return out


def _components(changes: WeightChanges, members: np.ndarray, code_of: Sequence[str], planogram: Planogram,
                merge_gap_s: float) -> list[np.ndarray]:
    """Connected components of ``members`` (indices into ``changes``): two changes join when they are on the
    same bin or neighbouring bins (``planogram.neighbours``, either direction) and their intervals overlap once
    each is widened by ``merge_gap_s`` seconds; joining is transitive. Components in order of first member."""
    parent = {int(i): int(i) for i in members}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    order = members[np.argsort(changes.t_start[members], kind="stable")]
    starts = changes.t_start[order]
    for oi, i in enumerate(order):
        hi = changes.t_end[i] + 2 * merge_gap_s
        j_end = int(np.searchsorted(starts, hi, side="right"))
        near_i = set(planogram.neighbours.get(code_of[i], ()))
        for oj in range(oi + 1, j_end):
            j = order[oj]
            if (code_of[j] == code_of[i] or code_of[j] in near_i
                    or code_of[i] in planogram.neighbours.get(code_of[j], ())):
                if changes.t_start[j] - merge_gap_s <= changes.t_end[i] + merge_gap_s:
                    parent[find(int(j))] = find(int(i))
    groups: dict[int, list[int]] = {}
    for i in sorted(parent):
        groups.setdefault(find(i), []).append(i)
    return [np.asarray(m, dtype=np.int64) for m in groups.values()]


def _gains_and_losses(changes: WeightChanges, idx: np.ndarray, code_of: Sequence[str], planogram: Planogram,
                      merge_gap_s: float, net_min_g: float) -> list[np.ndarray]:
    """A merged group that lost weight on some bins and gained on others, cut into its losses and its gains.

    Weight cannot move between plates by itself, so a loss on one plate beside a gain on another at the same
    moment is two things: a take and a put-back (two shoppers side by side, or one shopper swapping items);
    netting them would hide both (a 2 × 206 g take beside a 381 g put-back nets to −30 g, no event). Per bin,
    changes of both signs whose net is below ``max(net_min_g, 5·√2·σ)`` are an item taken and put straight back
    (or a lean's press and release) on that plate: they cancel and are left out. The remaining losses and gains
    form components of their own (:func:`_components`). A group that moved one way only, or whose every bin
    nets out (a lean across plates, a look-and-return), comes back as it was (and nets out later)."""
    d = changes.delta_g[idx]
    if not ((d > 0).any() and (d < 0).any()):
        return [idx]
    kept = []
    for b in sorted({int(x) for x in changes.bin_index[idx]}):
        sel = idx[changes.bin_index[idx] == b]
        net = float(changes.delta_g[sel].sum())
        noise = float(math.sqrt(float((changes.noise_sd_g[sel] ** 2).sum())))
        both = (changes.delta_g[sel] > 0).any() and (changes.delta_g[sel] < 0).any()
        if both and abs(net) < max(net_min_g, 5.0 * math.sqrt(2.0) * noise):
            log.info("bin %s: %d changes at %.3f–%.3f net to Δ=%.1f g (taken and put straight back): left out",
                     code_of[int(sel[0])], len(sel), changes.t_start[sel].min(), changes.t_end[sel].max(), net)
            continue
        kept.append(sel)
    if not kept:
        return [idx]
    rest = np.concatenate(kept)
    out = []
    for sign in (-1.0, 1.0):
        part = rest[sign * changes.delta_g[rest] > 0]
        if part.size:
            out += _components(changes, part, code_of, planogram, merge_gap_s)
    return out


def _companions(changes: WeightChanges, planogram: Planogram, merge_gap_s: float,
                crosstalk_ratio: float) -> WeightChanges:
    """``changes`` without the weak ones that are no item's share: a weak change stays only beside a full change
    on a neighbouring bin, overlapping it in time (the merge rule), of the same sign, and larger than
    ``crosstalk_ratio`` of it (smaller is the shelf flexing, :data:`CROSSTALK_RATIO`)."""
    weak = np.flatnonzero(changes.weak)
    if weak.size == 0:
        return changes
    codes = planogram.bin_codes
    strong = np.flatnonzero(~changes.weak)
    keep = ~changes.weak.copy()
    for i in weak:
        ci = codes[int(changes.bin_index[i])]
        near = set(planogram.neighbours.get(ci, ()))
        for j in strong:
            cj = codes[int(changes.bin_index[j])]
            if not (cj in near or ci in planogram.neighbours.get(cj, ())):
                continue
            if (changes.t_start[j] - merge_gap_s <= changes.t_end[i] + merge_gap_s
                    and changes.t_start[i] - merge_gap_s <= changes.t_end[j] + merge_gap_s
                    and changes.delta_g[i] * changes.delta_g[j] > 0
                    and abs(changes.delta_g[i]) > crosstalk_ratio * abs(changes.delta_g[j])):
                keep[i] = True
                break
        if not keep[i] and _weak_take(changes, int(i), planogram):
            keep[i] = True
        elif not keep[i]:
            log.debug("bin %s: weak change Δ=%.1f g at %.3f with no full change beside it; dropped", ci,
                      changes.delta_g[i], changes.t_start[i])
    return changes[keep]


#: A weak change alone is kept as a possible take when one unit of a product facing its plate explains it with at
#: least this posterior (:func:`explain_change`, reject option included).
WEAK_TAKE_MIN_LIKELIHOOD = 0.5


def _weak_take(changes: WeightChanges, i: int, planogram: Planogram) -> bool:
    """Whether weak change ``i`` (no full change beside it) is worth an event: a loss that one unit of a product
    facing its plate explains (:data:`WEAK_TAKE_MIN_LIKELIHOOD`). A light item (20–40 g) on a noisy plate passes
    only the weak gate; noise that fits a facing unit by chance is rare (on the simulator's development sessions,
    none of ~120 weak changes alone that were noise fitted one, both real ones did), and fusion still needs a hand
    that reached into the bin (``ShelfEvent.weak``). Gains stay dropped: a put-back is of a held item, not worth a
    noisy guess."""
    if changes.delta_g[i] >= 0:
        return False
    code = planogram.bin_codes[int(changes.bin_index[i])]
    facing = planogram.facings.get(code, ())
    if not facing:
        return False
    hyps = explain_change(float(changes.delta_g[i]), float(changes.noise_sd_g[i]), planogram.products.select(facing),
                          max_quantity=1)
    return not hyps[0].unexplained and hyps[0].quantity == 1 and hyps[0].likelihood >= WEAK_TAKE_MIN_LIKELIHOOD


def _with_companions_if_they_fit(changes: WeightChanges, idx: np.ndarray, codes: tuple[str, ...],
                                 planogram: Planogram, max_quantity: int, gate_sigma: float) -> np.ndarray:
    """A group's members, its weak ones kept only when they make the group fit a facing product better (the
    best product hypothesis more likely with them than without): a companion completes an item, a wobble beside
    a pick only blurs it. A group of weak changes alone is empty."""
    weak = changes.weak[idx]
    if not weak.any():
        return idx
    strong = idx[~weak]
    if strong.size == 0:
        return strong

    return idx if _fit(changes, idx, codes, planogram, max_quantity, gate_sigma) > \
        _fit(changes, strong, codes, planogram, max_quantity, gate_sigma) else strong


def _fit(changes: WeightChanges, members: np.ndarray, codes: tuple[str, ...], planogram: Planogram,
         max_quantity: int, gate_sigma: float) -> float:
    """Likelihood of the best facing product × quantity for the summed change of ``members`` (0: none fits)."""
    b = tuple(codes[i] for i in sorted({int(x) for x in changes.bin_index[members]}))
    hyps, _, _ = _explain_bins(float(changes.delta_g[members].sum()),
                               float(math.sqrt(float((changes.noise_sd_g[members] ** 2).sum()))), b, planogram,
                               max_quantity, gate_sigma, allow_fallback=False, hidden_shares=False)
    return max((h.likelihood for h in hyps if not h.unexplained), default=0.0)


def _without_crosstalk_if_it_fits(changes: WeightChanges, idx: np.ndarray, codes: tuple[str, ...],
                                  planogram: Planogram, max_quantity: int, gate_sigma: float,
                                  crosstalk_ratio: float) -> np.ndarray:
    """A group's members without the bins whose change is at most ``crosstalk_ratio`` of the group's largest
    (the shelf flexing under a heavy item: BENCHMARK-1's 623 g pick moved the plates beside it by 4–15 g, and a
    1.5 kg item moves them past the 10 g gate), when the rest then fits a facing product better. A light item's
    share beside a heavy one's is kept when the group needs it."""
    if idx.size < 2 or crosstalk_ratio <= 0:
        return idx
    per_bin = {int(b): float(changes.delta_g[idx][changes.bin_index[idx] == b].sum())
               for b in set(changes.bin_index[idx].tolist())}
    loudest = max(abs(v) for v in per_bin.values())
    small = {b for b, v in per_bin.items() if abs(v) <= crosstalk_ratio * loudest}
    if not small or len(small) == len(per_bin):
        return idx
    rest = idx[~np.isin(changes.bin_index[idx], list(small))]
    if _fit(changes, rest, codes, planogram, max_quantity, gate_sigma) > \
            _fit(changes, idx, codes, planogram, max_quantity, gate_sigma):
        log.info("bins %s: changes of at most %.0f %% of the group's largest taken for crosstalk; left out",
                 ",".join(codes[b] for b in sorted(small)), 100 * crosstalk_ratio)
        return rest
    return idx


def shelf_events_from_changes(changes: WeightChanges, planogram: Planogram, *,
                              merge_gap_s: float = 0.5, max_quantity: int = 6, gate_sigma: float = 5.0,
                              crosstalk_ratio: float = CROSSTALK_RATIO,
                              max_event_bins: int = MAX_EVENT_BINS, net_min_g: float = 10.0) -> list[ShelfEvent]:
    """Merge simultaneous changes on adjacent bins of one shelf into shelf events and explain each.

    ``changes.bin_index`` indexes ``planogram.bin_codes``. Two changes join when their bins are neighbours
    (``planogram.neighbours``, either direction) and their intervals overlap once each is widened by
    ``merge_gap_s`` seconds; joining is transitive (an item across plates 3–4 and another across 4–5 at the same
    moment become one event). A merged event has Δ = ΣΔ, noise = √Σnoise², the union of the time intervals, and
    its bins in column order. Candidates are the products facing any of its bins; if there are none, or none of
    them fits within ``gate_sigma`` (a misplaced put-back), every product of the store is tried with likelihoods
    weighted by :data:`FALLBACK_WEIGHT`, so such guesses rank below the unexplained outcome unless they fit
    clearly.

    Crosstalk: a merged group whose |ΣΔ| is at most ``crosstalk_ratio`` × |ΣΔ| of another group on the same shelf
    (a connected component of the neighbour graph) that overlaps it in time (same widening) is dropped with an
    INFO log line (see :data:`CROSSTALK_RATIO`); set ``crosstalk_ratio=0`` to keep everything.

    Weak changes (``WeightChanges.weak``: below the full gate) join only as the small share of an item beside a
    full change on a neighbouring bin (same time, same sign, more than ``crosstalk_ratio`` of it), and only when
    with them the group fits a facing product better than without; elsewhere they are dropped, except a
    weak loss alone that one unit of a product facing its plate explains (:func:`_weak_take`): an event flagged
    ``weak``, which fusion counts only where a hand reached in.

    Changes on the SAME bin join too (same rule): an item taken and put back within one event, or the press and
    release of a lean, net out; a joined group of several changes whose |ΣΔ| is below ``net_min_g`` (10 g, the
    detector's ``min_delta_g``) and 5 σ of its noise gives no event (INFO log). A group that lost weight on some
    bins and gained on others is first cut into its losses and its gains (:func:`_gains_and_losses`): weight
    does not move between plates by itself, so that is a take beside a put-back, not one thing to net.

    Each event keeps one :class:`BinChange` per change in ``parts`` (when it has several), so fusion can cut it
    again by place or by time (:func:`sub_event`).

    Two shoppers at one shelf: a merged group whose ΣΔ fits none of its facing products (it needed the store-wide
    fallback, or nothing fits) while EVERY bin's own Δ fits a product facing that bin is two takes (an item
    standing across two plates never qualifies: neither part alone weighs a unit). On two bins it stays one event
    with its ``parts`` and only the unexplained outcome, so that fusion cuts it and chooses the two shoppers
    jointly (decided apart, one shopper's reach near both plates won both); on more bins it is split into one event
    per bin.

    A group spanning more than ``max_event_bins`` bins (default :data:`MAX_EVENT_BINS`) is a disturbance (a lean,
    a push on the shelf): one event flagged ``disturbance`` with only the unexplained outcome. A put-back whose best
    explanation is a product that faces none of the event's bins is flagged ``misplaced``.

    Events are returned in order of ``t_start``. Raises ``ValueError`` for a bin index outside
    ``planogram.bin_codes``, a negative ``merge_gap_s``/``crosstalk_ratio`` or ``max_event_bins < 1``.
    """
    if not (math.isfinite(merge_gap_s) and merge_gap_s >= 0):
        raise ValueError(f"merge_gap_s must be ≥ 0, got {merge_gap_s}")
    if not (math.isfinite(crosstalk_ratio) and crosstalk_ratio >= 0):
        raise ValueError(f"crosstalk_ratio must be ≥ 0, got {crosstalk_ratio}")
    if isinstance(max_event_bins, bool) or not isinstance(max_event_bins, (int, np.integer)) or max_event_bins < 1:
        raise ValueError(f"max_event_bins must be an integer ≥ 1, got {max_event_bins!r}")
    if len(changes) == 0:
        return []
    codes = planogram.bin_codes
    if int(changes.bin_index.max()) >= len(codes):
        bad = int(changes.bin_index.max())
        raise rejected(log, f"shelf_events_from_changes: change on bin index {bad} but the planogram has {len(codes)} bins")
    changes = _companions(changes, planogram, merge_gap_s, crosstalk_ratio)
    n = len(changes)
    if n == 0:
        return []
    code_of = [codes[int(b)] for b in changes.bin_index]
    members_all = [g for group in _components(changes, np.arange(n), code_of, planogram, merge_gap_s)
                   for g in _gains_and_losses(changes, group, code_of, planogram, merge_gap_s, net_min_g)]
    shelf_of = planogram.shelf_numbers()
    g_shelf = [shelf_of[code_of[int(m[0])]] for m in members_all]
    g_delta = [float(changes.delta_g[m].sum()) for m in members_all]
    g_t0 = [float(changes.t_start[m].min()) - merge_gap_s for m in members_all]
    g_t1 = [float(changes.t_end[m].max()) + merge_gap_s for m in members_all]
    events: list[ShelfEvent] = []
    def louder(gi: int) -> list[int]:
        """Groups on the same shelf, overlapping group ``gi`` in time, of which it could be the crosstalk."""
        return [gj for gj in range(len(members_all))
                if gj != gi and g_shelf[gj] == g_shelf[gi] and g_t0[gj] <= g_t1[gi] and g_t0[gi] <= g_t1[gj]
                and abs(g_delta[gi]) <= crosstalk_ratio * abs(g_delta[gj])]

    for gi, idx in enumerate(members_all):
        if changes.weak[idx].all():  # weak changes with no full change beside them: a light take, or nothing
            if idx.size == 1 and not louder(gi) and _weak_take(changes, int(idx[0]), planogram):
                i = int(idx[0])
                code = (codes[int(changes.bin_index[i])],)
                hyps, fallback, facing = _explain_bins(float(changes.delta_g[i]), float(changes.noise_sd_g[i]), code,
                                                       planogram, max_quantity, gate_sigma, allow_fallback=False,
                                                       hidden_shares=False)
                log.info("bin %s: a weak loss of %.1f g at %.3f fits a facing unit: an event for fusion to confirm",
                         code[0], changes.delta_g[i], changes.t_start[i])
                events.append(replace(_event(code, float(changes.t_start[i]), float(changes.t_end[i]),
                                             float(changes.delta_g[i]), float(changes.noise_sd_g[i]), hyps, fallback,
                                             facing), weak=True))
            continue
        idx = _with_companions_if_they_fit(changes, idx, codes, planogram, max_quantity, gate_sigma)
        if idx.size == 0:
            continue
        idx = _without_crosstalk_if_it_fits(changes, idx, codes, planogram, max_quantity, gate_sigma, crosstalk_ratio)
        bins = sorted({int(b) for b in changes.bin_index[idx]})
        bin_codes = tuple(codes[b] for b in bins)
        delta = float(changes.delta_g[idx].sum())  # the members kept (weak shares and crosstalk left out)
        shadow = louder(gi)
        if shadow:
            log.info("bins %s: Δ=%.1f g at %.3f taken for crosstalk of Δ=%.1f g on the same shelf; dropped",
                     ",".join(bin_codes), delta, g_t0[gi] + merge_gap_s, g_delta[shadow[0]])
            continue
        t0, t1 = float(changes.t_start[idx].min()), float(changes.t_end[idx].max())
        noise = float(math.sqrt(float((changes.noise_sd_g[idx] ** 2).sum())))
        if len(idx) > 1 and abs(delta) < max(net_min_g, 5.0 * math.sqrt(2.0) * noise):
            log.info("bins %s: %d changes at %.3f–%.3f net to Δ=%.1f g (taken and put back, or a lean): no event",
                     ",".join(bin_codes), len(idx), t0, t1, delta)
            continue
        if len(bins) > max_event_bins:
            log.info("bins %s: Δ=%.1f g at %.3f spans %d bins (> %d): a disturbance, not explained as products",
                     ",".join(bin_codes), delta, t0, len(bins), max_event_bins)
            events.append(ShelfEvent(bin_codes, t0, t1, delta, noise, (Hypothesis(UNEXPLAINED, 0, 1.0, delta),),
                                     disturbance=True, parts=_parts(changes, idx, codes)))
            continue
        hyps, fallback, facing = _explain_bins(delta, noise, bin_codes, planogram, max_quantity, gate_sigma)
        if len(bins) > 1 and (fallback or hyps[0].unexplained or hyps[0].likelihood < GROUP_SURE_P):
            split = _split_by_bin(changes, idx, codes, planogram, max_quantity, gate_sigma)
            if split is not None and len(split) == 2:
                # two takes side by side: one event whose parts fusion decides jointly (one reach rarely takes
                # from both plates, so who took each is decided for the pair; two separate events each counted
                # the same reach)
                log.info("bins %s: Δ=%.1f g fits no facing product as a whole but each bin fits its own: two "
                         "takes side by side, left to fusion to cut", ",".join(bin_codes), delta)
                events.append(ShelfEvent(bin_codes, t0, t1, delta, noise, (Hypothesis(UNEXPLAINED, 0, 1.0, delta),),
                                         parts=_parts(changes, idx, codes)))
                continue
            if split is not None:
                log.info("bins %s: Δ=%.1f g fits no facing product as a whole but each bin fits its own: %d "
                         "simultaneous events", ",".join(bin_codes), delta, len(split))
                events.extend(split)
                continue
        events.append(_event(bin_codes, t0, t1, delta, noise, hyps, fallback, facing, _parts(changes, idx, codes)))
    events.sort(key=lambda e: (e.t_start, e.bin_codes))
    return events
