"""``manage.py build_product_gallery (--store CODE | --folder DIR | --json FILE) [--out FILE] [--no-flip]``

Builds the product recogniser's gallery (:mod:`vision.product_service`) from the catalogue's photos: ``--store``
takes the photos managers uploaded on the store's product pages (``store.inventory.selectors.product_photo_gallery``),
``--folder`` holds one sub-folder per product (named by its barcode) with its photos, ``--json`` maps barcode →
photo paths.
Photos embedded before are taken from the cache. Prints one line per rejected photo with its reason, then
``gallery <products> products <photos> vectors T <temperature> model <name> rejected <n> -> <file>``, the products
counted those with a usable photo (the others are named in the rejected lines; none at all writes nothing and
fails).
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from vision.product_service import build_product_gallery, photos_from_folder, photos_from_json
from vision.product_embedder import ModelUnavailable
from store.inventory.selectors import product_photo_gallery
from store.layout.models import Store


class Command(BaseCommand):
    help = "Build and cache the product-recognition gallery from product photos."

    def add_arguments(self, parser) -> None:
        src = parser.add_mutually_exclusive_group(required=True)
        src.add_argument("--store", help="a store's code: the photos uploaded on its product pages")
        src.add_argument("--folder", help="one sub-folder per product (its barcode), holding its photos")
        src.add_argument("--json", help='a JSON object {"barcode": ["photo path", ...]}')
        parser.add_argument("--out", default=None, help="gallery file (default: settings VISION PRODUCT_GALLERY)")
        parser.add_argument("--no-flip", action="store_true", help="do not add mirrored photos")

    def handle(self, *args, **opts) -> None:
        try:
            if opts["store"]:
                photos = self._store_photos(opts["store"])
            else:
                photos = photos_from_folder(opts["folder"]) if opts["folder"] else photos_from_json(opts["json"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if not photos:
            raise CommandError("no product found in the photos given")
        try:
            g, rejected, where = build_product_gallery(photos, opts["out"], flip=not opts["no_flip"])
        except (ModelUnavailable, ValueError) as exc:  # no weights; an unknown WALKOUT_PRODUCT_MODEL or bad setting
            raise CommandError(str(exc)) from None
        for src, reason in rejected.items:
            self.stdout.write(f"rejected {src}: {reason}")
        blind = len(g.labels) - len(set(g.owner.tolist()))  # products left without a usable photo
        self.stdout.write(f"gallery {len(g.labels) - blind} products {len(g.vectors)} vectors T {g.temperature:.4f} "
                          f"model {g.model} rejected {len(rejected)}"
                          + (f" ({blind} product(s) without a usable photo cannot be recognised)" if blind else "")
                          + f" -> {where}")

    @staticmethod
    def _store_photos(code: str) -> dict[str, list[str]]:
        """``{barcode: [photo path, ...]}`` of store ``code``'s uploaded product photos. Raises CommandError for an
        unknown store."""
        store = Store.objects.filter(code=code).first()
        if store is None:
            raise CommandError(f"no store {code!r} (load it first: manage.py load_store)")
        return {barcode: [str(p) for p in paths] for barcode, paths in product_photo_gallery(store=store).items()}
