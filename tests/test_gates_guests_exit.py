""""Bring guests" (the same pass scanned again at the same gate admits declared party members, billed to the
holder's card) and the optional exit scan (``POST /gates/api/exit/``: exit, then checkout and receipt)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from carts.models import CartEvent
from carts.services.ledger import CartChange, cart_apply
from store.accounts.payment import shopper_card_attach
from store.accounts.services import manager_create, shopper_create
from store.billing.models import PaymentAttempt, Receipt
from store.gates.models import EntryPass, Visit
from store.gates.services import gate_create, pass_issue
from store.inventory.models import Product
from store.layout.models import Store

pytestmark = pytest.mark.django_db

SCAN, EXIT = "/gates/api/scan/", "/gates/api/exit/"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.WALKOUT = {**settings.WALKOUT, "GUEST_WINDOW_S": 120, "GUEST_CAP": 3}


@pytest.fixture
def world():
    store = Store.objects.create(code="corner", name="Corner shop")
    _, key1 = gate_create(store=store, name="door-1")
    _, key2 = gate_create(store=store, name="door-2")
    user = shopper_create(email="ann@example.com", password="a long enough password 1")
    shopper_card_attach(user=user, card_token="4242424242424242")
    cola = Product.objects.create(store=store, barcode="0001", name="Cola", price=Decimal("1.99"), unit_weight_g=355)
    return {"store": store, "key1": key1, "key2": key2, "user": user, "cola": cola}


def post(url: str, key: str, token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Gate {key}")
    return client.post(url, {"token": token}, format="json")


# --- guests -----------------------------------------------------------------------------------------------------

def test_declared_guests_are_admitted_up_to_their_number_and_billed_to_the_lead(world):
    _, token = pass_issue(shopper=world["user"], store=world["store"], guests=2)
    lead = post(SCAN, world["key1"], token)
    assert lead.status_code == 200 and "guest_of" not in lead.json()
    guests = [post(SCAN, world["key1"], token) for _ in range(2)]
    assert [g.status_code for g in guests] == [200, 200]
    assert {g.json()["guest_of"] for g in guests} == {lead.json()["visit"]}
    full = post(SCAN, world["key1"], token)
    assert full.status_code == 403 and full.json()["reason"] == "party_full"
    visits = Visit.objects.order_by("pk")
    assert [v.party_lead_id for v in visits] == [None, lead.json()["visit"], lead.json()["visit"]]
    assert all(v.shopper_id == world["user"].pk for v in visits)
    holds = PaymentAttempt.objects.filter(kind=PaymentAttempt.Kind.AUTHORISE, status="succeeded")
    assert holds.count() == 3  # each guest's hold is on the holder's card (the dummy customer of the lead)
    assert EntryPass.objects.get().guests_admitted == 2


def test_a_pass_without_guests_is_refused_as_replayed_at_the_same_gate(world):
    _, token = pass_issue(shopper=world["user"], store=world["store"])
    assert post(SCAN, world["key1"], token).status_code == 200
    again = post(SCAN, world["key1"], token)
    assert again.status_code == 403 and again.json()["reason"] == "replayed"
    assert Visit.objects.count() == 1


def test_guests_only_at_the_same_gate_within_the_window(world):
    _, token = pass_issue(shopper=world["user"], store=world["store"], guests=2)
    assert post(SCAN, world["key1"], token).status_code == 200
    other_gate = post(SCAN, world["key2"], token)
    assert other_gate.status_code == 403 and other_gate.json()["reason"] == "replayed"
    EntryPass.objects.update(used_at=timezone.now() - timedelta(seconds=121))
    late = post(SCAN, world["key1"], token)
    assert late.status_code == 403 and late.json()["reason"] == "replayed"
    assert Visit.objects.count() == 1


def test_guests_cap_and_switch_off(world, settings):
    entry_pass, _ = pass_issue(shopper=world["user"], store=world["store"], guests=50)
    assert entry_pass.guests == 3  # clamped to GUEST_CAP
    settings.WALKOUT = {**settings.WALKOUT, "GUEST_CAP": 0}
    _, token = pass_issue(shopper=world["user"], store=world["store"], guests=2)
    assert post(SCAN, world["key1"], token).status_code == 200
    assert post(SCAN, world["key1"], token).json()["reason"] == "replayed"


def test_no_guest_once_the_lead_has_left(world):
    _, token = pass_issue(shopper=world["user"], store=world["store"], guests=1)
    lead = post(SCAN, world["key1"], token).json()["visit"]
    Visit.objects.filter(pk=lead).update(state=Visit.State.EXITED)
    assert post(SCAN, world["key1"], token).json()["reason"] == "replayed"


def test_pass_token_endpoint_takes_the_party_size(world):
    client = Client()
    client.force_login(world["user"])
    ok = client.post("/gates/pass/token/", {"guests": 2})
    assert ok.status_code == 200 and ok.json()["guests"] == 2
    assert EntryPass.objects.get(pk=ok.json()["pass_id"]).guests == 2
    for bad in ("-1", "many", "100"):
        assert client.post("/gates/pass/token/", {"guests": bad}).status_code == 400
    refused = client.post("/gates/pass/token/", {"guests": "100"}).json()
    assert refused["reason"] == "bad_request" and refused["message"].endswith("from 0 to 99")
    page = client.get("/gates/pass/").content.decode()
    assert 'id="guests"' in page and 'id="fullscreen"' in page


def test_pass_token_takes_guests_from_the_query_string_and_refuses_bad_values_both_ways(world):
    client = Client()
    client.force_login(world["user"])
    ok = client.post("/gates/pass/token/?guests=2")
    assert ok.status_code == 200 and ok.json()["guests"] == 2
    for bad in ("-3", "abc", "2.5", "99999999999999999999", "true"):
        assert client.post(f"/gates/pass/token/?guests={bad}").status_code == 400, bad
    for bad in (-3, "abc", 2.5, 99999999999999999999, True, [1]):
        answer = client.post("/gates/pass/token/", {"guests": bad}, content_type="application/json")
        assert answer.status_code == 400, bad
    json_ok = client.post("/gates/pass/token/", {"guests": 1}, content_type="application/json")
    assert json_ok.status_code == 200 and json_ok.json()["guests"] == 1


# --- exit scan ---------------------------------------------------------------------------------------------------

def test_exit_scan_exits_and_bills_the_visit_and_its_guests(world, django_capture_on_commit_callbacks, mailoutbox):
    _, token = pass_issue(shopper=world["user"], store=world["store"], guests=1)
    lead = post(SCAN, world["key1"], token).json()["visit"]
    guest = post(SCAN, world["key1"], token).json()["visit"]
    cart_apply(change=CartChange(visit=Visit.objects.get(pk=guest), product=world["cola"], quantity=2,
                                 confidence=0.9, evidence={}), shelf_event=None)
    _, exit_token = pass_issue(shopper=world["user"], store=world["store"])
    with django_capture_on_commit_callbacks(execute=True):
        out = post(EXIT, world["key2"], exit_token)
    assert out.status_code == 200 and out.json() == {"exited": True, "visits": [lead, guest]}
    states = dict(Visit.objects.values_list("pk", "state"))
    assert states == {lead: "billed", guest: "billed"}
    guest_receipt = Receipt.objects.get(visit_id=guest)
    assert guest_receipt.total_minor == 398
    assert PaymentAttempt.objects.filter(visit_id=guest, kind="capture", amount_minor=398, status="succeeded").exists()
    # the email copies go to the account that pays
    assert sorted(m.to[0] for m in mailoutbox) == ["ann@example.com", "ann@example.com"]
    assert any("2 × Cola" in m.body and "$3.98" in m.body for m in mailoutbox)
    assert CartEvent.objects.count() == 1


def test_exit_scan_refusals(world):
    _, token = pass_issue(shopper=world["user"], store=world["store"])
    nobody = post(EXIT, world["key1"], token)
    assert nobody.status_code == 403 and nobody.json()["reason"] == "no_visit"
    # nothing happened, so the pass is not spent: it still gets its holder in, once; then it is spent for exits too
    assert post(SCAN, world["key1"], token).status_code == 200
    assert post(EXIT, world["key1"], token).json()["reason"] == "replayed"
    assert Visit.objects.get().state == Visit.State.ADMITTED
    assert post(EXIT, world["key1"], "garbage").json()["reason"] == "invalid"
    assert APIClient().post(EXIT, {"token": token}, format="json").status_code == 401
    bad = post(EXIT, world["key1"], "")
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_request"
    assert bad.json()["exited"] is False and "admitted" not in bad.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Gate {world['key1']}")
    old = client.post(EXIT, {"token": token, "t": 1.0}, format="json").json()
    assert old["reason"] == "bad_request" and old["exited"] is False and "admitted" not in old


def test_staff_scanner_can_scan_exits(world):
    boss = manager_create(email="boss@example.com", password="a long enough password 1")
    client = APIClient()
    client.force_login(boss)
    gate_id = world["store"].gates.get(name="door-1").pk
    _, token = pass_issue(shopper=world["user"], store=world["store"])
    assert client.post("/gates/api/staff-scan/", {"gate": gate_id, "token": token}, format="json").status_code == 200
    _, token2 = pass_issue(shopper=world["user"], store=world["store"])
    out = client.post("/gates/api/staff-scan/", {"gate": gate_id, "token": token2, "direction": "exit"}, format="json")
    assert out.status_code == 200 and out.json()["exited"]
    assert client.post("/gates/api/staff-scan/", {"gate": gate_id, "token": token2, "direction": "sideways"},
                       format="json").status_code == 400
    nowhere = client.post("/gates/api/staff-scan/", {"gate": 999_999, "token": token2, "direction": "exit"},
                          format="json").json()
    assert nowhere["reason"] == "unknown_gate" and nowhere["exited"] is False
