"""Admin of store.layout and store.inventory: every model has list filters and search, the lists load with them,
and the product list shows the stock level with a low-stock filter."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client

from store.inventory.models import RestockSession, RestockTask
from store.inventory.services import stock_record_restock
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db

APPS = ("layout", "inventory")


def registered():
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in APPS]


def test_every_layout_and_inventory_model_is_registered_with_filters_and_search():
    from django.apps import apps

    models = {m for label in APPS for m in apps.get_app_config(label).get_models()}
    assert models == {model for model, _ in registered()}
    for model, model_admin in registered():
        assert model_admin.list_filter, model.__name__
        assert model_admin.search_fields, model.__name__


def test_change_lists_load_with_each_filter_and_a_search():
    w = make_world()
    stock_record_restock(product=w.cola, quantity=4, bin=w.bin_a, by="mia")
    RestockSession.objects.create(store=w.store, staff=w.mia, started_at=w.now)
    RestockTask.objects.create(store=w.store, bin=w.bin_a, product=w.cola, reason="misplaced", reference="x:1")
    w.mia.is_superuser = True
    w.mia.save()
    client = Client()
    client.force_login(w.mia)
    for model, _model_admin in registered():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url + "?q=1").status_code == 200, url
        changelist = client.get(url).context["cl"]
        for spec in changelist.filter_specs:
            for choice in list(spec.choices(changelist))[1:3]:
                assert client.get(url + choice["query_string"]).status_code == 200, (url, choice["query_string"])


def test_product_admin_shows_levels_and_filters_low_stock():
    w = make_world()
    stock_record_restock(product=w.cola, quantity=4, bin=w.bin_a, by="mia")   # threshold 2: fine
    stock_record_restock(product=w.cola, quantity=3, bin=w.bin_b, by="mia")   # a second bin must not double it
    w.mia.is_superuser = True
    w.mia.save()
    client = Client()
    client.force_login(w.mia)
    low = client.get("/admin/inventory/product/?stock=low")
    assert {p.barcode for p in low.context["cl"].result_list} == {w.chips.barcode, w.water.barcode}
    ok = client.get("/admin/inventory/product/?stock=ok&q=1-1-1")   # search by a bin the product faces
    assert [(p.barcode, p.stock_level) for p in ok.context["cl"].result_list] == [(w.cola.barcode, 7)]
