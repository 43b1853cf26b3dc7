"""The weight-event detector's knobs (:class:`DetectorConfig`), each with its default and where it comes from.

Kept apart from :mod:`.detector` (the streaming detector itself) so that the reasoning behind every threshold can
be read on its own; the detector's module docstring describes the scheme these knobs tune. Pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass

from store.checks import check_numbers


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
        check_numbers(self, ("window_s", "stable_before_s", "stable_after_s", "quick_after_s", "quick_k", "min_delta_g",
                             "delta_k", "activity_k", "close_k", "weak_k", "weak_min_g", "activity_floor_g",
                             "activity_ceiling_g", "level_k", "level_floor_g", "baseline_tau_s", "noise_tau_s",
                             "noise_floor_g", "tail_min_s", "group_window_s", "max_hold_s"), low=0, low_open=True)
        check_numbers(self, ("min_valid_frac",), low=0.5, high=1.0, low_open=True)
        if self.activity_ceiling_g < self.activity_floor_g:
            raise ValueError(f"DetectorConfig.activity_ceiling_g ({self.activity_ceiling_g}) must be ≥ "
                             f"activity_floor_g ({self.activity_floor_g})")
        check_numbers(self, ("close_k",), low=1.0)
        if self.quick_after_s > self.stable_after_s:
            raise ValueError(f"DetectorConfig.quick_after_s ({self.quick_after_s}) must be ≤ stable_after_s "
                             f"({self.stable_after_s})")
        if self.tail_min_s > self.stable_after_s:
            raise ValueError(f"DetectorConfig.tail_min_s ({self.tail_min_s}) must be ≤ stable_after_s "
                             f"({self.stable_after_s})")
