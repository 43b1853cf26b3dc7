"""Weight events from shelf load cells: detection, product × quantity explanation, shelf events (pure NumPy).

Pipeline (DESIGN.md, ``sensors`` → ``carts``)::

    raw samples (n, B) grams ──WeightEventDetector──▶ WeightChanges ──shelf_events_from_changes──▶ [ShelfEvent]
                                                                      (merge adjacent bins, explain_change)

Detection, per bin, vectorised over bins (one NumPy operation covers all B bins; the only Python loop is over
samples). Sources of the scheme: the weight-event detectors used on this very store, AIM3S (Ruiz et al.,
"AIM3S: Autonomous Inventory Monitoring through Multi-Modal Sensing for Cashier-Less Convenience Stores",
BuildSys 2019; CarlosRDomin/AIM3S ``detectWeightEvents.m``: moving variance > 100 g², ≥ 60 samples active then
≥ 60 samples stable, |Δ| > 10 g) and the CMU competition entry (AutoCheckout-CMU/AutoCheckout ``WeightTrigger.py``:
rolling std > 40 g per shelf, |Δ| > 10 g):

1. Rolling statistics over a centred window of ``window_s`` (default 0.5 s = 31 samples at 60 Hz): mean ``m`` and
   standard deviation ``s`` of the valid (non-NaN) samples. A window with fewer than ``min_valid_frac`` valid
   samples is a gap: it is never stable, never active, and updates nothing.
2. Two noise figures per bin, learnt only while the bin is stable, as running medians (robust to bursts; a
   multiplicative sign update, i.e. Robbins–Monro stochastic approximation of a quantile, Robbins & Monro 1951):
   ``spread`` = the median window sd (the "sd > 20 g" of the literature, but each plate's own), and ``sd_diff`` =
   1.4826 × median |m(t) − m(t − window)|, the spread of the difference of two stable levels one window apart,
   i.e. the null distribution of a measured Δ (it includes the slow wander and vibration the per-sample sd
   misses and that white-noise formulas underestimate).
3. A stable bin becomes ACTIVE when ``s > clip(activity_k · spread, activity_floor_g, activity_ceiling_g)`` (the
   ceiling, 20 g, is the AIM3S/CMU constant: a noisy plate is never less sensitive than the literature) or when
   its level leaves the baseline, ``|m − baseline| > max(level_floor_g, level_k · sd_diff)`` (catches a change too
   slow or small to raise the sd).
4. The baseline follows the level while stable through an exponential average with time constant
   ``baseline_tau_s`` (slow drift and creep are absorbed and never become events).
5. An ACTIVE bin closes after ``stable_after_s`` of consecutive calm windows (sd ≤ ``close_k`` × the activity
   threshold, a hysteresis) whose level stays within the level threshold of the first; ``after`` = mean level
   over that run, ``before`` = baseline when the activity began, Δ = after − before. The change is reported if
   ``|Δ| ≥ max(min_delta_g, delta_k · sd_diff)``; in every case the baseline becomes ``after``. A single-sample
   spike or a NaN burst makes the bin active or gapped for a moment but leaves the level where it was, so Δ ≈ 0
   and nothing is reported. It closes sooner, after ``quick_after_s``, when those windows are quiet and their level
   holds within ``quick_k`` level-noise sds (a quiet plate needs less evidence than a noisy one; ``after`` is then
   their mean).
6. A bin is armed (may start an activity) after ``stable_before_s`` of stable samples: the first level is known.

Times: every sample carries its own time (seconds since epoch UTC); ``t_start``/``t_end`` are the times of the
first and last active window centres, so they bracket the raw change with about half a window to spare each
side (the hand is there a little before and after the weight moves: what fusion wants). A time gap between
samples longer than 1.5 sample periods is filled with NaN rows (up to one window), so windows never straddle it.

7. A settled change is held back while another bin of the same detector is still active with an activity that
   began around it (``group_window_s``, at most ``max_hold_s``), so the pieces of one item standing across
   plates, or of a lean on the shelf, leave the detector together and can be merged (step 8). An isolated
   change is never held.

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

Explanation (:func:`explain_change`): Gaussian likelihood of Δ under "q units of product p taken", mean −q·μ_p,
variance 2·noise² (the before and after levels each carry the level noise) + |q|·σ_p² (the sum of |q|
independent unit weights, each N(μ_p, σ_p²), as in AIM3S's product weight model, ``computeWeightProbability.m``),
plus an explicit "unexplained" outcome (a reject option) so an event nothing fits goes to review.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Barcode of the "nothing fits" outcome in a hypothesis list.
UNEXPLAINED = ""
#: Weight given to store-wide fallback candidates (a bin with no facing, or a change its facings cannot explain):
#: their likelihoods are multiplied by this before normalising, so the unexplained outcome gains the rest.
FALLBACK_WEIGHT = 0.5
#: The same for a weight loss, per product: taking a product that does not face the plate needs someone to have
#: left it there first (a misplaced put-back: a quarter of put-backs at most, ~6 % of events), and that chance is
#: spread over the store's ~100 products, dozens of which any loss fits by chance: 0.05 / 100 ≈ 0.0005, raised
#: tenfold so that a clear fit of a non-facing product still beats the reject option.
FALLBACK_TAKE_WEIGHT = 0.005

_MAD_TO_SD = 1.4826  # sd of a Gaussian = 1.4826 × its median absolute deviation (Rousseeuw & Croux 1993)


# --------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DetectorConfig:
    """Knobs of :class:`WeightEventDetector`. Times in seconds, weights in grams.

    Defaults and where they come from:

    - ``window_s = 0.5``: rolling window (centred). AIM3S used 90 samples (1.5 s) at 60 Hz, CMU 60 samples (1 s);
      on BENCHMARK-1 a real pick takes ~0.25 s, and 0.5 s halves the latency while keeping ≥ 30 samples.
    - ``min_valid_frac = 0.6``: a window needs this share of non-NaN samples, else it is a gap.
    - ``stable_before_s = 0.5``, ``stable_after_s = 0.5``: AIM3S/CMU ask ≥ 0.5–1 s stable around an event.
    - ``quick_after_s = 0.25``, ``quick_k = 2``: a noise-adaptive early confirmation (a sequential test on the
      settled level): an activity also closes once ``quick_after_s`` of consecutive windows are quiet (sd ≤ the
      activity threshold itself, no hysteresis) and their means stay within ``quick_k`` × the bin's own sd of a
      stable-level difference of the first of them; ``after`` is then the mean over those windows. A quiet plate
      whose item has stopped moving confirms in ``quick_after_s``; a swinging or noisy one fails the test, keeps
      restarting it, and waits for ``stable_after_s`` as before (history and measurements: docs/ingestion.md).
    - ``min_delta_g = 10``: AIM3S ``epsMean`` and CMU ``mean_shelf``, both 10 g.
    - ``delta_k = 5``: and |Δ| must be ≥ 5 × the bin's own sd of a stable-level difference (a 5 σ gate).
    - ``activity_k = 4``, ``activity_floor_g = 3``, ``activity_ceiling_g = 20``: active when the window sd exceeds
      4 × the plate's median window sd, clipped to [3 g, 20 g]; 20 g = √(AIM3S 100 g² … 400 g²) and close to
      CMU's 40 g per shelf of 12 plates. The floor keeps quantisation (~0.25 g steps) and the slow wander of the
      quietest plates (BENCHMARK-1: window sd up to ~2.3 g on plates whose median is 0.6 g) from triggering; a
      step of Δ raises the window sd to Δ/2, so every step ≥ 6 g still does.
    - ``weak_k = 3``, ``weak_min_g = 3``: a change that fails the gate above but passes max(3 g, 3 σ) comes out
      flagged ``weak``: the small share of an item standing across two plates (the labelled AutoCheckout events:
      105 of 237 span two plates; a 40 g item split 80/20 leaves 8 g on one). It joins an event only beside a
      change that passed the full gate at the same moment — there the question is how much moved, not whether
      anything did, so the 5 σ needed against false alarms over hundreds of plates is not; alone it is dropped
      unless one unit of a facing product explains a loss (a light item on a noisy plate: ``ShelfEvent.weak``).
    - ``close_k = 1.5``: hysteresis (a Schmitt trigger): an activity closes on windows with sd up to 1.5 × the
      threshold that opened it, so a plate whose noise rose (vibration) is not held active indefinitely; the level
      steadiness check still guards the settled level.
    - ``level_k = 4``, ``level_floor_g = 5``: active when the level leaves the baseline by more than this.
    - ``baseline_tau_s = 1.0``: time constant of the stable baseline; a drift of r g/s lags by r·τ g, far below
      the level threshold for any real creep (load cells creep ~0.02–0.1 % of load over minutes).
    - ``noise_tau_s = 10``: adaptation time of the noise medians; ``noise_floor_g = 0.25`` (the quantisation step
      seen on BENCHMARK-1).
    - ``tail_min_s = 0.25``: at :meth:`WeightEventDetector.flush`, an open activity is closed only if it already
      has this much stable tail.
    - ``group_window_s = 1.0``, ``max_hold_s = 6.0``: a settled change is held back (not returned by ``push``)
      while another bin of the detector is still active whose activity started within ``group_window_s`` of
      the change's interval, so the changes of one item standing across plates, which settle a few samples
      apart, or the pieces of a lean on the shelf, come out of the same ``push`` and
      :func:`shelf_events_from_changes` can merge (and net) them (1.0 s = the two 0.5 s widenings of its
      ``merge_gap_s``). A bin that was already busy long before does not hold others back (a vibrating plate
      must not delay every event), and nothing is held beyond ``max_hold_s`` after its ``t_end`` (a lean
      lasting a few seconds; postural sway keeps such plates active, Winter, Gait & Posture 1995).
      An isolated change is never held: it goes out when it settles.

    Raises ``ValueError`` for non-positive or inconsistent values.
    """

    window_s: float = 0.5
    min_valid_frac: float = 0.6
    stable_before_s: float = 0.5
    stable_after_s: float = 0.5
    quick_after_s: float = 0.25
    quick_k: float = 2.0
    min_delta_g: float = 10.0
    delta_k: float = 5.0
    activity_k: float = 4.0
    activity_floor_g: float = 3.0
    activity_ceiling_g: float = 20.0
    close_k: float = 1.5
    weak_k: float = 3.0
    weak_min_g: float = 3.0
    level_k: float = 4.0
    level_floor_g: float = 5.0
    baseline_tau_s: float = 1.0
    noise_tau_s: float = 10.0
    noise_floor_g: float = 0.25
    tail_min_s: float = 0.25
    group_window_s: float = 1.0
    max_hold_s: float = 6.0

    def __post_init__(self) -> None:
        for name in ("window_s", "stable_before_s", "stable_after_s", "quick_after_s", "quick_k", "min_delta_g", "delta_k", "activity_k", "close_k",
                     "weak_k", "weak_min_g",
                     "activity_floor_g", "activity_ceiling_g", "level_k", "level_floor_g", "baseline_tau_s",
                     "noise_tau_s", "noise_floor_g", "tail_min_s", "group_window_s", "max_hold_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DetectorConfig.{name} must be a positive number, got {value!r}")
        if not 0.5 < self.min_valid_frac <= 1.0:
            raise ValueError(f"DetectorConfig.min_valid_frac must be in (0.5, 1], got {self.min_valid_frac}")
        if self.activity_ceiling_g < self.activity_floor_g:
            raise ValueError(f"DetectorConfig.activity_ceiling_g ({self.activity_ceiling_g}) must be ≥ "
                             f"activity_floor_g ({self.activity_floor_g})")
        if self.close_k < 1.0:
            raise ValueError(f"DetectorConfig.close_k must be ≥ 1, got {self.close_k}")
        if self.quick_after_s > self.stable_after_s:
            raise ValueError(f"DetectorConfig.quick_after_s ({self.quick_after_s}) must be ≤ stable_after_s "
                             f"({self.stable_after_s})")
        if self.tail_min_s > self.stable_after_s:
            raise ValueError(f"DetectorConfig.tail_min_s ({self.tail_min_s}) must be ≤ stable_after_s "
                             f"({self.stable_after_s})")


# --------------------------------------------------------------------------------------------- typed containers
def _check_1d(name: str, arr: object, n: int | None, dtype: type) -> int:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"{name} must have shape ({'n' if n is None else n},), got {arr.shape}")
    if arr.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype)}, got {arr.dtype}")
    return int(arr.shape[0])


@dataclass(frozen=True)
class WeightChanges:
    """Settled weight changes on bins.

    ``bin_index`` (n,) int64, column into the detector's bins; ``t_start``, ``t_end`` (n,) float64 s since epoch
    UTC; ``before_g``, ``after_g`` (n,) float64 grams, the stable levels before and after the activity;
    ``delta_g`` (n,) float64 grams = after − before (negative: weight left the shelf); ``noise_sd_g`` (n,) float64
    grams, the sd of ONE stable level estimate on that bin (so Δ has sd ≈ √2 · noise_sd_g without any item).

    ``weak`` (n,) bool: a change below the detector's gate for an isolated change (``min_delta_g``, ``delta_k``)
    but above its companion gate (``weak_min_g``, ``weak_k``): never an event on its own, only the small share of
    an item standing across this bin and a neighbour whose own change passed the gate
    (:func:`shelf_events_from_changes` joins it there and drops it anywhere else). None → all False.

    ``changes[mask]`` (bool mask, index array or slice) returns a new ``WeightChanges``; :meth:`strong` the
    changes that are events on their own. Raises ``ValueError`` (expected vs actual shape or dtype) on malformed
    arrays.
    """

    bin_index: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    before_g: np.ndarray
    after_g: np.ndarray
    delta_g: np.ndarray
    noise_sd_g: np.ndarray
    weak: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = _check_1d("WeightChanges.bin_index", self.bin_index, None, np.int64)
        for name in ("t_start", "t_end", "before_g", "after_g", "delta_g", "noise_sd_g"):
            _check_1d(f"WeightChanges.{name}", getattr(self, name), n, np.float64)
        if self.weak is None:
            object.__setattr__(self, "weak", np.zeros(n, dtype=bool))
        _check_1d("WeightChanges.weak", self.weak, n, np.bool_)
        if n and np.any(self.bin_index < 0):
            raise ValueError("WeightChanges.bin_index must be ≥ 0")
        if n and np.any(self.t_end < self.t_start):
            bad = int(np.flatnonzero(self.t_end < self.t_start)[0])
            raise ValueError(f"WeightChanges: t_end < t_start at row {bad}")

    def __len__(self) -> int:
        return int(self.bin_index.shape[0])

    def __getitem__(self, index: np.ndarray | slice | Sequence[int]) -> "WeightChanges":
        if isinstance(index, (int, np.integer)):
            index = np.array([index])
        return WeightChanges(*(np.asarray(getattr(self, f)[index]) for f in _CHANGE_FIELDS))

    def strong(self) -> "WeightChanges":
        """The changes that are events on their own (``weak`` ones left out)."""
        return self[~self.weak]

    @classmethod
    def empty(cls) -> "WeightChanges":
        """No changes (all arrays of length 0)."""
        return cls(np.zeros(0, np.int64), *(np.zeros(0) for _ in range(6)), np.zeros(0, dtype=bool))

    @classmethod
    def concat(cls, parts: Iterable["WeightChanges"]) -> "WeightChanges":
        """Join several ``WeightChanges`` in the given order (none → empty)."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _CHANGE_FIELDS))

    def with_bin_offset(self, offset: int) -> "WeightChanges":
        """The same changes with ``bin_index + offset`` (to join detectors that each see part of the bins)."""
        return WeightChanges(self.bin_index + np.int64(offset), self.t_start, self.t_end, self.before_g,
                             self.after_g, self.delta_g, self.noise_sd_g, self.weak)


_CHANGE_FIELDS = ("bin_index", "t_start", "t_end", "before_g", "after_g", "delta_g", "noise_sd_g", "weak")


@dataclass(frozen=True)
class ProductWeights:
    """Unit weights of products. ``barcode`` (P,) object array of str (unique); ``mean_g`` (P,) float64 grams > 0;
    ``sd_g`` (P,) float64 grams ≥ 0 (spread of one unit). ``products[mask]`` returns a new ``ProductWeights``.

    Raises ``ValueError`` (expected vs actual shape, the offending barcode) on malformed input.
    """

    barcode: np.ndarray
    mean_g: np.ndarray
    sd_g: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.barcode, np.ndarray) or self.barcode.ndim != 1 or self.barcode.dtype != object:
            raise ValueError(f"ProductWeights.barcode must be a (P,) object array of str, got "
                             f"{getattr(self.barcode, 'shape', None)} {getattr(self.barcode, 'dtype', None)}")
        n = self.barcode.shape[0]
        _check_1d("ProductWeights.mean_g", self.mean_g, n, np.float64)
        _check_1d("ProductWeights.sd_g", self.sd_g, n, np.float64)
        for i, b in enumerate(self.barcode):
            if not isinstance(b, str) or not b:
                raise ValueError(f"ProductWeights.barcode[{i}] must be a non-empty str, got {b!r}")
        if len(set(self.barcode.tolist())) != n:
            seen: set[str] = set()
            dup = next(b for b in self.barcode if b in seen or seen.add(b))
            raise ValueError(f"ProductWeights.barcode must be unique; {dup!r} appears twice")
        if n and not (np.all(np.isfinite(self.mean_g)) and np.all(self.mean_g > 0)):
            i = int(np.flatnonzero(~(np.isfinite(self.mean_g) & (self.mean_g > 0)))[0])
            raise ValueError(f"ProductWeights.mean_g must be finite and > 0; {self.barcode[i]!r} has "
                             f"{self.mean_g[i]}")
        if n and not (np.all(np.isfinite(self.sd_g)) and np.all(self.sd_g >= 0)):
            i = int(np.flatnonzero(~(np.isfinite(self.sd_g) & (self.sd_g >= 0)))[0])
            raise ValueError(f"ProductWeights.sd_g must be finite and ≥ 0; {self.barcode[i]!r} has {self.sd_g[i]}")

    def __len__(self) -> int:
        return int(self.barcode.shape[0])

    def __getitem__(self, index: np.ndarray | slice | Sequence[int]) -> "ProductWeights":
        if isinstance(index, (int, np.integer)):
            index = np.array([index])
        return ProductWeights(np.asarray(self.barcode[index], dtype=object), np.asarray(self.mean_g[index]),
                              np.asarray(self.sd_g[index]))

    def select(self, barcodes: Iterable[str]) -> "ProductWeights":
        """The products with these barcodes, in the given order (duplicates once). Raises ``KeyError`` for an
        unknown barcode."""
        pos = {b: i for i, b in enumerate(self.barcode.tolist())}
        order: list[int] = []
        for b in barcodes:
            if b not in pos:
                raise KeyError(f"barcode {b!r} is not among the products")
            if pos[b] not in order:
                order.append(pos[b])
        return self[np.asarray(order, dtype=np.int64)]


@dataclass(frozen=True)
class Hypothesis:
    """One explanation of a weight change: ``quantity`` units of ``barcode`` TAKEN from the shelf (+2: two picked;
    −1: one put back). ``likelihood`` is the posterior probability among the listed outcomes (all sum to 1, the
    products' share ≤ 1); ``residual_g`` = Δ − expected Δ, grams. The unexplained outcome has ``barcode ==
    UNEXPLAINED`` (``""``) and ``quantity == 0``."""

    barcode: str
    quantity: int
    likelihood: float
    residual_g: float

    @property
    def unexplained(self) -> bool:
        """True for the "nothing fits" outcome."""
        return self.barcode == UNEXPLAINED


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


@dataclass(frozen=True)
class Planogram:
    """What is shelved where. ``bin_codes`` (B,) tuple of str: the detector's columns, unique; ``facings``
    bin code → barcodes shelved there; ``products`` the store's unit weights (every barcode in ``facings`` must be
    in it); ``neighbours`` bin code → adjacent bins on the same shelf (symmetric is expected, not required).

    Raises ``ValueError`` naming the unknown bin or barcode.
    """

    bin_codes: tuple[str, ...]
    facings: Mapping[str, tuple[str, ...]]
    products: ProductWeights
    neighbours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        codes = tuple(self.bin_codes)
        if len(set(codes)) != len(codes):
            raise ValueError("Planogram.bin_codes must be unique")
        known = set(codes)
        catalogue = set(self.products.barcode.tolist())
        for b, items in self.facings.items():
            if b not in known:
                raise ValueError(f"Planogram.facings: bin {b!r} is not in bin_codes")
            for item in items:
                if item not in catalogue:
                    raise ValueError(f"Planogram.facings[{b!r}]: barcode {item!r} is not in products")
        for b, near in self.neighbours.items():
            if b not in known:
                raise ValueError(f"Planogram.neighbours: bin {b!r} is not in bin_codes")
            for nb in near:
                if nb not in known:
                    raise ValueError(f"Planogram.neighbours[{b!r}]: bin {nb!r} is not in bin_codes")
        object.__setattr__(self, "bin_codes", codes)
        object.__setattr__(self, "facings", MappingProxyType({k: tuple(v) for k, v in self.facings.items()}))
        object.__setattr__(self, "neighbours", MappingProxyType({k: tuple(v) for k, v in self.neighbours.items()}))


# --------------------------------------------------------------------------------------------- detector
class WeightEventDetector:
    """Streaming pick/put-back detector over ``n_bins`` load cells sampled together at ``rate_hz``.

    Feed blocks in time order with :meth:`push` (``t`` (n,) float64 s UTC strictly increasing across calls,
    ``grams`` (n, n_bins) raw grams, NaN = missing); each call returns the changes completed so far (in the order
    they settled). :meth:`flush` ends the stream; :meth:`reset` forgets everything. Processing lags the input by
    half a window (the centred window needs the samples after a centre). The algorithm is described in the module
    docstring. ``noise_sd()`` gives each bin's current level noise.

    Raises ``ValueError`` for a bad ``n_bins``/``rate_hz`` and, in ``push``, for wrong shapes, non-finite or
    non-increasing times (nothing of that block is used; the detector state is unchanged).
    """

    def __init__(self, n_bins: int, rate_hz: float, config: DetectorConfig = DetectorConfig()) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        self.n_bins = int(n_bins)
        self.rate_hz = float(rate_hz)
        self.config = config
        self._h = max(1, int(round(config.window_s * rate_hz / 2)))  # half window, samples
        self._w = 2 * self._h + 1
        self._min_valid = int(math.ceil(config.min_valid_frac * self._w))
        self._n_before = max(1, int(round(config.stable_before_s * rate_hz)))
        self._n_after = max(1, int(round(config.stable_after_s * rate_hz)))
        self._n_quick = max(1, int(round(config.quick_after_s * rate_hz)))
        self._n_tail = max(1, int(round(config.tail_min_s * rate_hz)))
        self._alpha = 1.0 / max(1.0, config.baseline_tau_s * rate_hz)
        self._eta = 1.0 / max(1.0, config.noise_tau_s * rate_hz)
        #: Take quiet runs of samples through the compiled loop where numba is installed (False: NumPy only; the
        #: two give the same changes, tests/test_sensors_weight.py compares them).
        self.compiled = True
        self.reset()

    # ----------------------------------------------------------------------------------------- public
    def reset(self) -> None:
        """Forget all samples and learnt levels and noise; the next push starts a new stream."""
        b = self.n_bins
        self._started = False
        self._buf_t = np.zeros(0)
        self._buf_x = np.zeros((0, b))
        self._last_t = -math.inf                 # last real sample time pushed
        self._grid_t = -math.inf                 # last row time in the buffer (real or padding)
        self._level = np.full(b, np.nan)        # stable baseline, grams
        self._spread = np.full(b, np.nan)       # median window sd while stable, grams
        self._mad_diff = np.full(b, np.nan)     # median |m(t) − m(t − W)| while stable, grams
        self._n_seen = np.zeros(b, np.int64)    # stable samples seen
        self._ring = np.full((self._w, b), np.nan)
        self._ring_pos = 0
        self._active = np.zeros(b, bool)
        self._t_start = np.full(b, np.nan)
        self._before = np.full(b, np.nan)
        self._noise_at_start = np.full(b, np.nan)
        self._run = np.zeros(b, np.int64)
        self._run_sum = np.zeros(b)
        self._run_first = np.zeros(b)
        self._quick_state()
        self._last_active_t = np.full(b, np.nan)
        self._last_quiet_t = np.full(b, np.nan)
        self._held: list[tuple] = []             # settled changes waiting for overlapping activities to settle

    def settled_until(self) -> float:
        """Source time (s) before which every change of this stream has been emitted: the earliest start of an
        activity not yet settled (open, or settled and held back for an overlapping one), else the last window
        centre processed. A change :meth:`push` returns later starts at or after it (−inf before any window)."""
        if not self._started or self._buf_t.shape[0] < self._h:
            return -math.inf
        until = float(self._buf_t[self._h - 1])
        if self._active.any():
            until = min(until, float(np.nanmin(self._t_start[self._active])))
        if self._held:
            until = min(until, min(float(row[1]) for row in self._held))
        return until

    def noise_sd(self) -> np.ndarray:
        """(n_bins,) float64 grams: current sd of one stable level estimate per bin (NaN before any data)."""
        return self._sd_diff() / math.sqrt(2.0)

    def spread(self) -> np.ndarray:
        """(n_bins,) float64 grams: current median window sd per bin (the plate's sample noise; NaN before data)."""
        return self._spread.copy()

    def push(self, t: np.ndarray, grams: np.ndarray) -> WeightChanges:
        """Add samples ``t`` (n,) float64 s UTC and ``grams`` (n, n_bins) raw grams; return the changes that
        settled since the previous call (in settling order).

        Non-finite grams are treated as missing. Rejected input is logged at WARNING and leaves the detector as it
        was. Raises ``ValueError`` for wrong shapes, non-finite times, times
        not strictly increasing or not after the previous block's last time.
        """
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(grams, dtype=np.float64)
        if t.ndim != 1:
            raise _bad(f"push: t must be (n,), got {t.shape}")
        if x.shape != (t.shape[0], self.n_bins):
            raise _bad(f"push: grams must be (n, n_bins) = {(t.shape[0], self.n_bins)}, got {x.shape}")
        if t.shape[0] == 0:
            return WeightChanges.empty()
        if not np.all(np.isfinite(t)):
            raise _bad(f"push: t has a non-finite time at row {int(np.flatnonzero(~np.isfinite(t))[0])}")
        if t.shape[0] > 1 and not np.all(np.diff(t) > 0):
            raise _bad(f"push: t must be strictly increasing; row {int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1} "
                       f"is not after the row before")
        if t[0] <= self._last_t:
            raise _bad(f"push: block starts at t={t[0]:.6f}, not after the previous sample t={self._last_t:.6f}")
        x = np.where(np.isfinite(x), x, np.nan)
        if not self._started:
            # left edge of the stream: half a window of NaN rows, so the first samples are window centres too
            self._started = True
            self._buf_t = t[0] - np.arange(self._h, 0, -1) / self.rate_hz
            self._buf_x = np.full((self._h, self.n_bins), np.nan)
            self._grid_t = float(self._buf_t[-1])
        t, x = self._fill_gaps(t, x)
        self._last_t = float(t[-1])
        self._grid_t = self._last_t
        return self._process(np.concatenate([self._buf_t, t]), np.concatenate([self._buf_x, x]), final=False)

    def flush(self) -> WeightChanges:
        """End the stream: process the last half window and close what can be closed.

        An activity still open is closed if it already has ``tail_min_s`` of stable tail (Δ measured on that
        tail), else dropped with an INFO log line naming the bin. The detector keeps its learnt levels and noise;
        a later push continues the stream (after a gap).
        """
        if not self._started:
            return WeightChanges.empty()
        pad = self._h
        tail_t = self._buf_t[-1] + np.arange(1, pad + 1) / self.rate_hz
        out = self._process(np.concatenate([self._buf_t, tail_t]),
                            np.concatenate([self._buf_x, np.full((pad, self.n_bins), np.nan)]), final=True)
        self._started = False  # a later push starts a new edge; levels, noise and the last time are kept
        self._buf_t = np.zeros(0)
        self._buf_x = np.zeros((0, self.n_bins))
        return out

    # ----------------------------------------------------------------------------------------- internals
    def _quick_state(self) -> None:
        """The early confirmation's run per bin (``DetectorConfig.quick_after_s``): length in windows, sum and first
        of its window means. Also called for a detector restored from a checkpoint taken before it existed."""
        b = self.n_bins
        self._qrun = np.zeros(b, np.int64)
        self._qrun_sum = np.zeros(b)
        self._qrun_first = np.zeros(b)
        if not hasattr(self, "_n_quick"):
            self._n_quick = max(1, int(round(self.config.quick_after_s * self.rate_hz)))

    def _sd_diff(self) -> np.ndarray:
        return np.maximum(self._mad_diff * _MAD_TO_SD, self.config.noise_floor_g * math.sqrt(2.0))

    def _fill_gaps(self, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Insert NaN rows where consecutive times are > 1.5 periods apart (at most one window per gap)."""
        dt = np.diff(np.concatenate([[self._grid_t], t]))
        ins = np.where(dt > 1.5 / self.rate_hz, np.minimum(np.rint(dt * self.rate_hz) - 1, self._w), 0)
        ins = ins.astype(np.int64)
        if not ins.any():
            return t, x
        n = t.shape[0]
        total = n + int(ins.sum())
        pos = np.arange(n) + np.cumsum(ins)
        new_x = np.full((total, self.n_bins), np.nan)
        new_x[pos] = x
        new_t = np.empty(total)
        new_t[pos] = t
        gap_rows = np.setdiff1d(np.arange(total), pos, assume_unique=True)
        new_t[gap_rows] = np.interp(gap_rows, np.concatenate([[-1], pos]), np.concatenate([[self._grid_t], t]))
        log.debug("time gap(s) before %d sample(s): %d NaN rows inserted", int((ins > 0).sum()), total - n)
        return new_t, new_x

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centred-window mean, sd and validity for rows h … len−h−1 of ``x`` (k, B); NaN samples excluded."""
        w = self._w
        valid = np.isfinite(x)
        cnt_all = valid.sum(axis=0)
        ref = np.where(cnt_all > 0, np.where(valid, x, 0.0).sum(axis=0) / np.maximum(cnt_all, 1), 0.0)
        xv = np.where(valid, x - ref, 0.0)
        zero = np.zeros((1, x.shape[1]))
        c0 = np.concatenate([zero, np.cumsum(valid, axis=0, dtype=np.float64)])
        c1 = np.concatenate([zero, np.cumsum(xv, axis=0)])
        c2 = np.concatenate([zero, np.cumsum(xv * xv, axis=0)])
        n = c0[w:] - c0[:-w]
        s1 = c1[w:] - c1[:-w]
        s2 = c2[w:] - c2[:-w]
        ok = n >= self._min_valid
        nn = np.maximum(n, 1.0)
        mean = s1 / nn
        var = np.maximum(s2 / nn - mean * mean, 0.0)
        sd = np.where(ok, np.sqrt(var), np.inf)
        mean = np.where(ok, mean + ref, 0.0)
        return mean, sd, ok

    def _process(self, t_all: np.ndarray, x_all: np.ndarray, *, final: bool) -> WeightChanges:
        h = self._h
        k = t_all.shape[0]
        if k < 2 * h + 1:  # not one full window yet (only at a stream edge)
            self._buf_t, self._buf_x = t_all, x_all
            return self._close_open(t_all) if final else WeightChanges.empty()
        mean, sd, ok = self._features(x_all)
        centres_t = t_all[h:k - h]
        rows = self._run_machine(centres_t, mean, sd, ok)
        keep = k - 2 * h
        self._buf_t, self._buf_x = t_all[keep:], x_all[keep:]
        out = _rows_to_changes(rows)
        if final:
            out = WeightChanges.concat([out, self._close_open(centres_t)])
        return out

    def _close_open(self, centres_t: np.ndarray) -> WeightChanges:
        """At the end of the stream: close open activities that have a stable tail; drop the others."""
        rows: list[tuple] = []
        dropped: list[str] = []
        rows.extend(self._held)
        self._held = []
        for b in np.flatnonzero(self._active):
            if self._run[b] >= self._n_tail:
                rows.extend(self._close(np.array([b]), float(centres_t[-1]) if centres_t.size else math.nan))
            else:
                dropped.append(f"{b} (from t={self._t_start[b]:.3f})")
                self._active[b] = False
                self._run[b] = 0
        if dropped:
            log.info("%d bin(s) still active at the end of the stream without a stable tail; dropped: %s",
                     len(dropped), ", ".join(dropped))
        return _rows_to_changes(rows)

    def _release(self, t: float) -> list[tuple]:
        """Held changes that may go at time ``t``: no bin still active that started before their ``t_end +
        group_window_s``, and no held change overlapping them that is still waiting; or held ``max_hold_s``."""
        cfg = self.config
        busy_starts = self._t_start[self._active]
        waiting = []
        for row in self._held:
            t_end = row[2]
            blocked = bool(np.any((busy_starts <= t_end + cfg.group_window_s)
                                  & (busy_starts >= row[1] - cfg.group_window_s))) if busy_starts.size else False
            waiting.append(blocked and t < t_end + cfg.max_hold_s)
        # a change overlapping a waiting one waits with it (the pieces of one item leave together)
        changed = True
        while changed:
            changed = False
            for i, row in enumerate(self._held):
                if waiting[i]:
                    continue
                for j, other in enumerate(self._held):
                    if waiting[j] and other[1] <= row[2] + cfg.group_window_s and row[1] <= other[2] + \
                            cfg.group_window_s and t < row[2] + cfg.max_hold_s:
                        waiting[i] = changed = True
                        break
        out = [row for row, w in zip(self._held, waiting) if not w]
        if out:
            self._held = [row for row, w in zip(self._held, waiting) if w]
        return out

    def _close(self, bins: np.ndarray, t_now: float) -> list[tuple]:
        """Close activities of ``bins``; return emitted rows and move baselines to the settled levels."""
        cfg = self.config
        quick = (self._run[bins] < self._n_after) & (self._qrun[bins] >= self._n_quick)  # confirmed early
        after = np.where(quick, self._qrun_sum[bins] / np.maximum(self._qrun[bins], 1),
                         self._run_sum[bins] / np.maximum(self._run[bins], 1))
        before = self._before[bins]
        delta = after - before
        sd_diff = self._noise_at_start[bins] * math.sqrt(2.0)
        gate = np.maximum(cfg.min_delta_g, cfg.delta_k * sd_diff)
        weak_gate = np.maximum(cfg.weak_min_g, cfg.weak_k * sd_diff)
        rows = []
        for j, b in enumerate(bins):
            if abs(delta[j]) >= min(gate[j], weak_gate[j]):
                t_end = self._last_active_t[b]
                if not np.isfinite(t_end) or t_end < self._t_start[b]:
                    t_end = self._t_start[b]
                rows.append((int(b), float(self._t_start[b]), float(t_end), float(before[j]), float(after[j]),
                             float(delta[j]), float(self._noise_at_start[b]), bool(abs(delta[j]) < gate[j])))
            else:
                log.debug("bin %d: activity %.3f–%.3f settled with Δ=%.1f g < gate %.1f g; no event",
                          b, self._t_start[b], self._last_active_t[b], delta[j], gate[j])
        self._level[bins] = after
        self._active[bins] = False
        self._run[bins] = 0
        self._qrun[bins] = 0
        self._ring[:, bins] = np.nan  # level jumped: differences across the change are not noise
        self._last_quiet_t[bins] = t_now
        return rows

    def _run_machine(self, T: np.ndarray, M: np.ndarray, S: np.ndarray, V: np.ndarray) -> list[tuple]:
        """The per-sample state machine; every operation covers all bins at once. Where numba is installed, runs
        of samples in which no bin opens or closes an activity and no held change is due go through the compiled
        :func:`_quiet_run` (the same arithmetic, bin by bin); the samples where something happens go through
        :meth:`_step`."""
        cfg = self.config
        rows: list[tuple] = []
        n = T.shape[0]
        i = 0
        if not hasattr(self, "_qrun"):  # a detector restored from a checkpoint taken before the early confirmation
            self._quick_state()
        params = np.array([cfg.activity_k, cfg.activity_floor_g, cfg.activity_ceiling_g, cfg.noise_floor_g,
                           cfg.level_floor_g, cfg.level_k, cfg.close_k, self._alpha, self._eta, _MAD_TO_SD,
                           cfg.quick_k])
        while i < n:
            if _COMPILED and getattr(self, "compiled", True):  # (a detector restored from an older checkpoint)
                due = min(row[2] for row in self._held) + cfg.max_hold_s if self._held else math.inf
                i, self._ring_pos = _quiet_run(i, T, M, S, V, self._level, self._spread, self._mad_diff,
                                               self._n_seen, self._active, self._run, self._run_sum,
                                               self._run_first, self._qrun, self._qrun_sum, self._qrun_first,
                                               self._ring, self._ring_pos, self._last_active_t,
                                               self._last_quiet_t, due, self._n_before, self._n_after,
                                               self._n_quick, params)
                if i >= n:
                    break
            self._step(T[i], M[i], S[i], V[i], rows)
            i += 1
        return rows

    def _step(self, t: float, m: np.ndarray, s: np.ndarray, v: np.ndarray, rows: list[tuple]) -> None:
        """One sample of the state machine (time ``t``, window means ``m``, sds ``s``, validity ``v``, all (B,));
        settled changes released are appended to ``rows``."""
        cfg = self.config
        level, spread, mad = self._level, self._spread, self._mad_diff
        n_seen, active = self._n_seen, self._active
        run, run_sum, run_first = self._run, self._run_sum, self._run_first
        ring = self._ring
        w = self._w
        alpha, eta = self._alpha, self._eta
        floor = cfg.noise_floor_g
        gap_tol = 1.5 / self.rate_hz
        # first valid window of a bin: initialise its level and noise from it
        fresh = v & (n_seen == 0) & ~active
        if fresh.any():
            level[fresh] = m[fresh]
            spread[fresh] = np.maximum(s[fresh], floor)
            mad[fresh] = spread[fresh] / _MAD_TO_SD
        thr_act = np.clip(cfg.activity_k * spread, cfg.activity_floor_g, cfg.activity_ceiling_g)
        sd_diff = np.maximum(mad * _MAD_TO_SD, floor * math.sqrt(2.0))
        thr_lvl = np.maximum(cfg.level_floor_g, cfg.level_k * sd_diff)
        quiet = s <= thr_act  # s is +inf in a gap
        dev = np.abs(m - level)
        stable = ~active
        armed = n_seen >= self._n_before
        trig = stable & armed & v & (~quiet | (dev > thr_lvl))
        upd = stable & quiet & ~trig
        restart = stable & ~armed & v & ~quiet
        if restart.any():  # moving during warm-up: learn the level again from the next window
            n_seen[restart] = 0
        # ---- stable bins: follow the baseline and learn the noise (running medians)
        if upd.any():
            step_a = np.where(upd, np.maximum(alpha, 1.0 / (n_seen + 1.0)), 0.0)
            level += step_a * np.where(upd, m - level, 0.0)
            step_n = np.where(upd, np.maximum(eta, 1.0 / (n_seen + 1.0)), 0.0)
            spread *= np.exp(step_n * np.sign(s - spread))
            np.maximum(spread, floor, out=spread)
            d = np.abs(m - ring[self._ring_pos])
            okd = upd & np.isfinite(d)
            mad *= np.exp(np.where(okd, step_n, 0.0) * np.sign(np.where(okd, d, mad) - mad))
            ring[self._ring_pos] = np.where(upd, m, np.nan)
            n_seen += upd
            self._last_quiet_t[upd] = t
        else:
            ring[self._ring_pos] = np.nan
        self._ring_pos = (self._ring_pos + 1) % w
        # ---- active bins: wait for a steady, quiet run
        if active.any():
            calm = s <= cfg.close_k * thr_act  # hysteresis: closing tolerates a little more spread
            busy = active & ~calm
            self._last_active_t[active & ~quiet & v] = t
            q = active & calm
            steady = q & (run > 0) & (np.abs(m - run_first) <= thr_lvl)
            start_new = q & ~steady
            run_first[start_new] = m[start_new]
            run_sum += np.where(steady, m, 0.0)
            run_sum[start_new] = m[start_new]
            run += steady
            run[start_new] = 1
            run[busy] = 0
            # the early confirmation: quiet windows whose level stays within quick_k level-noise sds of the first
            qrun, qfirst = self._qrun, self._qrun_first
            qa = active & quiet
            q_steady = qa & (qrun > 0) & (np.abs(m - qfirst) <= cfg.quick_k * sd_diff)
            q_new = qa & ~q_steady
            qfirst[q_new] = m[q_new]
            self._qrun_sum += np.where(q_steady, m, 0.0)
            self._qrun_sum[q_new] = m[q_new]
            qrun += q_steady
            qrun[q_new] = 1
            qrun[active & ~quiet] = 0
            close = active & ((run >= self._n_after) | (qrun >= self._n_quick))
            if close.any():
                self._held.extend(self._close(np.flatnonzero(close), t))
        # ---- release settled changes whose overlapping activities have settled too
        if self._held:
            rows.extend(self._release(t))
        # ---- new activities
        if trig.any():
            idx = np.flatnonzero(trig)
            lq = self._last_quiet_t[idx]
            self._t_start[idx] = np.where(np.isfinite(lq) & (t - lq > gap_tol), lq, t)
            self._before[idx] = level[idx]
            self._noise_at_start[idx] = sd_diff[idx] / math.sqrt(2.0)
            self._last_active_t[idx] = t
            active[idx] = True
            run[idx] = 0
            self._qrun[idx] = 0
            if quiet[idx].any():  # a level trigger on a quiet window starts the stable runs at once
                qi = idx[quiet[idx]]
                run[qi] = 1
                run_first[qi] = m[qi]
                run_sum[qi] = m[qi]
                self._qrun[qi] = 1
                self._qrun_first[qi] = m[qi]
                self._qrun_sum[qi] = m[qi]


def _no_jit(fn):
    return fn


try:  # the detector's per-sample loop is compiled where numba is installed (WeightEventDetector._run_machine)
    from numba import njit as _numba_jit

    def _jit(fn):
        return _numba_jit(cache=True, nogil=True)(fn)

    _COMPILED = True
except ImportError:  # pragma: no cover - numba is a dependency; without it every sample takes the NumPy path
    _jit = _no_jit
    _COMPILED = False


@_jit
def _nan_max(a, b):
    """``np.maximum`` of two floats (NaN when either is NaN)."""
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


@_jit
def _sign(x):
    """``np.sign`` of a float (NaN for NaN)."""
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    if x == 0:
        return 0.0
    return math.nan


@_jit
def _quiet_run(i0, T, M, S, V, level, spread, mad, n_seen, active, run, run_sum, run_first, qrun, qrun_sum,
               qrun_first, ring, ring_pos, last_active_t, last_quiet_t, due, n_before, n_after, n_quick, params):
    """``WeightEventDetector._step`` over samples ``i0 …`` for as long as nothing happens: no bin would open an
    activity or close one, and no held change is due (time ``due``). The state arrays are updated in place.
    Returns (the first sample it did not take, the ring position then)."""
    activity_k, activity_floor, activity_ceiling, floor, level_floor, level_k, close_k, alpha, eta, mad_to_sd = (
        params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7], params[8],
        params[9])
    quick_k = params[10]
    n, nb = M.shape
    w = ring.shape[0]
    sqrt2 = math.sqrt(2.0)
    thr_act = np.empty(nb)
    thr_lvl = np.empty(nb)
    q_tol = np.empty(nb)
    i = i0
    while i < n:
        t = T[i]
        if t >= due:
            return i, ring_pos
        # first pass: would anything happen at this sample? (read only; a fresh bin's values as they would be)
        for b in range(nb):
            m, s, v = M[i, b], S[i, b], V[i, b]
            sp, md, lv = spread[b], mad[b], level[b]
            if v and n_seen[b] == 0 and not active[b]:
                lv = m
                sp = _nan_max(s, floor)
                md = sp / mad_to_sd
            a = activity_k * sp
            if a == a:
                a = min(max(a, activity_floor), activity_ceiling)
            thr_act[b] = a
            sdd = _nan_max(md * mad_to_sd, floor * sqrt2)
            thr_lvl[b] = _nan_max(level_floor, level_k * sdd)
            q_tol[b] = quick_k * sdd
            quiet = s <= a
            if not active[b]:
                if n_seen[b] >= n_before and v and (not quiet or abs(m - lv) > thr_lvl[b]):
                    return i, ring_pos  # an activity opens
            else:
                if s <= close_k * a:
                    steady = run[b] > 0 and abs(m - run_first[b]) <= thr_lvl[b]
                    new_run = run[b] + 1 if steady else 1
                    if new_run >= n_after:
                        return i, ring_pos  # an activity closes
                if quiet:
                    q_steady = qrun[b] > 0 and abs(m - qrun_first[b]) <= q_tol[b]
                    if (qrun[b] + 1 if q_steady else 1) >= n_quick:
                        return i, ring_pos  # an activity closes early (quick confirmation)
        # second pass: the sample's updates, bin by bin
        for b in range(nb):
            m, s, v = M[i, b], S[i, b], V[i, b]
            if v and n_seen[b] == 0 and not active[b]:
                level[b] = m
                spread[b] = _nan_max(s, floor)
                mad[b] = spread[b] / mad_to_sd
            quiet = s <= thr_act[b]
            upd = False
            if not active[b]:
                if n_seen[b] < n_before and v and not quiet:  # moving during warm-up: learn the level again
                    n_seen[b] = 0
                upd = quiet
            if upd:
                k = 1.0 / (n_seen[b] + 1.0)
                step_a = alpha if alpha >= k else k
                level[b] += step_a * (m - level[b])
                step_n = eta if eta >= k else k
                spread[b] *= math.exp(step_n * _sign(s - spread[b]))
                spread[b] = _nan_max(spread[b], floor)
                d = abs(m - ring[ring_pos, b])
                if d == d and abs(d) != math.inf:
                    mad[b] *= math.exp(step_n * _sign(d - mad[b]))
                ring[ring_pos, b] = m
                n_seen[b] += 1
                last_quiet_t[b] = t
            else:
                ring[ring_pos, b] = math.nan
            if active[b]:
                if not quiet and v:
                    last_active_t[b] = t
                if s <= close_k * thr_act[b]:
                    if run[b] > 0 and abs(m - run_first[b]) <= thr_lvl[b]:
                        run_sum[b] += m
                        run[b] += 1
                    else:
                        run_first[b] = m
                        run_sum[b] = m
                        run[b] = 1
                else:
                    run[b] = 0
                if quiet:
                    if qrun[b] > 0 and abs(m - qrun_first[b]) <= q_tol[b]:
                        qrun_sum[b] += m
                        qrun[b] += 1
                    else:
                        qrun_first[b] = m
                        qrun_sum[b] = m
                        qrun[b] = 1
                else:
                    qrun[b] = 0
        ring_pos = (ring_pos + 1) % w
        i += 1
    return i, ring_pos


def _bad(message: str) -> ValueError:
    """Log a rejected input at WARNING and return the error to raise."""
    log.warning("%s", message)
    return ValueError(message)


def _rows_to_changes(rows: list[tuple]) -> WeightChanges:
    if not rows:
        return WeightChanges.empty()
    cols = list(zip(*rows))
    return WeightChanges(np.asarray(cols[0], dtype=np.int64), *(np.asarray(c, dtype=np.float64) for c in cols[1:7]),
                         np.asarray(cols[7], dtype=bool))


def detect_weight_changes(t: np.ndarray, grams: np.ndarray, rate_hz: float,
                          config: DetectorConfig = DetectorConfig()) -> WeightChanges:
    """Batch detection: ``t`` (n,) float64 s UTC, ``grams`` (n, B) raw grams → all settled changes.

    Equivalent to one :meth:`WeightEventDetector.push` of everything followed by :meth:`~WeightEventDetector.flush`.
    Raises ``ValueError`` as ``push`` does.
    """
    grams = np.asarray(grams)
    if grams.ndim != 2:
        raise ValueError(f"grams must be (n, B), got {grams.shape}")
    det = WeightEventDetector(grams.shape[1], rate_hz, config)
    return WeightChanges.concat([det.push(t, grams), det.flush()])


# --------------------------------------------------------------------------------------------- explanation
#: Floors of a product's unit-weight sd in :func:`explain_change`: a catalogue sd of 0 means "unknown", not
#: "exact". AIM3S clamps product sd likewise (``computeWeightProbability.m``); its 78 products weighed repeatedly
#: (``Dataset/product_info.json``) have a median sd of 1.6 g and 1.3 % of the mean, so 1 g and 1 % are floors
#: that rarely bind for a measured product.
MIN_UNIT_SD_G = 1.0
MIN_UNIT_SD_REL = 0.01
#: sd of a plate's calibration gain error, as a share of the weight it reads: a change of Δ g reads
#: (1 + N(0, sd))·Δ. Real plates: AIM3S's ``weight_calibration.json`` (96 plates) keeps the default slope on 86
#: and re-calibrated 10, whose slopes differ from the default by −15.7 … +5.6 % (median |deviation| 2.1 %); in
#: cps-test-01 the two picks read −2.2 % (Taco Bell Fire, 103.2 g of 105.5) and +4.0 % (FIJI .5 L, 559.5 g of
#: 538) against the catalogue. 2.5 % is the typical error; larger ones are the miscalibrated plates a store
#: re-calibrates (the simulator's ``SimConfig.plate_gain_sd`` uses the same).
PLATE_GAIN_SD_REL = 0.025
#: A change over several plates explained as a whole with less than this posterior (the reject option keeps the
#: rest) is tried plate by plate first: with the plates' gain error a multi-unit fit of the total can pass the
#: reject option at ~3 sd (two takes side by side, 180 g + 401 g, read as 3 × 180 g at 0.61), while each plate
#: fitting its own product is the far likelier reading (tests/test_sensors_faults.py, two shoppers at one shelf).
GROUP_SURE_P = 0.9


def explain_change(delta_g: float, noise_sd_g: float, candidates: ProductWeights, *, max_quantity: int = 6,
                   gate_sigma: float = 5.0, unexplained_sigma: float = 3.0,
                   candidate_weight: float = 1.0,
                   extra: Sequence[tuple[str, int, float, float]] = ()) -> list[Hypothesis]:
    """Rank "q units of product p taken" explanations of a weight change, best first.

    ``delta_g`` grams (after − before); ``noise_sd_g`` grams, sd of one level estimate; ``candidates`` the
    products that may be involved; q ∈ ±1 … ±``max_quantity`` (positive: taken; negative: put back).

    Model: Δ | (p, q) ~ N(−q·μ_p, 2·noise² + |q|·σ_p²) — the before and after levels each carry the level noise,
    and |q| independent units each weigh N(μ_p, σ_p²), so their sum has variance |q|·σ_p² (Bienaymé; the product
    weight model of AIM3S, Ruiz et al. BuildSys 2019, ``computeWeightProbability.m``), with σ_p at least
    max(:data:`MIN_UNIT_SD_G`, :data:`MIN_UNIT_SD_REL` · μ_p). Hypotheses farther than
    ``gate_sigma`` sd from Δ are dropped. The unexplained outcome (barcode ``""``, quantity 0) is scored as a fit
    that misses by ``unexplained_sigma`` sd (density φ(unexplained_sigma)/sd of the closest hypothesis), a
    reject option (Chow, "On optimum recognition error and reject tradeoff", IEEE Trans. IT 1970): a hypothesis
    beats it only when it fits better than that. Scores (product hypotheses multiplied by ``candidate_weight``,
    e.g. :data:`FALLBACK_WEIGHT` for store-wide guesses) are normalised to posterior probabilities (uniform prior
    over the listed outcomes). Nothing within the gate → ``[unexplained with likelihood 1.0]``.

    ``extra``: hypotheses scored elsewhere, ``(barcode, quantity, density per gram, sd of the closest fit in
    grams)``, normalised together with these (:func:`hidden_share_hypotheses`); with nothing else within the
    gate, the reject option is scored against their sd.

    Raises ``ValueError`` for a non-finite ``delta_g``, a negative or non-finite ``noise_sd_g``,
    ``max_quantity < 1``, or non-positive ``gate_sigma``/``unexplained_sigma``/``candidate_weight``.
    """
    if not math.isfinite(delta_g):
        raise ValueError(f"delta_g must be finite, got {delta_g}")
    if not (math.isfinite(noise_sd_g) and noise_sd_g >= 0):
        raise ValueError(f"noise_sd_g must be finite and ≥ 0, got {noise_sd_g}")
    if isinstance(max_quantity, bool) or not isinstance(max_quantity, (int, np.integer)) or max_quantity < 1:
        raise ValueError(f"max_quantity must be an integer ≥ 1, got {max_quantity!r}")
    for name, value in (("gate_sigma", gate_sigma), ("unexplained_sigma", unexplained_sigma),
                        ("candidate_weight", candidate_weight)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value}")
    if len(candidates) == 0 and not extra:
        return [Hypothesis(UNEXPLAINED, 0, 1.0, float(delta_g))]
    if len(candidates) == 0:
        candidates = ProductWeights(np.array([], dtype=object), np.zeros(0), np.zeros(0))
    q = np.concatenate([np.arange(1, max_quantity + 1), -np.arange(1, max_quantity + 1)])  # (Q,)
    mu = candidates.mean_g[:, None]                                                       # (P, 1)
    expected = -q[None, :] * mu                                                           # (P, Q)
    unit_sd = np.maximum(candidates.sd_g, np.maximum(MIN_UNIT_SD_G, MIN_UNIT_SD_REL * candidates.mean_g))
    var = (2.0 * noise_sd_g ** 2 + np.abs(q)[None, :] * unit_sd[:, None] ** 2
           + (PLATE_GAIN_SD_REL * expected) ** 2)
    var = np.maximum(var, 1e-12)
    resid = delta_g - expected
    z = np.abs(resid) / np.sqrt(var)
    keep = z <= gate_sigma
    if not keep.any() and not extra:
        return [Hypothesis(UNEXPLAINED, 0, 1.0, float(delta_g))]
    pi, qi = np.nonzero(keep)
    # log densities, shifted for stability
    logd = -0.5 * z[pi, qi] ** 2 - 0.5 * np.log(2 * math.pi * var[pi, qi]) + math.log(candidate_weight)
    log_x = np.array([math.log(max(e[2], 1e-300)) for e in extra])
    if pi.size:
        closest = int(np.argmin(z[pi, qi]))
        ref_var = float(var[pi[closest], qi[closest]])
    else:
        ref_var = min(2.0 * noise_sd_g ** 2 + e[3] ** 2 for e in extra)
    log_u = -0.5 * unexplained_sigma ** 2 - 0.5 * math.log(2 * math.pi * max(ref_var, 1e-12))
    top = max(float(logd.max()) if logd.size else -math.inf, float(log_x.max()) if log_x.size else -math.inf, log_u)
    dens = np.exp(logd - top)
    dens_x = np.exp(log_x - top)
    dens_u = math.exp(log_u - top)
    total = float(dens.sum()) + float(dens_x.sum()) + dens_u
    out = [Hypothesis(str(candidates.barcode[p]), int(q[j]), float(d / total), float(resid[p, j]))
           for p, j, d in zip(pi, qi, dens)]
    out += [Hypothesis(b, int(qq), float(d / total), float(delta_g)) for (b, qq, _, _), d in zip(extra, dens_x)]
    out.append(Hypothesis(UNEXPLAINED, 0, dens_u / total, float(delta_g)))
    out.sort(key=lambda h: (-h.likelihood, abs(h.quantity) if h.quantity else 10 ** 9, h.barcode))
    return out


#: Largest share of a simultaneous change on the same shelf that another group of plates may show and still be
#: taken for mechanical crosstalk (the shelf flexes and redistributes load). Measured on BENCHMARK-1: when 623 g
#: left plate 1-5-11, plate 1-5-9 (two plates away) settled 9–15 g lower (1.5–2.4 %) and plate 1-5-10 4 g lower.
CROSSTALK_RATIO = 0.03

#: Most bins one real pick or put-back spans. The 237 hand-labelled events of the AutoCheckout competition
#: (``labels/events_v14.json``, 46 test cases of this store) span 1 plate (119), 2 (105), 3 (11) or 4 (2): a
#: simultaneous change on more adjacent plates is a disturbance (a shopper pressing on the shelf), not items.
MAX_EVENT_BINS = 4


#: Share of an item standing across two plates that rests on the plate(s) that saw it, when the other plate's
#: share went unseen: between this and 1. The labelled AutoCheckout events put 105 of 237 items on two plates;
#: the simulator splits them uniformly over 25–75 %; 20 % keeps a tiny sliver from passing for a whole item.
HIDDEN_SHARE_MIN = 0.2
#: Most grams an item's share can leave on a plate unseen: the weak gate (3·√2·σ, ``DetectorConfig.weak_k``) of a
#: plate at the 95th percentile of BENCHMARK-1's noise (σ = 9.7 g, ``carts.simulation.PLATE_SD_QUANTILES_G``).
HIDDEN_SHARE_MAX_G = 40.0
#: Prior weight of "the rest of the item stood on a neighbouring plate that saw too little to detect" against a
#: whole fit (1) and a store-wide guess (:data:`FALLBACK_WEIGHT`). An unseen share needs a noisy neighbour
#: (BENCHMARK-1's noisiest plates have 5–15 g sd, so a 20 g share can hide there), so it is rarer than a
#: whole fit; 0.5 lets it beat the reject option only for products facing the plate and its neighbour.
HIDDEN_SHARE_WEIGHT = 0.5


def hidden_share_hypotheses(delta_g: float, noise_sd_g: float, bin_codes: Sequence[str], planogram: Planogram,
                            *, max_quantity: int = 1) -> list[tuple[str, int, float, float]]:
    """Explanations of a change on ``bin_codes`` as part of 1…``max_quantity`` units of a product that faces
    these bins and a neighbouring bin outside them: the units stood across both plates and the neighbour's share
    was too small to pass its detector's gate. Δ is then a share f ∈ [:data:`HIDDEN_SHARE_MIN`, 1) of
    q·μ, with a density times :data:`HIDDEN_SHARE_WEIGHT` (below). Returns
    ``[(barcode, signed quantity (+ taken), density per gram, unit sd in grams)]`` for :func:`explain_change`'s
    ``extra``; empty when no product faces both or Δ is outside every share range. The unseen rest is at most
    :data:`HIDDEN_SHARE_MAX_G` grams, so |Δ| ∈ [max(f_min·q·μ, q·μ − 40 g), q·μ − 3 sd], uniform over that range
    (density 1 / its width per gram)."""
    near = {n for c in bin_codes for n in planogram.neighbours.get(c, ())} | {
        c for c, ns in planogram.neighbours.items() if set(ns) & set(bin_codes)}
    near -= set(bin_codes)
    here = {p for c in bin_codes for p in planogram.facings.get(c, ())}
    there = {p for c in near for p in planogram.facings.get(c, ())}
    codes = sorted(here & there)
    if not codes or delta_g == 0:
        return []
    products = planogram.products.select(codes)
    sign = -1 if delta_g < 0 else 1  # a loss is a take (+q)
    out = []
    for b, mu, sd in zip(products.barcode, products.mean_g, products.sd_g):
        for q in range(1, max_quantity + 1):
            full = q * float(mu)
            margin = 3.0 * math.sqrt(2.0 * noise_sd_g ** 2 + q * max(float(sd), MIN_UNIT_SD_G) ** 2)
            low = max(HIDDEN_SHARE_MIN * full, full - HIDDEN_SHARE_MAX_G)
            if low <= abs(delta_g) <= full - margin:
                out.append((str(b), -sign * q, HIDDEN_SHARE_WEIGHT / (full - low), max(float(sd), MIN_UNIT_SD_G)))
    return out


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
    if misplaced:
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
            raise ValueError(f"sub_event: bins {sorted(want)} are not a non-empty subset of {list(event.bin_codes)}")
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


def _shelves(planogram: Planogram) -> dict[str, int]:
    """Bin code → shelf number, a shelf being a connected component of the (symmetrised) neighbour graph."""
    adj: dict[str, set[str]] = {c: set() for c in planogram.bin_codes}
    for a, near in planogram.neighbours.items():
        for b in near:
            adj[a].add(b)
            adj[b].add(a)
    shelf: dict[str, int] = {}
    for start in planogram.bin_codes:
        if start in shelf:
            continue
        k = len(shelf)
        stack = [start]
        shelf[start] = k
        while stack:
            for nb in adj[stack.pop()]:
                if nb not in shelf:
                    shelf[nb] = k
                    stack.append(nb)
    return shelf


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
        raise _bad(f"shelf_events_from_changes: change on bin index {bad} but the planogram has {len(codes)} bins")
    changes = _companions(changes, planogram, merge_gap_s, crosstalk_ratio)
    n = len(changes)
    if n == 0:
        return []
    code_of = [codes[int(b)] for b in changes.bin_index]
    members_all = [g for group in _components(changes, np.arange(n), code_of, planogram, merge_gap_s)
                   for g in _gains_and_losses(changes, group, code_of, planogram, merge_gap_s, net_min_g)]
    shelf_of = _shelves(planogram)
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
