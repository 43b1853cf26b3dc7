"""Fine-tuning the embedder's last blocks on a store's gallery photos (issue #14).

When a gallery is built with enough photos per product for the linear head (:func:`vision.products.build_gallery`),
the network's last ``blocks`` blocks and its head conv are trained on that gallery's photos — the variants a gallery
holds (each photo, its centre crops, their mirrors) plus a few fixed random variants — with a cosine classifier; the
rest of the network (its "front") stays frozen, so each photo's front activations are computed once and training
runs on them alone. The tuned weights (:class:`TunedTail`) are stored in the gallery file; a query is embedded by
the frozen front, then the gallery's tuned tail (and, with ``concat``, the original tail beside it:
:meth:`vision.product_embedder.Embedder.with_tail`). The embedder's name carries the tail's digest, so
:class:`vision.products.GalleryMismatch` and the embedding cache never mix tuned and untuned vectors. CPU only,
deterministic (fixed seeds; the random variants are seeded by each photo's pixels). The gains measured on the
grocery-store test photos are in docs/recognition.md ("Fine-tuning integrated").
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .product_embedder import BadImage, Embedder, EmbeddingCache, load_image, zoomed
from .product_tail import TunedTail, tail_module


@dataclass(frozen=True)
class TuningConfig:
    """Whether and how a linear-head gallery's build fine-tunes the embedder's tail (module docstring).

    ``enabled``: tune at all (the store: ``VISION["PRODUCT_TUNING"]`` / ``$WALKOUT_PRODUCT_TUNING=0`` turns it off;
    a nearest-neighbour gallery, one photo per product, is never tuned); ``min_products``: tune only a gallery of at
    least this many products with photos (fewer classes teach the tail little and it learns them by heart);
    ``blocks``: the last blocks trained, with the head conv (lite0 has 16 blocks, lite2 21; 3 = lite2's blocks 18–20, BatchNorm frozen);
    ``epochs``, ``lr`` (AdamW, one-cycle schedule, the classifier at 10 × ``lr``), ``weight_decay``,
    ``smoothing`` (label smoothing), ``batch`` (samples per step; a sample is one view of one variant),
    ``scale`` (the cosine classifier's logit scale); ``variants``: fixed random variants of each photo added to
    the training set (random resized crop of 35–100 % of the area, mirror half the time, brightness and contrast
    × 0.8–1.2; seeded by ``seed`` and the photo's pixels); ``concat``: a query's embedding keeps the original
    tail's features beside the tuned ones (the tail runs twice per view: ≈ +25 % multiply-adds per crop);
    ``calibration``: how the head's temperature is fitted: "cv" (cross-validation over the gallery's photos, as
    untuned; the tail has seen them all), "held-out" (on ``held_out`` extra random variants of each photo that
    training never saw) or "fold" (a second tail trained without every 5th photo, the temperature fitted on those:
    1.8 × the training; the only one of the three as calibrated as the untuned head, docs/recognition.md); ``seed``: torch's and the variants' seed. The defaults are the best measured
    (docs/recognition.md)."""

    enabled: bool = True
    min_products: int = 20
    blocks: int = 3
    epochs: int = 3
    lr: float = 1e-4
    weight_decay: float = 0.05
    smoothing: float = 0.1
    batch: int = 64
    scale: float = 16.0
    variants: int = 4
    concat: bool = True
    calibration: str = "fold"
    held_out: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.blocks <= 6:
            raise ValueError(f"blocks must be 1–6, got {self.blocks}")
        if self.epochs < 0 or self.variants < 0 or self.held_out < 0 or self.min_products < 2:
            raise ValueError("epochs, variants and held_out must be ≥ 0, min_products ≥ 2")
        if not self.lr > 0 or self.batch < 1:
            raise ValueError(f"lr must be positive and batch ≥ 1, got {self.lr}, {self.batch}")
        if self.calibration not in ("cv", "held-out", "fold"):
            raise ValueError(f"calibration must be 'cv', 'held-out' or 'fold', not {self.calibration!r}")


def random_variant(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random resized crop (area 35–100 %, aspect 3/4–4/3), mirrored half the time, brightness × 0.8–1.2 and
    contrast × 0.8–1.2 (hue and saturation untouched: colour tells packages apart)."""
    h, w = rgb.shape[:2]
    for _ in range(10):
        area = rng.uniform(0.35, 1.0) * h * w
        ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
        if cw <= w and ch <= h:
            break
    else:
        cw, ch = w, h
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    im = rgb[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
    if rng.random() < 0.5:
        im = im[:, ::-1]
    m = im.mean()
    im = (im - m) * rng.uniform(0.8, 1.2) + m * rng.uniform(0.8, 1.2)
    return np.ascontiguousarray(np.clip(im, 0, 255).astype(np.uint8))


def photo_variants(rgb: np.ndarray, *, flip: bool, zooms: Sequence[float], random: int, seed: int
                   ) -> list[np.ndarray]:
    """A gallery photo's variants: first those :func:`vision.product_embedder.embed_many` gives it (the photo,
    then each centre crop of ``zooms``; each followed by its mirror with ``flip``), then ``random``
    :func:`random_variant` s seeded by ``seed`` and the photo's pixels (the same photo always gets the same)."""
    out = []
    for im in [rgb] + [zoomed(rgb, z) for z in zooms]:
        out.append(im)
        if flip:
            out.append(np.ascontiguousarray(im[:, ::-1]))
    if random:
        rng = np.random.default_rng([seed, int(hashlib.sha256(rgb.tobytes()).hexdigest()[:8], 16)])
        out += [random_variant(rgb, rng) for _ in range(random)]
    return out


def front_activations(embedder: Embedder, images: Sequence[np.ndarray], cut: int) -> np.ndarray:
    """``(N, views, C, H, W)`` float16: the frozen front's activations at the input of block ``cut`` for each of
    the embedder's views of each image (inference mode)."""
    import torch

    out = []
    for i in range(0, len(images), embedder.config.batch):
        chunk = images[i:i + embedder.config.batch]
        per_view = []
        for view in embedder.config.views:
            x = torch.from_numpy(np.stack([embedder.preprocess(im, view) for im in chunk]))
            with torch.inference_mode():
                per_view.append(embedder.front(x, cut).numpy().astype(np.float16))
        out.append(np.stack(per_view, axis=1))
    return np.concatenate(out)


@dataclass
class TuningSamples:
    """The gallery photos' variants as training material: ``acts`` ``(N, V, views, C, H, W)`` float16 front
    activations, ``colors`` ``(N, V, 192)``, for N photos and V variants each (the gallery's ``rows`` first, then
    the random ones, then the held-out ones)."""

    acts: np.ndarray
    colors: np.ndarray
    rows: int


def gallery_samples(embedder: Embedder, sources: Sequence, config: TuningConfig, *, flip: bool,
                    zooms: Sequence[float], cache: EmbeddingCache | None = None,
                    progress: Callable[[str], None] | None = None) -> TuningSamples:
    """:class:`TuningSamples` of the photos ``sources`` (paths or arrays, all usable: the gallery's kept photos).
    ``cache``: front activations of photo files seen before (keyed by the embedder, the variants and the file's
    bytes; large: ≈ 0.2 MB a photo, so the store does not keep them). Raises :class:`BadImage` for a photo that
    cannot be read (the gallery's own were read a moment ago)."""
    cut = _cut(embedder, config)
    rows = (2 if flip else 1) * (1 + len(zooms))
    n_random = config.variants + (config.held_out if config.calibration == "held-out" else 0)
    acts, colors = [], []
    t0 = time.monotonic()
    for n, s in enumerate(sources):
        key = None
        if cache is not None and isinstance(s, (str, Path)):
            base = EmbeddingCache.key(embedder, s, flip, bool(zooms))
            # the random variants come from one generator per photo: the first k are the same whatever the count
            key = f"{base}|front{cut}|z{','.join(f'{z:g}' for z in zooms)}|s{config.seed}" if base else None
        hit = cache.get(key) if cache is not None and key else None
        hit_c = cache.get(key + "|colors") if cache is not None and key else None
        if hit is not None and hit_c is not None and len(hit) >= rows + n_random:
            acts.append(hit[:rows + n_random])
            colors.append(hit_c[:rows + n_random])
            continue
        rgb = load_image(s)
        ims = photo_variants(rgb, flip=flip, zooms=zooms, random=n_random, seed=config.seed)
        a, c = front_activations(embedder, ims, cut), embedder.colors(ims).astype(np.float32)
        acts.append(a)
        colors.append(c)
        if cache is not None and key:
            cache.put(key, a)
            cache.put(key + "|colors", c)
        if progress and n % 100 == 99:
            progress(f"front activations: {n + 1} of {len(sources)} photos, {time.monotonic() - t0:.0f} s")
    if not acts:
        raise BadImage("gallery", "no photo to tune on")
    return TuningSamples(np.stack(acts), np.stack(colors), rows)


def _cut(embedder: Embedder, config: TuningConfig) -> int:
    return len(embedder._load()._blocks) - config.blocks


def train_tail(embedder: Embedder, samples: TuningSamples, labels: np.ndarray, n_classes: int,
               config: TuningConfig, progress: Callable[[str], None] | None = None) -> TunedTail:
    """Train the tail on the gallery's variants (the held-out ones left out): each view of each variant is a
    sample labelled with its photo's product (``labels`` ``(N,)`` class indices). A cosine classifier (scale
    ``config.scale``) on the tail's pooled features, cross-entropy with label smoothing, AdamW, one-cycle
    schedule; BatchNorm frozen (eval mode throughout). Deterministic for a given torch thread count (seeded by
    ``config.seed``). Returns the tuned weights (the classifier is dropped)."""
    import torch
    from torch import nn

    net = embedder._load()
    cut = _cut(embedder, config)
    tail = tail_module(net, cut=cut)
    for mod in tail.modules():  # convolutions learn; BatchNorm's statistics and affine stay
        if isinstance(mod, nn.BatchNorm2d):
            for p in mod.parameters():
                p.requires_grad_(False)
    params = [p for p in tail.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(config.seed)
    clf = nn.Linear(tail.conv_head.out_channels, n_classes)
    with torch.no_grad():  # nn.Linear's default init, from a seeded generator
        bound = 1.0 / np.sqrt(clf.in_features)
        clf.weight.uniform_(-bound, bound, generator=gen)
        clf.bias.uniform_(-bound, bound, generator=gen)
    v_train = samples.rows + config.variants
    x_all = samples.acts[:, :v_train]
    n, v, views = x_all.shape[:3]
    x_all = x_all.reshape(n * v * views, *x_all.shape[3:])
    y_all = np.repeat(np.asarray(labels, np.int64), v * views)
    opt = torch.optim.AdamW([{"params": params, "lr": config.lr},
                             {"params": clf.parameters(), "lr": config.lr * 10}], weight_decay=config.weight_decay)
    steps = max(1, config.epochs * int(np.ceil(len(x_all) / config.batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[config.lr, config.lr * 10], total_steps=steps,
                                                pct_start=0.15)
    lossf = nn.CrossEntropyLoss(label_smoothing=config.smoothing)
    t0 = time.monotonic()
    for ep in range(config.epochs):
        perm = np.random.default_rng([config.seed, ep]).permutation(len(x_all))
        total, right = 0.0, 0
        for i in range(0, len(perm), config.batch):
            idx = np.sort(perm[i:i + config.batch])
            x = torch.from_numpy(x_all[idx].astype(np.float32))
            y = torch.from_numpy(y_all[idx])
            f = nn.functional.normalize(tail(x).mean(dim=(2, 3)), dim=1)
            logits = clf(f) * config.scale
            loss = lossf(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            right += int((logits.argmax(1) == y).sum())
        if progress:
            progress(f"tuning epoch {ep + 1}/{config.epochs}: loss {total / len(x_all):.3f}, "
                     f"train accuracy {right / len(x_all):.3f}, {time.monotonic() - t0:.0f} s")
    tail.eval()
    return TunedTail(cut, config.concat, {k: v.detach().numpy().copy() for k, v in tail.state_dict().items()})
