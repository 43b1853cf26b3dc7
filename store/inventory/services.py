"""Inventory services: load the catalogue and planogram, and write the stock ledger."""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from store.layout.models import Bin, Store

from .models import Facing, Product, StockMovement


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
