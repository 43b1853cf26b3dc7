"""Inventory reads for the manager's pages and dashboard (writes: ``services`` and ``csv_io``).

Stock levels are never stored: a level is the signed sum of the append-only ``StockMovement`` ledger (units), per
product (all its movements) or per product and bin (movements naming that bin; movements with no bin count for the
product only). A product is *low* when its level is at or below its ``low_stock_threshold`` (units).
Prices are ``Decimal`` in the store's currency; ``*_display`` strings are for templates only.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db.models import Q, QuerySet, Sum

from store.billing.services import price_to_minor
from store.layout.models import Bin, Store

from .models import Facing, Product, StockMovement, ProductPhoto
from store.billing.money import money_display


def stock_levels(*, product_ids: list[int] | None = None) -> dict[int, int]:
    """``{product id: level}`` (units) from the ledger; products without movements are absent (level 0)."""
    qs = StockMovement.objects.all()
    if product_ids is not None:
        qs = qs.filter(product_id__in=product_ids)
    return {r["product_id"]: r["level"] for r in qs.values("product_id").annotate(level=Sum("quantity"))}


def stock_levels_by_bin(*, product_ids: list[int] | None = None) -> dict[tuple[int, int | None], int]:
    """``{(product id, bin id or None): level}`` (units) from the ledger; ``None``: movements that name no bin."""
    qs = StockMovement.objects.all()
    if product_ids is not None:
        qs = qs.filter(product_id__in=product_ids)
    return {(r["product_id"], r["bin_id"]): r["level"]
            for r in qs.values("product_id", "bin_id").annotate(level=Sum("quantity"))}


@dataclass(frozen=True)
class BinLevel:
    """One product's level on one bin (units). ``faces``: the planogram puts the product on this bin now."""

    bin_id: int | None
    bin_code: str
    level: int
    faces: bool


@dataclass(frozen=True)
class ProductStock:
    """A product with its stock: ``level`` (units, whole ledger), ``bins`` (per bin: every bin it faces, and every
    bin or "no bin" that has movements), ``low`` (level ≤ threshold), ``price_minor`` (store currency)."""

    product: Product
    level: int
    bins: list[BinLevel]
    low: bool
    price_minor: int
    price_display: str


def natural_key(text: str) -> tuple:
    """Sort key that orders the numbers inside ``text`` by value: ``1-1-2`` before ``1-1-10``."""
    import re

    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text or ""))


def products_with_stock(*, store: Store | None = None, query: str = "", low_only: bool = False,
                        product_ids: list[int] | None = None) -> list[ProductStock]:
    """Products (of ``store``, or all), by store and name, with their stock. ``query`` matches barcode or name
    (case-insensitive substring); ``low_only`` keeps low products only. Four queries whatever the count."""
    qs = Product.objects.select_related("store").order_by("store__code", "name", "id")
    if store is not None:
        qs = qs.filter(store=store)
    if query:
        qs = qs.filter(Q(barcode__icontains=query) | Q(name__icontains=query))
    if product_ids is not None:
        qs = qs.filter(pk__in=product_ids)
    products = list(qs)
    ids = [p.pk for p in products]
    levels = stock_levels(product_ids=ids)
    by_bin = stock_levels_by_bin(product_ids=ids)
    facing_bins: dict[int, set[int]] = defaultdict(set)
    for pid, bid in Facing.objects.filter(product_id__in=ids).values_list("product_id", "bin_id"):
        facing_bins[pid].add(bid)
    bin_codes = dict(Bin.objects.filter(pk__in={b for (_, b) in by_bin if b is not None}
                                        | {b for s in facing_bins.values() for b in s}).values_list("pk", "code"))
    moved_bins: dict[int, set[int | None]] = defaultdict(set)
    for pid, bid in by_bin:
        moved_bins[pid].add(bid)
    rows = []
    for p in products:
        bin_ids = facing_bins[p.pk] | moved_bins[p.pk]
        bins = sorted(
            (BinLevel(bin_id=b, bin_code=bin_codes.get(b, "") if b is not None else "(no bin)",
                      level=by_bin.get((p.pk, b), 0), faces=b in facing_bins[p.pk]) for b in bin_ids),
            key=lambda x: (x.bin_id is None, natural_key(x.bin_code)))
        level = levels.get(p.pk, 0)
        # one rule everywhere (dashboard, inventory page, filter): at or below the threshold, and on a shelf or
        # given a threshold by a manager (an unshelved catalogue entry at 0 of 0 is no alert)
        low = level <= p.low_stock_threshold and (bool(facing_bins[p.pk]) or p.low_stock_threshold > 0)
        if low_only and not low:
            continue
        minor = price_to_minor(p.price, p.store.currency)
        rows.append(ProductStock(product=p, level=level, bins=bins, low=low, price_minor=minor,
                                 price_display=money_display(minor, p.store.currency)))
    return rows


def low_stock_products(*, store: Store | None = None) -> list[ProductStock]:
    """Products at or below their low-stock threshold (level ≤ ``low_stock_threshold``), lowest level first;
    a product that faces no bin counts only when a manager gave it a threshold (an unshelved catalogue entry at
    0 of 0 is no alert)."""
    rows = products_with_stock(store=store, low_only=True)
    return sorted(rows, key=lambda r: (r.level - r.product.low_stock_threshold, r.product.name))


def stock_ledger(*, store: Store | None = None, product: Product | None = None, bin_code: str = "",
                 kind: str = "", since: datetime | None = None, until: datetime | None = None,
                 query: str = "") -> QuerySet[StockMovement]:
    """Stock movements newest first, filtered: ``store``, ``product``, ``bin_code`` (exact), ``kind``
    (``StockMovement.Kind``), ``since`` ≤ created_at < ``until`` (aware UTC), ``query`` (barcode, name or
    reference substring). A lazy queryset: the caller slices or paginates."""
    qs = StockMovement.objects.select_related("product__store", "bin").order_by("-created_at", "-id")
    if store is not None:
        qs = qs.filter(product__store=store)
    if product is not None:
        qs = qs.filter(product=product)
    if bin_code:
        qs = qs.filter(bin__code=bin_code)
    if kind:
        qs = qs.filter(kind=kind)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    if query:
        qs = qs.filter(Q(product__barcode__icontains=query) | Q(product__name__icontains=query)
                       | Q(reference__icontains=query))
    return qs


@dataclass(frozen=True)
class PlanogramBin:
    """One bin of the planogram: the products facing it (by name), with their level on this bin (units)."""

    bin: Bin
    products: list[tuple[Product, int]]


def planogram(*, store: Store, query: str = "") -> list[PlanogramBin]:
    """Every bin of ``store`` in natural code order (``1-1-2`` before ``1-1-10``) with the products that face it. ``query`` keeps bins whose code
    starts with it, or that a product whose barcode or name contains it faces."""
    bins = sorted(Bin.objects.filter(store=store).select_related("shelf__gondola"), key=lambda b: natural_key(b.code))
    facings = list(Facing.objects.filter(bin__store=store).select_related("product").order_by("product__name"))
    by_bin_level = stock_levels_by_bin(product_ids=list({f.product_id for f in facings}))
    products: dict[int, list[tuple[Product, int]]] = defaultdict(list)
    for f in facings:
        products[f.bin_id].append((f.product, by_bin_level.get((f.product_id, f.bin_id), 0)))
    out = []
    q = query.strip().lower()
    for b in bins:
        faced = products.get(b.pk, [])
        if q and not (b.code.lower().startswith(q)
                      or any(q in p.barcode.lower() or q in p.name.lower() for p, _ in faced)):
            continue
        out.append(PlanogramBin(bin=b, products=faced))
    return out


def product_photos(product: Product) -> list[Path]:
    """Local file paths of ``product``'s photos, oldest first (the gallery a product recogniser matches against).
    Needs a storage with local files (``FileSystemStorage``, the default in every profile); raises
    ``NotImplementedError`` on one without (then read ``ProductPhoto.image.open()`` instead)."""
    return [Path(p.image.path) for p in product.photos.order_by("id")]


def product_photo_gallery(*, store: Store) -> dict[str, list[Path]]:
    """``{barcode: [photo file path, ...]}`` of every product of ``store`` that has photos (one query); see
    :func:`product_photos` for the storage it needs."""
    out: dict[str, list[Path]] = defaultdict(list)
    for photo in ProductPhoto.objects.filter(product__store=store).select_related("product").order_by("id"):
        out[photo.product.barcode].append(Path(photo.image.path))
    return dict(out)


@dataclass(frozen=True)
class ShelfDrawing:
    """One shelf as drawn: its bins left to right (natural code order) and each bin's share of the shelf's width
    (``widths``, percent of the sum of its bins' ``width_m``)."""

    gondola_number: int
    shelf_number: int
    z_m: float
    bins: list[PlanogramBin]
    widths: list[float]

    @property
    def bins_widths(self) -> list[tuple[PlanogramBin, float]]:
        return list(zip(self.bins, self.widths))


def planogram_drawing(*, store: Store) -> list[tuple[int, list[ShelfDrawing]]]:
    """The planogram as the shelves it describes: ``[(gondola number, [shelf, top shelf first])]`` by gondola
    number; every bin of ``store`` appears once, with the products facing it (see :func:`planogram`)."""
    by_shelf: dict[tuple[int, int], list[PlanogramBin]] = defaultdict(list)
    z: dict[tuple[int, int], float] = {}
    for pb in planogram(store=store):
        key = (pb.bin.shelf.gondola.number, pb.bin.shelf.number)
        by_shelf[key].append(pb)
        z[key] = pb.bin.shelf.z
    gondolas: dict[int, list[ShelfDrawing]] = defaultdict(list)
    for (g, s), bins in by_shelf.items():
        total = sum(max(pb.bin.width_m, 0.01) for pb in bins)
        gondolas[g].append(ShelfDrawing(gondola_number=g, shelf_number=s, z_m=z[(g, s)], bins=bins,
                                        widths=[round(100 * max(pb.bin.width_m, 0.01) / total, 2) for pb in bins]))
    return [(g, sorted(shelves, key=lambda d: (-d.z_m, -d.shelf_number))) for g, shelves in sorted(gondolas.items())]
