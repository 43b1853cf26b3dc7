"""Crops around shoppers' hands, kept a few seconds for the product recogniser (issue #14: the product in the hand).

The camera worker (``vision.worker.CameraWorker``) cuts, in each frame it tracks, a square around every wrist it
can place in the image (the wrist's 3-D point projected into this camera's pixels), and puts the crops in a
:class:`HandCropStore`: bounded, keyed by track and second, readable from another process. When the store loop
decides a take, the store worker reads the taking track's crops around the event's end
(``carts.product_images``), embeds them and scores them against the product gallery
(``vision.products.product_likelihood``).

The store is Django's cache: Redis in the production profile (the camera workers and the store worker are separate
processes), process memory in the embedded profile (where they run in one process). Bounded twice: every entry
lives ``ttl_s`` seconds, and one (track, second) entry holds at most ``max_per_bucket`` crops; a camera worker
keeps crops at most every ``min_gap_s`` per wrist, at most ``max_px`` on a side, as JPEG.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from store.checks import check_numbers
from .product_embedder import BadImage

log = logging.getLogger(__name__)

SIDES = ("l_wrist", "r_wrist")


@dataclass(frozen=True)
class HandCrop:
    """One crop around one wrist: ``camera`` name, ``track`` key (as published on the ``obs`` stream), ``side``
    0 left / 1 right, ``t`` s UTC of the frame, ``wrist_xyz`` the wrist in store metres, ``jpeg`` the crop's
    bytes (BGR JPEG, as OpenCV writes it)."""

    camera: str
    track: str
    side: int
    t: float
    wrist_xyz: tuple[float, float, float]
    jpeg: bytes

    def rgb(self) -> np.ndarray:
        """The crop as an ``(H, W, 3)`` uint8 RGB array. Raises ``vision.product_embedder.BadImage`` when the bytes do not
        decode."""
        import cv2

        arr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR) if self.jpeg else None
        if arr is None:
            raise BadImage(f"hand crop {self.camera}/{self.track}@{self.t:.2f}", "JPEG does not decode")
        return np.ascontiguousarray(arr[:, :, ::-1])

    def as_tuple(self) -> tuple:
        return (self.camera, self.track, int(self.side), float(self.t), tuple(float(v) for v in self.wrist_xyz),
                self.jpeg)


@dataclass(frozen=True)
class HandCropConfig:
    """How crops are cut. ``fraction``: the crop's side as a share of the person's box height (a 1.75 m person:
    0.17 → 0.3 m: a held carton with the hand around it; the recogniser is right more often when the item fills
    the crop); ``min_px``/``max_px``: the side's bounds in frame pixels, then
    the crop is scaled down to at most ``max_px`` (the recogniser's input is 224 px); ``min_score``: the least
    wrist keypoint score; ``min_gap_s``: seconds between two crops of one wrist (the camera's 5 fps need not all
    be kept); ``quality``: JPEG quality."""

    fraction: float = 0.17
    min_px: int = 32
    max_px: int = 160
    min_score: float = 0.3
    min_gap_s: float = 0.2
    quality: int = 85

    def __post_init__(self) -> None:
        check_numbers(self, ("fraction",), low=0, high=2, low_open=True)
        check_numbers(self, ("min_px",), low=16, integer=True)
        check_numbers(self, ("max_px",), low=self.min_px, integer=True)
        check_numbers(self, ("quality",), low=1, high=100, integer=True)
        check_numbers(self, ("min_score",), low=0, high=1)
        check_numbers(self, ("min_gap_s",), low=0)


def cut_hand_crops(image: np.ndarray, t: float, *, camera: str, keys: Sequence[str], boxes: np.ndarray,
                   wrists_px: np.ndarray, wrists_xyz: np.ndarray, wrist_score: np.ndarray,
                   config: HandCropConfig = HandCropConfig(), last: dict | None = None) -> list[HandCrop]:
    """The crops of one frame. ``image`` ``(H, W, 3)`` uint8 BGR taken at ``t`` (s UTC); per track ``keys`` (n,),
    ``boxes`` (n, 4) pixels xyxy, ``wrists_px`` (n, 2, 2) pixels [left, right], ``wrists_xyz`` (n, 2, 3) metres,
    ``wrist_score`` (n, 2). A wrist without a finite pixel or 3-D point, below ``min_score``, or whose square
    lies mostly outside the image, gives no crop. ``last``: {(track, side): t of its last crop} (updated), for
    ``min_gap_s``."""
    import cv2

    h, w = image.shape[:2]
    out = []
    for i, key in enumerate(keys):
        bh = float(boxes[i, 3] - boxes[i, 1]) if np.isfinite(boxes[i]).all() else math.nan
        if not bh > 0:
            continue
        side_px = int(round(min(max(config.fraction * bh, config.min_px), 4 * config.max_px)))
        for s in (0, 1):
            u, v = wrists_px[i, s]
            xyz = wrists_xyz[i, s]
            if not (np.isfinite([u, v]).all() and np.isfinite(xyz).all()) or wrist_score[i, s] < config.min_score:
                continue
            if last is not None and t < last.get((str(key), s), -math.inf) + config.min_gap_s - 1e-6:
                continue
            x0, y0 = int(round(u - side_px / 2)), int(round(v - side_px / 2))
            x1, y1 = x0 + side_px, y0 + side_px
            cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if (cx1 - cx0) * (cy1 - cy0) < 0.5 * side_px * side_px:
                continue  # the hand is at the frame's edge: too little of it to recognise anything
            crop = image[cy0:cy1, cx0:cx1]
            big = max(crop.shape[:2])
            if big > config.max_px:
                f = config.max_px / big
                crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                                  interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop), [int(cv2.IMWRITE_JPEG_QUALITY), config.quality])
            if not ok:
                continue
            out.append(HandCrop(camera, str(key), s, float(t), (float(xyz[0]), float(xyz[1]), float(xyz[2])),
                                buf.tobytes()))
            if last is not None:
                last[(str(key), s)] = float(t)
    return out


class HandCropStore:
    """Recent hand crops of one store, shared between processes through a Django cache (module docstring).

    ``store_code``: the store; ``cache``: a Django cache (default ``django.core.cache.cache``); ``ttl_s``: how
    long a crop is kept (seconds; it must outlast the store loop's decision delay, ``FusionConfig.pad_s`` plus
    the slowest source's lag); ``max_per_bucket``: crops kept per track and second (the newest). A writer (one
    camera worker) merges the crops of the current seconds it wrote itself; track keys carry the camera's name,
    so two cameras never write one entry. Cache errors propagate (the caller counts them)."""

    def __init__(self, store_code: str, *, cache: Any = None, ttl_s: float = 20.0, max_per_bucket: int = 12) -> None:
        if ttl_s <= 0 or max_per_bucket < 1:
            raise ValueError(f"HandCropStore needs ttl_s > 0 and max_per_bucket ≥ 1, got {ttl_s}, {max_per_bucket}")
        if cache is None:
            from django.core.cache import cache as default_cache

            cache = default_cache
        self.store_code = store_code
        self.cache = cache
        self.ttl_s = float(ttl_s)
        self.max_per_bucket = int(max_per_bucket)
        self._mine: dict[tuple[str, int], list[tuple]] = {}  # this writer's recent buckets

    def _key(self, track: str, bucket: int) -> str:
        return f"handcrops:{self.store_code}:{track}:{bucket}"

    def put(self, crops: Iterable[HandCrop]) -> int:
        """Keep ``crops``; returns how many. Only this writer's buckets of the last two seconds are merged: a
        crop older than that is dropped (a worker that fell behind has nothing the loop still waits for)."""
        touched: dict[tuple[str, int], list[tuple]] = {}
        n = 0
        for c in crops:
            b = int(math.floor(c.t))
            rows = self._mine.setdefault((c.track, b), [])
            rows.append(c.as_tuple())
            del rows[:-self.max_per_bucket]
            touched[(c.track, b)] = rows
            n += 1
        if touched:
            self.cache.set_many({self._key(k[0], k[1]): list(v) for k, v in touched.items()},
                                timeout=self.ttl_s)
            newest = max(b for _, b in touched)
            for k in [k for k in self._mine if k[1] < newest - 1]:
                del self._mine[k]
        return n

    def between(self, track: str, t0: float, t1: float) -> list[HandCrop]:
        """Crops of ``track`` with ``t0 <= t <= t1`` (s UTC), oldest first; entries that are not crops (another
        writer's format) are skipped."""
        if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0 or t1 - t0 > 60:
            raise ValueError(f"crop window must be finite and at most 60 s, got [{t0}, {t1}]")
        keys = [self._key(str(track), b) for b in range(int(math.floor(t0)), int(math.floor(t1)) + 1)]
        found = self.cache.get_many(keys)
        out = []
        for k in keys:
            for row in found.get(k) or ():
                try:
                    x, y, z = (float(v) for v in row[4])
                    c = HandCrop(str(row[0]), str(row[1]), int(row[2]), float(row[3]), (x, y, z), bytes(row[5]))
                except (TypeError, ValueError, IndexError):
                    continue
                if t0 <= c.t <= t1:
                    out.append(c)
        return sorted(out, key=lambda c: c.t)
