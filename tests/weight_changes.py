"""What the weight tests share (``tests/test_sensors_weight_*.py``): the plates' sampling rate and weight changes
built by hand."""
from __future__ import annotations

import numpy as np

from sensors.weight import WeightChanges

RATE = 60.0


def _changes(**kw) -> WeightChanges:
    n = len(kw.get("bin_index", [0]))
    base = dict(bin_index=np.zeros(n, np.int64), t_start=np.zeros(n), t_end=np.ones(n), before_g=np.zeros(n),
                after_g=np.zeros(n), delta_g=np.zeros(n), noise_sd_g=np.ones(n))
    base.update({k: np.asarray(v, dtype=base[k].dtype) for k, v in kw.items()})
    return WeightChanges(**base)
