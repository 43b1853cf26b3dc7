"""The product-recognition benchmark (``manage.py bench_products DIR``) on a folder laid out like the Grocery Store
Dataset: ``dataset/classes.csv`` (fine and coarse class names and ids, the iconic photo of each class),
``dataset/train5.txt`` (a few extra photos per class) and ``dataset/<split>.txt`` (``path, fine id, coarse id``).

k shots = the iconic (catalogue) photo plus the first k − 1 extra photos of each class: what a store manager
uploads. Every photo of the split is a query, recognised by nearest neighbour in that gallery
(:mod:`vision.products`); top-1 and top-5 over the fine classes, top-1 over the coarse ones (the fine guess's
coarse class), the probability's calibration (temperature fitted on the extra photos, never on the split), and
CPU milliseconds per crop on one core. Bad inputs (a malformed line, a listed file missing, an unreadable photo)
are counted with their reason and left out; the rest goes on. Plain Python, no Django.
"""
from __future__ import annotations

import csv
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from vision.product_embedder import BadImage, Embedder, EmbeddingCache, Rejected, embed_many, load_image
from vision.product_tuning import TunedTail, TuningConfig, front_activations, gallery_samples
from vision.products import (Gallery, build_gallery, expected_calibration_error, fit_linear_head, fit_temperature,
                             fit_temperature_cv, gallery_with_tail, fit_temperature_loo, negative_log_likelihood, reliability_table,
                             softmax, topk_hits)


class DatasetError(ValueError):
    """The folder cannot be benchmarked at all (no classes file, no class in it, no split file)."""


@dataclass
class Classes:
    """``names[i]``, ``coarse[i]`` (coarse id), ``coarse_names`` (coarse id → name) and ``iconic[i]`` (path) of
    fine class id ``ids[i]``; ``index`` maps a fine id to its row."""

    ids: list[int]
    names: list[str]
    coarse: list[int]
    coarse_names: dict[int, str]
    iconic: list[Path | None]
    index: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.ids)}


def read_classes(root: Path, rejected: Rejected) -> Classes:
    """``root/dataset/classes.csv`` (header row; then name, id, coarse name, coarse id, iconic path, …). A bad row
    is rejected with its reason. Raises :class:`DatasetError` when the file is missing or has no usable row."""
    ds = root / "dataset"
    path = ds / "classes.csv"
    if not path.is_file():
        raise DatasetError(f"{path} not found: not a dataset folder laid out like grocery-store")
    ids, names, coarse, cnames, iconic = [], [], [], {}, []
    with path.open(newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh)):
            if n == 0 or not row or not "".join(row).strip():
                continue
            where = f"{path}:{n + 1}"
            try:
                if len(row) < 4:
                    raise ValueError(f"expected at least 4 columns, got {len(row)}")
                name, cid, cname, ccid = row[0].strip(), int(row[1]), row[2].strip(), int(row[3])
            except ValueError as exc:
                rejected.add(where, f"malformed class row ({exc})")
                continue
            if cid in ids:
                rejected.add(where, f"class id {cid} listed twice")
                continue
            ids.append(cid)
            names.append(name)
            coarse.append(ccid)
            cnames.setdefault(ccid, cname)
            icon = row[4].strip().lstrip("/") if len(row) > 4 and row[4].strip() else ""
            iconic.append(ds / icon if icon else None)
    if not ids:
        raise DatasetError(f"{path}: no usable class row")
    return Classes(ids, names, coarse, cnames, iconic)


def read_list(root: Path, name: str, classes: Classes, rejected: Rejected, required: bool = True
              ) -> list[tuple[Path, int]]:
    """``root/dataset/<name>.txt`` as ``[(photo path, fine class row), …]``. A malformed line, an unknown class id
    or a fine/coarse pair that disagrees with ``classes`` is rejected with its reason (missing files are found
    when the photo is read). Raises :class:`DatasetError` when ``required`` and the file is missing."""
    ds = root / "dataset"
    path = ds / f"{name}.txt"
    if not path.is_file():
        if required:
            raise DatasetError(f"{path} not found")
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        where = f"{path}:{n + 1}"
        parts = [p.strip() for p in line.split(",")]
        try:
            if len(parts) < 2:
                raise ValueError("expected 'path, fine id[, coarse id]'")
            fine = int(parts[1])
            coarse = int(parts[2]) if len(parts) > 2 and parts[2] else None
        except ValueError as exc:
            rejected.add(where, f"malformed line ({exc})")
            continue
        if fine not in classes.index:
            rejected.add(where, f"unknown class id {fine}")
            continue
        row = classes.index[fine]
        if coarse is not None and coarse != classes.coarse[row]:
            rejected.add(where, f"coarse id {coarse} disagrees with classes.csv ({classes.coarse[row]})")
            continue
        out.append((ds / parts[0], row))
    return out


@dataclass
class ShotResult:
    """Figures of one gallery size: fractions of the usable queries."""

    shots: int
    method: str
    gallery_photos: int
    top1: float
    top5: float
    coarse_top1: float
    coarse_top5: float
    temperature: float
    temperature_from: str
    nll: float
    ece: float
    reliability: list
    confusion: np.ndarray  # (C, C) counts, rows true class, columns guess
    #: mean top probability over the queries whose top guess is right / wrong (NaN where none): the simulator's
    #: ``RecognitionModel.right_p`` / ``wrong_p`` (carts.offline.simulation_products)
    p_right: float = float("nan")
    p_wrong: float = float("nan")


@dataclass
class BenchResult:
    """All figures of a run; ``rejected`` lists every input left out with its reason."""

    model: str
    split: str
    queries: int
    classes: int
    rows: list[ShotResult]
    ms_per_crop: float
    ms_latency: float
    rejected: Rejected
    class_names: list[str]
    tuned_model: str = ""
    ms_per_crop_tuned: float = float("nan")
    tuning_cpu_s: float = float("nan")


def _coarse_scores(scores: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coarse-class max of the fine scores: ``(M, K)`` and the coarse ids of its columns."""
    ids = np.unique(coarse)
    col = np.searchsorted(ids, coarse)
    out = np.full((len(scores), len(ids)), -np.inf)
    np.maximum.at(out.T, col, scores.T)
    return out, ids


def run(root: str | Path, *, split: str = "test", shots: int = 6, embedder: Embedder | None = None,
        flip: bool = True, augment: bool = True, tta: bool = False, per_class: int | None = None, progress=None,
        cache: EmbeddingCache | None = None, tuning: TuningConfig | None = None,
        tuning_cache: EmbeddingCache | None = None, compare_concat: bool = False) -> BenchResult:
    """Benchmark ``root`` (see module docstring) at 1 and ``shots`` photos per class.

    ``flip``: the gallery also holds each photo mirrored; ``augment``: and its centre crops (the embedder's
    ``zooms``); ``tta``: a query is the mean of its embedding and its
    mirror's (with the embedder's ``mirror`` each already is);
    ``per_class``: at most this many queries per class (the first ones listed; a quick subset);
    ``progress``: called with a line of text now and then; ``cache``: embeddings of photo files seen before
    (saved after embedding; a rerun skips the network; the time per crop then counts only photos embedded anew);
    ``tuning``: also the row "linear, tuned tail" at ``shots`` (> 1): the gallery the store would build
    (:func:`vision.products.build_gallery` with this tuning, the iconic photo and the first ``shots`` − 1 extra
    photos of each class), the queries embedded by its tuned embedder (``tuning_cache``: front activations of
    photo files seen before, :func:`embed_through_front`; with ``tta`` each averaged with
    its mirror's). Paired extras of the same tuned tail, rows after it: with ``tuning.calibration`` other than "cv" the
    same scores under the cross-validated temperature ("T by cv"); with ``compare_concat`` the tail with its
    ``concat`` the other way (no training; its samples come from ``tuning_cache``, else are computed again).
    Raises :class:`DatasetError` (nothing usable), ValueError (``shots`` < 1)."""
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    root = Path(root)
    embedder = embedder or Embedder()
    rejected = Rejected()
    classes = read_classes(root, rejected)
    C = len(classes.ids)
    extra = read_list(root, "train5", classes, rejected, required=shots > 1)
    queries = read_list(root, split, classes, rejected)
    if per_class:
        seen: Counter = Counter()
        kept = []
        for p, c in queries:
            if seen[c] < per_class:
                kept.append((p, c))
                seen[c] += 1
        queries = kept
    say = progress or (lambda s: None)

    # the gallery photos: the iconic one (shot 1) and the extra ones in listed order (shots 2…)
    icon_paths = [p for p in classes.iconic]
    icon_ok = [i for i, p in enumerate(icon_paths) if p is not None]
    for i, p in enumerate(icon_paths):
        if p is None:
            rejected.add(classes.names[i], "no iconic photo listed")
    say(f"embedding {len(icon_ok)} iconic and {len(extra)} extra photos")
    v_icon, k_icon = embed_many(embedder, [icon_paths[i] for i in icon_ok], flip=flip, augment=augment,
                                rejected=rejected, cache=cache)
    icon_rows = [icon_ok[i] for i in k_icon]
    v_extra, k_extra = embed_many(embedder, [p for p, _ in extra], flip=flip, augment=augment, rejected=rejected,
                                  cache=cache)
    extra_rows = [extra[i][1] for i in k_extra]
    per = embedder.config.rows_per_photo(flip, augment)

    say(f"embedding {len(queries)} {split} photos")
    import torch  # the embedder needs it anyway; one core for the timing

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.thread_time()
        misses = cache.misses if cache is not None else 0
        q_raw, k_q = embed_many(embedder, [p for p, _ in queries], flip=tta, rejected=rejected, cache=cache)
        cpu = time.thread_time() - t0
        fresh = (cache.misses - misses) if cache is not None else len(k_q)
        if cache is not None:
            cache.save()
        lat = []
        for p, _ in queries[:: max(1, len(queries) // 10)][:10]:
            try:
                im = load_image(p)
            except Exception:
                continue
            t1 = time.perf_counter()
            embedder.embed_arrays([im])
            lat.append(time.perf_counter() - t1)
    finally:
        torch.set_num_threads(threads)
    if not k_q:
        raise DatasetError(f"no usable photo in {root}/dataset/{split}.txt")
    if tta:
        q = q_raw[0::2] + q_raw[1::2]
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    else:
        q = q_raw
    y = np.array([queries[i][1] for i in k_q])
    coarse = np.array(classes.coarse)

    rows = []
    for k in sorted({1, shots}):
        counts: Counter = Counter()
        vecs, owner, photo = [], [], []
        for j, row in enumerate(icon_rows):
            vecs.append(v_icon[j * per:(j + 1) * per])
            owner += [row] * per
            photo += [len(photo) // per] * per
            counts[row] += 1
        for j, row in enumerate(extra_rows):
            if counts[row] >= k:
                continue
            vecs.append(v_extra[j * per:(j + 1) * per])
            owner += [row] * per
            photo += [len(photo) // per] * per
            counts[row] += 1
        for method in ("nearest-neighbour", "linear"):
            # nearest neighbour without the photos' centre crops, as vision.products.build_gallery builds it
            keep = (np.arange(len(owner)) % per < (2 if flip else 1)) if method != "linear" else slice(None)
            g = Gallery(labels=np.array(classes.names, dtype=object), vectors=np.concatenate(vecs)[keep],
                        owner=np.asarray(owner)[keep], photo=np.asarray(photo)[keep], model=embedder.name)
            say(f"{k} shots, {method}")
            if method == "linear":
                g.head = fit_linear_head(g.vectors, g.owner, C)
                t, how = fit_temperature_cv(g), "5-fold cross-validation over the gallery's photos"
            else:
                t, how = fit_temperature_loo(g), "leave-one-photo-out on the gallery"
            # with one photo per class: the extra photos scored against the 1-photo gallery (never the split's)
            if t is None and len(extra_rows):
                t = fit_temperature(g.scores(v_extra[0::per]), np.array(extra_rows), bounds=(1e-3, 20.0))
                how = "the extra photos against the 1-photo gallery"
            if t is None:
                t, how = g.temperature, "default"
            rows.append(_figures(g, q, y, coarse, k, method, t, how, int(sum(counts.values()))))
    tuned_model, ms_tuned, tune_cpu = "", float("nan"), float("nan")
    if tuning is not None and shots > 1:
        photos: dict[str, list] = {name: ([classes.iconic[i]] if classes.iconic[i] is not None else [])
                                   for i, name in enumerate(classes.names)}
        for p, row in extra:
            if len(photos[classes.names[row]]) < shots:
                photos[classes.names[row]].append(p)
        say(f"{shots} shots, linear, tuned tail: building the gallery as the store does")
        t0 = time.process_time()
        g = build_gallery(embedder, photos, flip=flip, augment=augment, cache=cache, tuning=tuning,
                          tuning_cache=tuning_cache, progress=say)
        tune_cpu = time.process_time() - t0
        tuned = g.embedder_for(embedder)
        tuned_model = tuned.name
        say(f"tuned gallery {tuned_model} in {tune_cpu:.0f} CPU s; embedding the queries through its tail")
        tq, tk = embed_through_front(tuned, [p for p, _ in queries], tuning_cache or EmbeddingCache(), flip=tta)
        if tuning_cache is not None:
            tuning_cache.save()
        if tta:
            tq = tq[0::2] + tq[1::2]
            tq /= np.linalg.norm(tq, axis=1, keepdims=True)
        ty = np.array([queries[i][1] for i in tk])
        how = {"held-out": "held-out random variants", "fold": "every 5th photo, left out of a second tuning"}.get(
            tuning.calibration, "5-fold cross-validation over the gallery's photos") if g.tail is not None else \
            "5-fold cross-validation over the gallery's photos"
        n_photos = int(g.photos_per_product().sum())
        rows.append(_figures(g, tq, ty, coarse, shots, "linear, tuned" if g.tail is not None else "linear (untuned)",
                             g.temperature, how, n_photos))
        if g.tail is not None and tuning.calibration != "cv":
            t_cv = fit_temperature_cv(g)
            if t_cv is not None:
                rows.append(_figures(g, tq, ty, coarse, shots, "linear, tuned, T by cv", t_cv,
                                     "5-fold cross-validation over the gallery's photos", n_photos))
        if g.tail is not None and compare_concat:
            import dataclasses

            other = dataclasses.replace(tuning, concat=not tuning.concat)
            sources = [(k, p) for k, label in enumerate(photos) for p in photos[label]]
            if len(sources) != len(np.unique(g.photo)):
                raise DatasetError("unreadable gallery photos: the concat comparison needs every one")
            labels = np.asarray([k for k, _ in sources], np.int64)
            samples = gallery_samples(embedder, [p for _, p in sources], other, flip=flip, zooms=g.zooms,
                                      cache=tuning_cache, progress=say)
            shell = Gallery(labels=g.labels, vectors=np.zeros((len(g.vectors), 1), np.float32), owner=g.owner,
                            photo=g.photo, model="", zooms=g.zooms)
            g2 = gallery_with_tail(embedder, shell, samples, labels, TunedTail(g.tail.cut, other.concat, g.tail.state),
                                   other)
            tq2, tk2 = embed_through_front(g2.embedder_for(embedder), [p for p, _ in queries],
                                           tuning_cache or EmbeddingCache(), flip=tta)
            if tta:
                tq2 = tq2[0::2] + tq2[1::2]
                tq2 /= np.linalg.norm(tq2, axis=1, keepdims=True)
            rows.append(_figures(g2, tq2, np.array([queries[i][1] for i in tk2]), coarse, shots,
                                 "linear, tuned, " + ("concat" if other.concat else "no concat"), g2.temperature,
                                 how, n_photos))
        ims = []
        for p, _ in queries[:: max(1, len(queries) // 16)][:16]:
            try:
                ims.append(load_image(p))
            except Exception:
                continue
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t1 = time.thread_time()
            tuned.embed_arrays(ims)
            ms_tuned = 1000.0 * (time.thread_time() - t1) / max(1, len(ims))
        finally:
            torch.set_num_threads(threads)
    zooms = f" +zoom {','.join(f'{z:g}' for z in embedder.config.zooms)} gallery" if augment else ""
    return BenchResult(model=embedder.name + (" +flip gallery" if flip else "") + zooms + (" +flip query" if tta else ""),
                       split=split, queries=len(y), classes=C, rows=rows,
                       ms_per_crop=1000.0 * cpu / max(1, fresh) if fresh else float("nan"),
                       ms_latency=1000.0 * float(np.median(lat)) if lat else float("nan"),
                       rejected=rejected, class_names=list(classes.names), tuned_model=tuned_model,
                       ms_per_crop_tuned=ms_tuned, tuning_cpu_s=tune_cpu)


def _figures(g: Gallery, q: np.ndarray, y: np.ndarray, coarse: np.ndarray, k: int, method: str, t: float,
             how: str, photos: int) -> ShotResult:
    """Top-1/top-5 (fine, coarse), calibration and confusion of gallery ``g`` on queries ``q`` (truth ``y``)."""
    C = len(g.labels)
    s = g.scores(q)
    probs = softmax(s, t)
    guess = s.argmax(axis=1)
    cs, cids = _coarse_scores(s, coarse)
    ytrue_c = np.searchsorted(cids, coarse[y])
    conf = np.zeros((C, C), np.int64)
    np.add.at(conf, (y, guess), 1)
    top_p, right = probs.max(axis=1), guess == y
    return ShotResult(
        shots=k, method=method, gallery_photos=photos,
        top1=float((guess == y).mean()), top5=float(topk_hits(s, y, 5).mean()),
        coarse_top1=float((coarse[guess] == coarse[y]).mean()), coarse_top5=float(topk_hits(cs, ytrue_c, 5).mean()),
        temperature=t, temperature_from=how, nll=negative_log_likelihood(probs, y),
        ece=expected_calibration_error(probs, y), reliability=reliability_table(probs, y), confusion=conf,
        p_right=float(top_p[right].mean()) if right.any() else float("nan"),
        p_wrong=float(top_p[~right].mean()) if (~right).any() else float("nan"))


def format_table(r: BenchResult) -> list[str]:
    """The benchmark as text lines; the last is ``top1 <fine> <coarse>`` (fractions) at the largest shot count."""
    out = [f"model {r.model}; split {r.split}: {r.queries} photos of {r.classes} classes; "
           f"{len(r.rejected)} inputs rejected",
           f"{'shots':>5} {'method':>17} {'gallery':>7} {'fine top1':>9} {'fine top5':>9} {'coarse top1':>11} {'coarse top5':>11} "
           f"{'T':>6} {'NLL':>6} {'ECE':>6}"]
    for s in r.rows:
        out.append(f"{s.shots:>5} {s.method:>17} {s.gallery_photos:>7} {s.top1:>9.3f} {s.top5:>9.3f} {s.coarse_top1:>11.3f} "
                   f"{s.coarse_top5:>11.3f} {s.temperature:>6.3g} {s.nll:>6.3f} {s.ece:>6.3f}")
    out.append(f"ms per crop on one core: {r.ms_per_crop:.1f} CPU ms (preprocess + forward, batches of "
               f"16), {r.ms_latency:.1f} ms wall for one crop alone")
    if r.tuned_model:
        out.append(f"tuned tail {r.tuned_model}: gallery built and tuned in {r.tuning_cpu_s:.0f} CPU s; "
                   f"{r.ms_per_crop_tuned:.1f} CPU ms per query crop on one core (batch of 16)")
    last = next((x for x in r.rows if x.method == "linear, tuned"), r.rows[-1])  # the store's, at the most shots
    out.append(f"calibration at {last.shots} shots, {last.method} (T fitted on {last.temperature_from}): top-1 probability bin → "
               f"share right: " + "; ".join(f"{lo:.1f}–{hi:.1f}: {right:.2f} (n={n})"
                                             for lo, hi, n, right in last.reliability if n)
               + f"; mean top probability {last.p_right:.2f} when right, {last.p_wrong:.2f} when wrong")
    reasons = Counter(reason.split(" (")[0] for _, reason in r.rejected.items)
    for reason, n in reasons.most_common():
        out.append(f"rejected {n}: {reason}")
    for src, reason in r.rejected.items[:10]:
        out.append(f"  {src}: {reason}")
    out.append(f"top1 {last.top1:.4f} {last.coarse_top1:.4f}")  # the default: linear head at the most shots
    return out


def embed_through_front(embedder: Embedder, sources: Sequence, cache: EmbeddingCache, *, flip: bool = False,
                        rejected=None) -> tuple[np.ndarray, list[int]]:
    """Like :func:`vision.product_embedder.embed_many` (no centre crops) for a tuned embedder, keeping each photo
    file's front activations and colour part in ``cache`` (float16, keyed by the untuned embedder's name, the cut
    and the file's bytes): embedders with other tails of the same cut then only run their tail. The benchmark's
    queries (``manage.py bench_products``); the vectors equal :meth:`Embedder.embed_arrays`' to float16 rounding of
    the activations. With ``flip``, each photo's row then its mirror's; else, with the embedder's ``config.mirror``,
    each photo's views and its mirror's summed into one row, as :meth:`Embedder.embed_arrays` does for a query."""
    if embedder.tail is None:
        raise ValueError("embed_through_front needs a tuned embedder")
    base = embedder._base or embedder
    acts, colors, kept = [], [], []
    for i, s in enumerate(sources):
        try:
            digest = hashlib.sha256(Path(s).read_bytes()).hexdigest()
        except OSError:
            digest = None
        key = f"{base.name}|front{embedder.cut}|{int(flip)}|{digest}" if digest else None
        a, c = cache.get(key), cache.get(key + "|colors") if key else None
        if a is None or c is None:
            try:
                rgb = load_image(s)
            except BadImage as exc:
                if rejected is not None:
                    rejected.add(exc.source, exc.reason)
                continue
            both = flip or embedder.config.mirror
            ims = [rgb, np.ascontiguousarray(rgb[:, ::-1])] if both else [rgb]
            a, c = front_activations(embedder, ims, embedder.cut), embedder.colors(ims).astype(np.float32)
            if both and not flip:  # the query's mirror: its views beside the photo's, summed by embed_activations
                a, c = a.reshape(1, -1, *a.shape[2:]), c[:1]
            if key:
                cache.put(key, a)
                cache.put(key + "|colors", c)
        acts.append(a)
        colors.append(c)
        kept.append(i)
    if not kept:
        return np.zeros((0, embedder.dim), np.float32), []
    return embedder.embed_activations(np.concatenate(acts), np.concatenate(colors)), kept
