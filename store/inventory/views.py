"""The manager's inventory pages, mounted at ``/manage/inventory/`` (namespace ``dashboard:inventory``).

Managers only (``is_staff``, active): anonymous users are sent to log in, everyone else gets 403. Every POST
needs the CSRF token. Views check input with ``forms``, call one service (``services``, ``csv_io``), and read with
``selectors``; a refused input is shown on the page again (status 400) with the reason, nothing written.

* ``""`` (``products``): GET ``?store=<code>&q=<text>&low=1&page=<n>`` — products with stock level (ledger sum,
  units) per product and per bin, low-stock flags, ``PAGE_SIZE`` a page.
* ``products/<id>/`` (``product``): GET the product (levels per bin, latest movements, forms); POST price, unit
  weight, its sd, low-stock threshold, tax category (one of the product's store's; another store's is refused
  with the reason).
* ``products/<id>/photos/`` (``photo_add``): POST multipart ``photos`` (one or more files): each is kept when it is
  an image the server can decode, else refused with the reason (the others are still kept).
  ``photos/<photo id>/delete/`` (``photo_remove``) POST; ``photos/<photo id>/`` (``photo``) GET the file (managers
  only, like every page here).
* ``products/<id>/restock/`` (``restock``), ``products/<id>/adjust/`` (``adjust``): POST a restock (units > 0) or
  an adjustment (signed units with a reason, or a counted level).
* ``planogram/`` (``planogram``): GET ``?store=&q=`` — the shelves drawn with their bins and products, products
  dragged (or tapped, then a bin tapped) onto a bin through ``api/facings/`` (``store.inventory.api``); and per bin
  as a list, the products facing it;
  ``planogram/<bin id>/add/`` POST ``barcode``; ``planogram/<bin id>/remove/<product id>/`` POST.
* ``ledger/`` (``ledger``): GET the stock ledger, filters ``store, kind, q, bin, product, since, until``.
* ``csv/`` (``csv``): GET import forms and export links; ``csv/catalogue.csv?store=`` and
  ``csv/planogram.csv?store=`` (GET, downloads); ``csv/catalogue/import/`` and ``csv/planogram/import/`` (POST
  multipart ``store``, ``file``): all or nothing, errors listed with line numbers.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone as dt_timezone
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe, require_http_methods, require_POST

from store.accounts.permissions import staff_required
from store.dashboard_events import dashboard_notify
from store.layout.models import Bin, Store

from . import selectors
from .csv_io import (
    CsvImportError,
    catalogue_csv_export,
    catalogue_csv_import,
    planogram_csv_export,
    planogram_csv_import,
)
from .forms import (
    AdjustmentForm, CsvUploadForm, FacingAddForm, LedgerFilterForm, PhotoUploadForm, ProductEditForm, RestockForm,
)
from .models import Product, ProductPhoto
from .services import (
    InventoryInputError,
    facing_add,
    facing_remove,
    product_photo_add,
    product_photo_remove,
    product_update,
    stock_level_set,
    stock_record_adjustment,
    stock_record_restock,
)


def _store_from(request: HttpRequest, *, strict: bool = True) -> tuple[Store | None, list[Store]]:
    """The store named by ``store=<code>`` (unknown: 404, or the first store when not ``strict``), else the first
    by code; and all stores."""
    stores = list(Store.objects.order_by("code"))
    code = request.GET.get("store") or request.POST.get("store")
    named = next((s for s in stores if s.code == code), None)
    if code and named is None and strict:
        raise Http404("no such store")
    return named or (stores[0] if stores else None), stores


#: Products a page on the products page.
PAGE_SIZE = 50


# ------------------------------------------------------------------------------------------------ products
@require_safe
@staff_required
def products(request: HttpRequest) -> HttpResponse:
    """``GET /manage/inventory/``: the catalogue of one store with stock levels and low-stock flags."""
    store, stores = _store_from(request)
    query = request.GET.get("q", "").strip()[:100]
    low_only = request.GET.get("low") == "1"
    rows = selectors.products_with_stock(store=store, query=query, low_only=low_only) if store else []
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(request, "inventory/products.html", {
        "store": store, "stores": stores, "rows": page.object_list, "page": page, "params": params.urlencode(),
        "total": len(rows), "q": query, "low_only": low_only,
        "low_count": sum(1 for r in rows if r.low), "section": "products",
    })


def _product_page(request: HttpRequest, product: Product, *, edit=None, restock=None, adjust=None, photo=None,
                  photo_errors=None, status: int = 200) -> HttpResponse:
    row = selectors.products_with_stock(product_ids=[product.pk])[0]
    return render(request, "inventory/product.html", {
        "row": row, "product": product, "store": product.store, "section": "products",
        "photos": list(product.photos.order_by("id")), "photo_form": photo or PhotoUploadForm(),
        "photo_errors": photo_errors or [],
        "edit_form": edit or ProductEditForm.for_product(product),
        "restock_form": restock or RestockForm(product=product),
        "adjust_form": adjust or AdjustmentForm(product=product),
        "movements": list(selectors.stock_ledger(product=product)[:50]),
    }, status=status)


@require_http_methods(["GET", "POST"])
@staff_required
def product(request: HttpRequest, product_id: int) -> HttpResponse:
    """``GET/POST /manage/inventory/products/<id>/``: the product's stock and its editable terms."""
    item = get_object_or_404(Product.objects.select_related("store"), pk=product_id)
    if request.method == "GET":
        return _product_page(request, item)
    form = ProductEditForm.for_product(item, request.POST)
    if form.is_valid():
        try:
            product_update(product=item, **form.cleaned_data)
        except InventoryInputError as exc:
            form.add_error(None, str(exc))
    if not form.is_valid():
        return _product_page(request, item, edit=form, status=400)
    messages.success(request, f"{item.name}: saved.")
    dashboard_notify(reason="catalogue", store_id=item.store_id)
    return redirect("dashboard:inventory:product", product_id=item.pk)


@require_POST
@staff_required
def photo_add(request: HttpRequest, product_id: int) -> HttpResponse:
    """``POST …/products/<id>/photos/``: keep each uploaded photo that is a readable image; list the refused ones
    with the reason (400 when none was kept)."""
    item = get_object_or_404(Product.objects.select_related("store"), pk=product_id)
    form = PhotoUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _product_page(request, item, photo=form, status=400)
    kept, refused = 0, []
    for f in form.cleaned_data["photos"]:
        try:
            product_photo_add(product=item, data=f.read(), by=request.user.get_username())
            kept += 1
        except InventoryInputError as exc:
            refused.append((f.name[:100], str(exc)))
    if refused:
        if kept:
            messages.success(request, f"{item.name}: {kept} photo{'s' if kept != 1 else ''} added.")
        return _product_page(request, item, photo_errors=refused, status=400 if not kept else 200)
    messages.success(request, f"{item.name}: {kept} photo{'s' if kept != 1 else ''} added.")
    dashboard_notify(reason="catalogue", store_id=item.store_id)
    return redirect(reverse("dashboard:inventory:product", args=[item.pk]) + "#photos")


@require_POST
@staff_required
def photo_remove(request: HttpRequest, product_id: int, photo_id: int) -> HttpResponse:
    """``POST …/products/<id>/photos/<photo id>/delete/``: delete the photo (row and file)."""
    photo = get_object_or_404(ProductPhoto.objects.select_related("product"), pk=photo_id, product_id=product_id)
    product_photo_remove(photo=photo)
    messages.success(request, f"{photo.product.name}: photo removed.")
    return redirect(reverse("dashboard:inventory:product", args=[product_id]) + "#photos")


@require_safe
@staff_required
def photo_file(request: HttpRequest, product_id: int, photo_id: int) -> HttpResponse:
    """``GET …/products/<id>/photos/<photo id>/``: the photo's file, from storage; 404 when the row or its file is
    gone."""
    photo = get_object_or_404(ProductPhoto, pk=photo_id, product_id=product_id)
    try:
        with photo.image.open("rb") as handle:  # ≤ PHOTO_MAX_BYTES: read whole (no sync stream under ASGI)
            data = handle.read()
    except (FileNotFoundError, OSError):
        raise Http404("the photo's file is missing from storage") from None
    ext = photo.image.name.rsplit(".", 1)[-1].lower()
    kind = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}.get(ext, "application/octet-stream")
    response = HttpResponse(data, content_type=kind)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_POST
@staff_required
def restock(request: HttpRequest, product_id: int) -> HttpResponse:
    """``POST …/products/<id>/restock/``: +units onto a bin (``stock_record_restock``)."""
    item = get_object_or_404(Product.objects.select_related("store"), pk=product_id)
    form = RestockForm(request.POST, product=item)
    if form.is_valid():
        try:
            m = stock_record_restock(product=item, quantity=form.cleaned_data["quantity"], bin=form.bin_obj(),
                                     by=request.user.get_username(), note=form.cleaned_data["note"])
        except InventoryInputError as exc:
            form.add_error(None, str(exc))
    if not form.is_valid():
        return _product_page(request, item, restock=form, status=400)
    messages.success(request, f"{item.name}: restocked {m.quantity:+d}" + (f" on {m.bin.code}." if m.bin else "."))
    dashboard_notify(reason="stock", store_id=item.store_id)
    return redirect("dashboard:inventory:product", product_id=item.pk)


@require_POST
@staff_required
def adjust(request: HttpRequest, product_id: int) -> HttpResponse:
    """``POST …/products/<id>/adjust/``: a signed adjustment with a reason, or a counted level."""
    item = get_object_or_404(Product.objects.select_related("store"), pk=product_id)
    form = AdjustmentForm(request.POST, product=item)
    m = None
    if form.is_valid():
        data, by = form.cleaned_data, request.user.get_username()
        try:
            if data["counted"] is not None:
                m = stock_level_set(product=item, counted=data["counted"], by=by, bin=form.bin_obj())
            else:
                m = stock_record_adjustment(product=item, quantity=data["quantity"], reason=data["reason"], by=by,
                                            bin=form.bin_obj())
        except InventoryInputError as exc:
            form.add_error(None, str(exc))
    if not form.is_valid():
        return _product_page(request, item, adjust=form, status=400)
    messages.success(request, f"{item.name}: adjusted {m.quantity:+d}." if m else f"{item.name}: level unchanged.")
    dashboard_notify(reason="stock", store_id=item.store_id)
    return redirect("dashboard:inventory:product", product_id=item.pk)


# ------------------------------------------------------------------------------------------------ planogram
@require_safe
@staff_required
def planogram(request: HttpRequest) -> HttpResponse:
    """``GET /manage/inventory/planogram/``: per bin of a store, the products facing it, with add/remove."""
    store, stores = _store_from(request)
    query = request.GET.get("q", "").strip()[:100]
    photo_of = {}
    if store:
        for ph in ProductPhoto.objects.filter(product__store=store).order_by("-id"):
            photo_of[ph.product_id] = ph.pk
    palette = [(p, photo_of.get(p.pk)) for p in Product.objects.filter(store=store).order_by("name")] if store else []
    return render(request, "inventory/planogram.html", {
        "store": store, "stores": stores, "q": query, "section": "planogram",
        "bins": selectors.planogram(store=store, query=query) if store else [],
        "drawing": selectors.planogram_drawing(store=store) if store else [],
        "palette": palette,
    })


def _planogram_url(bin_: Bin, query: str = "") -> str:
    params = {"store": bin_.store.code, **({"q": query} if query else {})}
    return reverse("dashboard:inventory:planogram") + "?" + urlencode(params) + f"#bin-{bin_.pk}"


@require_POST
@staff_required
def facing_add_view(request: HttpRequest, bin_id: int) -> HttpResponse:
    """``POST …/planogram/<bin id>/add/``: put the product with ``barcode`` on the bin."""
    bin_ = get_object_or_404(Bin.objects.select_related("store"), pk=bin_id)
    form = FacingAddForm(request.POST)
    back = _planogram_url(bin_, request.POST.get("q", "")[:100])
    if not form.is_valid():
        messages.error(request, f"Bin {bin_.code}: give a barcode.")
        return redirect(back)
    barcode = form.cleaned_data["barcode"].strip()
    item = Product.objects.filter(store=bin_.store, barcode=barcode).first()
    if item is None:
        messages.error(request, f"Bin {bin_.code}: no product with barcode {barcode!r} in {bin_.store.code}.")
        return redirect(back)
    _, created = facing_add(bin=bin_, product=item)
    messages.success(request, f"Bin {bin_.code}: {item.name} " + ("added." if created else "was already there."))
    dashboard_notify(reason="planogram", store_id=bin_.store_id)
    return redirect(back)


@require_POST
@staff_required
def facing_remove_view(request: HttpRequest, bin_id: int, product_id: int) -> HttpResponse:
    """``POST …/planogram/<bin id>/remove/<product id>/``: take the product off the bin."""
    bin_ = get_object_or_404(Bin.objects.select_related("store"), pk=bin_id)
    item = get_object_or_404(Product, pk=product_id, store_id=bin_.store_id)
    removed = facing_remove(bin=bin_, product=item)
    messages.success(request, f"Bin {bin_.code}: {item.name} " + ("removed." if removed else "was not there."))
    dashboard_notify(reason="planogram", store_id=bin_.store_id)
    return redirect(_planogram_url(bin_, request.POST.get("q", "")[:100]))


# ------------------------------------------------------------------------------------------------ ledger
@require_safe
@staff_required
def ledger(request: HttpRequest) -> HttpResponse:
    """``GET /manage/inventory/ledger/``: stock movements, newest first, 100 a page, filtered."""
    form = LedgerFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    since = until = None
    if data.get("since"):
        since = datetime.combine(data["since"], time.min, tzinfo=dt_timezone.utc)
    if data.get("until"):
        until = datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=dt_timezone.utc)
    item = Product.objects.filter(pk=data["product"]).first() if data.get("product") else None
    qs = selectors.stock_ledger(store=data.get("store"), product=item, bin_code=data.get("bin", ""),
                                kind=data.get("kind", ""), since=since, until=until, query=data.get("q", ""))
    page = Paginator(qs, 100).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(request, "inventory/ledger.html", {
        "form": form, "page": page, "product": item, "params": params.urlencode(), "section": "ledger",
    }, status=200 if form.is_valid() or not request.GET else 400)


# ------------------------------------------------------------------------------------------------ CSV
def _csv_page(request: HttpRequest, *, catalogue_form=None, planogram_form=None, errors=None, which: str = "",
              status: int = 200) -> HttpResponse:
    store, stores = _store_from(request, strict=False)
    initial = {"store": store.code} if store else {}
    return render(request, "inventory/csv.html", {
        "store": store, "stores": stores, "section": "csv", "errors": errors or [], "which": which,
        "catalogue_form": catalogue_form or CsvUploadForm(initial=initial, auto_id="cat_%s"),
        "planogram_form": planogram_form or CsvUploadForm(initial=initial, auto_id="plano_%s"),
    }, status=status)


@require_safe
@staff_required
def csv_page(request: HttpRequest) -> HttpResponse:
    """``GET /manage/inventory/csv/``: import forms and export links."""
    return _csv_page(request)


def _download(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_safe
@staff_required
def catalogue_export(request: HttpRequest) -> HttpResponse:
    """``GET …/csv/catalogue.csv?store=<code>``: the catalogue as CSV (the only store when ``store`` is not given)."""
    code = request.GET.get("store", "")
    store = (get_object_or_404(Store, code=code) if code or Store.objects.count() != 1
             else Store.objects.get())
    return _download(catalogue_csv_export(store=store), f"catalogue-{store.code}.csv")


@require_safe
@staff_required
def planogram_export(request: HttpRequest) -> HttpResponse:
    """``GET …/csv/planogram.csv?store=<code>``: the planogram as CSV (the only store when ``store`` is not given)."""
    code = request.GET.get("store", "")
    store = (get_object_or_404(Store, code=code) if code or Store.objects.count() != 1
             else Store.objects.get())
    return _download(planogram_csv_export(store=store), f"planogram-{store.code}.csv")


def _import(request: HttpRequest, which: str) -> HttpResponse:
    form = CsvUploadForm(request.POST, request.FILES, auto_id=("cat_%s" if which == "catalogue" else "plano_%s"))
    forms_kw = {f"{which}_form": form}
    if not form.is_valid():
        return _csv_page(request, which=which, status=400, **forms_kw)
    store, data = form.cleaned_data["store"], form.cleaned_data["file"].read()
    run = catalogue_csv_import if which == "catalogue" else planogram_csv_import
    try:
        result = run(store=store, data=data)
    except CsvImportError as exc:
        return _csv_page(request, which=which, errors=exc.errors, status=400, **forms_kw)
    text = f"{which.capitalize()} of {store.code} imported: {result.created} added, "
    text += (f"{result.updated} changed, " if which == "catalogue" else f"{result.removed} removed, ")
    messages.success(request, text + f"{result.unchanged} unchanged.")
    dashboard_notify(reason=which, store_id=store.pk)
    return redirect(reverse("dashboard:inventory:csv") + f"?store={store.code}")


@require_POST
@staff_required
def catalogue_import(request: HttpRequest) -> HttpResponse:
    """``POST …/csv/catalogue/import/``: create or update products from a CSV, all or nothing."""
    return _import(request, "catalogue")


@require_POST
@staff_required
def planogram_import(request: HttpRequest) -> HttpResponse:
    """``POST …/csv/planogram/import/``: replace the planogram from a CSV, all or nothing."""
    return _import(request, "planogram")
