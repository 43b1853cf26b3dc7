"""``manage.py import_autocheckout SRC DEST``: convert an AiFi AutoCheckout test case into a Walkout recording."""
from __future__ import annotations

import re
from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from carts.offline.autocheckout import import_case
from carts.offline.autocheckout_store import AutoCheckoutError
from store.recording import RecordingError, destination_prepare, read_recording


class Command(BaseCommand):
    help = ("Convert an AiFi AutoCheckout test case folder (e.g. ../shared/datasets/autocheckout/BENCHMARK-1) "
            "into a recording folder. Keypoints are converted from inches to metres; see carts/offline/autocheckout.py.")

    def add_arguments(self, parser):
        parser.add_argument("src", help="test case folder (plate_data.json, full_targets.json, products.json, …)")
        parser.add_argument("dest", help="recording folder to write (new or empty, unless --force)")
        parser.add_argument("--force", action="store_true",
                            help="clear DEST first when it holds an earlier recording")
        parser.add_argument("--store-meta", help="store_meta folder (default: SRC/../store_meta)")
        parser.add_argument("--product-info", help="AIM3S product_info.json for weight spreads "
                                                   "(default: SRC/../aim3s/product_info.json if present)")

    def handle(self, *args, src, dest, store_meta=None, product_info=None, force=False, **options):
        try:
            destination_prepare(dest, force=force)
            path, problems = import_case(src, dest, store_meta=store_meta, product_info=product_info)
            rec = read_recording(path)
        except (AutoCheckoutError, RecordingError) as exc:
            raise CommandError(str(exc)) from None
        if options.get("verbosity", 1) >= 2:
            for p in problems:
                self.stderr.write(f"problem: {p}")
        else:
            for line in problem_summary(problems):
                self.stderr.write(line)
        bins = sum(len(s.bin_codes) for s in rec.shelves)
        layout = sum(len(sh["bins"]) for g in rec.store["gondolas"] for sh in g["shelves"])
        self.stdout.write(
            f"recording {rec.name} written to {path}: {layout} bins in the layout, {bins} of them with samples "
            f"from {len(rec.shelves)} controllers, "
            f"{rec.t_end - rec.t_start:.1f} s, {len(rec.tracks.track_ids())} shopper track(s), "
            f"{len(rec.store['products'])} products, {len(rec.store['facings'])} facings, "
            f"{len(rec.truth or [])} true receipt(s)"
        )


#: how many examples of one kind of problem are printed (all with -v 2)
EXAMPLES = 2


def problem_kind(problem: str) -> str:
    """The kind of an import problem: its sentence with the file, row, numbers and quoted names taken out."""
    kind = re.sub(r"^\S+?(\.\w+)?(:\d+)?: ", "", str(problem))   # "<file>[:<row>]: "
    kind = re.sub(r"'[^']*'|\"[^\"]*\"", "…", kind)
    return re.sub(r"\d+(?:[.-]\d+)*", "#", kind)


def problem_summary(problems: list) -> list[str]:
    """Lines for stderr: per kind of problem, its count and the first :data:`EXAMPLES` of it, most frequent first
    (a real case has hundreds of per-row problems of a few kinds)."""
    kinds = Counter(problem_kind(p) for p in problems)
    lines = []
    for kind, n in kinds.most_common():
        examples = [p for p in problems if problem_kind(p) == kind][:EXAMPLES]
        lines += [f"problem: {p}" for p in examples]
        if n > len(examples):
            lines.append(f"problem: … and {n - len(examples)} more like this ({n} in all: {kind})")
    if len(kinds) > 1 or any(n > EXAMPLES for n in kinds.values()):
        lines.append(f"{len(problems)} problem(s) of {len(kinds)} kind(s); -v 2 lists every one")
    return lines
