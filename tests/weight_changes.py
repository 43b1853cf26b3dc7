"""What the weight tests share (``tests/test_sensors_weight_*.py``): the plates' sampling rate and weight changes
built by hand, a detector fed in irregular chunks, and the real BENCHMARK-1 pick's shape."""
from __future__ import annotations

import numpy as np

from sensors.weight import WeightChanges, WeightEventDetector

RATE = 60.0


def _changes(**kw) -> WeightChanges:
    n = len(kw.get("bin_index", [0]))
    base = dict(bin_index=np.zeros(n, np.int64), t_start=np.zeros(n), t_end=np.ones(n), before_g=np.zeros(n),
                after_g=np.zeros(n), delta_g=np.zeros(n), noise_sd_g=np.ones(n))
    base.update({k: np.asarray(v, dtype=base[k].dtype) for k, v in kw.items()})
    return WeightChanges(**base)


def push_in_chunks(det: WeightEventDetector, t: np.ndarray, x: np.ndarray, sizes: list[int]) -> WeightChanges:
    """``det`` fed ``t`` (T,) s and ``x`` (T, B) grams in chunks of ``sizes`` samples (cycled), then flushed: the
    changes of every push and the flush, joined (what one batch detection of the stream must equal)."""
    parts, i, k = [], 0, 0
    while i < len(t):
        n = sizes[k % len(sizes)]
        parts.append(det.push(t[i:i + n], x[i:i + n]))
        i, k = i + n, k + 1
    parts.append(det.flush())
    return WeightChanges.concat(parts)


def real_pick_shape(gondolas) -> np.ndarray:
    """The real 1-5-11 pick of BENCHMARK-1 (gondola 1's plate block, ``gondolas``), normalised to 0 before → 1
    after, with its hand-press bump and settling: (26,) samples at 60 Hz."""
    x = gondolas[1].flat_grams()[:, gondolas[1].bin_codes.index("1-5-11")]
    before, after = np.median(x[600:735]), np.median(x[770:900])
    shape = (x[735:761] - before) / (after - before)
    shape[0], shape[-1] = 0.0, 1.0
    return shape
