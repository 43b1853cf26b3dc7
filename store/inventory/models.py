"""Catalogue and stock: Product, ProductPhoto (pictures of a product: the catalogue's and the gallery a product
recogniser matches hands against), Facing (bin ↔ product, i.e. the planogram), StockMovement (append-only), restock
sessions (staff restocking: weight increases are restocks, not returns) and restock tasks (work for the staff)."""
from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from store.layout.models import Bin, Store


class TaxCategory(models.Model):
    """A tax category of a store's products (e.g. "Groceries" at 0 %, "Prepared food" at 8.875 %): ``rate_percent``
    is the rate in percent of the price (a ``Decimal``, up to 3 decimals). Receipts copy the rate at billing time;
    changing it changes later receipts only. A product without a category is not taxed."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="tax_categories")
    name = models.CharField(max_length=60)
    rate_percent = models.DecimalField(max_digits=6, decimal_places=3,
                                       validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
                                       help_text="percent of the price, e.g. 8.875")

    class Meta:
        ordering = ["store", "name"]
        verbose_name_plural = "tax categories"
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="tax_category_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.rate_percent.normalize():f} %)"


class Product(models.Model):
    """A product sold in a store. Price is a ``Decimal`` in the store's currency; weights in grams."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="products")
    barcode = models.CharField(max_length=32, help_text="UPC/EAN")
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    unit_weight_g = models.FloatField(validators=[MinValueValidator(0.0)])
    unit_weight_sd_g = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    low_stock_threshold = models.PositiveIntegerField(default=0)
    tax_category = models.ForeignKey(TaxCategory, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="products", help_text="empty: not taxed")

    class Meta:
        ordering = ["store", "name"]
        constraints = [models.UniqueConstraint(fields=["store", "barcode"], name="product_unique_barcode")]

    def __str__(self) -> str:
        return f"{self.name} ({self.barcode})"


def product_photo_path(instance: "ProductPhoto", filename: str) -> str:
    """Storage name of a photo: ``products/<store>/<barcode>/<random>.<ext>``; the extension is the one the
    service chose from the decoded image format (never the uploader's file name)."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "jpg"
    product = instance.product
    return f"products/{product.store.code}/{product.barcode}/{uuid.uuid4().hex}.{ext}"


class ProductPhoto(models.Model):
    """One photo of a product, stored through Django's default storage (``MEDIA_ROOT`` in every profile). Written
    only by ``services.product_photo_add`` (which checks that the file is an image it can decode); ``width`` and
    ``height`` in pixels."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="photos")
    image = models.FileField(upload_to=product_photo_path, max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(auto_now_add=True)
    uploaded_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["product", "id"]

    def __str__(self) -> str:
        return f"photo {self.pk} of {self.product.barcode}"


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


class RestockSession(models.Model):
    """A staff member restocking: while open (``ended_at`` empty), weight increases on its bins are restocks
    recorded in the stock ledger, never returns credited to a shopper. ``bin_codes`` empty = every bin of the
    store. A per-bin manager toggle does the same (``Bin.restock_mode``)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="restock_sessions")
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="restock_sessions")
    bin_codes = models.JSONField(default=list, blank=True, help_text="bins covered; empty: the whole store")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"restock by {self.staff} from {self.started_at:%Y-%m-%d %H:%M}"


class RestockTask(models.Model):
    """Work for the staff: put a misplaced item back where it belongs, check an unexplained restock, refill a bin.
    ``quantity`` units of ``product`` (when known) found on ``bin``; ``reference`` names the cause
    (``shelf_event:<id>``)."""

    class Reason(models.TextChoices):
        MISPLACED = "misplaced", "misplaced item"
        UNEXPLAINED_RESTOCK = "unexplained_restock", "restock weight matches no product"
        LOW_STOCK = "low_stock", "low stock"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="restock_tasks")
    bin = models.ForeignKey(Bin, on_delete=models.PROTECT, related_name="restock_tasks")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, null=True, blank=True, related_name="restock_tasks")
    quantity = models.PositiveIntegerField(default=1)
    reason = models.CharField(max_length=24, choices=Reason.choices)
    detail = models.CharField(max_length=200, blank=True)
    reference = models.CharField(max_length=100, blank=True, help_text="what caused it, e.g. shelf_event:12")
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+")

    class Meta:
        ordering = ["done_at", "-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["reason", "reference"], condition=~models.Q(reference=""),
                                               name="restock_task_unique_cause")]

    def __str__(self) -> str:
        what = self.product.barcode if self.product_id else "?"
        return f"{self.get_reason_display()}: {self.quantity} × {what} on {self.bin.code}"
