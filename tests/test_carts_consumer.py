"""Live cart WebSockets (carts.consumers) through the real ASGI stack: store.asgi.application, i.e.
AllowedHostsOriginValidator → AuthMiddlewareStack (session cookie) → URLRouter(carts.routing)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from carts.models import CartEvent

from carts.services.ledger import CartChange, cart_apply

from store.asgi import application

from store.gates.models import Visit

from store.inventory.models import Product

from store.layout.models import Store

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://testserver"


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    """A new InMemoryChannelLayer per test (channels resets its layers when the setting changes)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def _world() -> SimpleNamespace:
    User = get_user_model()
    store = Store.objects.create(code="s1", name="Store One", currency="usd")
    product = Product.objects.create(store=store, barcode="0001", name="Cola", price=Decimal("1.99"),
                                     unit_weight_g=355.0)
    shopper = User.objects.create_user("ann", password="pw-ann-123456")
    other = User.objects.create_user("bob", password="pw-bob-123456")
    staff = User.objects.create_user("mia", password="pw-mia-123456", is_staff=True)
    visit = Visit.objects.create(store=store, shopper=shopper, state=Visit.State.SHOPPING,
                                 entered_at=timezone.now() - timedelta(minutes=3))
    return SimpleNamespace(store=store, product=product, shopper=shopper, other=other, staff=staff, visit=visit)


world = database_sync_to_async(_world)


@database_sync_to_async
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def open_socket(path: str, user=None, origin: bytes | None = ORIGIN) -> WebsocketCommunicator:
    headers = []
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        headers.append((b"cookie", await session_cookie(user)))
    return WebsocketCommunicator(application, path, headers=headers)


@database_sync_to_async
def add_to_cart(w: SimpleNamespace, quantity: int):
    return cart_apply(change=CartChange(visit=w.visit, product=w.product, quantity=quantity, confidence=0.93,
                                        evidence={"test": True}, senses=("weight", "hand")), shelf_event=None)


async def test_owner_gets_snapshot_on_connect_and_after_cart_apply():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=w.shopper)
    connected, _ = await comm.connect()
    assert connected
    first = await comm.receive_json_from(timeout=5)
    assert first.pop("trip")["stage"] == "inside"
    assert first == {"type": "snapshot", "visit": w.visit.pk, "seq": 0, "state": "shopping", "currency": "usd",
                     "lines": [], "under_review": 0, "tax_minor": 0, "total_minor": 0, "receipt": None}

    await add_to_cart(w, 2)
    pushed = await comm.receive_json_from(timeout=5)
    assert pushed["type"] == "snapshot" and pushed["visit"] == w.visit.pk
    assert pushed["seq"] == 1
    assert pushed["lines"] == [{"barcode": "0001", "name": "Cola", "quantity": 2, "unit_price_minor": 199,
                                "line_total_minor": 398, "senses": ["weight", "hand"]}]
    assert pushed["total_minor"] == 398
    await comm.disconnect()


async def test_resync_sends_a_fresh_snapshot_from_the_ledger():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=w.shopper)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["lines"] == []
    # A change whose group message never arrived (written straight to the ledger, nothing pushed).
    await database_sync_to_async(CartEvent.objects.create)(visit=w.visit, product=w.product, quantity=3,
                                                           confidence=1.0)
    assert await comm.receive_nothing(timeout=0.2)
    await comm.send_json_to({"type": "resync"})
    fresh = await comm.receive_json_from(timeout=5)
    assert fresh["type"] == "snapshot"
    assert [(line["barcode"], line["quantity"]) for line in fresh["lines"]] == [("0001", 3)]
    assert fresh["total_minor"] == 597
    await comm.disconnect()


async def test_staff_may_watch_any_cart():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=w.staff)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["visit"] == w.visit.pk
    await comm.disconnect()


async def test_another_shopper_is_refused():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=w.other)
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_anonymous_is_refused():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=None)
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_unknown_visit_is_refused_even_for_staff():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk + 1000}/cart/", user=w.staff)
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


@pytest.mark.parametrize("origin", [b"http://evil.example", b"http://testserver.evil.example", None])
async def test_foreign_or_missing_origin_is_refused_even_for_the_owner(origin):
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=w.shopper, origin=origin)
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_malformed_messages_get_an_error_and_the_socket_stays_open():
    w = await world()
    comm = await open_socket(f"/ws/visits/{w.visit.pk}/cart/", user=w.shopper)
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)
    await comm.send_to(text_data="not json")
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.send_json_to({"type": "buy-everything"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.send_json_to({"type": "resync"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    await comm.disconnect()


async def test_shopper_socket_sees_a_new_visit_of_its_own_shopper_only():
    w = await world()
    await database_sync_to_async(Visit.objects.filter(pk=w.visit.pk).update)(state=Visit.State.BILLED)
    mine = await open_socket("/ws/shopper/", user=w.shopper)
    theirs = await open_socket("/ws/shopper/", user=w.other)
    assert (await mine.connect())[0] and (await theirs.connect())[0]
    assert await mine.receive_json_from(timeout=5) == {"type": "waiting"}
    assert await theirs.receive_json_from(timeout=5) == {"type": "waiting"}

    w.visit = await database_sync_to_async(Visit.objects.create)(
        store=w.store, shopper=w.shopper, state=Visit.State.ADMITTED, entered_at=timezone.now())
    await add_to_cart(w, 1)
    got = await mine.receive_json_from(timeout=5)
    assert got["type"] == "snapshot" and got["visit"] == w.visit.pk and got["state"] == "admitted"
    assert got["total_minor"] == 199
    assert await theirs.receive_nothing(timeout=0.3)

    await mine.send_json_to({"type": "resync"})
    assert (await mine.receive_json_from(timeout=5))["visit"] == w.visit.pk
    await mine.disconnect()
    await theirs.disconnect()


async def test_shopper_socket_refuses_anonymous():
    comm = await open_socket("/ws/shopper/", user=None)
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()
