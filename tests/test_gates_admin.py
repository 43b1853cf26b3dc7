"""Gate registration (``create_gate`` command, admin add and key rotation) and the admin pages of layout,
inventory, gates and accounts."""
from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from store.accounts.payment import shopper_card_attach
from store.accounts.services import manager_create, shopper_create
from store.gates.models import EntryPass, Gate, Visit
from store.gates.services import gate_authenticate, gate_create, gate_key_hash, pass_issue, visit_enter
from store.inventory.models import Facing, Product, StockMovement
from store.layout.models import Bin, Gondola, Shelf, Store, Zone

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough password 1"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


@pytest.fixture
def store():
    return Store.objects.create(code="corner", name="Corner shop")


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser(username="root@example.com", email="root@example.com",
                                                     password=PASSWORD)
    client = Client()
    client.force_login(user)
    return client


# --- create_gate ------------------------------------------------------------------------------------------------

def test_create_gate_prints_a_working_key_once(store):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_gate", "corner", "door-1", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", key)
    gate = Gate.objects.get()
    assert gate.name == "door-1" and gate.store == store
    assert gate.api_key_hash == gate_key_hash(key) and key not in gate.api_key_hash
    assert gate_authenticate(api_key=key) == gate
    assert "shown only now" in err.getvalue()


def test_create_gate_errors(store):
    with pytest.raises(CommandError, match="no store"):
        call_command("create_gate", "nowhere", "door-1", stdout=io.StringIO())
    call_command("create_gate", "corner", "door-1", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="already has a gate"):
        call_command("create_gate", "corner", "door-1", stdout=io.StringIO())
    assert Gate.objects.count() == 1


# --- gates admin ------------------------------------------------------------------------------------------------

def test_admin_gate_add_shows_key_once_and_never_the_hash(store, admin_client):
    form = admin_client.get("/admin/gates/gate/add/")
    assert form.status_code == 200 and b"api_key_hash" not in form.content
    response = admin_client.post("/admin/gates/gate/add/", {"store": store.pk, "name": "door-9", "active": "on"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    gate = Gate.objects.get(name="door-9")
    key = re.search(r'<code style="user-select:all">([^<]+)</code>', response.content.decode()).group(1)
    assert gate_authenticate(api_key=key) == gate
    change = admin_client.get(f"/admin/gates/gate/{gate.pk}/change/").content.decode()
    listing = admin_client.get("/admin/gates/gate/").content.decode()
    for html in (change, listing):
        assert gate.api_key_hash not in html and key not in html
    # editing the gate keeps its key
    admin_client.post(f"/admin/gates/gate/{gate.pk}/change/", {"store": store.pk, "name": "door-9b", "active": "on"})
    assert gate_authenticate(api_key=key).name == "door-9b"


def test_admin_rotate_key_action(store, admin_client):
    gate, old_key = gate_create(store=store, name="door-1")
    response = admin_client.post("/admin/gates/gate/", {"action": "rotate_api_key", "_selected_action": [gate.pk]})
    assert response.status_code == 200
    new_key = re.search(r'<code style="user-select:all">([^<]+)</code>', response.content.decode()).group(1)
    assert new_key != old_key
    assert gate_authenticate(api_key=old_key) is None
    assert gate_authenticate(api_key=new_key) == gate
    scan = APIClient()
    scan.credentials(HTTP_AUTHORIZATION=f"Gate {old_key}")
    assert scan.post("/gates/api/scan/", {"token": "x"}, format="json").status_code == 401


def test_admin_visits_read_only_with_transitions(store, admin_client):
    shopper = shopper_create(email="ann@example.com", password=PASSWORD)
    shopper_card_attach(user=shopper, card_token="4242424242424242")
    gate, _ = gate_create(store=store, name="door-1")
    _, token = pass_issue(shopper=shopper, store=store)
    visit = visit_enter(token=token, gate=gate)
    listing = admin_client.get("/admin/gates/visit/?state__exact=admitted")
    assert listing.status_code == 200 and f"/admin/gates/visit/{visit.pk}/change/" in listing.content.decode()
    page = admin_client.get(f"/admin/gates/visit/{visit.pk}/change/").content.decode()
    assert "gate door-1" in page  # the inline transition's reason
    assert admin_client.get("/admin/gates/visit/add/").status_code == 403
    assert admin_client.get(f"/admin/gates/entrypass/{EntryPass.objects.get().pk}/change/").status_code == 200
    assert admin_client.get("/admin/gates/entrypass/add/").status_code == 403
    response = admin_client.post("/admin/gates/visit/", {"action": "send_to_review", "_selected_action": [visit.pk]})
    assert response.status_code == 302
    visit.refresh_from_db()
    assert visit.state == Visit.State.UNDER_REVIEW
    assert visit.transitions.last().reason.startswith("sent to review by root@example.com")


# --- layout, inventory, accounts admin --------------------------------------------------------------------------

def make_layout(store: Store) -> dict:
    Zone.objects.create(store=store, kind="entry", name="door", polygon=[[0, 0], [1, 0], [1, 1]])
    gondola = Gondola.objects.create(store=store, number=1, x=0, y=0, width_m=1, depth_m=0.5, height_m=2)
    shelf = Shelf.objects.create(gondola=gondola, number=1, z=1.0)
    bin_ = Bin.objects.create(shelf=shelf, store=store, number=1, code="1-1-1", x=0, y=0, z=1, width_m=0.3,
                              depth_m=0.4)
    product = Product.objects.create(store=store, barcode="0001", name="Soda", price=Decimal("1.99"),
                                     unit_weight_g=355)
    facing = Facing.objects.create(bin=bin_, product=product)
    movement = StockMovement.objects.create(product=product, bin=bin_, kind="restock", quantity=12)
    return {"gondola": gondola, "shelf": shelf, "bin": bin_, "product": product, "facing": facing,
            "movement": movement}


def test_admin_pages_render(store, admin_client):
    objs = make_layout(store)
    shopper_create(email="ann@example.com", password=PASSWORD)
    urls = [
        f"/admin/layout/store/{store.pk}/change/", "/admin/layout/store/", "/admin/layout/zone/",
        f"/admin/layout/gondola/{objs['gondola'].pk}/change/", "/admin/layout/shelf/",
        f"/admin/layout/bin/?store__id__exact={store.pk}&shelf__gondola__id__exact={objs['gondola'].pk}",
        "/admin/layout/bin/?q=1-1", f"/admin/inventory/product/{objs['product'].pk}/change/",
        "/admin/inventory/product/?q=0001", "/admin/inventory/facing/", "/admin/inventory/stockmovement/",
        f"/admin/inventory/stockmovement/{objs['movement'].pk}/change/", "/admin/accounts/shopperprofile/",
        "/admin/gates/gate/", "/admin/gates/entrypass/", "/admin/gates/visit/",
    ]
    for url in urls:
        assert admin_client.get(url).status_code == 200, url
    assert b"1-1-1" in admin_client.get("/admin/layout/bin/?q=1-1").content
    assert b"Soda" in admin_client.get("/admin/inventory/product/?q=0001").content
    assert b"Soda" not in admin_client.get("/admin/inventory/product/?q=zzz").content


def test_stock_ledger_is_read_only_in_admin(store, admin_client):
    objs = make_layout(store)
    assert admin_client.get("/admin/inventory/stockmovement/add/").status_code == 403
    mv = objs["movement"]
    admin_client.post(f"/admin/inventory/stockmovement/{mv.pk}/change/", {"quantity": 999, "kind": "sale"})
    mv.refresh_from_db()
    assert mv.quantity == 12
    assert admin_client.post(f"/admin/inventory/stockmovement/{mv.pk}/delete/", {"post": "yes"}).status_code == 403
    assert StockMovement.objects.filter(pk=mv.pk).exists()


def test_admin_is_for_staff_only(store):
    client = Client()
    client.force_login(shopper_create(email="ann@example.com", password=PASSWORD))
    response = client.get("/admin/gates/gate/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_manager_sees_but_cannot_delete(store):
    objs = make_layout(store)
    manager_create(email="boss@example.com", password=PASSWORD)
    client = Client()
    client.force_login(get_user_model().objects.get(username="boss@example.com"))
    assert client.get(f"/admin/layout/bin/{objs['bin'].pk}/change/").status_code == 200
    assert client.get("/admin/gates/gate/").status_code == 200
    assert client.post(f"/admin/layout/bin/{objs['bin'].pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/layout/store/add/").status_code == 200  # managers may add, never delete
    assert client.get("/admin/carts/cartevent/add/").status_code == 403  # ledgers are append-only by services
    assert Bin.objects.filter(pk=objs["bin"].pk).exists()
