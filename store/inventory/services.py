"""Inventory services: load the catalogue and planogram, and write the stock ledger."""
from __future__ import annotations

import io
import logging
from collections import Counter
from decimal import Decimal

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Sum

from store.layout.models import Bin, Store

from . import signals
from .models import Facing, Product, ProductPhoto, StockMovement, TaxCategory, RestockSession, RestockTask
from store.billing.models import Receipt

log = logging.getLogger(__name__)


@transaction.atomic
def catalogue_load(*, store: Store, products: list[dict], facings: list[dict]) -> int:
    """Create or update ``products`` ({barcode, name, price (decimal string), unit_weight_g, unit_weight_sd_g}) and
    the planogram ``facings`` ({bin, barcode}) of ``store``. Facings not listed are removed (the planogram is
    replaced). Returns the number of products. Raises ``Bin.DoesNotExist`` for a facing on an unknown bin."""
    by_barcode = {}
    for p in products:
        product, _ = Product.objects.update_or_create(
            store=store, barcode=p["barcode"],
            defaults={"name": p["name"], "price": Decimal(str(p["price"])), "unit_weight_g": p["unit_weight_g"],
                      "unit_weight_sd_g": p.get("unit_weight_sd_g", 0.0)},
        )
        by_barcode[p["barcode"]] = product
    bins = {b.code: b for b in Bin.objects.filter(store=store)}
    wanted = set()
    for f in facings:
        if f["bin"] not in bins:
            raise Bin.DoesNotExist(f"facing names bin {f['bin']!r}, which store {store.code} does not have")
        product = by_barcode.get(f["barcode"]) or Product.objects.get(store=store, barcode=f["barcode"])
        facing, _ = Facing.objects.get_or_create(bin=bins[f["bin"]], product=product)
        wanted.add(facing.pk)
    Facing.objects.filter(bin__store=store).exclude(pk__in=wanted).delete()
    return len(by_barcode)


def stock_record(*, product: Product, quantity: int, kind: str, bin: Bin | None = None, reference: str = "") -> StockMovement:
    """Append a stock movement (signed units: sale −, return +, restock +)."""
    return StockMovement.objects.create(product=product, bin=bin, kind=kind, quantity=quantity, reference=reference)


# --------------------------------------------------------------------------------------- manager's stock services
# (Added for the manager's inventory pages and the sale ledger; see store/inventory/views.py.)


class InventoryInputError(ValueError):
    """A manager's inventory request that cannot be applied; the message says why. Nothing was written."""


def _check_bin_of_store(*, product: Product, bin: Bin | None) -> None:
    if bin is not None and bin.store_id != product.store_id:
        raise InventoryInputError(f"bin {bin.code} is not in the store of {product.barcode}")


@transaction.atomic
def stock_record_sale(*, receipt) -> list[StockMovement]:
    """Write the ``sale`` movements of an issued receipt (``store.billing.models.Receipt``): per receipt line,
    −quantity units of its product, ``reference="receipt:<id>"``.

    The bin comes from the visit's cart events for that product (the bin of each event's shelf event): when the
    net units per bin are all ≥ 0 and add up to the line's quantity, one movement per bin; otherwise (a put-back
    on another bin, an event added by a manager without a shelf event) one movement with no bin, so the product's
    level is right and no bin's level is guessed. Idempotent: a receipt that already has sale movements returns
    them and writes nothing (the receipt row is locked meanwhile). Returns the movements, in line order.
    """
    locked = Receipt.objects.select_for_update().select_related("visit").get(pk=receipt.pk)
    reference = f"receipt:{locked.pk}"
    existing = list(StockMovement.objects.filter(kind=StockMovement.Kind.SALE, reference=reference)
                    .order_by("id"))
    if existing:
        return existing
    nets: dict[int, dict[int | None, int]] = {}
    for row in (locked.visit.cart_events.values("product_id", "shelf_event__bin_id")
                .annotate(units=Sum("quantity"))):
        nets.setdefault(row["product_id"], {})[row["shelf_event__bin_id"]] = row["units"]
    bins = Bin.objects.in_bulk({b for per in nets.values() for b in per if b is not None})
    movements = []
    for line in locked.lines.select_related("product").order_by("id"):
        per_bin = {b: q for b, q in nets.get(line.product_id, {}).items() if q != 0}
        if per_bin and all(q > 0 for q in per_bin.values()) and sum(per_bin.values()) == line.quantity:
            split = sorted(per_bin.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        else:
            split = [(None, line.quantity)]
        for bin_id, units in split:
            movements.append(StockMovement(product_id=line.product_id, bin=bins.get(bin_id), quantity=-units,
                                           kind=StockMovement.Kind.SALE, reference=reference))
    return [StockMovement.objects.create(product_id=m.product_id, bin=m.bin, kind=m.kind, quantity=m.quantity,
                                         reference=m.reference) for m in movements]


def stock_record_restock(*, product: Product, quantity: int, bin: Bin | None = None, by: str,
                         note: str = "") -> StockMovement:
    """A restock: +``quantity`` units (> 0) of ``product`` onto ``bin`` (of the product's store, or None).
    ``by`` (username) and ``note`` are kept in the movement's reference (100 chars at most).
    Raises :class:`InventoryInputError` for a quantity ≤ 0 or a bin of another store."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise InventoryInputError(f"a restock adds a whole number of units > 0, got {quantity!r}")
    _check_bin_of_store(product=product, bin=bin)
    reference = f"restock by {by}" + (f": {note}" if note else "")
    return stock_record(product=product, quantity=quantity, kind=StockMovement.Kind.RESTOCK, bin=bin,
                        reference=reference[:100])


def stock_record_adjustment(*, product: Product, quantity: int, reason: str, by: str,
                            bin: Bin | None = None) -> StockMovement:
    """A manual correction after a count: ``quantity`` signed units (≠ 0; − shrink/damage, + found) of ``product``
    on ``bin`` (or None), with a ``reason`` (required). Raises :class:`InventoryInputError` for a quantity of 0,
    no reason, or a bin of another store."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity == 0:
        raise InventoryInputError(f"an adjustment is a whole number of units other than 0, got {quantity!r}")
    if not reason.strip():
        raise InventoryInputError("say why the stock is adjusted")
    _check_bin_of_store(product=product, bin=bin)
    return stock_record(product=product, quantity=quantity, kind=StockMovement.Kind.ADJUSTMENT, bin=bin,
                        reference=f"adjustment by {by}: {reason.strip()}"[:100])


def stock_level_set(*, product: Product, counted: int, by: str, bin: Bin | None = None) -> StockMovement | None:
    """A stock count: record the adjustment that brings ``product``'s level (units; on ``bin`` when given, else
    the whole product) to ``counted`` (≥ 0). Returns the movement, or None when the level already is ``counted``.
    Raises :class:`InventoryInputError` for a negative count or a bin of another store."""
    if isinstance(counted, bool) or not isinstance(counted, int) or counted < 0:
        raise InventoryInputError(f"a count is a whole number of units ≥ 0, got {counted!r}")
    _check_bin_of_store(product=product, bin=bin)
    with transaction.atomic():
        Product.objects.select_for_update().filter(pk=product.pk).first()
        qs = StockMovement.objects.filter(product=product)
        if bin is not None:
            qs = qs.filter(bin=bin)
        level = qs.aggregate(s=Sum("quantity"))["s"] or 0
        if counted == level:
            return None
        return stock_record(product=product, quantity=counted - level, kind=StockMovement.Kind.ADJUSTMENT, bin=bin,
                            reference=f"count by {by}: {level} → {counted}"[:100])


#: ``product_update(tax_category=UNCHANGED)``: leave the product's tax category as it is.
UNCHANGED = object()


def product_update(*, product: Product, price: Decimal, unit_weight_g: float, unit_weight_sd_g: float,
                   low_stock_threshold: int, name: str | None = None, tax_category=UNCHANGED) -> Product:
    """Change a product's price (``Decimal`` ≥ 0, store currency, 2 decimals at most), unit weight and its
    standard deviation (grams, ≥ 0; weight > 0), low-stock threshold (units, ≥ 0), when given its name (1–200
    characters after trimming; receipts already issued keep the name they were issued with) and, when given, its
    ``tax_category`` (a :class:`~store.inventory.models.TaxCategory` of the product's own store, or None: not
    taxed; carts price it from then on, receipts already issued keep their tax). Raises
    :class:`InventoryInputError` for a value out of range or a tax category of another store (nothing saved)."""
    if tax_category is not UNCHANGED and tax_category is not None:
        if not isinstance(tax_category, TaxCategory):
            raise InventoryInputError(f"tax category must be a TaxCategory or None, got {tax_category!r}")
        if tax_category.store_id != product.store_id:
            raise InventoryInputError(f"tax category “{tax_category.name}” belongs to another store "
                                      f"({tax_category.store.code}); choose one of {product.store.code}'s")
    if name is not None:
        name = " ".join(str(name).split())
        if not name:
            raise InventoryInputError("the name cannot be empty")
        if len(name) > 200:
            raise InventoryInputError(f"the name is {len(name)} characters long; 200 at most")
    if not isinstance(price, Decimal) or not price.is_finite() or price < 0 or price != price.quantize(Decimal("0.01")):
        raise InventoryInputError(f"price must be a Decimal ≥ 0 with at most 2 decimals, got {price!r}")
    if not (unit_weight_g > 0):
        raise InventoryInputError(f"unit weight must be > 0 g, got {unit_weight_g!r}")
    if not (unit_weight_sd_g >= 0):
        raise InventoryInputError(f"unit weight sd must be ≥ 0 g, got {unit_weight_sd_g!r}")
    if isinstance(low_stock_threshold, bool) or not isinstance(low_stock_threshold, int) or low_stock_threshold < 0:
        raise InventoryInputError(f"low-stock threshold must be a whole number ≥ 0, got {low_stock_threshold!r}")
    product.price = price
    product.unit_weight_g = float(unit_weight_g)
    product.unit_weight_sd_g = float(unit_weight_sd_g)
    product.low_stock_threshold = low_stock_threshold
    fields = ["price", "unit_weight_g", "unit_weight_sd_g", "low_stock_threshold"]
    if name is not None:
        product.name = name
        fields.append("name")
    if tax_category is not UNCHANGED:
        product.tax_category = tax_category
        fields.append("tax_category")
    product.save(update_fields=fields)
    return product


#: Product photos: largest upload (bytes), the image formats kept (Pillow's names → file extension), and the
#: smallest and largest side (pixels) of a usable photo.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
PHOTO_MIN_SIDE_PX = 32
PHOTO_MAX_SIDE_PX = 10_000
#: Uploads refused since the process started, by reason (a refusal is logged and counted; nothing is stored).
photo_rejections: Counter = Counter()


def photo_check(data: bytes) -> tuple[str, int, int]:
    """Decode ``data`` as an image and return ``(extension, width px, height px)``. Raises
    :class:`InventoryInputError` saying why it is refused: empty, larger than ``PHOTO_MAX_BYTES``, not an image
    Pillow can read, truncated or corrupt, a format other than JPEG/PNG/WebP, or a side outside
    ``PHOTO_MIN_SIDE_PX``…``PHOTO_MAX_SIDE_PX``."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InventoryInputError("the file is empty")
    if len(data) > PHOTO_MAX_BYTES:
        raise InventoryInputError(f"the file is {len(data) / 1e6:.1f} MB; {PHOTO_MAX_BYTES // (1024 * 1024)} MB at most")
    # only bytes with an image signature Pillow reads natively are handed to it: ultralytics (imported by vision)
    # replaces PIL.Image.open with one that, on bytes Pillow cannot identify, tries to install a HEIF plugin
    # (ultralytics.utils.patches). Signatures: JPEG, PNG, WebP (kept), GIF, BMP, TIFF (named in the refusal).
    if not (data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n"
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or data[:4] in (b"GIF8", b"II*\x00", b"MM\x00*")
            or data[:2] == b"BM"):
        raise InventoryInputError("the file is not an image (JPEG, PNG or WebP expected)")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes every pixel: a truncated file fails here
            width, height = img.size
    except (UnidentifiedImageError, ImportError):  # ImportError: the patched open's plugin is not installed
        raise InventoryInputError("the file is not an image (JPEG, PNG or WebP expected)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InventoryInputError(f"the image cannot be read: it is damaged or truncated ({exc})") from None
    if fmt not in PHOTO_FORMATS:
        raise InventoryInputError(f"{fmt} images are not kept; upload a JPEG, PNG or WebP photo")
    if min(width, height) < PHOTO_MIN_SIDE_PX or max(width, height) > PHOTO_MAX_SIDE_PX:
        raise InventoryInputError(f"the photo is {width}×{height} px; each side must be {PHOTO_MIN_SIDE_PX} to "
                                  f"{PHOTO_MAX_SIDE_PX} px")
    return PHOTO_FORMATS[fmt], width, height


def product_photo_add(*, product: Product, data: bytes, by: str = "") -> ProductPhoto:
    """Store ``data`` (the uploaded file's bytes) as a photo of ``product`` through Django's default storage.
    Raises :class:`InventoryInputError` (see :func:`photo_check`; counted in ``photo_rejections``, logged, nothing
    stored) for a file that is not a usable image."""
    try:
        ext, width, height = photo_check(data)
    except InventoryInputError as exc:
        photo_rejections[str(exc).split(":")[0][:60]] += 1
        log.warning("photo of %s refused: %s", product.barcode, exc)
        raise
    photo = ProductPhoto(product=product, width=width, height=height, uploaded_by=by[:150])
    photo.image.save(f"photo.{ext}", ContentFile(data), save=False)
    try:
        photo.save()
    except Exception:
        photo.image.delete(save=False)
        raise
    _photos_changed(product)
    return photo


def product_photo_remove(*, photo: ProductPhoto) -> None:
    """Delete ``photo``: its row, then its file in storage (a file already gone is not an error)."""
    name, storage = photo.image.name, photo.image.storage
    product = photo.product
    photo.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))
    _photos_changed(product)


def _photos_changed(product: Product) -> None:
    """After commit: announce that ``product``'s store has other photos (``signals.product_photos_changed``)."""
    store = product.store
    transaction.on_commit(lambda: signals.product_photos_changed.send(sender=ProductPhoto, store=store))


def facing_add(*, bin: Bin, product: Product) -> tuple[Facing, bool]:
    """Put ``product`` on ``bin`` in the planogram (same store). Returns (facing, created): adding an existing
    facing is a no-op. Raises :class:`InventoryInputError` when bin and product are of different stores."""
    _check_bin_of_store(product=product, bin=bin)
    return Facing.objects.get_or_create(bin=bin, product=product)


def facing_remove(*, bin: Bin, product: Product) -> bool:
    """Take ``product`` off ``bin`` in the planogram; returns whether a facing was removed. The stock ledger is not
    touched (units still on the bin stay in its level until sold, moved or adjusted)."""
    deleted, _ = Facing.objects.filter(bin=bin, product=product).delete()
    return deleted > 0


def stock_record_billed_change(*, product: Product, quantity: int, reference: str,
                               bin: Bin | None = None) -> StockMovement:
    """The stock side of a cart change decided after the visit was billed (a review decision charged or refunded
    through billing, never by editing the receipt): ``quantity`` signed units taken (+ taken → a ``sale`` of
    −quantity; − put back → a ``return`` of +units). ``reference`` names the cause (e.g. ``cart_event:<id>``) and
    makes the call idempotent: a movement with that reference is returned as is. Raises
    :class:`InventoryInputError` for a quantity of 0, an empty reference or a bin of another store."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity == 0:
        raise InventoryInputError(f"a billed change is a whole number of units other than 0, got {quantity!r}")
    if not reference:
        raise InventoryInputError("a billed change needs a reference (what caused it)")
    _check_bin_of_store(product=product, bin=bin)
    with transaction.atomic():
        Product.objects.select_for_update().filter(pk=product.pk).first()
        existing = StockMovement.objects.filter(product=product, reference=reference[:100]).first()
        if existing is not None:
            return existing
        kind = StockMovement.Kind.SALE if quantity > 0 else StockMovement.Kind.RETURN
        return stock_record(product=product, quantity=-quantity, kind=kind, bin=bin, reference=reference[:100])


# --------------------------------------------------------------------------------------- restock mode and tasks
# (Shelf sensors: weight increases during restocking are restocks, misplaced put-backs raise tasks. Called by
# sensors.services.shelf_event_record; see store/inventory/models.py RestockSession, RestockTask.)


def restock_mode_bins(*, store: Store, bin_codes: tuple[str, ...] | list[str], at) -> set[str]:
    """The bins among ``bin_codes`` that are in restock mode at ``at`` (aware datetime, UTC): the manager's toggle
    ``Bin.restock_mode``, or a :class:`RestockSession` of ``store`` open at ``at`` that covers the bin (its
    ``bin_codes`` empty = the whole store)."""
    from django.db.models import Q

    wanted = set(bin_codes)
    out = set(Bin.objects.filter(store=store, code__in=wanted, restock_mode=True).values_list("code", flat=True))
    for codes in (RestockSession.objects.filter(store=store, started_at__lte=at)
                  .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=at)).values_list("bin_codes", flat=True)):
        out |= wanted if not codes else wanted & set(codes)
    return out


def restock_session_start(*, store: Store, staff, bin_codes: list[str] | None = None, at=None):
    """Open a restock session for ``staff`` (an ``is_staff`` user) in ``store``, on ``bin_codes`` (None or empty:
    the whole store), from ``at`` (default now). Raises :class:`InventoryInputError` for a non-staff user or an
    unknown bin."""
    from django.utils import timezone

    if not getattr(staff, "is_staff", False):
        raise InventoryInputError(f"only staff may restock; {staff} is not staff")
    codes = sorted(set(bin_codes or ()))
    known = set(Bin.objects.filter(store=store, code__in=codes).values_list("code", flat=True))
    if set(codes) - known:
        raise InventoryInputError(f"store {store.code} has no bin(s) {', '.join(sorted(set(codes) - known))}")
    return RestockSession.objects.create(store=store, staff=staff, bin_codes=codes, started_at=at or timezone.now())


def restock_session_end(*, session, at=None):
    """Close ``session`` at ``at`` (default now); closing a closed session changes nothing. Returns it."""
    from django.utils import timezone

    if session.ended_at is None:
        session.ended_at = at or timezone.now()
        session.save(update_fields=["ended_at"])
    return session


def bin_restock_mode_set(*, bin: Bin, on: bool) -> Bin:
    """The manager's per-bin toggle: while on, weight increases on ``bin`` are restocks, not returns."""
    bin.restock_mode = bool(on)
    bin.save(update_fields=["restock_mode"])
    return bin


@transaction.atomic
def stock_record_shelf_restock(*, product: Product, quantity: int, bin: Bin, reference: str) -> StockMovement:
    """A restock seen by the shelf sensors: +``quantity`` (> 0) units of ``product`` on ``bin``. Idempotent on
    ``reference`` (``shelf_event:<id>``): a second call returns the first movement. Raises
    :class:`InventoryInputError` for a quantity ≤ 0 or a bin of another store."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise InventoryInputError(f"a restock adds a whole number of units > 0, got {quantity!r}")
    _check_bin_of_store(product=product, bin=bin)
    existing = StockMovement.objects.filter(kind=StockMovement.Kind.RESTOCK, reference=reference).first()
    if existing is not None:
        return existing
    return stock_record(product=product, quantity=quantity, kind=StockMovement.Kind.RESTOCK, bin=bin,
                        reference=reference[:100])


def restock_task_open(*, store: Store, bin: Bin, reason: str, product: Product | None = None, quantity: int = 1,
                      detail: str = "", reference: str = ""):
    """Raise a task for the staff (``RestockTask.Reason``): e.g. a misplaced item to move back. Idempotent on
    (``reason``, ``reference``) when ``reference`` is given. Returns the task. Raises
    :class:`InventoryInputError` for an unknown reason, a quantity < 1, or a bin of another store."""
    if reason not in RestockTask.Reason.values:
        raise InventoryInputError(f"unknown restock task reason {reason!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InventoryInputError(f"a task is about a whole number of units ≥ 1, got {quantity!r}")
    if bin.store_id != store.pk:
        raise InventoryInputError(f"bin {bin.code} is not in store {store.code}")
    fields = {"store": store, "bin": bin, "product": product, "quantity": quantity, "detail": detail[:200]}
    if reference:
        task, _ = RestockTask.objects.get_or_create(reason=reason, reference=reference[:100], defaults=fields)
        return task
    return RestockTask.objects.create(reason=reason, reference="", **fields)


def restock_task_done(*, task, by):
    """Mark ``task`` done by ``by`` (a user); doing a done task changes nothing. Returns it."""
    from django.utils import timezone

    if task.done_at is None:
        task.done_at = timezone.now()
        task.done_by = by
        task.save(update_fields=["done_at", "done_by"])
    return task
