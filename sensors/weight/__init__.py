"""Weight events from shelf load cells: detection, product × quantity explanation, shelf events (pure NumPy).

Pipeline (DESIGN.md, ``sensors`` → ``carts``)::

    raw samples (n, B) grams ──WeightEventDetector──▶ WeightChanges ──shelf_events_from_changes──▶ [ShelfEvent]
                                                                      (merge adjacent bins, explain_change)

One concept per module: :mod:`.detector` (the streaming detector), :mod:`.detector_config` (its knobs),
:mod:`.changes` (what it reports), :mod:`.explain` (products, the planogram, "which product × quantity fits Δ"),
:mod:`.events` (merging changes into shelf events, the ``sensors`` → ``carts`` contract), :mod:`.kernels` (the
detector's compiled loop).
The names below are the package's public interface; callers import them from ``sensors.weight``.
"""
from .changes import WeightChanges
from .detector import WeightEventDetector, detect_weight_changes
from .detector_config import DetectorConfig
from .events import CROSSTALK_RATIO, MAX_EVENT_BINS, BinChange, ShelfEvent, shelf_events_from_changes, sub_event
from .explain import (FALLBACK_TAKE_WEIGHT, FALLBACK_WEIGHT, GROUP_SURE_P, HIDDEN_SHARE_MAX_G, HIDDEN_SHARE_MIN,
                      HIDDEN_SHARE_WEIGHT, MIN_UNIT_SD_G, MIN_UNIT_SD_REL, PLATE_GAIN_SD_REL, UNEXPLAINED, Hypothesis,
                      Planogram, ProductWeights, explain_change, hidden_share_hypotheses)

__all__ = [
    "CROSSTALK_RATIO", "FALLBACK_TAKE_WEIGHT", "FALLBACK_WEIGHT", "GROUP_SURE_P", "HIDDEN_SHARE_MAX_G",
    "HIDDEN_SHARE_MIN", "HIDDEN_SHARE_WEIGHT", "MAX_EVENT_BINS", "MIN_UNIT_SD_G", "MIN_UNIT_SD_REL",
    "PLATE_GAIN_SD_REL", "UNEXPLAINED", "BinChange", "DetectorConfig", "Hypothesis", "Planogram", "ProductWeights",
    "ShelfEvent", "WeightChanges", "WeightEventDetector", "detect_weight_changes", "explain_change",
    "hidden_share_hypotheses", "shelf_events_from_changes", "sub_event",
]
