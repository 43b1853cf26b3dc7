"""Catalogue and stock: Product, Facing (bin ↔ product, i.e. the planogram), StockMovement (append-only)."""
from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from store.layout.models import Bin, Store


class Product(models.Model):
    """A product sold in a store. Price is a ``Decimal`` in the store's currency; weights in grams."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="products")
    barcode = models.CharField(max_length=32, help_text="UPC/EAN")
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    unit_weight_g = models.FloatField(validators=[MinValueValidator(0.0)])
    unit_weight_sd_g = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    low_stock_threshold = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["store", "name"]
        constraints = [models.UniqueConstraint(fields=["store", "barcode"], name="product_unique_barcode")]

    def __str__(self) -> str:
        return f"{self.name} ({self.barcode})"


class Facing(models.Model):
    """The planogram: ``product`` is shelved on ``bin``. A product may face several bins and a bin hold several."""

    bin = models.ForeignKey(Bin, on_delete=models.CASCADE, related_name="facings")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="facings")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bin", "product"], name="facing_unique")]

    def __str__(self) -> str:
        return f"{self.product.barcode} @ {self.bin.code}"


class StockMovement(models.Model):
    """Append-only stock ledger. ``quantity`` is signed units (sale −, return +, restock +)."""

    class Kind(models.TextChoices):
        SALE = "sale"
        RETURN = "return"
        RESTOCK = "restock"
        ADJUSTMENT = "adjustment"
        MISPLACEMENT = "misplacement"

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock_movements")
    bin = models.ForeignKey(Bin, on_delete=models.SET_NULL, null=True, blank=True, related_name="stock_movements")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = models.IntegerField()
    reference = models.CharField(max_length=100, blank=True, help_text="what caused it, e.g. receipt:12")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
