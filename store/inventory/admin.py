"""Inventory admin: products (with the bins they face, stock level and a low-stock filter), facings (the planogram),
the read-only stock ledger, restock sessions and restock tasks."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from django import forms
from django.utils.html import format_html

from .models import Facing, Product, ProductPhoto, RestockSession, RestockTask, StockMovement, TaxCategory
from .services import InventoryInputError, photo_check, photo_rejections, restock_session_end, restock_task_done


class ProductPhotoForm(forms.ModelForm):
    """A photo upload in the admin, checked as the inventory pages check it (``services.photo_check``)."""

    class Meta:
        model = ProductPhoto
        fields = ("image",)

    def clean_image(self):
        f = self.cleaned_data.get("image")
        from django.core.files.uploadedfile import UploadedFile

        if isinstance(f, UploadedFile):  # a new upload (a stored file was checked when it came)
            f.seek(0)
            data = f.read()
            f.seek(0)
            try:
                ext, self._width, self._height = photo_check(data)
                f.name = f"photo.{ext}"  # the decoded format names the file, not the uploader's file name
            except InventoryInputError as exc:
                photo_rejections[str(exc).split(":")[0][:60]] += 1
                raise forms.ValidationError(str(exc)) from None
        return f

    def save(self, commit=True):
        photo = super().save(commit=False)
        if hasattr(self, "_width"):
            photo.width, photo.height = self._width, self._height
        if commit:
            photo.save()
        return photo


class ProductPhotoInline(admin.TabularInline):
    """Photos of the product (also the recogniser's gallery); each upload must be a readable JPEG, PNG or WebP."""

    model = ProductPhoto
    form = ProductPhotoForm
    fields = ("preview", "image", "width", "height", "uploaded_at")
    readonly_fields = ("preview", "width", "height", "uploaded_at")
    extra = 1

    @admin.display(description="photo")
    def preview(self, obj: ProductPhoto) -> str:
        if not obj.pk:
            return ""
        from django.urls import reverse

        url = reverse("dashboard:inventory:photo", args=[obj.product_id, obj.pk])
        return format_html('<img src="{}" alt="" style="height:60px;border-radius:4px">', url)


class FacingInline(admin.TabularInline):
    """The bins a product faces; edit the planogram from the product page."""

    model = Facing
    fields = ("bin",)
    autocomplete_fields = ("bin",)
    extra = 0


class LowStockFilter(admin.SimpleListFilter):
    """Stock level (the ledger's sum, units) at or below the product's low-stock threshold, or above it."""

    title = "stock"
    parameter_name = "stock"

    def lookups(self, request, model_admin):
        return (("low", "low (level ≤ threshold)"), ("ok", "above threshold"))

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "low":
            return queryset.filter(stock_level__lte=F("low_stock_threshold"))
        if self.value() == "ok":
            return queryset.filter(stock_level__gt=F("low_stock_threshold"))
        return queryset


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """The catalogue: products with barcode, name, unit weight in grams, price in minor units, photos."""
    list_display = ("name", "barcode", "store", "price", "tax_category", "unit_weight_g", "unit_weight_sd_g", "low_stock_threshold",
                    "stock_level")
    list_filter = ("store", LowStockFilter, ("facings__bin__shelf__gondola", admin.RelatedOnlyFieldListFilter))
    search_fields = ("barcode", "name", "facings__bin__code")
    list_select_related = ("store",)
    inlines = (FacingInline, ProductPhotoInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A subquery, not a join: facing filters and searches join other rows, which would multiply a joined sum.
        level = (StockMovement.objects.filter(product=OuterRef("pk")).order_by().values("product")
                 .annotate(s=Sum("quantity")).values("s"))
        return super().get_queryset(request).annotate(
            stock_level=Coalesce(Subquery(level, output_field=IntegerField()), Value(0)))

    @admin.display(ordering="stock_level", description="stock level (units)")
    def stock_level(self, obj: Product) -> int:
        return obj.stock_level


@admin.register(Facing)
class FacingAdmin(admin.ModelAdmin):
    """The planogram: which product faces which bin, and how many units it holds."""
    list_display = ("product", "bin", "store")
    list_filter = ("bin__store", "bin__shelf__gondola")
    search_fields = ("product__barcode", "product__name", "bin__code")
    autocomplete_fields = ("bin", "product")
    list_select_related = ("product", "bin__store")

    @admin.display(ordering="bin__store__name")
    def store(self, obj: Facing):
        return obj.bin.store


@admin.register(StockMovement)
class StockMovementAdmin(admin.ModelAdmin):
    """The stock ledger is append-only: rows are written by the services, and only viewed here."""

    list_display = ("created_at", "product", "bin", "kind", "quantity", "reference")
    list_filter = ("kind", "product__store", "created_at", ("bin__shelf__gondola", admin.RelatedOnlyFieldListFilter))
    search_fields = ("product__barcode", "product__name", "reference", "bin__code")
    date_hierarchy = "created_at"
    list_select_related = ("product", "bin")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RestockSession)
class RestockSessionAdmin(admin.ModelAdmin):
    """Staff restocking sessions (while open, weight increases on their bins are restocks). End them by action."""

    list_display = ("id", "store", "staff", "started_at", "ended_at", "bins")
    list_filter = ("store", ("ended_at", admin.EmptyFieldListFilter), "started_at")
    search_fields = ("staff__username", "staff__email", "bin_codes")
    list_select_related = ("store", "staff")
    date_hierarchy = "started_at"
    actions = ("end_sessions",)

    @admin.display(description="bins")
    def bins(self, obj: RestockSession) -> str:
        return ", ".join(obj.bin_codes) if obj.bin_codes else "whole store"

    @admin.action(description="End the selected restock sessions now")
    def end_sessions(self, request: HttpRequest, queryset: QuerySet) -> None:
        for session in queryset.filter(ended_at__isnull=True):
            restock_session_end(session=session)


@admin.register(RestockTask)
class RestockTaskAdmin(admin.ModelAdmin):
    """Work for the staff (misplaced items, unexplained restocks, low stock); mark done by action."""

    list_display = ("created_at", "store", "reason", "bin", "product", "quantity", "detail", "done_at", "done_by")
    list_filter = ("reason", "store", ("done_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("bin__code", "product__barcode", "product__name", "detail", "reference")
    list_select_related = ("store", "bin", "product", "done_by")
    date_hierarchy = "created_at"
    actions = ("mark_done",)

    @admin.action(description="Mark the selected tasks done")
    def mark_done(self, request: HttpRequest, queryset: QuerySet) -> None:
        for task in queryset.filter(done_at__isnull=True):
            restock_task_done(task=task, by=request.user)


@admin.register(TaxCategory)
class TaxCategoryAdmin(admin.ModelAdmin):
    """Tax categories per store (rate in percent); give a product its category on the product's page."""

    list_display = ("name", "store", "rate_percent")
    list_filter = ("store",)
    search_fields = ("name",)


class ProductPhotoStandaloneForm(ProductPhotoForm):


    """Upload form for one product photo outside the product page (also the recognition gallery)."""
    class Meta(ProductPhotoForm.Meta):
        fields = ("product", "image")


@admin.register(ProductPhoto)
class ProductPhotoAdmin(admin.ModelAdmin):
    """Every product photo (the recogniser's gallery); uploads are checked as images like on the product page."""

    form = ProductPhotoStandaloneForm
    list_display = ("id", "product", "width", "height", "uploaded_at", "uploaded_by")
    list_filter = ("product__store", "uploaded_at")
    search_fields = ("product__name", "product__barcode")
    list_select_related = ("product",)
    autocomplete_fields = ("product",)
    readonly_fields = ("width", "height", "uploaded_at", "uploaded_by")

    def save_model(self, request, obj, form, change):
        if not obj.uploaded_by:
            obj.uploaded_by = request.user.get_username()[:150]
        super().save_model(request, obj, form, change)
