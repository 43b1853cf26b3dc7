"""What the weight detector reports: settled weight changes on bins, as parallel arrays (pure NumPy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from store.checks import check_array, check_rows


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
    #: None (the default) becomes all False in ``__post_init__``, so the field is always an array once built
    weak: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        (n,) = check_array("WeightChanges.bin_index", self.bin_index, (None,), np.int64)
        check_rows(self, ("t_start", "t_end", "before_g", "after_g", "delta_g", "noise_sd_g"), n, dtype=np.float64)
        if self.weak is None:
            object.__setattr__(self, "weak", np.zeros(n, dtype=bool))
        check_rows(self, ("weak",), n, dtype=np.bool_)
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
        """No changes (all arrays of length 0). Built without ``__post_init__``'s checks, which length-0 arrays of
        the right dtypes pass by construction (the detector returns one per block in which nothing settled; a test
        compares it with the checked constructor's)."""
        z = np.zeros(0)
        out = object.__new__(cls)
        for name, value in zip(_CHANGE_FIELDS, (np.zeros(0, np.int64), z, z, z, z, z, z, np.zeros(0, dtype=bool))):
            object.__setattr__(out, name, value)
        return out

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


def changes_from_rows(rows: list[tuple]) -> WeightChanges:
    """``rows`` of (bin index, t_start, t_end, before_g, after_g, delta_g, noise_sd_g, weak) → :class:`WeightChanges`."""
    if not rows:
        return WeightChanges.empty()
    cols = list(zip(*rows))
    t_start, t_end, before_g, after_g, delta_g, noise_sd_g = (np.asarray(c, dtype=np.float64) for c in cols[1:7])
    return WeightChanges(np.asarray(cols[0], dtype=np.int64), t_start, t_end, before_g, after_g, delta_g, noise_sd_g,
                         np.asarray(cols[7], dtype=bool))
