"""Where the store loop's outputs go (pure Python, no Django): :class:`LoopSink`, the protocol its shells implement
(``carts.pipeline.DatabaseSink`` on the database, ``carts.offline.evaluation.MemorySink`` in memory)."""
from __future__ import annotations

from typing import Hashable, Mapping, Protocol, Sequence

from sensors import weight

from .fusion import Decision


class LoopSink(Protocol):
    """Where the loop's outputs go and what it reads back (the database, or memory for a benchmark).

    Event keys are the sink's own handles for stored shelf events (a database id, a row number); review keys
    likewise for review items. Every method must be idempotent on its key: a loop restored from a checkpoint may
    hand the same output again.
    """

    def shelf_event(self, event: weight.ShelfEvent) -> Hashable | None:
        """Store a detected shelf event; its key, or None when it is not for fusion (a restock)."""

    def decided(self, key: Hashable) -> bool:
        """The event was decided already (by a worker before a restart, or an earlier attempt of a replay):
        the loop does not decide it again."""

    def holdings(self, tracks: Sequence[str]) -> dict[str, dict[str, int]]:
        """What each of ``tracks``' visits holds now: {track: {barcode: units}} (tracks without a visit omitted)."""

    def open_reviews(self, keys: Sequence[Hashable]) -> list[Hashable]:
        """Those of ``keys`` whose review item is still open, oldest first."""

    def noise(self, key: Hashable, event: weight.ShelfEvent, decision: Decision) -> None:
        """A weak change nobody reached for: nothing to do."""

    def apply(self, key: Hashable, event: weight.ShelfEvent, decision: Decision) -> str | None:
        """Apply ``decision.changes`` to the carts, all or none; None when applied, else why it could not be (the
        loop then sends the event to review with that reason)."""

    def review(self, key: Hashable, event: weight.ShelfEvent, decision: Decision, reason: str) -> Hashable:
        """Send the event to people; returns the review item's key."""

    def wait(self, key: Hashable, event: weight.ShelfEvent, decision: Decision, follows: Hashable) -> bool:
        """Keep a put-back waiting for the review ``follows`` of its pick; False when it cannot wait (the loop
        then sends it to review)."""

    def bind(self, track: str, visit: Hashable, t: float, *, continues: str | None = None) -> None:
        """The loop bound ``track`` to ``visit`` at ``t`` (a gate scan; ``continues``: the lost track of the same
        visit that this new track carries on)."""

    def unbound(self, visit: Hashable, t: float, reason: str) -> None:
        """No track could be bound to the visit scanned in at ``t``: flag it (its events go to review)."""

    def exit(self, track: str, visit: Hashable, t: float, reason: str) -> None:
        """The loop saw ``track``'s shopper leave at ``t`` (the visit exits; billing follows after the settle)."""

    def forget(self, track: str) -> None:
        """The loop forgot ``track`` (its visit ended long ago): drop what the sink keeps for it in memory."""

    def alert(self, kind: str, message: str, *, key: str | None = None) -> None:
        """Something people should look at (a shopper lost inside the store); ``key``: what it is about (one
        alert per key and kind)."""

    # Optional (RFID; a sink without them ignores tags):
    #   tag_evidence(key, tags: list[dict]) — the shelf tag events (TagEvent.as_dict() + "hand": bool) that back
    #       the shelf event ``key``, called before apply/review/wait of it;
    #   exit_tags(track, attribution: sensors.rfid.ExitAttribution) — the tags that left with ``track``'s shopper,
    #       called just before ``checkout(track, …)``: they go on the receipt by the rules of
    #       ``sensors.rfid.exit_charges``.
    # Optional (product images; :class:`ProductEvidenceSink`): product_likelihood(event, decision).

    def checkout(self, track: str, t: float) -> bool:
        """The shopper of ``track`` left and every event that could be theirs is decided: bill the visit (``t``:
        the end of the settle time, s on the sources' clock). True when a receipt was issued (False: the visit
        waits for a review, or its payment failed)."""


class ProductEvidenceSink(Protocol):
    """The optional method of a :class:`LoopSink` with product image evidence (``carts.product_images``; the loop
    asks it only of a sink that has it, ``carts.loop.StoreLoop._image_evidence``)."""

    def product_likelihood(self, event: weight.ShelfEvent, decision: Decision) -> Mapping[str, float] | None:
        """What the camera saw in the taking hand of ``decision``'s take: ``{barcode: probability}``, or None
        (or empty) when it has nothing to say."""
