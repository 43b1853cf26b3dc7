"""Choosing the product recogniser's tuning settings without the test split (issue #14; docs/recognition.md,
"A validation split for the tuning").

The grocery-store folder holds only the 5 extra photos of each class that ``train5.txt`` lists (405), so the
validation split comes from them: fold A keeps each class's iconic photo and its first 3 extra photos as the
gallery (4 shots) and asks the 4th and 5th (162 queries); fold B keeps the 3rd–5th and asks the 1st and 2nd.

    python bench/product_val.py split /work/shared/datasets/grocery-store /tmp/gs-val /tmp/gs-valb
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 19 python bench/product_val.py score /tmp/gs-val 4 NAME [field=value …]

``score`` builds the tuned gallery as ``manage.py bench_products`` does (``build_gallery``; ``field=value`` set
``TuningConfig`` fields; temperature by cross-validation, cheap) and prints one ``RESULT`` line per scoring of the
``val`` queries: ``plain`` (today's query), ``mirror`` (the query's views and its mirror's summed, exactly as
``EmbedderConfig(mirror=True)``), ``allvar`` (the head refitted on every variant of the gallery photos, the random
ones included) and ``allvar+mirror``. Caches under /tmp/gs-cache.
"""
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np


def split(src: Path, *dests: str) -> None:
    lines = [x for x in (src / "dataset" / "train5.txt").read_text().splitlines() if x.strip()]
    for dest, gallery in zip(dests, ((1, 2, 3), (3, 4, 5))):
        ds = Path(dest) / "dataset"
        ds.mkdir(parents=True, exist_ok=True)
        for name in ("classes.csv", "iconic-images-and-descriptions", "train"):
            if not (ds / name).exists():
                (ds / name).symlink_to(src / "dataset" / name)
        seen: dict[str, int] = {}
        keep, ask = [], []
        for line in lines:
            cls = line.split(",")[1].strip()
            seen[cls] = seen.get(cls, 0) + 1
            (keep if seen[cls] in gallery else ask).append(line)
        (ds / "train5.txt").write_text("\n".join(keep) + "\n")
        (ds / "val.txt").write_text("\n".join(ask) + "\n")


def score(root: Path, shots: int, name: str, fields: list[str]) -> None:
    import torch

    from carts.offline.product_bench import _figures, read_classes, read_list
    from vision.product_embedder import Embedder, EmbedderConfig, EmbeddingCache, Rejected, load_image
    from vision.product_tuning import TuningConfig, front_activations, gallery_samples
    from vision.products import build_gallery, fit_linear_head

    kw = {}
    for a in fields:
        k, v = a.split("=")
        kw[k] = type(getattr(TuningConfig(), k))(v)
    cfg = TuningConfig(min_products=2, calibration="cv", **kw)
    torch.set_num_threads(1)
    rej = Rejected()
    cl = read_classes(root, rej)
    extra = read_list(root, "train5", cl, rej)
    queries = read_list(root, "val", cl, rej)
    photos = {n: [cl.iconic[i]] for i, n in enumerate(cl.names)}
    for p, row in extra:
        if len(photos[cl.names[row]]) < shots:
            photos[cl.names[row]].append(p)
    emb = Embedder(EmbedderConfig())
    tag = root.name
    cache = EmbeddingCache(f"/tmp/gs-cache/{tag}-emb.npz")
    tcache = EmbeddingCache(f"/tmp/gs-cache/{tag}-front{16 - cfg.blocks}.npz")
    t0 = time.process_time()
    g = build_gallery(emb, photos, cache=cache, tuning=cfg, tuning_cache=tcache,
                      progress=lambda s: print(s, flush=True))
    build = time.process_time() - t0
    cache.save()
    tuned = g.embedder_for(emb)
    cut = tuned.cut
    qacts, qcols = [], []
    for p, _ in queries:  # each query's front activations, the photo's and its mirror's
        key = f"q|{emb.name}|front{cut}|{p}"
        a, c = tcache.get(key), tcache.get(key + "|colors")
        if a is None or c is None:
            rgb = load_image(p)
            ims = [rgb, np.ascontiguousarray(rgb[:, ::-1])]
            a, c = front_activations(emb, ims, cut), emb.colors(ims).astype(np.float32)
            tcache.put(key, a)
            tcache.put(key + "|colors", c)
        qacts.append(a)
        qcols.append(c)
    tcache.save()
    qa = np.stack(qacts)  # (N, 2 [photo, mirror], views, C, H, W)
    qc = np.stack(qcols)[:, 0]
    plain = tuned.embed_activations(qa[:, 0], qc)
    mirror = tuned.embed_activations(qa.reshape(len(qa), -1, *qa.shape[3:]), qc)  # all four views summed
    y = np.array([r for _, r in queries])
    coarse = np.array(cl.coarse)
    n_photos = int(g.photos_per_product().sum())

    def line(gal, q, what):
        f = _figures(gal, q, y, coarse, shots, what, gal.temperature, "", n_photos)
        print(f"RESULT {tag} {name} {what}: top1 {f.top1:.4f} top5 {f.top5:.4f} coarse {f.coarse_top1:.4f} "
              f"ece {f.ece:.3f} n {len(y)} build_cpu {build:.0f} digest {g.tail.digest if g.tail else '-'}",
              flush=True)

    line(g, plain, "plain")
    line(g, mirror, "mirror")
    labels = np.asarray([k for k, ps in enumerate(photos.values()) for _ in ps], np.int64)
    samples = gallery_samples(emb, [p for ps in photos.values() for p in ps], cfg, flip=True, zooms=g.zooms,
                              cache=tcache)
    v = samples.rows + cfg.variants
    allv = tuned.embed_activations(samples.acts[:, :v].reshape(-1, *samples.acts.shape[2:]),
                                   samples.colors[:, :v].reshape(-1, samples.colors.shape[-1]))
    owner = np.repeat(labels, v)
    g2 = dataclasses.replace(g, vectors=allv, owner=owner, photo=np.repeat(np.arange(len(labels)), v))
    g2.head = fit_linear_head(allv, owner, len(g.labels))
    line(g2, plain, "allvar")
    line(g2, mirror, "allvar+mirror")


if __name__ == "__main__":
    if sys.argv[1] == "split":
        split(Path(sys.argv[2]), *sys.argv[3:])
    else:
        score(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:])
