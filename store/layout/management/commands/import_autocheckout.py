"""``manage.py import_autocheckout SRC DEST``: convert an AiFi AutoCheckout test case into a Walkout recording."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from store.autocheckout import AutoCheckoutError, import_case
from store.recording import RecordingError, destination_prepare, read_recording


class Command(BaseCommand):
    help = ("Convert an AiFi AutoCheckout test case folder (e.g. ../shared/datasets/autocheckout/BENCHMARK-1) "
            "into a recording folder. Keypoints are converted from inches to metres; see store/autocheckout.py.")

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
        for p in problems:
            self.stderr.write(f"problem: {p}")
        bins = sum(len(s.bin_codes) for s in rec.shelves)
        layout = sum(len(sh["bins"]) for g in rec.store["gondolas"] for sh in g["shelves"])
        self.stdout.write(
            f"recording {rec.name} written to {path}: {layout} bins in the layout, {bins} of them with samples "
            f"from {len(rec.shelves)} controllers, "
            f"{rec.t_end - rec.t_start:.1f} s, {len(rec.tracks.track_ids())} shopper track(s), "
            f"{len(rec.store['products'])} products, {len(rec.store['facings'])} facings, "
            f"{len(rec.truth or [])} true receipt(s)"
        )
