"""Experiment (issue #14): fine-tune EfficientNet-Lite0's last blocks on the 6-shot gallery photos, on one CPU core.

Two steps, so the expensive frozen part of the network runs once per photo and view:

``cache``: the activations at the input of block ``CUT`` (13 of 16: ``(192, 7, 7)`` per 224-px view) of every
gallery photo (iconic + ``train5.txt``: the 6 shots; never ``test``/``val``/``train``) in the variants a gallery
holds (the photo, its centre 60 % crop, each also mirrored) plus ``--aug`` fixed random variants (random
resized crop, mild brightness/contrast jitter, random mirror), and of every photo of the test split; each in the
embedder's two views (whole photo squashed, centre cut); with each variant's hue-saturation histogram
(``Embedder._colors``). Written to ``--out`` (``.npy``, float16 activations).

``train``: trains the last ``--blocks`` blocks (16 − blocks .. 15, at most 3) and the head conv (BatchNorm frozen, eval mode) plus a linear
classifier on the gallery's cached activations only (AdamW, label smoothing), then evaluates on the test split two
ways: the classifier's own logits, and the fine-tuned pooled features put through the product pipeline as
``vision.products.build_gallery`` would (views averaged, colour at 0.3, whitened linear head fitted on the
gallery; with ``--concat`` also the tuned and the original pooled features side by side), scored with ``carts.offline.product_bench._figures`` (fine/coarse top-1/top-5, ECE).

    OMP_NUM_THREADS=1 python bench/finetune_products.py cache ../shared/datasets/grocery-store --out /tmp/finetune
    OMP_NUM_THREADS=1 python bench/finetune_products.py train --out /tmp/finetune --blocks 3 --epochs 3 --lr 1e-4 --concat   # the best: docs/recognition.md
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carts.offline.product_bench import _figures, read_classes, read_list  # noqa: E402
from vision.product_embedder import Embedder, EmbedderConfig, Rejected, load_image, unit, zoomed  # noqa: E402
from vision.products import Gallery, fit_linear_head, fit_temperature_cv  # noqa: E402

CUT = 13  # the cached activations are the input of this block (of 16)


def _front(net, x):
    """The frozen part: stem and blocks 0 .. CUT-1 (eval mode)."""
    x = net._swish(net._bn0(net._conv_stem(x)))
    for block in net._blocks[:CUT]:
        x = block(x)
    return x


def _rand_variant(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random resized crop (area 35–100 %, aspect 3/4–4/3), mirrored half the time, brightness ×0.8–1.2 and
    contrast ×0.8–1.2 (hue and saturation untouched: colour tells packages apart)."""
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


def cache(root: Path, out: Path, n_aug: int, seed: int = 0) -> None:
    import torch

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    emb = Embedder(EmbedderConfig())
    net = emb._load()
    rej = Rejected()
    classes = read_classes(root, rej)
    extra = read_list(root, "train5", classes, rej)
    test = read_list(root, "test", classes, rej)
    gallery = [(p, i) for i, p in enumerate(classes.iconic) if p is not None] + extra
    rng = np.random.default_rng(seed)

    def run(items, variants, name):
        acts, colors, labels, photo, kind = [], [], [], [], []
        t0 = time.time()
        for n, (p, y) in enumerate(items):
            try:
                rgb = load_image(p)
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                print("skip", p, exc)
                continue
            for k, im in enumerate(variants(rgb)):
                x = torch.from_numpy(np.stack([emb.preprocess(im, v) for v in emb.config.views]))
                with torch.inference_mode():
                    acts.append(_front(net, x).numpy().astype(np.float16))  # (2 views, 192, 7, 7)
                colors.append(emb._colors([im])[0])
                labels.append(y)
                photo.append(n)
                kind.append(k)
            if n % 200 == 0:
                print(name, n, len(items), f"{time.time() - t0:.0f} s", flush=True)
        np.save(out / f"{name}_act.npy", np.stack(acts))
        np.savez(out / f"{name}_meta.npz", colors=np.asarray(colors, np.float32), labels=np.asarray(labels),
                 photo=np.asarray(photo), kind=np.asarray(kind))

    def gallery_variants(rgb):  # kinds 0..3 as embed_many orders them; then the random ones
        z = zoomed(rgb, 0.6)
        vs = [rgb, np.ascontiguousarray(rgb[:, ::-1]), z, np.ascontiguousarray(z[:, ::-1])]
        return vs + [_rand_variant(rgb, rng) for _ in range(n_aug)]

    run(gallery, gallery_variants, "gallery")
    run(test, lambda rgb: [rgb], "test")
    np.savez(out / "classes.npz", coarse=np.asarray(classes.coarse), names=np.asarray(classes.names))


def train(out: Path, blocks: int, epochs: int, lr: float, wd: float, smooth: float, use_aug: bool,
          seed: int = 0, concat: bool = False) -> None:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    net = Embedder(EmbedderConfig())._load()
    ga = np.load(out / "gallery_act.npy")
    gm = np.load(out / "gallery_meta.npz")
    ta = np.load(out / "test_act.npy")
    tm = np.load(out / "test_meta.npz")
    cl = np.load(out / "classes.npz")
    coarse = cl["coarse"]
    C = len(coarse)
    y_g = gm["labels"]
    keep = np.ones(len(y_g), bool) if use_aug else gm["kind"] < 4
    frozen = list(net._blocks[CUT:16 - blocks])
    train_blocks = list(net._blocks[16 - blocks:])

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = net._conv_head, net._bn1

        def forward(self, x):
            return net._swish(self.bn(self.conv(x)))

    head = Head()
    for m in [*frozen, *train_blocks, head]:
        m.eval()
    params = [p for m in [*train_blocks, head] for p in m.parameters() if p.requires_grad]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    for m in [*train_blocks, head]:  # BatchNorm statistics and affine frozen; convolutions trained
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                for p in mod.parameters():
                    p.requires_grad_(False)
    params = [p for p in params if p.requires_grad]
    clf = nn.Linear(1280, C)
    scale = 16.0

    def feats(x):
        with torch.no_grad():
            for b in frozen:
                x = b(x)
        for b in train_blocks:
            x = b(x)
        f = head(x).mean(dim=(2, 3))
        return nn.functional.normalize(f, dim=1)

    # precompute the frozen blocks' output once
    def through_frozen(a):
        outs = []
        with torch.inference_mode():
            for i in range(0, len(a), 256):
                x = torch.from_numpy(a[i:i + 256].astype(np.float32))
                for b in frozen:
                    x = b(x)
                outs.append(x.numpy())
        return np.concatenate(outs)

    def pooled_views(a):
        """(M, 2 views, 192, 7, 7) → (M, 1280): each view's pooled features unit, averaged, unit."""
        outs = []
        with torch.inference_mode():
            for i in range(0, len(a), 128):
                x = torch.from_numpy(a[i:i + 128].reshape(-1, *a.shape[2:]).astype(np.float32))
                for b in net._blocks[CUT:]:
                    x = b(x)
                f = nn.functional.normalize(head(x).mean(dim=(2, 3)), dim=1).reshape(-1, a.shape[1], 1280)
                outs.append(f.sum(1).numpy())
        return unit(np.concatenate(outs))

    base = (pooled_views(ta), pooled_views(ga[gm["kind"] < 4])) if concat else None
    t0 = time.time()
    gx = ga[keep].reshape(-1, *ga.shape[2:])  # (N·2 views, 192, 7, 7)
    gy = np.repeat(y_g[keep], ga.shape[1])
    gx = through_frozen(gx)
    frozen = []
    opt = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": clf.parameters(), "lr": lr * 10}],
                            weight_decay=wd)
    steps = max(1, epochs * int(np.ceil(len(gx) / 64)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, lr * 10], total_steps=steps, pct_start=0.15)
    lossf = nn.CrossEntropyLoss(label_smoothing=smooth)
    print(f"train {len(gx)} samples, {sum(p.numel() for p in params)} trained weights in {blocks} blocks + head; "
          f"frozen pass {time.time() - t0:.0f} s", flush=True)
    for ep in range(epochs):
        perm = np.random.default_rng(seed + ep).permutation(len(gx))
        tot, right = 0.0, 0
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            x = torch.from_numpy(gx[idx])
            y = torch.from_numpy(gy[idx]).long()
            logits = clf(feats(x)) * scale
            loss = lossf(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            right += int((logits.argmax(1) == y).sum())
        print(f"epoch {ep}: loss {tot / len(gx):.3f} train acc {right / len(gx):.3f} {time.time() - t0:.0f} s",
              flush=True)

    for m in train_blocks:
        m.eval()
    tq = pooled_views(ta)
    yq = tm["labels"]
    with torch.inference_mode():
        logit = clf(torch.from_numpy(tq)).numpy() * scale
    g = Gallery(labels=cl["names"].astype(object), vectors=np.zeros((0, 1280), np.float32), owner=[], photo=[],
                model="x")

    class Fixed:
        def logits(self, q):
            return logit

    g.head = Fixed()
    r = _figures(g, tq, yq, coarse, 6, "finetuned classifier", 1.0, "fixed", 486)
    print(f"classifier: fine top1 {r.top1:.3f} top5 {r.top5:.3f} coarse top1 {r.coarse_top1:.3f} "
          f"top5 {r.coarse_top5:.3f} ECE {r.ece:.3f}")
    # the product pipeline on the fine-tuned features: the gallery's 4 kinds (photo, mirror, crop, crop mirror)
    sel = gm["kind"] < 4
    gv0 = pooled_views(ga[sel])
    variants = [("tuned", gv0, tq)]
    if base is not None:  # the tuned and the original features side by side (the tail runs twice per view)
        variants.append(("tuned + original concatenated", np.concatenate([gv0, base[1]], axis=1) / np.sqrt(2),
                         np.concatenate([tq, base[0]], axis=1) / np.sqrt(2)))
    for what, gv, qv in variants:
        gvec = unit(np.concatenate([gv, gm["colors"][sel] * 0.3], axis=1))
        qvec = unit(np.concatenate([qv, tm["colors"] * 0.3], axis=1))
        gal = Gallery(labels=cl["names"].astype(object), vectors=gvec, owner=y_g[sel], photo=gm["photo"][sel],
                      model="finetuned")
        gal.head = fit_linear_head(gal.vectors, gal.owner, C)
        t = fit_temperature_cv(gal) or 1.0
        r = _figures(gal, qvec, yq, coarse, 6, "linear", t, "cv", 486)
        print(f"pipeline, {what} (colour 0.3, whitened head): fine top1 {r.top1:.3f} top5 {r.top5:.3f} coarse "
              f"top1 {r.coarse_top1:.3f} top5 {r.coarse_top5:.3f} ECE {r.ece:.3f}  ({time.time() - t0:.0f} s)",
              flush=True)
    if getattr(train, "save", None):
        torch.save({k: v for k, v in net.state_dict().items()}, train.save)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["cache", "train"])
    ap.add_argument("root", nargs="?", default="../shared/datasets/grocery-store")
    ap.add_argument("--out", default="/tmp/finetune")
    ap.add_argument("--aug", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--smooth", type=float, default=0.1)
    ap.add_argument("--no-aug", action="store_true")
    ap.add_argument("--save", default=None)
    ap.add_argument("--concat", action="store_true")
    a = ap.parse_args()
    if a.step == "cache":
        cache(Path(a.root), Path(a.out), a.aug)
    else:
        train.save = a.save  # type: ignore[attr-defined]
        train(Path(a.out), a.blocks, a.epochs, a.lr, a.wd, a.smooth, not a.no_aug, concat=a.concat)


if __name__ == "__main__":
    main()
