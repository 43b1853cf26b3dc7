"""Security of the shopper's data and of the gate, across HTTP and WebSockets:

* another shopper cannot read or subscribe to my visit, cart, receipt or pass (HTTP 404 / socket refused), and a
  pass cannot be re-pointed at another account;
* a pass is single use across gates, for entry and exit alike, and its guests are admitted at its own gate only;
* a foreign (or missing) Origin is refused on every WebSocket route, even with a valid session;
* every POST route of the site goes through the CSRF check (enumerated from the URL resolver, so new forms are
  covered too), except the device/webhook endpoints that carry their own authentication and no cookies.
"""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from django.utils import timezone
from rest_framework.test import APIClient

from carts.services.ledger import CartChange, cart_apply
from store.accounts.payment import shopper_card_attach
from store.accounts.services import shopper_create
from store.asgi import application
from store.billing.models import Receipt
from store.gates.models import Visit
from store.gates.services import PASS_SALT, gate_create, pass_issue
from store.inventory.models import Product
from store.layout.models import Store

PASSWORD = "a long enough password 1"
ORIGIN = b"http://testserver"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.WALKOUT = {**settings.WALKOUT, "GUEST_CAP": 2, "GUEST_WINDOW_S": 120}


def _shopper(email: str):
    user = shopper_create(email=email, password=PASSWORD)
    shopper_card_attach(user=user, card_token="4242424242424242")
    return user


def _world():
    store = Store.objects.create(code="corner", name="Corner shop")
    Product.objects.create(store=store, barcode="0001", name="Cola", price=Decimal("1.99"), unit_weight_g=355)
    ann, bob = _shopper("ann@example.com"), _shopper("bob@example.com")
    now = timezone.now()
    visit = Visit.objects.create(store=store, shopper=ann, state=Visit.State.SHOPPING, entered_at=now)
    old = Visit.objects.create(store=store, shopper=ann, state=Visit.State.BILLED,
                               entered_at=now - timedelta(days=1), billed_at=now - timedelta(days=1))
    receipt = Receipt.objects.create(visit=old, currency="usd", total_minor=0, issued_at=now - timedelta(days=1))
    return {"store": store, "ann": ann, "bob": bob, "visit": visit, "receipt": receipt}


def _as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- HTTP: visit, cart, receipt, pass --------------------------------------------------------------------------

@pytest.mark.django_db
def test_another_shopper_cannot_read_my_visit_cart_or_receipt_over_http():
    w = _world()
    bob = _as(w["bob"])
    for path in (f"/visits/{w['visit'].pk}/", f"/visits/receipts/{w['receipt'].pk}/"):
        assert bob.get(path).status_code == 404, path
        assert _as(w["ann"]).get(path).status_code == 200, path
    # bob's own pages never show ann's visit or receipt
    assert f"receipts/{w['receipt'].pk}/" not in bob.get("/visits/receipts/").content.decode()
    assert f'"visit": {w["visit"].pk}' not in bob.get("/visits/current/").content.decode()


@pytest.mark.django_db
def test_a_pass_is_bound_to_its_holder_and_cannot_be_re_pointed():
    w = _world()
    gate, key = gate_create(store=w["store"], name="door-1")
    token = _as(w["bob"]).post("/gates/pass/token/").json()["token"]
    data = signing.TimestampSigner(salt=PASS_SALT).unsign_object(token)
    assert data["u"] == w["bob"].pk
    forged = dict(data, u=w["ann"].pk)  # ann's id on bob's nonce, signed with the wrong key
    fake = signing.TimestampSigner(key="not-our-key", salt=PASS_SALT).sign_object(forged, compress=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Gate {key}")
    assert client.post("/gates/api/scan/", {"token": fake}, format="json").json()["reason"] == "invalid"
    # correctly signed but naming another holder than the pass's: unknown
    mixed = signing.TimestampSigner(salt=PASS_SALT).sign_object(forged, compress=True)
    assert client.post("/gates/api/scan/", {"token": mixed}, format="json").json()["reason"] == "unknown"
    assert not Visit.objects.filter(entry_pass__isnull=False).exists()


@pytest.mark.django_db
def test_anonymous_gets_no_pass_and_no_pass_page():
    _world()
    assert Client().post("/gates/pass/token/").status_code == 403
    assert Client().get("/gates/pass/").status_code == 302


# --- gate: replays, guests, exit -----------------------------------------------------------------------------

def _post(key: str, path: str, token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Gate {key}")
    return client.post(path, {"token": token}, format="json")


@pytest.mark.django_db
def test_a_replayed_pass_is_refused_at_a_second_gate_even_when_it_declared_guests():
    w = _world()
    _, key1 = gate_create(store=w["store"], name="door-1")
    _, key2 = gate_create(store=w["store"], name="door-2")
    Visit.objects.update(state=Visit.State.CLOSED)
    _, token = pass_issue(shopper=w["bob"], store=w["store"], guests=2)
    assert _post(key1, "/gates/api/scan/", token).status_code == 200
    second = _post(key2, "/gates/api/scan/", token)
    assert second.status_code == 403 and second.json()["reason"] == "replayed"
    exit_elsewhere = _post(key2, "/gates/api/exit/", token)
    assert exit_elsewhere.status_code == 403 and exit_elsewhere.json()["reason"] == "replayed"
    assert Visit.objects.filter(shopper=w["bob"]).count() == 1


@pytest.mark.django_db
def test_an_exit_pass_is_single_use_too():
    w = _world()
    _, key1 = gate_create(store=w["store"], name="door-1")
    _, key2 = gate_create(store=w["store"], name="door-2")
    _, entry = pass_issue(shopper=w["bob"], store=w["store"])
    assert _post(key1, "/gates/api/scan/", entry).status_code == 200
    _, leave = pass_issue(shopper=w["bob"], store=w["store"])
    assert _post(key1, "/gates/api/exit/", leave).status_code == 200
    again = _post(key2, "/gates/api/exit/", leave)
    assert again.status_code == 403 and again.json()["reason"] == "replayed"


# --- WebSockets ----------------------------------------------------------------------------------------------

@database_sync_to_async
def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def _connect(path: str, user=None, origin: bytes | None = ORIGIN) -> tuple[bool, WebsocketCommunicator]:
    headers = [(b"origin", origin)] if origin is not None else []
    if user is not None:
        headers.append((b"cookie", await _cookie(user)))
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect()
    return connected, comm


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["cart", "shopper", "dashboard"])
@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", b"http://127.0.0.1.evil.example", None])
async def test_a_foreign_origin_is_refused_on_every_websocket_route(route, origin):
    w = await database_sync_to_async(_world)()
    path = {"cart": f"/ws/visits/{w['visit'].pk}/cart/", "shopper": "/ws/shopper/", "dashboard": "/ws/dashboard/"}[route]
    who = w["ann"]
    if route == "dashboard":
        who = await database_sync_to_async(get_user_model().objects.create_user)("boss", is_staff=True)
    connected, comm = await _connect(path, user=who, origin=origin)
    assert not connected
    await comm.disconnect()
    connected, comm = await _connect(path, user=who)  # the same session from our own origin is welcome
    assert connected
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_another_shopper_cannot_subscribe_to_my_cart_nor_hear_it_on_their_own_socket():
    w = await database_sync_to_async(_world)()
    for path in (f"/ws/visits/{w['visit'].pk}/cart/", "/ws/dashboard/"):
        connected, comm = await _connect(path, user=w["bob"])
        assert not connected, path
        await comm.disconnect()
    connected, bobs = await _connect("/ws/shopper/", user=w["bob"])
    assert connected and await bobs.receive_json_from(timeout=5) == {"type": "waiting"}
    connected, anns = await _connect("/ws/shopper/", user=w["ann"])
    assert connected and (await anns.receive_json_from(timeout=5))["visit"] == w["visit"].pk

    def take():
        product = Product.objects.get()
        cart_apply(change=CartChange(visit=w["visit"], product=product, quantity=1, confidence=0.9, evidence={}),
                   shelf_event=None)

    await database_sync_to_async(take)()
    got = await anns.receive_json_from(timeout=5)
    assert got["visit"] == w["visit"].pk and got["total_minor"] == 199
    assert await bobs.receive_nothing(timeout=0.3)
    await bobs.send_json_to({"type": "resync"})
    assert await bobs.receive_json_from(timeout=5) == {"type": "waiting"}
    await anns.disconnect()
    await bobs.disconnect()


# --- CSRF on every form --------------------------------------------------------------------------------------

#: POST routes exempt from CSRF by design: the Stripe webhook (no cookies; the payload is signed). Device APIs that
#: take no session at all (gate scanners, shelf controllers: ``Authorization: <scheme> <key>``) answer 401 even to a
#: logged-in browser, which the test accepts: a session cookie gets nothing done there.
CSRF_EXEMPT_BY_DESIGN = {"billing:stripe-webhook"}


_SAMPLES = {"int": "1", "str": "x", "slug": "x", "path": "x/y", "uuid": "00000000-0000-0000-0000-000000000000"}


def _routes(resolver: URLResolver | None = None, prefix: str = "", namespace: str = ""):
    """(name, path) for every route made of ``path()`` patterns, with a sample value for each converter."""
    for p in (resolver or get_resolver()).url_patterns:
        if not isinstance(p.pattern, RoutePattern):
            continue  # regex routes (the admin's app index): covered by the admin's own CSRF protection
        route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: _SAMPLES.get(m.group(1) or "str", "x"), str(p.pattern))
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _routes(p, prefix + route, ns)
        elif isinstance(p, URLPattern):
            yield (f"{namespace}{p.name}" if p.name else prefix + route), "/" + prefix + route


@pytest.mark.django_db
def test_every_post_route_checks_csrf():
    w = _world()
    admin = get_user_model().objects.create_superuser("root@example.com", "root@example.com", PASSWORD)
    checked = []
    for name, path in _routes():
        if name in CSRF_EXEMPT_BY_DESIGN:
            continue
        for who in (admin, w["ann"], None):
            client = Client(enforce_csrf_checks=True)
            if who is not None:
                client.force_login(who)
            response = client.post(path, {"anything": "1"})
            body = response.content.decode(errors="replace")
            if who is None and response.status_code in (302, 403) or response.status_code in (401, 405):
                continue  # refused or sent to log in, a device API (no session), or not a POST route: nothing done
            assert response.status_code == 403 and "CSRF" in body, (name, path, who, response.status_code)
        checked.append(name)
    for must in ("accounts:signup", "accounts:login", "accounts:logout", "accounts:card_add", "accounts:card_attach",
                 "accounts:delete", "accounts:password_reset", "gates:pass_token", "gates:api_staff_scan",
                 "carts:dispute_open", "carts:dispute_decide", "dashboard:review_resolve", "dashboard:live_replay"):
        assert must in checked, must
    assert Visit.objects.count() == 2 and not get_user_model().objects.filter(username="x").exists()
