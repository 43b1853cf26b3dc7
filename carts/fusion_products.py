"""Image evidence for fusion: which product the taking hand holds re-weights a take's product hypotheses.

After a take, crops around the taking hand in the next frames give a product likelihood
(:func:`vision.products.product_likelihood`: ``{barcode: probability}`` over the gallery's products). Products
whose weights look alike (two 300 g cartons on neighbouring facings) leave the weight and hand evidence split; the
image tells them apart. :func:`with_product_evidence` multiplies each take option's posterior by the image's
likelihood of its product and re-decides (pure, no Django). The store loop applies it to the likelihood its sink
gives (``carts.loop.StoreLoop._image_evidence``): in the live store the camera workers' crops around the taking
hand (``carts.product_images``), in the offline bench the simulated recogniser (``carts.offline.simulation_products``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from sensors import weight

from .fusion import Decision, Option


def with_product_evidence(decision: Decision, likelihood: Mapping[str, float], *,
                          review_confidence: float = 0.6, mix: float = 0.02) -> Decision:
    """``decision`` re-weighted by the image evidence ``likelihood`` (barcode → probability that the held item
    is that product; sums to about 1 over the recogniser's gallery).

    Each take option's posterior is multiplied by ``λ = (1 − mix) · p + mix / n`` (``n`` products in
    ``likelihood``; ``mix`` keeps a confident but wrong recogniser from vetoing the weight evidence outright); a
    product the recogniser does not know, and the "unexplained" option, get the uninformative ``1 / n``. The
    posteriors are renormalised to their previous total; the best option becomes the decision's product and
    quantity, with ``product`` its new posterior and ``confidence`` the old joint scaled by the new product
    posterior over the old (at most ``attribution``); ``product_image`` keeps the likelihood's top three products
    (the ``image`` sense of ``store.billing.senses``). A decision that went to review for low confidence only
    leaves review when the new confidence reaches ``review_confidence``; one that reaches it no longer does; a
    review for any other reason stays. The reason gains what the image said.

    Returned unchanged: no evidence (empty ``likelihood``), a put-back, no product or no shopper decided, noise,
    and decisions with several parts or shares (the image follows one hand: those need per-hand evidence). Raises
    ValueError for a negative or non-finite probability.
    """
    if any(not (0.0 <= float(p) < float("inf")) for p in likelihood.values()):
        raise ValueError("product likelihoods must be finite and non-negative")
    if (not likelihood or decision.noise or decision.barcode is None or decision.track_id is None
            or decision.quantity <= 0 or decision.parts or len(decision.shares) > 1 or not decision.options):
        return decision
    n = len(likelihood)
    total_p = float(sum(likelihood.values())) or 1.0

    def lam(o: Option) -> float:
        if o.barcode == weight.UNEXPLAINED or o.barcode not in likelihood:
            return 1.0 / n
        return (1.0 - mix) * float(likelihood[o.barcode]) / total_p + mix / n

    takes = [o for o in decision.options if o.quantity > 0 or o.barcode == weight.UNEXPLAINED]
    mass = sum(o.posterior for o in takes)
    w = [o.posterior * lam(o) for o in takes]
    if mass <= 0 or sum(w) <= 0:
        return decision
    scale = mass / sum(w)
    new = {(o.barcode, o.quantity): o.posterior * lam(o) * scale for o in takes}
    options = tuple(sorted((replace(o, posterior=new.get((o.barcode, o.quantity), o.posterior))
                            for o in decision.options), key=lambda o: -o.posterior))
    best = next((o for o in options if o.barcode != weight.UNEXPLAINED and o.quantity > 0), None)
    old = new_old = decision.product
    top = tuple((str(b), float(p) / total_p) for b, p in sorted(likelihood.items(), key=lambda kv: -kv[1])[:3])
    if best is None or old <= 0:
        return replace(decision, options=options, product_image=top)
    new_old = best.posterior
    conf = min(decision.confidence * new_old / old, decision.attribution)
    said = ", ".join(f"{b} {p:.2f}" for b, p in sorted(likelihood.items(), key=lambda kv: -kv[1])[:3])
    changed = (best.barcode, best.quantity) != (decision.barcode, decision.quantity)
    note = (f"; image of the held item: {said} → {best.barcode} × {best.quantity:+d}"
            + (f" instead of {decision.barcode} × {decision.quantity:+d}" if changed else ""))
    low_only = decision.review and decision.reason.startswith("confidence ")
    review = decision.review
    base = decision.reason
    if low_only:
        base = base.split(": ", 1)[1] if ": " in base else base
        review = conf < review_confidence
    elif not decision.review:
        review = conf < review_confidence
    reason = base + note
    if review and (low_only or not decision.review):
        reason = f"confidence {conf:.3f} below {review_confidence:.2f}: " + reason
    elif review:
        reason = decision.reason + note
    shares = ((decision.shares[0][0], best.quantity),) if decision.shares else ((decision.track_id, best.quantity),)
    charge = decision.charge_track or decision.track_id
    return replace(decision, barcode=best.barcode, quantity=best.quantity, confidence=conf, product=new_old,
                   review=review, reason=reason, options=options, shares=shares, charge_track=charge,
                   product_image=top)
