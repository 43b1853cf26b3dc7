"""CSV import and export of a store's catalogue and planogram.

Catalogue file (UTF-8, optional BOM, comma-separated, a header line first)::

    barcode,name,price,unit_weight_g,unit_weight_sd_g,low_stock_threshold
    071142008582,ARRWHD SPRNG WTR,1.49,623.0,4.0,6

``barcode`` (≤ 32 chars), ``name`` (≤ 200), ``price`` (decimal ≥ 0 in the store's currency, at most 2 decimals,
``.`` as separator) and ``unit_weight_g`` (grams, > 0) are required; ``unit_weight_sd_g`` (grams, ≥ 0) and
``low_stock_threshold`` (whole units, ≥ 0) are optional columns (absent: kept for existing products, 0 for new
ones; an empty cell means the same). A barcode already in the store updates that product, a new one creates it;
products not in the file are left alone.

Planogram file: header ``bin,barcode``, one facing per line (bin code of the store, barcode of a product of its
catalogue). Importing **replaces** the store's planogram: facings not in the file are removed.

Import is two-phase: every line is checked first, and any error aborts the whole import with a list of
``(line number, message)`` (line 1 is the header; a quoted cell spanning lines counts from its first line);
only a file without errors is applied, in one transaction. Exports write the same format, so an export imports
back unchanged.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import transaction

from store.layout.models import Bin, Store

from .models import Facing, Product

CATALOGUE_COLUMNS = ("barcode", "name", "price", "unit_weight_g", "unit_weight_sd_g", "low_stock_threshold")
CATALOGUE_REQUIRED = ("barcode", "name", "price", "unit_weight_g")
PLANOGRAM_COLUMNS = ("bin", "barcode")
#: Largest file accepted, bytes.
MAX_BYTES = 5 * 1024 * 1024
#: Most errors listed (the import is refused either way).
MAX_ERRORS = 200


class CsvImportError(ValueError):
    """The file was refused; ``errors`` is ``[(line number, message)]`` (line 0: the file as a whole)."""

    def __init__(self, errors: list[tuple[int, str]]):
        self.errors = errors
        super().__init__("; ".join(f"line {n}: {m}" if n else m for n, m in errors[:5])
                         + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))


@dataclass(frozen=True)
class ImportResult:
    """What an import did: counts of rows ``created``, ``updated`` (changed), ``unchanged``, ``removed``."""

    created: int
    updated: int
    unchanged: int
    removed: int = 0


# ----------------------------------------------------------------------------------------------------- reading
def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.lstrip("\ufeff")
    if len(data) > MAX_BYTES:
        raise CsvImportError([(0, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise CsvImportError([(line, "the file is not UTF-8 text")]) from None


def _rows(text: str, columns: tuple[str, ...], required: tuple[str, ...]):
    """Yield ``(line number, {column: stripped cell})`` for each non-blank record; raises CsvImportError for a bad
    header (missing/unknown/duplicate column) and collects ragged rows into the errors it yields as ``None``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvImportError([(0, "the file is empty")]) from None
    except csv.Error as exc:
        raise CsvImportError([(1, f"unreadable CSV: {exc}")]) from None
    names = [h.strip().lower() for h in header]
    problems = []
    missing = [c for c in required if c not in names]
    unknown = [h for h in names if h not in columns]
    dupes = sorted({h for h in names if names.count(h) > 1})
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)} (allowed: {', '.join(columns)})")
    if dupes:
        problems.append(f"repeated column(s) {', '.join(dupes)}")
    if problems:
        raise CsvImportError([(1, "; ".join(problems))])
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, f"unreadable CSV: {exc}"
            return
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            yield start, f"{len(cells)} cells where the header has {len(names)}"
            continue
        yield start, {n: c.strip() for n, c in zip(names, cells)}


def _decimal(text: str, what: str, errors: list, line: int, *, places: int | None = None) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        errors.append((line, f"{what} {text!r} is not a number"))
        return None
    if not value.is_finite() or value < 0:
        errors.append((line, f"{what} must be ≥ 0, got {text!r}"))
        return None
    if places is not None and value != value.quantize(Decimal(1).scaleb(-places)):
        errors.append((line, f"{what} {text!r} has more than {places} decimals"))
        return None
    return value


@dataclass(frozen=True)
class CatalogueRow:
    """One checked catalogue line; ``None`` for an optional column that was absent or empty."""

    line: int
    barcode: str
    name: str
    price: Decimal
    unit_weight_g: float
    unit_weight_sd_g: float | None
    low_stock_threshold: int | None


def catalogue_csv_parse(data: bytes | str) -> list[CatalogueRow]:
    """Check a catalogue file (module docstring) without touching the database. Returns its rows; raises
    :class:`CsvImportError` listing every bad line (at most :data:`MAX_ERRORS`)."""
    text = _decode(data)
    errors: list[tuple[int, str]] = []
    rows: list[CatalogueRow] = []
    first_line: dict[str, int] = {}
    for line, cells in _rows(text, CATALOGUE_COLUMNS, CATALOGUE_REQUIRED):
        if isinstance(cells, str):
            errors.append((line, cells))
            continue
        n_before = len(errors)
        barcode, name = cells["barcode"], cells["name"]
        if not barcode:
            errors.append((line, "barcode is empty"))
        elif len(barcode) > 32:
            errors.append((line, f"barcode {barcode[:40]!r} is longer than 32 characters"))
        elif barcode in first_line:
            errors.append((line, f"barcode {barcode} is already on line {first_line[barcode]}"))
        else:
            first_line[barcode] = line
        if not name:
            errors.append((line, "name is empty"))
        elif len(name) > 200:
            errors.append((line, "name is longer than 200 characters"))
        price = _decimal(cells["price"], "price", errors, line, places=2)
        if price is not None and price >= Decimal("1e8"):
            errors.append((line, f"price {cells['price']!r} is too large"))
        weight = _decimal(cells["unit_weight_g"], "unit_weight_g", errors, line)
        if weight is not None and weight == 0:
            errors.append((line, "unit_weight_g must be > 0"))
        sd = None
        if cells.get("unit_weight_sd_g"):
            sd = _decimal(cells["unit_weight_sd_g"], "unit_weight_sd_g", errors, line)
        threshold = None
        if cells.get("low_stock_threshold"):
            raw = cells["low_stock_threshold"]
            if not raw.isdigit():
                errors.append((line, f"low_stock_threshold {raw!r} is not a whole number ≥ 0"))
            else:
                threshold = int(raw)
        if len(errors) == n_before:
            rows.append(CatalogueRow(line=line, barcode=barcode, name=name, price=price,
                                     unit_weight_g=float(weight), unit_weight_sd_g=float(sd) if sd is not None else None,
                                     low_stock_threshold=threshold))
        if len(errors) >= MAX_ERRORS:
            errors.append((0, f"stopped after {MAX_ERRORS} errors"))
            break
    if errors:
        raise CsvImportError(errors)
    return rows


def planogram_csv_parse(data: bytes | str) -> list[tuple[int, str, str]]:
    """Check a planogram file's form (module docstring): ``[(line, bin code, barcode)]``; raises
    :class:`CsvImportError` for empty cells, repeated facings and ragged lines."""
    rows, errors = _planogram_rows(data)
    if errors:
        raise CsvImportError(errors)
    return rows


def _planogram_rows(data: bytes | str) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    text = _decode(data)
    errors: list[tuple[int, str]] = []
    rows: list[tuple[int, str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for line, cells in _rows(text, PLANOGRAM_COLUMNS, PLANOGRAM_COLUMNS):
        if isinstance(cells, str):
            errors.append((line, cells))
        elif not cells["bin"] or not cells["barcode"]:
            errors.append((line, "bin and barcode are both required"))
        elif (cells["bin"], cells["barcode"]) in seen:
            errors.append((line, f"facing {cells['bin']} ↔ {cells['barcode']} is already on line "
                                 f"{seen[(cells['bin'], cells['barcode'])]}"))
        else:
            seen[(cells["bin"], cells["barcode"])] = line
            rows.append((line, cells["bin"], cells["barcode"]))
        if len(errors) >= MAX_ERRORS:
            errors.append((0, f"stopped after {MAX_ERRORS} errors"))
            break
    return rows, errors


# ----------------------------------------------------------------------------------------------------- importing
def catalogue_csv_import(*, store: Store, data: bytes | str) -> ImportResult:
    """Create or update ``store``'s products from a catalogue file (module docstring), all or nothing.
    Raises :class:`CsvImportError` with every bad line; on error nothing is written."""
    rows = catalogue_csv_parse(data)
    created = updated = unchanged = 0
    with transaction.atomic():
        existing = {p.barcode: p for p in Product.objects.select_for_update().filter(store=store)}
        for row in rows:
            product = existing.get(row.barcode)
            values = {"name": row.name, "price": row.price, "unit_weight_g": row.unit_weight_g}
            if row.unit_weight_sd_g is not None:
                values["unit_weight_sd_g"] = row.unit_weight_sd_g
            if row.low_stock_threshold is not None:
                values["low_stock_threshold"] = row.low_stock_threshold
            if product is None:
                Product.objects.create(store=store, barcode=row.barcode, **values)
                created += 1
            elif any(getattr(product, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(product, k, v)
                product.save(update_fields=list(values))
                updated += 1
            else:
                unchanged += 1
    return ImportResult(created=created, updated=updated, unchanged=unchanged)


def planogram_csv_import(*, store: Store, data: bytes | str) -> ImportResult:
    """Replace ``store``'s planogram with the facings of a planogram file (module docstring), all or nothing.
    Every bin must be a bin of the store and every barcode a product of its catalogue; raises
    :class:`CsvImportError` listing each line that is not (nothing is written)."""
    rows, errors = _planogram_rows(data)
    bins = {b.code: b for b in Bin.objects.filter(store=store)}
    products = {p.barcode: p for p in Product.objects.filter(store=store)}
    for line, bin_code, barcode in rows:
        if bin_code not in bins:
            errors.append((line, f"store {store.code} has no bin {bin_code!r}"))
        if barcode not in products:
            errors.append((line, f"barcode {barcode} is not in the catalogue of store {store.code} "
                                 "(import the catalogue first)"))
    if errors:
        raise CsvImportError(sorted(errors, key=lambda e: (e[0] == 0, e[0]))[:MAX_ERRORS + 1])
    wanted = {(bins[b].pk, products[c].pk) for _, b, c in rows}
    with transaction.atomic():
        current = {(f.bin_id, f.product_id): f.pk for f in Facing.objects.select_for_update().filter(bin__store=store)}
        stale = [pk for key, pk in current.items() if key not in wanted]
        Facing.objects.filter(pk__in=stale).delete()
        new = [Facing(bin_id=b, product_id=p) for (b, p) in sorted(wanted) if (b, p) not in current]
        Facing.objects.bulk_create(new)
    return ImportResult(created=len(new), updated=0, unchanged=len(wanted) - len(new), removed=len(stale))


# ----------------------------------------------------------------------------------------------------- exporting
def catalogue_csv_export(*, store: Store) -> str:
    """``store``'s catalogue as a catalogue file (every column), products by barcode."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CATALOGUE_COLUMNS)
    for p in Product.objects.filter(store=store).order_by("barcode"):
        writer.writerow([p.barcode, p.name, f"{p.price:.2f}", repr(float(p.unit_weight_g)),
                         repr(float(p.unit_weight_sd_g)), p.low_stock_threshold])
    return out.getvalue()


def planogram_csv_export(*, store: Store) -> str:
    """``store``'s planogram as a planogram file, by bin code then barcode."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PLANOGRAM_COLUMNS)
    for code, barcode in (Facing.objects.filter(bin__store=store).order_by("bin__code", "product__barcode")
                          .values_list("bin__code", "product__barcode")):
        writer.writerow([code, barcode])
    return out.getvalue()
