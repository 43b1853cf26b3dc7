"""Fusion's product side (pure NumPy, no Django): what a weight change may be, product × quantity options with
their weight likelihoods (:func:`_pick_options`, :func:`_putback_options`), and the factors on them from where
the hands were (docs/fusion.md, 3–5); what a party holds (:func:`party_holdings`). Read by ``carts.fusion``."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from sensors import weight

from .fusion_config import BinGeometry, FusionConfig
from .fusion_hands import HandEvidence

Holdings = Mapping[str, Mapping[str, int]]  # track id → {barcode: units held}


def party_holdings(track: str, carts: Holdings, party_of: Mapping[str, str]) -> dict[str, int]:
    """Units held by ``track``'s party (itself when it has none): ``{barcode: units}`` summed over members."""
    key = party_of.get(track, track)
    out: dict[str, int] = {}
    for holder, cart in carts.items():
        if party_of.get(holder, holder) == key:
            for code, q in cart.items():
                if q:
                    out[code] = out.get(code, 0) + int(q)
    return out


def _putback_options(event: weight.ShelfEvent, planogram: weight.Planogram, held: set[str],
                     config: FusionConfig) -> list[tuple[str, int, float]]:
    """Re-explain a weight gain over the facing products and the held ones (non-facing × misplaced_prior)."""
    facing = {p for c in event.bin_codes for p in planogram.facings.get(c, ())}
    known = set(planogram.products.barcode.tolist())
    codes = sorted((facing | held) & known)
    if not codes:
        return [(weight.UNEXPLAINED, 0, 1.0)]
    hidden = weight.hidden_share_hypotheses(event.delta_g, event.noise_sd_g, event.bin_codes, planogram)  # facing
    hyps = weight.explain_change(event.delta_g, event.noise_sd_g, planogram.products.select(codes),
                                 max_quantity=config.max_quantity, extra=hidden)
    out = []
    for h in hyps:
        if h.unexplained:
            out.append((h.barcode, 0, h.likelihood))
        elif h.quantity < 0:
            out.append((h.barcode, h.quantity, h.likelihood * (1.0 if h.barcode in facing else config.misplaced_prior)))
    total = sum(o[2] for o in out)
    return [(b, q, p / total) for b, q, p in out] if total > 0 else [(weight.UNEXPLAINED, 0, 1.0)]


def _pick_options(event: weight.ShelfEvent, planogram: weight.Planogram, strays: Holdings,
                  config: FusionConfig) -> list[tuple[str, int, float]]:
    """(barcode, units taken, likelihood) of a pick: the sensors' hypotheses as they come, or, when ``strays``
    (bin → {barcode: units}) lists items lying on the event's bins that do not face them, the change explained
    again over the facing products and those (``sensors.weight.explain_change``, the facing items' hidden shares
    too), a stray product at most the units known to be there."""
    facing = {p for c in event.bin_codes for p in planogram.facings.get(c, ())}
    here: dict[str, int] = {}
    for c in event.bin_codes:
        for b, q in strays.get(c, {}).items():
            if q > 0 and b not in facing:
                here[b] = here.get(b, 0) + int(q)
    known = set(planogram.products.barcode.tolist())
    here = {b: q for b, q in here.items() if b in known}
    if not here or event.disturbance or event.delta_g >= 0:
        opts = [(h.barcode, int(h.quantity), float(h.likelihood)) for h in event.hypotheses
                if h.unexplained or h.quantity > 0]
        return opts or [(weight.UNEXPLAINED, 0, 1.0)]
    hidden = weight.hidden_share_hypotheses(event.delta_g, event.noise_sd_g, event.bin_codes, planogram)
    hyps = weight.explain_change(event.delta_g, event.noise_sd_g,
                                 planogram.products.select(sorted((facing & known) | set(here))),
                                 max_quantity=config.max_quantity, extra=hidden)
    opts = [(h.barcode, int(h.quantity), float(h.likelihood)) for h in hyps
            if h.unexplained or (h.quantity > 0 and (h.barcode not in here or h.quantity <= here[h.barcode]))]
    total = sum(o[2] for o in opts)
    return [(b, q, p / total) for b, q, p in opts] if total > 0 else [(weight.UNEXPLAINED, 0, 1.0)]


def _where_the_hand_was(event: weight.ShelfEvent, opts: list[tuple[str, int, float]], ev: HandEvidence,
                        bins: BinGeometry, planogram: weight.Planogram, config: FusionConfig) -> np.ndarray:
    """(K, H) factor: for an event over several bins facing different products, how near each track's hand came
    to a bin facing each product (Gaussian in metres, sd ``product_sigma_m``; relative to the nearest product,
    so 1 for it). Products facing none of the event's bins (misplaced put-backs) and single-product events: 1."""
    K, H = len(ev), len(opts)
    out = np.ones((K, H))
    faced = {c: set(planogram.facings.get(c, ())) for c in event.bin_codes}
    if K == 0 or len({frozenset(v) for v in faced.values()}) < 2:
        return out
    for j, (code, _, _) in enumerate(opts):
        where = [c for c, prods in faced.items() if code in prods]
        if not where:
            continue
        d = bins.nearest_distance(ev.hand_xyz, where, config.clearance_m)
        out[:, j] = np.exp(-d ** 2 / (2 * config.product_sigma_m ** 2))
    facing_cols = [j for j, o in enumerate(opts) if any(o[0] in p for p in faced.values())]
    if facing_cols:
        best = out[:, facing_cols].max(axis=1, keepdims=True)
        out[:, facing_cols] /= np.maximum(best, 1e-12)
    return out


def _others_took_nothing(ev: HandEvidence, opts: list[tuple[str, int, float]], config: FusionConfig) -> np.ndarray:
    """(K, H) factor for one shopper taking several units while other shoppers' hands were at the bin too: each
    other hand's reach must then have taken nothing, ``∏ (1 − s_m·(1 − touch_prior))`` over the other tracks' hand
    scores ``s_m`` (0: no hand there, 1: a clear reach), against the split between them that
    ``carts.fusion._splits`` scores (each took one). Several units in one grab are rare (the labelled AutoCheckout
    events: 5 of 237), a reach that takes nothing (``touch_prior``) too, so two hands that reached over a
    two-unit change were two takes. Options of one unit or none: 1."""
    K, H = len(ev), len(opts)
    out = np.ones((K, H))
    several = np.array([abs(o[1]) >= config.touch_min_units for o in opts])
    if K < 2 or not several.any():
        return out
    s = np.clip(ev.score, 0.0, 1.0)
    miss = 1.0 - s * (1.0 - config.touch_prior)      # (K,) chance a track's hand took nothing here
    for k in range(K):
        out[k, several] = float(np.prod(np.delete(miss, k)))
    return out


def _off_its_facing(event: weight.ShelfEvent, opts: list[tuple[str, int, float]], planogram: weight.Planogram,
                    config: FusionConfig, strays: Holdings | None = None) -> np.ndarray:
    """(H,) factor for takes of a merged event: ``foreign_prior`` when more than ``foreign_share`` of the weight
    that left came off plates that do not face the product (``event.parts``). An item standing across plates
    rests on plates of its own facing; a take of q units of P whose weight largely left a plate facing only Q is
    one of each (a "mixed" take, which cutting the event finds), not q × P with a unit misplaced there (a plate
    where ``strays`` has units of P counts as facing it). Put-backs,
    the unexplained outcome and events without parts: 1."""
    out = np.ones(len(opts))
    if len(event.parts) < 2 or event.delta_g >= 0:
        return out
    lost = sum(-p.delta_g for p in event.parts if p.delta_g < 0)
    if lost <= 0:
        return out
    for j, (code, q, _) in enumerate(opts):
        if q <= 0 or code == weight.UNEXPLAINED:
            continue
        foreign = sum(-p.delta_g for p in event.parts
                      if p.delta_g < 0 and code not in planogram.facings.get(p.code, ())
                      and (strays or {}).get(p.code, {}).get(code, 0) <= 0)
        if foreign > config.foreign_share * lost:
            out[j] = config.foreign_prior
    return out
