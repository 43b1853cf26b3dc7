"""Product recognition in the simulator (pure NumPy, no Django): what the camera says the taking hand holds.

For each simulated take of one product, :func:`product_likelihoods` draws the recogniser's output (a likelihood
over the store's catalogue, as ``vision.products.product_likelihood`` gives) from a confusion model
(:class:`RecognitionModel`, parameters and their sources in docs/recognition.md). :class:`ProductEvidence` hands
it to the store loop (``carts.loop.StoreLoop`` asks its sink's ``product_likelihood``) for the decision on the
shelf event that take caused, when fusion gave it to the taking track (the crops follow that track's hand).
:func:`with_lookalike_label` marks the takes whose weight a product on the same or a neighbouring facing matches
("look-alike"): weight and hand alone cannot split those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from sensors import weight
from store.checks import check_numbers

#: Scenario label of a take with a look-alike neighbour (:func:`with_lookalike_label`).
LOOKALIKE = "look-alike"


@dataclass(frozen=True)
class RecognitionModel:
    """The recogniser's confusion, per take (docs/recognition.md gives each source).

    ``top1``: share of takes whose most likely product is the true one (0.80: ``make bench-products``, the store's
    default gallery — EfficientNet-Lite2, its tail tuned on 6 photos per product, linear head — on the
    grocery-store test split, 81 fine classes). ``top5``: share with the true product among the five most likely
    (0.98, same run). ``right_p`` / ``wrong_p``: mean probability of the top product when it is right / wrong (0.84
    / 0.56 measured on that run, the temperature fitted on photos the tail did not learn: ECE 0.06),
    ``concentration`` of their Beta draws;
    ``floor``: probability mass spread evenly over the whole catalogue (no product is ever ruled out).
    ``sibling_share``: of the wrong top guesses, the share that go to a look-alike of the true product (same
    weight, same or neighbouring facing: often the same brand in another flavour, which a recogniser confuses
    most) where it has one, instead of a product drawn at random (0.33: the share of the bench's wrong guesses
    that stay within the true product's parent class, (0.865 − 0.800) / (1 − 0.800), docs/recognition.md).
    Raises ValueError for shares outside [0, 1], ``top5 < top1`` or a non-positive concentration.
    """

    top1: float = 0.80
    top5: float = 0.98
    right_p: float = 0.84
    wrong_p: float = 0.56
    concentration: float = 6.0
    floor: float = 0.02
    sibling_share: float = 0.33

    def __post_init__(self) -> None:
        check_numbers(self, ("top1", "top5", "right_p", "wrong_p", "floor", "sibling_share"), low=0, high=1)
        if self.top5 < self.top1:
            raise ValueError(f"RecognitionModel.top5 ({self.top5}) must be ≥ top1 ({self.top1})")
        check_numbers(self, ("concentration",), low=0, low_open=True)


def _beta(rng: np.random.Generator, mean: float, k: float) -> float:
    mean = min(max(mean, 1e-3), 1 - 1e-3)
    return float(rng.beta(mean * k, (1 - mean) * k))


def draw_likelihood(true: str, catalogue: Sequence[str], model: RecognitionModel, rng: np.random.Generator, *,
                    siblings: Sequence[str] = ()) -> dict[str, float]:
    """One take's recogniser output for a held ``true`` product: ``{barcode: probability}`` over ``catalogue``
    (sums to 1). Top product = ``true`` with probability ``top1``, else another product: one of ``siblings`` (its
    look-alikes) with probability ``sibling_share`` when it has any, else one drawn at random; the true product,
    when not on top, is among the next four with probability ``(top5 − top1) / (1 − top1)``. Raises ValueError
    when ``true`` is not in ``catalogue`` or the catalogue has fewer than two products."""
    cat = list(dict.fromkeys(catalogue))
    if true not in cat:
        raise ValueError(f"product {true!r} is not in the recogniser's catalogue")
    if len(cat) < 2:
        raise ValueError("the recogniser's catalogue needs at least two products")
    others = [b for b in cat if b != true]
    right = rng.random() < model.top1
    picks = list(rng.choice(len(others), size=min(5, len(others)), replace=False))
    ranked = [others[i] for i in picks]          # candidates for ranks 1–5 other than the true product
    sib = [b for b in siblings if b in cat and b != true]
    if not right and sib and rng.random() < model.sibling_share:
        first = sib[int(rng.integers(0, len(sib)))]
        ranked = [first] + [b for b in ranked if b != first]
    if right:
        order = [true] + ranked[:4]
    else:
        near = rng.random() < (model.top5 - model.top1) / max(1e-9, 1 - model.top1)
        order = ranked[:1] + ([true] + ranked[1:4] if near else ranked[1:5])
        if near:  # the true product anywhere in ranks 2–5
            pos = int(rng.integers(1, min(5, len(order))))
            order.remove(true)
            order.insert(pos, true)
    top = _beta(rng, model.right_p if right else model.wrong_p, model.concentration)
    rest = np.sort(rng.dirichlet(np.ones(len(order) - 1)))[::-1] * (1 - top) if len(order) > 1 else np.zeros(0)
    # the ranks decide who gets which value: the largest goes to the top product, and so on
    probs = np.sort(np.concatenate([[top], rest]))[::-1] * (1 - model.floor)
    out = {b: model.floor / len(cat) for b in cat}
    for b, p in zip(order, probs):
        out[b] += float(p)
    return out


def product_likelihoods(events, catalogue: Sequence[str], model: RecognitionModel = RecognitionModel(), *,
                        seed: int = 0, siblings: Mapping[str, Sequence[str]] | None = None
                        ) -> tuple[dict[str, float] | None, ...]:
    """One entry per truth event (``carts.offline.simulation_truth.TruthEvents``): the recogniser's likelihood for a
    take of one product (one line, quantity > 0), None otherwise (a put-back, a mixed take, nothing taken).
    ``siblings``: product → its look-alikes (:func:`lookalike_products`). Deterministic for ``seed``, and drawn from a
    generator of its own (the session's simulation is unchanged)."""
    rng = np.random.default_rng([int(seed), 6007])
    out: list[dict[str, float] | None] = []
    for lines in events.lines:
        if len(lines) == 1 and lines[0][1] > 0 and lines[0][0] in catalogue:
            out.append(draw_likelihood(lines[0][0], catalogue, model, rng,
                                       siblings=sorted((siblings or {}).get(lines[0][0], ()))))
        else:
            out.append(None)
    return tuple(out)


class ProductEvidence:
    """The simulated recogniser as the store loop's sink asks it (``product_likelihood(event, decision)``): the
    likelihood of the truth take behind shelf ``event`` — one whose bins meet the event's and whose weight moved
    within ``slack_s`` of it — made by the track fusion chose (the crops follow that track's hand); None when no
    such take, or several, or fusion chose no track or another one (that hand holds nothing new)."""

    def __init__(self, events, likelihoods: Sequence[Mapping[str, float] | None], *, slack_s: float = 1.0) -> None:
        if len(likelihoods) != len(events):
            raise ValueError(f"{len(likelihoods)} likelihoods for {len(events)} truth events")
        self.events = events
        self.likelihoods = tuple(likelihoods)
        self.slack_s = float(slack_s)
        self.asked = 0
        self.given = 0

    def __call__(self, event: weight.ShelfEvent, decision) -> Mapping[str, float] | None:
        self.asked += 1
        ev, codes = self.events, set(event.bin_codes)
        hits = [i for i in range(len(ev)) if self.likelihoods[i] is not None
                and event.t_start - self.slack_s <= ev.t[i] <= event.t_end + self.slack_s
                and codes & set(ev.bins[i])]
        if len(hits) != 1 or decision.track_id is None or str(ev.track[hits[0]]) != decision.track_id:
            return None
        self.given += 1
        return self.likelihoods[hits[0]]


def lookalikes(planogram: weight.Planogram, *, noise_g: float = 2.0, k: float = 2.0) -> dict[str, set[str]]:
    """bin code → the products facing it that have a look-alike on the same or a neighbouring bin: another product
    whose unit weight is within ``k · √(sd_a² + sd_b² + noise_g²)`` grams (the weight model cannot tell them
    apart). ``noise_g``: a quiet plate's noise (BENCHMARK-1: median 1.4 g)."""
    return {code: set(found) for code, found in _lookalike_map(planogram, noise_g, k)[0].items()}


def lookalike_products(planogram: weight.Planogram, *, noise_g: float = 2.0, k: float = 2.0) -> dict[str, set[str]]:
    """product → its look-alikes on the same or neighbouring bins (:func:`lookalikes`' rule)."""
    return _lookalike_map(planogram, noise_g, k)[1]


def _lookalike_map(planogram: weight.Planogram, noise_g: float, k: float
                   ) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    pw = planogram.products
    mean = {str(b): float(m) for b, m in zip(pw.barcode, pw.mean_g)}
    sd = {str(b): float(s) for b, s in zip(pw.barcode, pw.sd_g)}
    out: dict[str, set[str]] = {}
    pairs: dict[str, set[str]] = {}
    for code in planogram.bin_codes:
        here = planogram.facings.get(code, ())
        near = set(here)
        for n in planogram.neighbours.get(code, ()):
            near |= set(planogram.facings.get(n, ()))
        for a in here:
            if a not in mean:
                continue
            for b in sorted(near - {a}):
                if b in mean and abs(mean[a] - mean[b]) <= k * math.sqrt(sd[a] ** 2 + sd[b] ** 2 + noise_g ** 2):
                    out.setdefault(code, set()).add(a)
                    pairs.setdefault(a, set()).add(b)
    return out, pairs


def with_lookalike_label(events, planogram: weight.Planogram, **kw):
    """``events`` (``TruthEvents``) with :data:`LOOKALIKE` added to the scenarios of every take of one product
    that has a look-alike (:func:`lookalikes`, ``kw`` passed on) on one of its bins."""
    alike = lookalikes(planogram, **kw)
    scen = np.empty(len(events), dtype=object)
    for i in range(len(events)):
        labels = tuple(events.scenarios[i])
        lines = events.lines[i]
        if len(lines) == 1 and lines[0][1] > 0 and any(lines[0][0] in alike.get(c, ()) for c in events.bins[i]):
            labels += (LOOKALIKE,)
        scen[i] = labels
    return replace(events, scenarios=scen)


def simulate_recognition(sim, model: RecognitionModel = RecognitionModel()):
    """``sim`` (``carts.offline.simulation.Simulation``) with ``product_evidence``: :func:`product_likelihoods` of its truth
    events over its store's catalogue, seeded by its config's seed (the rest of the session is unchanged)."""
    from .evaluation import planogram_from_store

    catalogue = [str(p["barcode"]) for p in sim.store["products"]]
    siblings = lookalike_products(planogram_from_store(sim.store))
    return replace(sim, product_evidence=product_likelihoods(sim.events, catalogue, model, seed=sim.config.seed,
                                                             siblings=siblings))
