"""Explaining a weight change as products: which product × quantity fits Δ, and what is shelved where (pure NumPy).

Explanation (:func:`explain_change`): Gaussian likelihood of Δ under "q units of product p taken", mean −q·μ_p,
variance 2·noise² (the before and after levels each carry the level noise) + |q|·σ_p² (the sum of |q|
independent unit weights, each N(μ_p, σ_p²), as in AIM3S's product weight model, ``computeWeightProbability.m``),
plus an explicit "unexplained" outcome (a reject option) so an event nothing fits goes to review.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np

from store.checks import check_rows

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
        check_rows(self, ("mean_g", "sd_g"), n, dtype=np.float64)
        for i, b in enumerate(self.barcode):
            if not isinstance(b, str) or not b:
                raise ValueError(f"ProductWeights.barcode[{i}] must be a non-empty str, got {b!r}")
        if len(set(self.barcode.tolist())) != n:
            counts = Counter(self.barcode.tolist())
            dup = next(b for b in self.barcode if counts[b] > 1)
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
    #: :meth:`adjacent`'s map, built on first use (not a field to give).
    _adjacent: dict[str, frozenset[str]] | None = field(default=None, init=False, repr=False, compare=False)

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

    def adjacent(self, code: str) -> frozenset[str]:
        """The bins next to ``code`` in either direction of ``neighbours`` (the symmetrised graph; ``code`` itself
        only where it lists itself). Built once per planogram on first use: a change's look at its neighbours reads
        this instead of scanning every bin's list (3 ms a change in a store of 7 650 plates)."""
        adj = self._adjacent
        if adj is None:
            sets: dict[str, set[str]] = {}
            for a, near in self.neighbours.items():
                for b in near:
                    sets.setdefault(a, set()).add(b)
                    sets.setdefault(b, set()).add(a)
            adj = {k: frozenset(v) for k, v in sets.items()}
            object.__setattr__(self, "_adjacent", adj)
        return adj.get(code, frozenset())

    def shelf_numbers(self) -> dict[str, int]:
        """Bin code → shelf number (the same number for every bin of a shelf, another for every other shelf), a
        shelf being a connected component of the (symmetrised) neighbour graph."""
        shelf: dict[str, int] = {}
        for start in self.bin_codes:
            if start in shelf:
                continue
            k = len(shelf)
            stack = [start]
            shelf[start] = k
            while stack:
                for nb in self.adjacent(stack.pop()):
                    if nb not in shelf:
                        shelf[nb] = k
                        stack.append(nb)
        return shelf


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


#: Share of an item standing across two plates that rests on the plate(s) that saw it, when the other plate's
#: share went unseen: between this and 1. The labelled AutoCheckout events put 105 of 237 items on two plates;
#: the simulator splits them uniformly over 25–75 %; 20 % keeps a tiny sliver from passing for a whole item.
HIDDEN_SHARE_MIN = 0.2
#: Most grams an item's share can leave on a plate unseen: the weak gate (3·√2·σ, ``DetectorConfig.weak_k``) of a
#: plate at the 95th percentile of BENCHMARK-1's noise (σ = 9.7 g,
#: ``carts.offline.simulation_config.PLATE_SD_QUANTILES_G``).
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
    near = set().union(*(planogram.adjacent(c) for c in bin_codes)) - set(bin_codes)
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
