"""CSV import/export of the catalogue and planogram (store.inventory.csv_io): round trips, all-or-nothing imports,
errors with line numbers, and the upload pages."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from store.inventory.csv_io import (
    CsvImportError,
    catalogue_csv_export,
    catalogue_csv_import,
    planogram_csv_export,
    planogram_csv_import,
)
from store.inventory.models import Facing, Product
from store.layout.models import Bin, Gondola, Shelf, Store
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db

HEADER = "barcode,name,price,unit_weight_g,unit_weight_sd_g,low_stock_threshold\n"


@pytest.fixture
def w():
    return make_world()


def empty_store_like(w, code: str) -> Store:
    """A store with the same bin codes as ``w.store`` and no products."""
    store = Store.objects.create(code=code, name=code)
    gondola = Gondola.objects.create(store=store, number=1, x=0, y=0, width_m=1, depth_m=0.5, height_m=2)
    shelf = Shelf.objects.create(gondola=gondola, number=1, z=1.0)
    for b in Bin.objects.filter(store=w.store):
        Bin.objects.create(shelf=shelf, store=store, number=b.number, code=b.code, x=b.x, y=b.y, z=b.z,
                           width_m=b.width_m, depth_m=b.depth_m)
    return store


def errors_of(call) -> list[tuple[int, str]]:
    with pytest.raises(CsvImportError) as info:
        call()
    return info.value.errors


# ------------------------------------------------------------------------------------------------ round trips
def test_catalogue_and_planogram_round_trip_into_another_store(w):
    Product.objects.filter(pk=w.chips.pk).update(name='Chips, "salted"\nbig bag', unit_weight_sd_g=1.25)
    catalogue, plano = catalogue_csv_export(store=w.store), planogram_csv_export(store=w.store)
    assert catalogue.startswith(HEADER)
    assert plano == f"bin,barcode\n1-1-1,{w.cola.barcode}\n1-1-2,{w.chips.barcode}\n"
    copy = empty_store_like(w, "s9")
    assert catalogue_csv_import(store=copy, data=catalogue.encode()).created == 3
    assert planogram_csv_import(store=copy, data=plano.encode()).created == 2
    assert catalogue_csv_export(store=copy) == catalogue
    assert planogram_csv_export(store=copy) == plano
    again = catalogue_csv_import(store=copy, data=catalogue)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


def test_catalogue_import_creates_updates_and_keeps_absent_optional_columns(w):
    data = ("\ufeffbarcode,name,price,unit_weight_g\n"
            f"{w.cola.barcode},Cola Zero,2.10,350\n"
            "9999,Gum,0.5,12.5\n")
    result = catalogue_csv_import(store=w.store, data=data.encode())
    assert (result.created, result.updated, result.unchanged) == (1, 1, 0)
    w.cola.refresh_from_db()
    assert (w.cola.name, w.cola.price, w.cola.unit_weight_g) == ("Cola Zero", Decimal("2.10"), 350.0)
    assert (w.cola.unit_weight_sd_g, w.cola.low_stock_threshold) == (3.0, 2)  # kept: columns absent
    gum = Product.objects.get(store=w.store, barcode="9999")
    assert (gum.price, gum.unit_weight_sd_g, gum.low_stock_threshold) == (Decimal("0.50"), 0.0, 0)


# ------------------------------------------------------------------------------------------------ errors
def test_catalogue_errors_name_their_lines_and_nothing_is_applied(w):
    data = (HEADER
            + "5001,Good one,1.00,100,0,1\n"            # line 2: fine, but must not be created
            + "5002,Bad price,1.999,100,0,1\n"          # 3
            + "\n"                                      # 4: blank, skipped
            + "5001,Again,1.00,100,0,1\n"               # 5: repeated barcode
            + "5003,,abc,-5,x,1.5\n"                    # 6: four problems
            + "5004,Short row,1.00\n"                   # 7
            + f"{w.cola.barcode},Cola,1.00,0,0,0\n")    # 8: weight 0
    errors = errors_of(lambda: catalogue_csv_import(store=w.store, data=data.encode()))
    lines = [n for n, _ in errors]
    assert lines == [3, 5, 6, 6, 6, 6, 6, 7, 8]
    text = dict((n, m) for n, m in errors if n != 6)
    assert "more than 2 decimals" in text[3] and "already on line 2" in text[5]
    assert "6 cells where the header has 3" not in text[7] and "3 cells where the header has 6" in text[7]
    assert "unit_weight_g must be > 0" in text[8]
    six = " | ".join(m for n, m in errors if n == 6)
    for part in ("name is empty", "price 'abc' is not a number", "unit_weight_g must be ≥ 0",
                 "unit_weight_sd_g 'x' is not a number", "low_stock_threshold '1.5'"):
        assert part in six
    assert not Product.objects.filter(barcode__startswith="500").exists()
    w.cola.refresh_from_db()
    assert w.cola.unit_weight_g == 355.0


def test_line_numbers_count_physical_lines_of_quoted_cells(w):
    data = HEADER + '6001,"two\nlines",1.00,100,0,0\n6002,Bad,-1,100,0,0\n'
    assert errors_of(lambda: catalogue_csv_import(store=w.store, data=data)) == [(4, "price must be ≥ 0, got '-1'")]


def test_bad_headers_and_encodings_are_refused(w):
    assert errors_of(lambda: catalogue_csv_import(store=w.store, data=b"")) == [(0, "the file is empty")]
    [(line, message)] = errors_of(lambda: catalogue_csv_import(store=w.store, data=b"barcode,name,cost\n1,a,2\n"))
    assert line == 1 and "missing column(s) price, unit_weight_g" in message and "unknown column(s) 'cost'" in message
    [(line, message)] = errors_of(lambda: catalogue_csv_import(store=w.store,
                                                               data=(HEADER + "7001,Caf\xe9,1,1,0,0\n").encode("latin-1")))
    assert (line, message) == (2, "the file is not UTF-8 text")


def test_planogram_errors_name_lines_and_keep_the_old_planogram(w):
    before = planogram_csv_export(store=w.store)
    data = ("bin,barcode\n"
            f"1-1-1,{w.water.barcode}\n"       # 2: fine
            f"9-9-9,{w.cola.barcode}\n"        # 3: no such bin
            "1-1-2,nope\n"                     # 4: no such product
            f"1-1-1,{w.water.barcode}\n"       # 5: repeated
            ",x\n")                            # 6: empty bin
    errors = errors_of(lambda: planogram_csv_import(store=w.store, data=data))
    assert [n for n, _ in errors] == [3, 4, 5, 6]
    assert errors[0] == (3, "store s1 has no bin '9-9-9'")
    assert "barcode nope is not in the catalogue" in errors[1][1]
    assert errors[2] == (5, f"facing 1-1-1 ↔ {w.water.barcode} is already on line 2")
    assert errors[3] == (6, "bin and barcode are both required")
    assert planogram_csv_export(store=w.store) == before


def test_planogram_import_replaces_the_planogram(w):
    result = planogram_csv_import(store=w.store, data=f"bin,barcode\n1-1-1,{w.cola.barcode}\n1-1-2,{w.water.barcode}\n"
                                                      f"1-1-1,{w.water.barcode}\n")
    assert (result.created, result.unchanged, result.removed) == (2, 1, 1)
    assert sorted(Facing.objects.filter(bin__store=w.store).values_list("bin__code", "product__barcode")) == [
        ("1-1-1", w.cola.barcode), ("1-1-1", w.water.barcode), ("1-1-2", w.water.barcode)]


# ------------------------------------------------------------------------------------------------ pages
def upload(client: Client, which: str, store: str, text: str):
    f = SimpleUploadedFile(f"{which}.csv", text.encode(), content_type="text/csv")
    return client.post(f"/manage/inventory/csv/{which}/import/", {"store": store, "file": f})


def test_upload_pages_report_line_errors_and_apply_good_files(w):
    client = Client()
    client.force_login(w.mia)
    bad = upload(client, "catalogue", "s1", HEADER + "8001,Gum,1.00,10,0,0\n8002,Mint,free,10,0,0\n")
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "was not imported: nothing changed" in html and "price &#x27;free&#x27; is not a number" in html
    assert bad.context["errors"] == [(3, "price 'free' is not a number")]
    assert not Product.objects.filter(barcode="8001").exists()
    good = upload(client, "catalogue", "s1", HEADER + "8001,Gum,1.00,10,0,0\n")
    assert good.status_code == 302 and Product.objects.filter(store=w.store, barcode="8001").exists()
    page = client.get(good.url)
    assert "Catalogue of s1 imported: 1 added, 0 changed, 0 unchanged." in page.content.decode()
    assert upload(client, "planogram", "s1", "bin,barcode\n1-1-2,8001\n").status_code == 302
    assert list(Facing.objects.filter(bin__store=w.store).values_list("bin__code", "product__barcode")) == [
        ("1-1-2", "8001")]
    assert upload(client, "planogram", "nope", "bin,barcode\n").status_code == 400  # unknown store


def test_exports_download_csv(w):
    client = Client()
    client.force_login(w.mia)
    response = client.get("/manage/inventory/csv/catalogue.csv?store=s1")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="catalogue-s1.csv"' in response["Content-Disposition"]
    assert response.content.decode() == catalogue_csv_export(store=w.store)
    assert client.get("/manage/inventory/csv/planogram.csv?store=s1").content.decode() == planogram_csv_export(
        store=w.store)
    assert client.get("/manage/inventory/csv/planogram.csv?store=zz").status_code == 404
