"""The planogram's drag-to-assign API (store.inventory.api) and the shelves drawing (selectors.planogram_drawing):
who may call it, CSRF, add / move / remove, refusals that write nothing."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from store.inventory import selectors
from store.inventory.models import Facing
from store.layout.models import Bin, Shelf
from tests.test_inventory_stock import make_world

pytestmark = pytest.mark.django_db
URL = "/manage/inventory/api/facings/"


@pytest.fixture(autouse=True)
def plain(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def post(client: Client, body) -> tuple[int, dict]:
    r = client.post(URL, json.dumps(body), content_type="application/json")
    return r.status_code, r.json()


def facings(w) -> set[tuple[str, str]]:
    return {(f.bin.code, f.product.name) for f in Facing.objects.select_related("bin", "product")}


def test_managers_only_and_csrf():
    w = make_world()
    body = {"action": "add", "product": w.water.pk, "bin": w.bin_a.pk}
    assert post(Client(), body)[0] == 403
    shopper = Client()
    shopper.force_login(w.ann)
    assert post(shopper, body) == (403, {"reason": "forbidden", "message": "managers only",
                                         "detail": "managers only"})
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(w.mia)
    assert post(strict, body)[0] == 403
    assert ("1-1-1", "Water") not in facings(w)


def test_add_move_remove_and_answers_the_bins():
    w = make_world()
    c = Client()
    c.force_login(w.mia)
    status, data = post(c, {"action": "add", "product": w.water.pk, "bin": w.bin_a.pk})
    assert status == 200 and data["message"] == "Water added to 1-1-1."
    assert [p["name"] for p in data["bins"][0]["products"]] == ["Cola", "Water"]
    status, data = post(c, {"action": "move", "product": w.water.pk, "from_bin": w.bin_a.pk, "bin": w.bin_b.pk})
    assert status == 200 and {b["code"] for b in data["bins"]} == {"1-1-1", "1-1-2"}
    assert facings(w) == {("1-1-1", "Cola"), ("1-1-2", "Chips"), ("1-1-2", "Water")}
    status, data = post(c, {"action": "remove", "product": w.chips.pk, "bin": w.bin_b.pk})
    assert status == 200 and facings(w) == {("1-1-1", "Cola"), ("1-1-2", "Water")}


def test_refusals_write_nothing():
    w = make_world()
    other = make_world(code="s2")
    c = Client()
    c.force_login(w.mia)
    before = facings(w)
    bad = [
        {"action": "add", "product": other.water.pk, "bin": w.bin_a.pk},       # a product of another store
        {"action": "add", "product": w.water.pk, "bin": 999999},               # no such bin
        {"action": "move", "product": w.water.pk, "bin": w.bin_a.pk},          # a move without from_bin
        {"action": "move", "product": w.water.pk, "from_bin": w.bin_b.pk, "bin": w.bin_a.pk},  # not on from_bin
        {"action": "fly", "product": w.water.pk, "bin": w.bin_a.pk},
        ["not", "an", "object"],
    ]
    for body in bad:
        status, data = post(c, body)
        assert status == 400 and data["reason"] == "bad_request", (body, data)
    assert c.post(URL, "{", content_type="application/json").status_code == 400
    assert facings(w) == before


def test_drawing_puts_every_bin_on_its_shelf_top_first():
    w = make_world()

    top = Shelf.objects.create(gondola=w.bin_a.shelf.gondola, number=2, z=1.6)
    Bin.objects.create(shelf=top, store=w.store, number=1, code="1-2-1", x=0.2, y=0.1, z=1.6, width_m=0.6,
                       depth_m=0.4)
    drawing = selectors.planogram_drawing(store=w.store)
    assert [g for g, _ in drawing] == [1]
    shelves = drawing[0][1]
    assert [s.shelf_number for s in shelves] == [2, 1]
    assert [pb.bin.code for pb in shelves[1].bins] == ["1-1-1", "1-1-2"] and shelves[1].widths == [50.0, 50.0]
