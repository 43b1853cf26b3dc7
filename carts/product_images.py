"""The product in the taking hand, in the live store: the store loop's image evidence from the camera workers' crops.

When the store loop decides a take it asks its sink for ``product_likelihood(event, decision)``
(``carts.loop.StoreLoop._image_evidence``). In the live store the sink (``carts.pipeline.DatabaseSink``) hands the
question to a :class:`HandImageEvidence`: it reads the crops the camera workers cut around the chosen track's wrists
(``vision.hand_crops.HandCropStore``; a shopper the store worker joined from several cameras has them under each
camera's own track key) near the event's end, keeps the wrist that was nearest the event's bins (the
hand that took), embeds at most ``max_crops`` of its crops and scores them against the store's product gallery
(``vision.products.product_likelihood``). The loop decides an event once its sources have reached
``t_end + FusionConfig.pad_s``, and a camera worker stores a frame's crops before it publishes the frame's
observations, so the crops up to then are there.

No evidence — and the decision stands on weight and hands — when: the decision is not one shopper's take of one
product (a put-back, a mixed or split event: the image follows one hand), no crop of that track is stored (no
camera with a pose sees it, the feature is off), there is no gallery yet, the model cannot be loaded (torch or the
weights not installed: said once in the log, then only counted), or every crop is unusable. Each outcome is
counted in :attr:`HandImageEvidence.counts`.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from sensors import weight
from store.checks import check_numbers

from .fusion import Decision
from .fusion_config import BinGeometry
from vision.product_embedder import BadImage, ModelUnavailable, Rejected
from vision.products import GalleryMismatch, product_likelihood
from vision.product_service import embedder, product_gallery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandImageConfig:
    """Which crops are read. ``before_s``/``after_s``: seconds before and after the event's end (``after_s`` at
    most ``FusionConfig.pad_s``, 1.5 s: the loop decides no later than that, later crops are not stored yet);
    ``max_crops``: crops embedded per decision (each about 30 ms of one core; spread evenly over the window);
    ``hand_m``: a wrist farther than this from every bin of the event at its nearest never took the item."""

    before_s: float = 0.3
    after_s: float = 1.5
    max_crops: int = 4
    hand_m: float = 0.8

    def __post_init__(self) -> None:
        check_numbers(self, ("before_s", "after_s"), low=0)
        check_numbers(self, ("max_crops",), low=1, integer=True)
        check_numbers(self, ("hand_m",), low=0, low_open=True)


class HandImageEvidence:
    """``product_likelihood(event, decision)`` for a live sink (module docstring).

    ``crops``: the store's ``vision.hand_crops.HandCropStore``; ``bins``: bin geometry (metres, store
    coordinates); ``tracks``: the loop's track id → the other track keys its crops are filed under (a shopper the
    store worker joined from several cameras: each camera's own track keys, ``carts.camera_join.CameraJoin
    .camera_tracks``; None: only the id itself); ``gallery``: returns the product gallery or None (default ``vision.product_service
    .product_gallery``); ``embedder``: returns the embedder (default ``vision.product_service.embedder``).
    :attr:`counts`: outcome → how many decisions (``used``, ``not one take``, ``no crops``, ``no hand near the
    bins``, ``no gallery``, ``gallery unreadable``, ``model unavailable``, ``crops unusable``, ``crop store
    unavailable``)."""

    def __init__(self, crops: Any, bins: BinGeometry, *, tracks: Callable[[str], Sequence[str]] | None = None,
                 gallery: Callable[[], Any] | None = None,
                 embedder: Callable[[], Any] | None = None, config: HandImageConfig = HandImageConfig()) -> None:
        self.crops = crops
        self.bins = bins
        self.tracks = tracks
        self._gallery = gallery
        self._embedder = embedder
        self.config = config
        self.counts: Counter = Counter()
        self.unavailable: str | None = None  # why the model cannot be loaded (then not tried again)
        self.rejected: list[tuple[str, str]] = []  # the last unusable crops, (source, reason)

    def _none(self, reason: str) -> dict[str, float] | None:
        self.counts[reason] += 1
        return None

    def __call__(self, event: weight.ShelfEvent, decision: Decision) -> dict[str, float] | None:
        """``{barcode: probability}`` over the gallery's products, or None (no evidence; module docstring)."""
        if (decision.noise or decision.track_id is None or decision.barcode is None or decision.quantity <= 0
                or decision.parts or len(decision.shares) > 1):
            return self._none("not one take")
        if self.unavailable is not None:
            return self._none("model unavailable")
        cfg = self.config
        t_end = float(event.t_end)
        try:
            track = str(decision.track_id)
            keys = [track, *(k for k in (self.tracks(track) if self.tracks else ()) if k != track)]
            crops = sorted((c for k in keys for c in self.crops.between(k, t_end - cfg.before_s - 1.0,
                                                                         t_end + cfg.after_s)), key=lambda c: c.t)
        except Exception as exc:  # the cache (Redis) down: decide without the image
            log.warning("hand crops of %s unreadable: %s", decision.track_id, exc)
            return self._none("crop store unavailable")
        if not crops:
            return self._none("no crops")
        chosen = self._taking_hand(event, crops)
        if not chosen:
            return self._none("no hand near the bins")
        try:
            gallery = self._gallery() if self._gallery else _default_gallery()
        except ValueError as exc:  # a gallery of another model, or a damaged file
            log.warning("product gallery unreadable: %s", exc)
            return self._none("gallery unreadable")
        if gallery is None or not len(gallery.labels):
            return self._none("no gallery")

        images, rejected = [], Rejected()
        for c in chosen:
            try:
                images.append(c.rgb())
            except BadImage as exc:
                rejected.add(exc.source, exc.reason)
        try:
            emb = self._embedder() if self._embedder else _default_embedder()
            p = product_likelihood(gallery, images, emb, rejected=rejected) if images else {}
        except ModelUnavailable as exc:
            self.unavailable = str(exc)
            log.error("product image evidence off: %s", exc)
            return self._none("model unavailable")
        except GalleryMismatch as exc:  # a gallery of another backbone, handed over by the caller
            log.warning("product gallery unreadable: %s", exc)
            return self._none("gallery unreadable")
        self.rejected = (self.rejected + rejected.items)[-20:]
        if not p:
            return self._none("crops unusable")
        self.counts["used"] += 1
        return p

    def _taking_hand(self, event: weight.ShelfEvent, crops: list) -> list:
        """The crops of the wrist (camera, side) that came nearest the event's bins, from ``t_end − before_s`` to
        ``t_end + after_s``, at most ``max_crops`` spread evenly; [] when no wrist came within ``hand_m``."""
        cfg = self.config
        idx = [self.bins.index[c] for c in event.bin_codes if c in self.bins.index]
        if not idx:
            return []
        centres = self.bins.centre[idx]
        best, best_d = None, math.inf
        for c in crops:
            d = float(np.min(np.linalg.norm(centres - np.asarray(c.wrist_xyz), axis=1)))
            if d < best_d:
                best, best_d = (c.camera, c.side), d
        if best is None or best_d > cfg.hand_m:
            return []
        t0, t1 = float(event.t_end) - cfg.before_s, float(event.t_end) + cfg.after_s
        mine = [c for c in crops if (c.camera, c.side) == best and t0 <= c.t <= t1]
        if len(mine) > cfg.max_crops:
            pick = np.linspace(0, len(mine) - 1, cfg.max_crops).round().astype(int)
            mine = [mine[i] for i in pick]
        return mine


def _default_gallery():
    return product_gallery()


def _default_embedder():
    return embedder()
