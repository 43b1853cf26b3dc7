"""Forms of the manager's inventory pages: they check input; the services (``services``, ``csv_io``) write."""
from __future__ import annotations

from decimal import Decimal

from django import forms

from store.layout.models import Bin, Store

from .csv_io import MAX_BYTES
from .models import Product, StockMovement, TaxCategory
from .services import UNCHANGED
from .selectors import natural_key


class ProductEditForm(forms.Form):
    """Name, price (store currency, 2 decimals), unit weight and its sd (grams), low-stock threshold (units) and
    tax category (one of the product's store's, or none: not taxed). Build it with :meth:`for_product`."""

    name = forms.CharField(max_length=200, label="Name", required=False,
                           help_text="receipts already issued keep the name they were issued with")
    price = forms.DecimalField(min_value=Decimal("0"), max_digits=10, decimal_places=2)
    unit_weight_g = forms.FloatField(min_value=0.001, label="Unit weight (g)")
    unit_weight_sd_g = forms.FloatField(min_value=0.0, label="Unit weight sd (g)")
    low_stock_threshold = forms.IntegerField(min_value=0, max_value=1_000_000, label="Low-stock threshold (units)")
    tax_category = forms.CharField(required=False, label="Tax category", widget=forms.Select,
                                   help_text="the rate carts and receipts charge from now on; receipts already "
                                             "issued keep theirs")

    def __init__(self, *args, product: Product, **kwargs):
        super().__init__(*args, **kwargs)
        self.product = product
        own = TaxCategory.objects.filter(store_id=product.store_id).order_by("name")
        self.fields["tax_category"].widget.choices = [("", "— not taxed —")] + [(str(c.pk), str(c)) for c in own]

    def clean_tax_category(self):
        """``UNCHANGED`` when the form was sent without the field; None for "not taxed"; else the store's
        TaxCategory. A category of another store, or none at all, is refused with the reason."""
        if "tax_category" not in self.data:
            return UNCHANGED
        raw = (self.cleaned_data.get("tax_category") or "").strip()
        if not raw:
            return None
        if not raw.isdigit():
            raise forms.ValidationError(f"“{raw}” is not a tax category; choose one from the list")
        category = TaxCategory.objects.select_related("store").filter(pk=int(raw)).first()
        if category is None:
            raise forms.ValidationError("that tax category does not exist (any more); choose one from the list")
        if category.store_id != self.product.store_id:
            raise forms.ValidationError(f"“{category.name}” is a tax category of store {category.store.code}, not "
                                        f"of {self.product.store.code}; choose one of this store's")
        return category

    def clean_name(self):
        """None when the form was sent without a name (unchanged); a blank name is refused."""
        if "name" not in self.data:
            return None
        name = " ".join((self.cleaned_data.get("name") or "").split())
        if not name:
            raise forms.ValidationError("give the product a name")
        return name

    @classmethod
    def for_product(cls, product: Product, data=None) -> "ProductEditForm":
        return cls(data, product=product, initial={
            "name": product.name, "price": product.price, "unit_weight_g": product.unit_weight_g,
            "unit_weight_sd_g": product.unit_weight_sd_g, "low_stock_threshold": product.low_stock_threshold,
            "tax_category": str(product.tax_category_id or "")})


class _BinChoiceForm(forms.Form):
    """A form with a ``bin`` choice among the bins of one store (empty: no bin)."""

    bin = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Bin")

    def __init__(self, *args, product: Product, **kwargs):
        super().__init__(*args, **kwargs)
        faced = set(product.facings.values_list("bin_id", flat=True))

        bins = sorted(Bin.objects.filter(store_id=product.store_id).values_list("pk", "code"),
                      key=lambda b: natural_key(b[1]))
        self.fields["bin"].choices = ([("", "— no bin —")]
                                      + [(pk, f"{code} (faces it)") for pk, code in bins if pk in faced]
                                      + [(pk, code) for pk, code in bins if pk not in faced])
        if len(faced) == 1 and not self.is_bound:
            self.initial["bin"] = next(iter(faced))
        self.product = product

    def bin_obj(self) -> Bin | None:
        pk = self.cleaned_data.get("bin")
        return Bin.objects.get(pk=pk, store_id=self.product.store_id) if pk else None


class RestockForm(_BinChoiceForm):
    """Units put on the shelf (> 0)."""

    quantity = forms.IntegerField(min_value=1, max_value=100_000, label="Units added")
    note = forms.CharField(required=False, max_length=60, label="Note (delivery, …)")


class AdjustmentForm(_BinChoiceForm):
    """Either ``quantity`` (signed units, ≠ 0) with a reason, or ``counted`` (the level found by a count, ≥ 0)."""

    quantity = forms.IntegerField(required=False, min_value=-100_000, max_value=100_000,
                                  label="Adjust by (signed units)")
    counted = forms.IntegerField(required=False, min_value=0, max_value=1_000_000, label="…or set to counted level")
    reason = forms.CharField(required=False, max_length=60, label="Reason")

    def clean(self):
        data = super().clean()
        quantity, counted = data.get("quantity"), data.get("counted")
        if quantity is None and counted is None:
            # an entry the field check refused (not a whole number, out of range) is reported by that field alone
            if not ({"quantity", "counted"} & set(self.errors)):
                raise forms.ValidationError("give an adjustment (e.g. -2) or the level you counted")
            return data
        if quantity is not None and counted is not None:
            raise forms.ValidationError("give an adjustment or a counted level, not both")
        if quantity is not None:
            if quantity == 0:
                raise forms.ValidationError("an adjustment of 0 changes nothing")
            if not (data.get("reason") or "").strip():
                raise forms.ValidationError("say why the stock is adjusted")
        return data


class FacingAddForm(forms.Form):
    """A product (by barcode, of the bin's store) to put on a bin."""

    barcode = forms.CharField(max_length=32)


class CsvUploadForm(forms.Form):
    """A CSV file for one store (catalogue or planogram)."""

    store = forms.ModelChoiceField(queryset=Store.objects.order_by("code"), to_field_name="code")
    file = forms.FileField()

    def clean_file(self):
        f = self.cleaned_data["file"]
        if f.size > MAX_BYTES:
            raise forms.ValidationError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
        return f


class LedgerFilterForm(forms.Form):
    """Filters of the stock ledger page (all optional; dates are UTC days, ``until`` inclusive)."""

    store = forms.ModelChoiceField(queryset=Store.objects.order_by("code"), to_field_name="code", required=False)
    kind = forms.ChoiceField(choices=[("", "any kind")] + list(StockMovement.Kind.choices), required=False)
    q = forms.CharField(required=False, max_length=100, label="Barcode, name or reference")
    bin = forms.CharField(required=False, max_length=32, label="Bin code")
    product = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class MultipleFileInput(forms.ClearableFileInput):
    """A file input that lets the browser pick several files at once."""

    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that cleans to a list of uploaded files (Django's documented recipe)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class PhotoUploadForm(forms.Form):
    """One or more photos of a product (each checked by ``services.photo_check``: JPEG, PNG or WebP it can decode)."""

    photos = MultipleFileField(widget=MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
                               label="Photos (JPEG, PNG or WebP; several at once)",
                               error_messages={"required": "choose at least one photo"})

    def clean_photos(self):
        files = self.cleaned_data["photos"]
        if len(files) > 20:
            raise forms.ValidationError(f"{len(files)} files chosen; 20 at most at once")
        return files
