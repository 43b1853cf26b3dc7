"""The manager's inventory pages (/manage/inventory/…): who may see them, CSRF, editing, restock/adjust forms,
planogram editing and the ledger view."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.shortcuts import resolve_url
from django.test import Client

from store.inventory import selectors
from store.inventory.models import Facing, StockMovement, TaxCategory
from store.inventory.services import InventoryInputError, product_update, stock_record_restock
from store.layout.models import Store
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plain_settings(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def w():
    return make_world()


def client_for(user=None, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


GETS = ["/manage/inventory/", "/manage/inventory/products/{cola}/", "/manage/inventory/planogram/",
        "/manage/inventory/ledger/", "/manage/inventory/csv/", "/manage/inventory/csv/catalogue.csv?store=s1",
        "/manage/inventory/csv/planogram.csv?store=s1"]
POSTS = ["/manage/inventory/products/{cola}/", "/manage/inventory/products/{cola}/restock/",
         "/manage/inventory/products/{cola}/adjust/", "/manage/inventory/planogram/{bin}/add/",
         "/manage/inventory/planogram/{bin}/remove/{cola}/", "/manage/inventory/csv/catalogue/import/",
         "/manage/inventory/csv/planogram/import/"]


@pytest.mark.parametrize("path", GETS)
def test_pages_are_for_managers_only(w, path, settings):
    url = path.format(cola=w.cola.pk)
    anonymous = client_for(None).get(url)
    assert anonymous.status_code == 302 and anonymous.url.startswith(resolve_url(settings.LOGIN_URL) + "?next=")
    assert client_for(w.ann).get(url).status_code == 403
    assert client_for(w.mia).get(url).status_code == 200


@pytest.mark.parametrize("path", POSTS)
def test_writes_are_for_managers_only(w, path, settings):
    url = path.format(cola=w.cola.pk, bin=w.bin_a.pk)
    data = {"quantity": "5", "price": "9.99", "unit_weight_g": "1", "unit_weight_sd_g": "0",
            "low_stock_threshold": "0", "barcode": w.water.barcode, "reason": "x"}
    assert client_for(None).post(url, data).status_code == 302
    assert client_for(w.ann).post(url, data).status_code == 403
    inactive = w.bob
    inactive.is_staff, inactive.is_active = True, False
    inactive.save()
    assert client_for(inactive).post(url, data).status_code in (302, 403)  # an inactive session is logged out
    assert StockMovement.objects.count() == 0 and Facing.objects.count() == 2
    w.cola.refresh_from_db()
    assert w.cola.price == Decimal("1.99")


def test_forms_need_the_csrf_token(w):
    client = client_for(w.mia, csrf=True)
    url = f"/manage/inventory/products/{w.cola.pk}/restock/"
    assert client.post(url, {"quantity": "5", "bin": str(w.bin_a.pk)}).status_code == 403
    assert StockMovement.objects.count() == 0
    page = client.get(f"/manage/inventory/products/{w.cola.pk}/")
    token = page.context["csrf_token"]
    assert client.post(url, {"quantity": "5", "bin": str(w.bin_a.pk), "csrfmiddlewaretoken": str(token)}).status_code == 302
    assert selectors.stock_levels()[w.cola.pk] == 5


def test_product_list_shows_levels_per_bin_and_low_flags(w):
    stock_record_restock(product=w.cola, quantity=12, bin=w.bin_a, by="mia")
    stock_record_restock(product=w.cola, quantity=2, bin=w.bin_b, by="mia")
    page = client_for(w.mia).get("/manage/inventory/")
    rows = {r.product.barcode: r for r in page.context["rows"]}
    assert rows[w.cola.barcode].level == 14 and not rows[w.cola.barcode].low
    assert rows[w.water.barcode].low and rows[w.chips.barcode].low
    html = page.content.decode()
    assert "1-1-1: 12" in html and "1-1-2: 2" in html and "2 low" in html
    low = client_for(w.mia).get("/manage/inventory/?low=1&q=wat")
    assert [r.product.barcode for r in low.context["rows"]] == [w.water.barcode]
    assert client_for(w.mia).get("/manage/inventory/?store=zz").status_code == 404


def test_edit_product_terms(w):
    client = client_for(w.mia)
    url = f"/manage/inventory/products/{w.cola.pk}/"
    ok = client.post(url, {"price": "2.29", "unit_weight_g": "350.5", "unit_weight_sd_g": "2",
                           "low_stock_threshold": "7"})
    assert ok.status_code == 302
    w.cola.refresh_from_db()
    assert (w.cola.price, w.cola.unit_weight_g, w.cola.low_stock_threshold) == (Decimal("2.29"), 350.5, 7)
    bad = client.post(url, {"price": "2.299", "unit_weight_g": "0", "unit_weight_sd_g": "-1",
                            "low_stock_threshold": "x"})
    assert bad.status_code == 400
    assert set(bad.context["edit_form"].errors) == {"price", "unit_weight_g", "unit_weight_sd_g", "low_stock_threshold"}
    w.cola.refresh_from_db()
    assert w.cola.price == Decimal("2.29")


def test_restock_and_adjust_forms_change_the_level(w):
    client = client_for(w.mia)
    base = f"/manage/inventory/products/{w.cola.pk}/"
    assert client.post(base + "restock/", {"quantity": "10", "bin": str(w.bin_a.pk), "note": "truck"}).status_code == 302
    assert client.post(base + "adjust/", {"quantity": "-2", "reason": "dented", "bin": str(w.bin_a.pk)}).status_code == 302
    assert client.post(base + "adjust/", {"counted": "5", "bin": str(w.bin_a.pk)}).status_code == 302
    page = client.get(base)
    assert page.context["row"].level == 5
    assert [(m.kind, m.quantity) for m in page.context["movements"]] == [
        ("adjustment", -3), ("adjustment", -2), ("restock", 10)]
    assert '<strong id="stock-level">5</strong>' in page.content.decode()
    for data in ({"quantity": "0", "reason": "x"}, {"quantity": "-1"}, {"quantity": "1", "counted": "3",
                                                                         "reason": "x"}, {}):
        refused = client.post(base + "adjust/", data)
        assert refused.status_code == 400 and refused.context["adjust_form"].non_field_errors()
    assert client.post(base + "restock/", {"quantity": "-4"}).status_code == 400
    other = make_world(code="s2")
    assert client.post(base + "restock/", {"quantity": "4", "bin": str(other.bin_a.pk)}).status_code == 400
    assert StockMovement.objects.count() == 3


def test_planogram_editor_adds_and_removes_facings(w):
    client = client_for(w.mia)
    page = client.get("/manage/inventory/planogram/?store=s1")
    assert [pb.bin.code for pb in page.context["bins"]] == ["1-1-1", "1-1-2"]
    added = client.post(f"/manage/inventory/planogram/{w.bin_a.pk}/add/", {"barcode": w.water.barcode})
    assert added.status_code == 302 and added.url.endswith(f"#bin-{w.bin_a.pk}")
    assert Facing.objects.filter(bin=w.bin_a, product=w.water).exists()
    unknown = client.post(f"/manage/inventory/planogram/{w.bin_a.pk}/add/", {"barcode": "nope"}, follow=True)
    assert "no product with barcode &#x27;nope&#x27;" in unknown.content.decode()
    other = make_world(code="s2")
    assert client.post(f"/manage/inventory/planogram/{w.bin_a.pk}/add/",
                       {"barcode": other.cola.barcode}).status_code == 302
    assert not Facing.objects.filter(bin=w.bin_a, product=other.cola).exists()
    assert client.post(f"/manage/inventory/planogram/{w.bin_a.pk}/remove/{w.cola.pk}/").status_code == 302
    assert list(Facing.objects.filter(bin=w.bin_a).values_list("product__barcode", flat=True)) == [w.water.barcode]
    assert client.post(f"/manage/inventory/planogram/{w.bin_a.pk}/remove/{other.cola.pk}/").status_code == 404


def test_ledger_page_filters(w):
    stock_record_restock(product=w.cola, quantity=10, bin=w.bin_a, by="mia")
    stock_record_restock(product=w.chips, quantity=4, bin=w.bin_b, by="mia")
    client = client_for(w.mia)
    assert client.get("/manage/inventory/ledger/").context["page"].paginator.count == 2
    only = client.get("/manage/inventory/ledger/?bin=1-1-2&kind=restock&store=s1")
    assert [m.product_id for m in only.context["page"]] == [w.chips.pk]
    mine = client.get(f"/manage/inventory/ledger/?product={w.cola.pk}")
    assert [m.product_id for m in mine.context["page"]] == [w.cola.pk]
    assert client.get("/manage/inventory/ledger/?until=2000-01-01").context["page"].paginator.count == 0
    assert client.get("/manage/inventory/ledger/?since=not-a-date").status_code == 400


def test_the_tax_category_is_edited_on_the_product_page_and_another_stores_is_refused(w):
    food = TaxCategory.objects.create(store=w.store, name="Prepared food", rate_percent=Decimal("8.875"))
    other_store = Store.objects.create(code="s2", name="Store s2", currency="usd")
    theirs = TaxCategory.objects.create(store=other_store, name="Their rate", rate_percent=Decimal("5"))
    url = f"/manage/inventory/products/{w.cola.pk}/"
    terms = {"price": "1.99", "unit_weight_g": "355", "unit_weight_sd_g": "3", "low_stock_threshold": "2"}
    page = client_for(w.mia).get(url).content.decode()
    assert 'name="tax_category"' in page and "Prepared food (8.875 %)" in page and "Their rate" not in page
    assert client_for(w.ann).post(url, {**terms, "tax_category": str(food.pk)}).status_code == 403
    w.cola.refresh_from_db()
    assert w.cola.tax_category is None

    assert client_for(w.mia).post(url, {**terms, "tax_category": str(food.pk)}).status_code == 302
    w.cola.refresh_from_db()
    assert w.cola.tax_category == food
    assert f'<option value="{food.pk}" selected>' in client_for(w.mia).get(url).content.decode()

    refused = client_for(w.mia).post(url, {**terms, "tax_category": str(theirs.pk)})
    assert refused.status_code == 400
    assert refused.context["edit_form"].errors["tax_category"] == [
        "“Their rate” is a tax category of store s2, not of s1; choose one of this store's"]
    assert "is a tax category of store s2" in refused.content.decode()
    for bad in ("999999", "abc"):
        assert client_for(w.mia).post(url, {**terms, "tax_category": bad}).status_code == 400
    w.cola.refresh_from_db()
    assert w.cola.tax_category == food  # nothing saved

    # sent without the field (an older form): unchanged; "" clears it (not taxed)
    assert client_for(w.mia).post(url, terms).status_code == 302
    w.cola.refresh_from_db()
    assert w.cola.tax_category == food
    assert client_for(w.mia).post(url, {**terms, "tax_category": ""}).status_code == 302
    w.cola.refresh_from_db()
    assert w.cola.tax_category is None

    # the service refuses it too, whoever calls it
    with pytest.raises(InventoryInputError, match="belongs to another store"):
        product_update(product=w.cola, price=Decimal("1.99"), unit_weight_g=355.0, unit_weight_sd_g=3.0,
                       low_stock_threshold=2, tax_category=theirs)
