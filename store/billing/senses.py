"""Which senses supported a cart change and a receipt line (pure, no Django).

The vocabulary, in the order a receipt shows it: ``weight`` (a shelf event: the plate's weight changed),
``hand`` (a hand of the shopper's track reached into the bin while it changed), ``image`` (the recogniser's
likelihood of the held product re-weighted the decision, ``carts.fusion_products``), ``tag`` (an RFID tag: the
shelf antenna saw it leave, or it left with the shopper through the exit lane), ``staff`` (a person decided it
in review, or a manager corrected the cart). Stored as a list on ``CartEvent.senses`` and ``ReceiptLine.senses``;
``None`` there means unknown (rows written before senses were recorded).
"""
from __future__ import annotations

from typing import Iterable, Sequence

WEIGHT, HAND, IMAGE, TAG, STAFF = "weight", "hand", "image", "tag", "staff"
SENSES: tuple[str, ...] = (WEIGHT, HAND, IMAGE, TAG, STAFF)

#: A hand counts as the ``hand`` sense when its fusion score reached this (``carts.fusion_config.FusionConfig.
#: weak_hand_min``: within about 0.15 m of the bin while the weight changed, and reaching). A shopper whose hands
#: were hidden (``carts.fusion_hands.hidden_hands`` scores at most 0.25) or a hand resting by the shelf (≈ 0.3) does not.
HAND_MIN_SCORE = 0.5


def senses_checked(value: Iterable[str] | None) -> tuple[str, ...] | None:
    """``value`` as a tuple of senses in :data:`SENSES` order without repeats; ``None`` stays ``None`` (unknown).

    Raises ValueError naming the first item that is not a sense (a str, not a list of one, is refused too)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"senses must be a list of {', '.join(SENSES)}; got {value!r}")
    got = set()
    for s in value:
        if s not in SENSES:
            raise ValueError(f"unknown sense {s!r}: expected one of {', '.join(SENSES)}")
        got.add(s)
    return tuple(s for s in SENSES if s in got)


def senses_union(values: Iterable[Sequence[str] | None]) -> tuple[str, ...] | None:
    """The senses behind any of ``values`` (each a list of senses, or ``None`` = unknown), in order. ``None``
    when every value is unknown (or there are none); the known ones otherwise. Raises ValueError as
    :func:`senses_checked`."""
    known = [senses_checked(v) or () for v in values if v is not None]
    if not known:
        return None
    return senses_checked([s for v in known for s in v])


def decision_change_senses(decision, *, tags: bool = False, image: bool | None = None,
                           hand_min_score: float = HAND_MIN_SCORE) -> tuple[tuple[str, ...], ...]:
    """The senses behind each of ``decision.changes`` (``carts.fusion.Decision``), in that order.

    Every change comes from a shelf event (``weight``). ``hand``: the track making the change (the change's track
    when it has a hand row among its part's candidates, else the part's actor, ``track_id``: a put-back charged to
    the party member holding the item) scored at least ``hand_min_score``. ``image``: ``image`` if given, else
    whether the decision (or its part) carries recogniser evidence (``product_image``, set by
    ``carts.fusion_products.with_product_evidence``). ``tags``: a shelf antenna's tag events back the event."""
    parts = decision.parts or (decision,)
    out = []
    for part in parts:
        scores = {c.track_id: c.score for c in part.candidates}
        used_image = bool(getattr(part, "product_image", ()) or getattr(decision, "product_image", ())) \
            if image is None else bool(image)
        for track, _q in (part.shares if part.barcode else ()):
            actor = track if track in scores else part.track_id
            s = [WEIGHT]
            if scores.get(actor, 0.0) >= hand_min_score:
                s.append(HAND)
            if used_image:
                s.append(IMAGE)
            if tags:
                s.append(TAG)
            out.append(tuple(s))
    return tuple(out)


def senses_words(value: Sequence[str] | None) -> str:
    """Short words for a page: ``"weight · hand"``; ``"unknown"`` for ``None``, ``"none"`` for an empty list."""
    if value is None:
        return "unknown"
    return " · ".join(value) if value else "none"
