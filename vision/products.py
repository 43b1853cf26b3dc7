"""Which product is in the hand: a per-product gallery of embeddings, a calibrated classifier over it, and the
evidence from several crops of a held item.

Pure Python on NumPy (no torch, no Django here; the embedder is :mod:`vision.product_embedder`). A product's gallery
is the embeddings of its catalogue photos (a manager's one or more photos per product, each also mirrored
left-right). A crop is scored against every product either by its best cosine similarity to that product's photos
(nearest neighbour: one photo per product is enough) or, once most products have two or more photos, by a linear
softmax head fitted on the gallery in seconds (:func:`fit_linear_head`, after whitening by the gallery's
within-class covariance); a temperature-scaled softmax over the class scores gives a probability per product, the
temperature fitted on held-out gallery photos (:func:`fit_temperature`). A new product needs only its photos; a
linear-head gallery of enough products also fine-tunes the network's last blocks on them (:func:`tune_gallery`,
:mod:`vision.product_tuning`: a few CPU minutes per build, the tuned weights stored in the gallery). ``manage.py bench_products`` measures 1 and 6 photos per product on real photos
(docs/recognition.md).
"""
from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .product_embedder import Embedder, EmbeddingCache, Rejected, embed_many, unit
from .product_tuning import TunedTail, TuningConfig, TuningSamples, gallery_samples, train_tail

DEFAULT_TEMPERATURE = 0.05   # nearest neighbour's, fitted leave-one-out on the grocery-store gallery (bench_products)


class GalleryMismatch(ValueError):
    """A gallery whose vectors another embedder made (another backbone, input size, crop or colour weight, or
    another length): scoring a crop against it would compare numbers that do not mean the same thing. The message
    names both embedders; the cure is to rebuild the gallery (``manage.py build_product_gallery``)."""


# ------------------------------------------------------------------------------------------------- the gallery
@dataclass
class Gallery:
    """Embeddings of each product's photos.

    ``labels``: the P products (barcodes or class names), ``(P,)``; ``vectors``: ``(N, D)`` unit float32;
    ``owner``: ``(N,)`` int, the product index of each vector; ``photo``: ``(N,)`` int, which photo of the
    gallery a vector came from (a photo and its mirror share it; used to leave a photo out when fitting the
    temperature); ``model``: :attr:`Embedder.name` of the embedder that made them; ``temperature``: of the
    softmax in :meth:`probabilities` (dimensionless, applied to the class scores); ``head``: a linear classifier
    fitted on the vectors (:func:`fit_linear_head`): when present the class scores are its logits, else the
    nearest-neighbour cosine similarities; ``zooms``: the centre crops (fractions of a side,
    ``EmbedderConfig.zooms``) each photo also added (empty: none; a gallery saved before they existed has none);
    ``tail``: the embedder's last blocks fine-tuned on the gallery's photos (:mod:`vision.product_tuning`; None:
    untuned): its vectors, and every query's, come from the embedder with that tail (:meth:`embedder_for`), whose
    name (``model``) carries the tail's digest.
    """

    labels: np.ndarray
    vectors: np.ndarray
    owner: np.ndarray
    photo: np.ndarray
    model: str
    temperature: float = DEFAULT_TEMPERATURE
    head: "LinearHead | None" = None
    zooms: tuple[float, ...] = ()
    tail: TunedTail | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=object)
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.owner = np.asarray(self.owner, dtype=np.int64)
        self.photo = np.asarray(self.photo, dtype=np.int64)
        n = len(self.vectors)
        if self.vectors.ndim != 2 or len(self.owner) != n or len(self.photo) != n:
            raise ValueError(f"gallery arrays disagree: vectors {self.vectors.shape}, owner {self.owner.shape}, "
                             f"photo {self.photo.shape}")
        if n and (self.owner.min() < 0 or self.owner.max() >= len(self.labels)):
            raise ValueError("gallery owner index out of range of its labels")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @property
    def products(self) -> list[str]:
        return [str(x) for x in self.labels]

    def photos_per_product(self) -> np.ndarray:
        """``(P,)`` number of distinct photos of each product (a mirror is not another photo)."""
        out = np.zeros(len(self.labels), np.int64)
        for o in set(zip(self.owner.tolist(), self.photo.tolist())):
            out[o[0]] += 1
        return out

    @property
    def method(self) -> str:
        return "linear" if self.head is not None else "nearest neighbour"

    @property
    def backbone(self) -> str:
        """The network that made the vectors (the :data:`MODELS` name at the start of :attr:`model`)."""
        return self.model.split("@", 1)[0]

    def embedder_for(self, embedder: "Embedder") -> "Embedder":
        """The embedder whose vectors this gallery holds: ``embedder`` with the gallery's tuned tail (built once per
        gallery and base embedder), or ``embedder`` itself when the gallery has no tail or it already carries one.
        Raises :class:`GalleryMismatch` as :meth:`check_embedder` does."""
        if self.tail is not None and embedder.tail is None:
            cached = getattr(self, "_tuned", None)
            if cached is None or cached[0] is not embedder:
                cached = (embedder, embedder.with_tail(self.tail))
                self._tuned = cached
            embedder = cached[1]
        self.check_embedder(embedder)
        return embedder

    def check_embedder(self, embedder: "Embedder") -> None:
        """Raises :class:`GalleryMismatch` unless ``embedder`` makes vectors like the gallery's: the same
        :attr:`Embedder.name` (backbone, input size, views, power, colour weight, tuned tail's digest) and the same
        length. All EfficientNet-Lite backbones give 1280 network numbers, so the length alone would not tell them
        apart. An untuned embedder is checked with the gallery's tail on it (:meth:`embedder_for`)."""
        if self.tail is not None and embedder.tail is None:
            embedder = embedder.with_tail(self.tail)
        dim = self.vectors.shape[1] if self.vectors.ndim == 2 and len(self.vectors) else None
        if self.model != embedder.name or (dim is not None and dim != embedder.dim):
            raise GalleryMismatch(
                f"the product gallery was built with {self.backbone} ({self.model}, {dim or '?'}-number vectors) "
                f"but the recogniser uses {embedder.config.model} ({embedder.name}, {embedder.dim}-number "
                f"vectors): rebuild it (manage.py build_product_gallery)")

    def scores(self, queries: np.ndarray, exclude_photo: np.ndarray | None = None) -> np.ndarray:
        """``(M, P)`` class scores of M unit query vectors ``(M, D)``: the head's logits when the gallery has a
        head, else the best cosine similarity to each product's photos (−1 for a product without any).
        ``exclude_photo``: ``(M,)`` photo ids to leave out of each row (leave-one-out, nearest neighbour only;
        −1 for none)."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.vectors.shape[1]:
            raise GalleryMismatch(f"queries of shape {q.shape} against a gallery of {self.vectors.shape[1]}-number "
                                  f"vectors ({self.model})")
        if self.head is not None and exclude_photo is None:
            return self.head.logits(q)
        sim = q @ self.vectors.T                                    # (M, N)
        if exclude_photo is not None:
            sim = np.where(self.photo[None, :] == np.asarray(exclude_photo)[:, None], -2.0, sim)
        out = np.full((len(q), len(self.labels)), -2.0, np.float32)
        np.maximum.at(out.T, self.owner, sim.T)
        return np.maximum(out, -1.0)

    def probabilities(self, queries: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """``(M, P)``: softmax of :meth:`scores` / temperature (rows sum to 1)."""
        return softmax(self.scores(queries), temperature or self.temperature)

    def save(self, path: str | Path) -> Path:
        """Write the gallery to ``path`` (``.npz``; written beside and renamed, so readers never see half)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        head = {} if self.head is None else {"head_center": self.head.center, "head_w": self.head.w,
                                             "head_b": self.head.b, "head_scale": np.asarray(self.head.scale)}
        if self.head is not None and self.head.whiten is not None:
            head["head_whiten"] = self.head.whiten
        arrays: dict[str, np.ndarray] = {
            "labels": np.asarray(self.products, dtype=str), "vectors": self.vectors, "owner": self.owner,
            "photo": self.photo, "model": np.asarray(self.model), "temperature": np.asarray(self.temperature),
            "zooms": np.asarray(self.zooms, np.float64), **head, **(self.tail.arrays() if self.tail else {})}
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: **kwds as allow_pickle
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Gallery":
        """Read a gallery written by :meth:`save`. Raises FileNotFoundError, ValueError (not a gallery: a key
        missing, a damaged or truncated file, or a tuned tail whose weights are not those its vectors were made
        with, :attr:`TunedTail.tag` against :attr:`model`)."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                head = (LinearHead(z["head_center"], z["head_w"], z["head_b"], float(z["head_scale"]),
                                   z["head_whiten"] if "head_whiten" in z.files else None)
                        if "head_w" in z.files else None)
                zooms = tuple(float(x) for x in z["zooms"]) if "zooms" in z.files else ()
                g = cls(labels=z["labels"].astype(object), vectors=z["vectors"], owner=z["owner"],
                        photo=z["photo"], model=str(z["model"]), temperature=float(z["temperature"]), head=head,
                        zooms=zooms, tail=TunedTail.from_arrays(z))
        except KeyError as exc:
            raise ValueError(f"{path} is not a product gallery (missing {exc})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # truncated, or bytes changed (a CRC)
            raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path} is not readable ({exc})") from None
        if g.tail is not None and not g.model.endswith("/" + g.tail.tag):
            raise ValueError(f"{path}: its tuned tail's weights ({g.tail.tag}) are not those its vectors were made "
                             f"with ({g.model}): damaged")
        return g


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature``."""
    z = np.asarray(scores, np.float64) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def build_gallery(embedder: Embedder, photos: Mapping[str, Sequence], *, flip: bool = True, augment: bool = True,
                  rejected: Rejected | None = None, temperature: float | None = None,
                  cache: EmbeddingCache | None = None, linear: bool = True, tuning: TuningConfig | None = None,
                  tuning_cache: EmbeddingCache | None = None, progress=None) -> Gallery:
    """A gallery from ``photos``: product → its photos (paths, PIL images or RGB arrays). With ``flip`` each
    photo also adds its left-right mirror; with ``augment`` and a linear head, its centre crops
    (``EmbedderConfig.zooms``; all of a photo's vectors share its photo id; a nearest-neighbour gallery keeps the
    photos alone, docs/recognition.md). Bad photos are recorded in ``rejected`` and skipped; a product left
    without any usable photo keeps its label (it scores −1: never recognised) and is recorded once more with the
    reason "no usable photo". ``cache``: photo files embedded before are not read again. With ``linear``
    (the default) and most products having two or more photos, a linear head is fitted on the vectors
    (:func:`fit_linear_head`; on the grocery-store test photos it is right 18 points more often than nearest
    neighbour at 6 photos per product and better calibrated, 2 points less often at 1, where nearest neighbour is
    kept),
    its temperature by cross-validation over photos (:func:`fit_temperature_cv`); else nearest neighbour, its
    temperature leave-one-photo-out (:func:`fit_temperature_loo`). Either needs enough products with two or
    more photos; otherwise ``temperature`` (None: :data:`DEFAULT_TEMPERATURE` for nearest neighbour, 1 for the
    head, whose logits are already a probability).

    ``tuning`` (None: :class:`TuningConfig`'s defaults): a linear-head gallery of at least ``min_products``
    products, unless ``enabled`` is off, also fine-tunes the embedder's last blocks on its photos
    (:func:`tune_gallery`); ``tuning_cache``: the front activations of photo files seen before (large; None: none);
    ``progress``: called with a line of text now and then while tuning."""
    rejected = rejected if rejected is not None else Rejected()
    tuning = tuning or TuningConfig()
    sources: list[tuple[int, object]] = []
    labels = [str(k) for k in photos]
    vecs, owner, photo = [], [], []
    next_photo = 0
    for k, label in enumerate(labels):
        v, kept = embed_many(embedder, list(photos[label]), flip=flip, augment=augment, rejected=rejected,
                             cache=cache)
        if not kept:
            rejected.add(label, "no usable photo: this product cannot be recognised")
            continue
        per = embedder.config.rows_per_photo(flip, augment)
        sources += [(k, photos[label][i]) for i in kept]
        vecs.append(v)
        owner.extend([k] * len(v))
        photo.extend(np.repeat(np.arange(next_photo, next_photo + len(kept)), per).tolist())
        next_photo += len(kept)
    g = Gallery(labels=np.asarray(labels, dtype=object),
                vectors=np.concatenate(vecs) if vecs else np.zeros((0, embedder.dim), np.float32),
                owner=np.asarray(owner, np.int64), photo=np.asarray(photo, np.int64), model=embedder.name,
                temperature=temperature or DEFAULT_TEMPERATURE)
    head = linear and len(g.vectors) and np.median(g.photos_per_product()) >= 2
    if augment and not head:  # nearest neighbour keeps the photos alone: their centre crops cost it 2 points at 1
        keep = np.arange(len(g.vectors)) % embedder.config.rows_per_photo(flip, True) < (2 if flip else 1)
        g = Gallery(labels=g.labels, vectors=g.vectors[keep], owner=g.owner[keep], photo=g.photo[keep],
                    model=g.model, temperature=g.temperature)
    if head:
        g.zooms = tuple(embedder.config.zooms) if augment else ()
        if (tuning.enabled and embedder.tail is None
                and int((g.photos_per_product() > 0).sum()) >= tuning.min_products):
            return tune_gallery(embedder, g, sources, tuning, flip=flip, temperature=temperature,
                                cache=tuning_cache, progress=progress)
        g.head = fit_linear_head(g.vectors, g.owner, len(g.labels))
        g.temperature = temperature or 1.0
        fitted = fit_temperature_cv(g)
    else:
        fitted = fit_temperature_loo(g)
    if fitted is not None:
        g.temperature = fitted
    return g


def tune_gallery(embedder: Embedder, gallery: Gallery, sources: Sequence[tuple[int, object]], config: TuningConfig,
                 *, flip: bool = True, temperature: float | None = None, cache: EmbeddingCache | None = None,
                 progress=None) -> Gallery:
    """``gallery`` (untuned, its vectors in :func:`build_gallery`'s order: photo by photo, ``sources`` the
    (product index, photo) of each in that order) made again with the embedder's tail fine-tuned on its photos
    (:mod:`vision.product_tuning`): the tail trained on the gallery's variants plus ``config.variants`` random
    ones, the vectors those variants' embeddings through the tuned tail, the linear head fitted on them, its
    temperature as ``config.calibration`` says (or ``temperature`` when there are too few photos to fit one).
    Costs the front once per variant and view, then ``config.epochs`` passes of the tail over them (CPU minutes for
    hundreds of photos: docs/recognition.md). Raises :class:`vision.product_embedder.ModelUnavailable`."""
    zooms = gallery.zooms
    labels = np.asarray([k for k, _ in sources], np.int64)
    samples = gallery_samples(embedder, [s for _, s in sources], config, flip=flip, zooms=zooms, cache=cache,
                              progress=progress)
    tail = train_tail(embedder, samples, labels, len(gallery.labels), config, progress=progress)
    return gallery_with_tail(embedder, gallery, samples, labels, tail, config, temperature=temperature)


def gallery_with_tail(embedder: Embedder, gallery: Gallery, samples, labels: np.ndarray, tail: TunedTail,
                      config: TuningConfig, *, temperature: float | None = None) -> Gallery:
    """The last step of :func:`tune_gallery`: ``gallery``'s photos (their front activations ``samples``, a
    :class:`vision.product_tuning.TuningSamples`; ``labels`` their products) embedded through ``tail``, the linear
    head fitted on them and its temperature fitted as ``config.calibration`` says."""
    tuned = embedder.with_tail(tail)
    rows = samples.rows
    vecs = tuned.embed_activations(samples.acts[:, :rows].reshape(-1, *samples.acts.shape[2:]),
                                   samples.colors[:, :rows].reshape(-1, samples.colors.shape[-1]))
    if len(vecs) != len(gallery.vectors):
        raise ValueError(f"tuned gallery rows {len(vecs)} ≠ the gallery's {len(gallery.vectors)}")
    g = Gallery(labels=gallery.labels, vectors=vecs, owner=gallery.owner, photo=gallery.photo, model=tuned.name,
                temperature=temperature or 1.0, zooms=gallery.zooms, tail=tail)
    g.head = fit_linear_head(g.vectors, g.owner, len(g.labels))
    fitted = tuned_temperature(g, embedder, samples, labels, config)
    if fitted is not None:
        g.temperature = fitted
    return g


def tuned_temperature(gallery: Gallery, embedder: Embedder, samples, labels: np.ndarray,
                      config: TuningConfig) -> float | None:
    """A tuned gallery's head temperature as ``config.calibration`` says (``embedder`` the untuned one, ``samples``
    the gallery photos' :class:`vision.product_tuning.TuningSamples`, ``labels`` their products): "cv",
    :func:`fit_temperature_cv` over the gallery's photos (which the tail has seen); "held-out", on the
    ``config.held_out`` random variants of each photo that training left out (after the training ones); "fold", a
    second tail trained without every 5th photo, the head fitted without them, the temperature fitted on them (the
    photos neither saw: one more training). None when there is too little to fit on."""
    tuned = embedder.with_tail(gallery.tail) if gallery.tail is not None else embedder
    if config.calibration == "fold":
        fold = np.arange(len(labels)) % 5 == 0
        # scored: the fold's photos of products with a photo outside it (as fit_temperature_cv, products of two or
        # more photos): a product's only photo has no class in that head, and its −30 logit would inflate T
        scored = fold & (np.bincount(labels[~fold], minlength=len(gallery.labels))[labels] > 0)
        if scored.sum() < MIN_LOO_QUERIES:
            return fit_temperature_cv(gallery)
        sub = TuningSamples(samples.acts[~fold], samples.colors[~fold], samples.rows)
        other = embedder.with_tail(train_tail(embedder, sub, labels[~fold], len(gallery.labels), config))
        g_rows = samples.acts[:, :samples.rows]
        vecs = other.embed_activations(g_rows.reshape(-1, *g_rows.shape[2:]),
                                       samples.colors[:, :samples.rows].reshape(-1, samples.colors.shape[-1]))
        owner, held = np.repeat(labels, samples.rows), np.repeat(fold, samples.rows)
        head = fit_linear_head(vecs[~held], owner[~held], len(gallery.labels))
        query = np.repeat(scored, samples.rows)
        return fit_temperature(head.logits(vecs[query]), owner[query], bounds=(0.05, 20.0))
    if config.calibration == "held-out" and config.held_out:
        lo = samples.rows + config.variants
        held = samples.acts[:, lo:lo + config.held_out]
        colors = samples.colors[:, lo:lo + config.held_out]
        if held.shape[1] < config.held_out:
            raise ValueError(f"the samples hold {held.shape[1]} held-out variants, not {config.held_out}")
        q = tuned.embed_activations(held.reshape(-1, *held.shape[2:]), colors.reshape(-1, colors.shape[-1]))
        if gallery.head is None:
            raise ValueError("held-out calibration needs the gallery's linear head")
        return fit_temperature(gallery.head.logits(q), np.repeat(labels, config.held_out), bounds=(0.05, 20.0))
    return fit_temperature_cv(gallery)


@dataclass
class LinearHead:
    """A softmax classifier over the gallery's products: logits = ``scale · unit((x − center) @ whiten) @ w + b``;
    ``center`` ``(D,)`` the mean gallery vector, ``whiten`` ``(D, D)`` or None (identity), ``w`` ``(D, P)``,
    ``b`` ``(P,)``."""

    center: np.ndarray
    w: np.ndarray
    b: np.ndarray
    scale: float = 10.0
    whiten: np.ndarray | None = None

    def features(self, queries: np.ndarray) -> np.ndarray:
        """``(M, D)`` the head's inputs: centred, whitened, unit length, times ``scale``."""
        x = np.asarray(queries, np.float32) - self.center
        if self.whiten is not None:
            x = x @ self.whiten
        return unit(x) * self.scale

    def logits(self, queries: np.ndarray) -> np.ndarray:
        return (self.features(queries) @ self.w + self.b).astype(np.float64)


LINEAR_L2 = 1e-3  # weight decay of the head; 1e-2 and 1e-4 change 6-shot top-1 by under 2 points
#: Shrinkage of the within-class covariance towards its mean variance before it whitens the head's inputs
#: (0.05–0.5 within half a point on the grocery-store test photos; docs/recognition.md)
WHITEN_SHRINK = 0.2


def within_class_whitening(vectors: np.ndarray, owner: np.ndarray, shrink: float = WHITEN_SHRINK) -> np.ndarray | None:
    """``(D, D)``: the matrix that whitens the within-class covariance of ``vectors`` ``(N, D)`` (classes
    ``owner`` ``(N,)``, centred on their class means), shrunk by ``shrink`` towards its mean variance:
    ``Σ' = (1 − shrink)·Σ + shrink·tr(Σ)/D·I``; returns the symmetric ``Σ'^−½`` (from the residuals' thin SVD:
    N ≪ D for a gallery). A linear discriminant's view of the gallery: directions in which photos of one product
    vary count less. None when no class has two vectors. Raises ValueError unless 0 < ``shrink`` ≤ 1."""
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    v = np.asarray(vectors, np.float64)
    y = np.asarray(owner, np.int64)
    means = np.zeros((y.max() + 1, v.shape[1]))
    np.add.at(means, y, v)
    n = np.bincount(y, minlength=len(means))
    if not (n >= 2).any():
        return None
    means /= np.maximum(n, 1)[:, None]
    r = v - means[y]
    d = r.shape[1]
    _, sv, vt = np.linalg.svd(r, full_matrices=False)
    lam = sv ** 2 / len(v)                        # Σ's non-zero eigenvalues, eigenvectors the rows of vt
    floor = shrink * max(float(lam.sum()) / d, 1e-12)
    out = np.eye(d) / math.sqrt(floor) + (vt.T * (1.0 / np.sqrt((1 - shrink) * lam + floor) - 1.0 / math.sqrt(floor))) @ vt
    return out.astype(np.float32)


def fit_linear_head(vectors: np.ndarray, owner: np.ndarray, n_classes: int, l2: float = LINEAR_L2,
                    scale: float = 10.0, whiten: float | None = WHITEN_SHRINK) -> LinearHead:
    """Multinomial logistic regression (L-BFGS, mean cross-entropy + ``l2``·‖w‖²) of ``owner`` (``(N,)`` class
    indices) on ``vectors`` (``(N, D)`` unit embeddings) centred on their mean and, with ``whiten`` (the
    shrinkage; None: not), whitened by their within-class covariance (:func:`within_class_whitening`). A class
    without vectors gets a bias of −30 (never chosen). Raises ValueError when there are no vectors."""
    from scipy.optimize import minimize

    v = np.asarray(vectors, np.float64)
    y = np.asarray(owner, np.int64)
    if not len(v):
        raise ValueError("no vectors to fit a head on")
    center = v.mean(axis=0)
    wh = within_class_whitening(v - center, y, whiten) if whiten is not None else None
    x = LinearHead(center.astype(np.float32), np.zeros((v.shape[1], 0)), np.zeros(0), scale, wh).features(v)
    x = x.astype(np.float64)
    n, d = x.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    present = np.bincount(y, minlength=n_classes) > 0

    def f(theta: np.ndarray):
        w = theta[:d * n_classes].reshape(d, n_classes)
        z = x @ w + theta[d * n_classes:]
        z = np.where(present, z, -30.0)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-300))) + l2 * float((w * w).sum())
        g = (p - onehot) / n
        return loss, np.concatenate([(x.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)])

    r = minimize(f, np.zeros(d * n_classes + n_classes), jac=True, method="L-BFGS-B", options={"maxiter": 300})
    w = r.x[:d * n_classes].reshape(d, n_classes)
    b = np.where(present, r.x[d * n_classes:], -30.0)
    return LinearHead(center.astype(np.float32), w.astype(np.float32), b.astype(np.float32), scale, wh)


def fit_temperature_cv(gallery: Gallery, folds: int = 5) -> float | None:
    """The head's temperature from ``folds``-fold cross-validation over photos (a photo and its mirror in one
    fold; each held-out photo scored by a head fitted without its fold), on photos of products with two or more.
    None when fewer than ``MIN_LOO_QUERIES`` such photos."""
    counts = gallery.photos_per_product()
    _, first = np.unique(gallery.photo, return_index=True)
    usable = first[counts[gallery.owner[first]] >= 2]
    if len(usable) < MIN_LOO_QUERIES:
        return None
    fold_of_photo = {int(gallery.photo[i]): k % folds for k, i in enumerate(usable)}
    fold = np.array([fold_of_photo.get(int(p), -1) for p in gallery.photo])
    scores, truth = [], []
    for k in range(folds):
        q = [i for i in usable if fold[i] == k]
        if not q:
            continue
        head = fit_linear_head(gallery.vectors[fold != k], gallery.owner[fold != k], len(gallery.labels))
        scores.append(head.logits(gallery.vectors[q]))
        truth.append(gallery.owner[q])
    return fit_temperature(np.concatenate(scores), np.concatenate(truth), bounds=(0.05, 20.0))


# ------------------------------------------------------------------------------------------------- calibration
def fit_temperature(scores: np.ndarray, truth: np.ndarray, bounds: tuple[float, float] = (1e-3, 1.0)) -> float:
    """The temperature T minimising the mean negative log-likelihood of ``truth`` under softmax(scores / T).
    ``scores``: ``(M, P)`` class scores; ``truth``: ``(M,)`` true class indices. Raises ValueError when empty."""
    from scipy.optimize import minimize_scalar

    s = np.asarray(scores, np.float64)
    y = np.asarray(truth, np.int64)
    if not len(y):
        raise ValueError("no scores to fit a temperature on")

    def nll(log_t: float) -> float:
        return negative_log_likelihood(softmax(s, math.exp(log_t)), y)

    r = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                        options={"xatol": 1e-4})
    return float(math.exp(r.x))


MIN_LOO_QUERIES = 20


def fit_temperature_loo(gallery: Gallery) -> float | None:
    """Fit the gallery's temperature leave-one-photo-out: each photo of a product that has two or more (its
    mirror excluded with it) is scored against the rest. None when fewer than ``MIN_LOO_QUERIES`` such photos."""
    counts = gallery.photos_per_product()
    photo_ids, first = np.unique(gallery.photo, return_index=True)
    use = first[counts[gallery.owner[first]] >= 2]
    if len(use) < MIN_LOO_QUERIES:
        return None
    s = gallery.scores(gallery.vectors[use], exclude_photo=gallery.photo[use])
    return fit_temperature(s, gallery.owner[use])


def negative_log_likelihood(probs: np.ndarray, truth: np.ndarray) -> float:
    """Mean −log p(true class), nats."""
    p = np.asarray(probs)[np.arange(len(truth)), np.asarray(truth)]
    return float(-np.mean(np.log(np.maximum(p, 1e-12))))


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-1 probability over ``bins`` equal-width confidence bins (0: perfectly calibrated)."""
    p = np.asarray(probs)
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == np.asarray(truth)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - right[m].mean())
    return float(ece)


def reliability_table(probs: np.ndarray, truth: np.ndarray, bins: int = 5) -> list[tuple[float, float, int, float]]:
    """``[(low, high, n, share right), …]`` of the top-1 probability: for a calibrated model the share right
    lies inside each bin."""
    p = np.asarray(probs)
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == np.asarray(truth)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & ((conf < hi) | (hi == 1.0))
        out.append((float(lo), float(hi), int(m.sum()), float(right[m].mean()) if m.any() else float("nan")))
    return out


def topk_hits(scores: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """``(M,)`` bool: the true class is among the k best scores."""
    s = np.asarray(scores)
    k = min(k, s.shape[1])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return (top == np.asarray(truth)[:, None]).any(axis=1)


def product_likelihood(gallery: Gallery, crops: Iterable, embedder: Embedder,
                       rejected: Rejected | None = None) -> dict[str, float]:
    """Evidence from several crops of one held item (e.g. around the taking hand over the next frames):
    ``{product: probability}`` from the crops' summed log-probabilities (each crop an independent look, then
    renormalised), over the gallery's products. Bad crops are skipped and recorded; no usable crop: ``{}``
    (no evidence). Raises :class:`GalleryMismatch` when another embedder made the gallery (before any crop is
    embedded)."""
    embedder = gallery.embedder_for(embedder)
    v, kept = embed_many(embedder, list(crops), rejected=rejected)
    if not kept:
        return {}
    logp = np.log(np.maximum(gallery.probabilities(v), 1e-300)).sum(axis=0)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    return {label: float(x) for label, x in zip(gallery.products, p)}
