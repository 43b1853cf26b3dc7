"""The shopper's entry pass: the page (QR as inline SVG) and the rotating token endpoint."""
from __future__ import annotations

import re

import pytest
from django.core import signing
from django.test import Client
from rest_framework.test import APIClient

from store.accounts.payment import shopper_card_attach
from store.accounts.services import shopper_create
from store.gates.models import EntryPass, Visit
from store.gates.services import PASS_SALT, gate_create, pass_qr_svg, visit_exit
from store.layout.models import Store

PAGE = "/gates/pass/"
TOKEN = "/gates/pass/token/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


def make_shopper(email: str = "ann@example.com", card: str | None = "4242424242424242"):
    user = shopper_create(email=email, password="a long enough password 1")
    if card:
        shopper_card_attach(user=user, card_token=card)
    return user


@pytest.fixture
def store():
    return Store.objects.create(code="corner", name="Corner shop")


def nonce_of(token: str) -> str:
    return signing.TimestampSigner(salt=PASS_SALT).unsign_object(token)["n"]


def test_pass_page_requires_login(store, client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/gates/pass/")
    assert not EntryPass.objects.exists()


def test_pass_page_refuses_without_a_card(store, client):
    client.force_login(make_shopper(card=None))
    response = client.get(PAGE)
    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-reason="no_payment_method"' in html
    assert 'href="/accounts/card/?next=/gates/pass/"' in html
    assert "<svg" not in html
    assert not EntryPass.objects.exists()


def test_pass_page_shows_a_fresh_qr_code(store, client, settings):
    settings.WALKOUT = {**settings.WALKOUT, "PASS_MAX_AGE_S": 60}
    user = make_shopper()
    client.force_login(user)
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-cache" in response["Cache-Control"]
    html = response.content.decode()
    entry_pass = EntryPass.objects.get()
    assert entry_pass.shopper == user and entry_pass.store == store and entry_pass.used_at is None
    assert "Corner shop" in html
    assert re.search(r'<svg viewBox="0 0 \d+ \d+" class="pass-qr">', html)
    assert "brightness" in html
    assert 'id="seconds">59<' in html  # countdown starts at the pass lifetime less the timestamp's 1 s resolution
    assert '"refresh_in_s": 45' in html


def test_store_choice_with_several_stores(store, client):
    Store.objects.create(code="uptown", name="Uptown")
    client.force_login(make_shopper())
    choose = client.get(PAGE)
    assert choose.status_code == 200
    assert 'href="/gates/pass/?store=corner"' in choose.content.decode()
    assert 'href="/gates/pass/?store=uptown"' in choose.content.decode()
    assert not EntryPass.objects.exists()
    assert client.get(PAGE + "?store=nowhere").status_code == 404
    chosen = client.get(PAGE + "?store=uptown")
    assert chosen.status_code == 200
    assert EntryPass.objects.get().store.code == "uptown"


def test_token_endpoint_requires_login_and_card(store):
    anon = APIClient()
    assert anon.post(TOKEN, {}, format="json").status_code == 403
    api = APIClient()
    api.force_login(make_shopper(card=None))
    response = api.post(TOKEN, {}, format="json")
    assert response.status_code == 403
    assert response.json()["reason"] == "no_payment_method"
    assert response.json()["card_url"] == "/accounts/card/"
    assert not EntryPass.objects.exists()


def test_token_endpoint_is_post_only(store):
    api = APIClient()
    api.force_login(make_shopper())
    assert api.get(TOKEN).status_code == 405
    assert not EntryPass.objects.exists()


def test_token_rotates_each_pass_valid_once(store):
    """Two calls → two different nonces; both passes admit, each only once."""
    gate1, key1 = gate_create(store=store, name="door-1")
    _, key2 = gate_create(store=store, name="door-2")
    user = make_shopper()
    api = APIClient()
    api.force_login(user)
    first = api.post(TOKEN, {}, format="json")
    second = api.post(TOKEN, {"store": "corner"}, format="json")
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert a["store"] == {"code": "corner", "name": "Corner shop"}
    assert a["token"] != b["token"]
    assert nonce_of(a["token"]) != nonce_of(b["token"])
    assert {p.nonce for p in EntryPass.objects.all()} == {nonce_of(a["token"]), nonce_of(b["token"])}
    assert a["svg"] == pass_qr_svg(token=a["token"]) and a["svg"] != b["svg"]
    assert a["expires_in_s"] == a["max_age_s"] - 1 and 0 < a["refresh_in_s"] < a["expires_in_s"]
    assert second["Cache-Control"] == "no-store"

    gate = APIClient()
    gate.credentials(HTTP_AUTHORIZATION=f"Gate {key1}")
    other_gate = APIClient()
    other_gate.credentials(HTTP_AUTHORIZATION=f"Gate {key2}")
    # the older pass is still valid until it expires, and each is single use
    assert gate.post("/gates/api/scan/", {"token": a["token"]}, format="json").status_code == 200
    assert other_gate.post("/gates/api/scan/", {"token": a["token"]}, format="json").json()["reason"] == "replayed"
    assert Visit.objects.count() == 1
    # the shopper is inside: a second fresh pass opens no second visit (and is not spent)
    inside = gate.post("/gates/api/scan/", {"token": b["token"]}, format="json")
    assert inside.status_code == 403 and inside.json()["reason"] == "already_inside", inside.json()
    assert "already inside" in inside.json()["message"]
    assert Visit.objects.count() == 1
    visit_exit(visit=Visit.objects.get())
    assert gate.post("/gates/api/scan/", {"token": b["token"]}, format="json").status_code == 200
    assert gate.post("/gates/api/scan/", {"token": b["token"]}, format="json").json()["reason"] == "replayed"
    assert Visit.objects.count() == 2


def test_token_endpoint_enforces_csrf(store):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_shopper())
    refused = client.post(TOKEN, {}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert not EntryPass.objects.exists()
    page = client.get(PAGE)  # issues one pass and the CSRF token the page's JS sends back
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.content.decode()).group(1)
    ok = client.post(TOKEN, {}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert ok.status_code == 200
    assert EntryPass.objects.count() == 2


def test_token_endpoint_bad_store(store):
    Store.objects.create(code="uptown", name="Uptown")
    api = APIClient()
    api.force_login(make_shopper())
    assert api.post(TOKEN, {}, format="json").json()["reason"] == "choose_store"
    assert api.post(TOKEN, {"store": "nowhere"}, format="json").json()["reason"] == "unknown_store"
    assert api.post(TOKEN, {"store": ["corner"]}, format="json").status_code == 400
    assert not EntryPass.objects.exists()
    assert api.post(TOKEN, {"store": "uptown"}, format="json").json()["store"]["code"] == "uptown"


def test_an_unlisted_store_is_never_offered(store, client):
    """Issue #11: a store with ``listed`` off (a test run's throwaway store, ``Store.listed``) is not in the choice,
    not picked as the only store, and has no pass by its code, on the page or the token endpoint."""
    Store.objects.create(code="walkout-sim", name="Simulated AiFi NanoStore", listed=False)
    client.force_login(make_shopper())
    only = client.get(PAGE)  # the one listed store: its pass straight away, no choice, no "change store" link
    assert only.status_code == 200 and EntryPass.objects.get().store == store
    assert "walkout-sim" not in only.content.decode()
    assert client.get(PAGE + "?store=walkout-sim").status_code == 404
    api = APIClient()
    api.force_login(EntryPass.objects.get().shopper)
    assert api.post(TOKEN, {"store": "walkout-sim"}, format="json").json()["reason"] == "unknown_store"
    Store.objects.create(code="uptown", name="Uptown")
    choose = client.get(PAGE).content.decode()
    assert re.findall(r'href="/gates/pass/\?store=([^"]+)"', choose) == ["corner", "uptown"]
    assert EntryPass.objects.count() == 1
