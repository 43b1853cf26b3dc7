"""Gate API: ``POST /gates/api/scan/`` with ``Authorization: Gate <key>``, and the staff scanner's variant.

Passes are issued through the real services and the dummy payment provider (test cards), so an admission also
puts a real hold on the card (``payment_authorise``).
"""
from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from store.accounts.payment import shopper_card_attach
from store.accounts.services import shopper_create
from store.billing.models import PaymentAttempt
from store.gates.models import EntryPass, Visit
from store.gates.services import PASS_SALT, gate_create, pass_issue
from store.layout.models import Store

SCAN = "/gates/api/scan/"
STAFF_SCAN = "/gates/api/staff-scan/"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


def make_store(code: str = "corner", name: str = "Corner shop") -> Store:
    return Store.objects.create(code=code, name=name)


def make_shopper(email: str = "ann@example.com", card: str | None = "4242424242424242"):
    user = shopper_create(email=email, password="a long enough password 1")
    if card:
        shopper_card_attach(user=user, card_token=card)
    return user


def gate_client(api_key: str | None) -> APIClient:
    client = APIClient()
    if api_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Gate {api_key}")
    return client


def scan(api_key: str | None, token, **extra):
    return gate_client(api_key).post(SCAN, {"token": token}, format="json", **extra)


@pytest.fixture
def world(db):
    store = make_store()
    gate1, key1 = gate_create(store=store, name="door-1")
    gate2, key2 = gate_create(store=store, name="door-2")
    shopper = make_shopper()
    return {"store": store, "gate1": gate1, "key1": key1, "gate2": gate2, "key2": key2, "shopper": shopper}


def test_admits_once_and_refuses_a_replay_at_another_gate(world):
    entry_pass, token = pass_issue(shopper=world["shopper"], store=world["store"])

    first = scan(world["key1"], token)
    assert first.status_code == 200, first.content
    visit = Visit.objects.get()
    assert first.json() == {"admitted": True, "visit": visit.pk}
    assert visit.shopper == world["shopper"] and visit.state == Visit.State.ADMITTED
    entry_pass.refresh_from_db()
    assert entry_pass.used_at is not None and entry_pass.used_gate == world["gate1"]
    # the card got its hold
    assert PaymentAttempt.objects.filter(visit=visit, kind="authorise", status="succeeded").count() == 1

    second = scan(world["key2"], token)
    assert second.status_code == 403
    assert second.json()["admitted"] is False
    assert second.json()["reason"] == "replayed"
    assert second.json()["message"]
    assert Visit.objects.count() == 1


def test_refuses_an_expired_signature(world, monkeypatch):
    old = int(time.time()) - 10 * 60
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(old))
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    monkeypatch.undo()

    response = scan(world["key1"], token)
    assert response.status_code == 403
    assert response.json()["reason"] == "expired"
    assert not Visit.objects.exists()


def test_refuses_a_pass_past_its_expiry_time(world):
    entry_pass, token = pass_issue(shopper=world["shopper"], store=world["store"])
    EntryPass.objects.filter(pk=entry_pass.pk).update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    response = scan(world["key1"], token)
    assert response.status_code == 403 and response.json()["reason"] == "expired"


def test_short_max_age_setting_expires_passes(world, settings):
    settings.WALKOUT = {**settings.WALKOUT, "PASS_MAX_AGE_S": 1}
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    time.sleep(2.1)
    response = scan(world["key1"], token)
    assert response.json()["reason"] == "expired"


@pytest.mark.parametrize("kind", ["garbage", "forged", "unknown_nonce", "other_user"])
def test_refuses_unknown_and_forged_tokens(world, kind):
    entry_pass, good = pass_issue(shopper=world["shopper"], store=world["store"])
    payload = {"n": entry_pass.nonce, "s": world["store"].code, "u": world["shopper"].pk}
    if kind == "garbage":
        token, reason = "not a pass at all", "invalid"
    elif kind == "forged":  # right shape, signed with a key that is not ours
        token = signing.TimestampSigner(key="attacker-key", salt=PASS_SALT).sign_object(payload, compress=True)
        reason = "invalid"
    elif kind == "unknown_nonce":
        token = signing.TimestampSigner(salt=PASS_SALT).sign_object({**payload, "n": "no-such-nonce"}, compress=True)
        reason = "unknown"
    else:  # a real nonce claimed for someone else
        other = make_shopper("bob@example.com")
        token = signing.TimestampSigner(salt=PASS_SALT).sign_object({**payload, "u": other.pk}, compress=True)
        reason = "unknown"
    response = scan(world["key1"], token)
    assert response.status_code == 403, response.content
    assert response.json() == {"admitted": False, "reason": reason, "message": response.json()["message"]}
    assert not Visit.objects.exists()
    # the real pass is untouched by the refused attempts
    assert scan(world["key1"], good).status_code == 200


def test_no_card_on_file_is_refused(world):
    carless = make_shopper("carl@example.com", card=None)
    _, token = pass_issue(shopper=carless, store=world["store"])
    response = scan(world["key1"], token)
    assert response.status_code == 403
    assert response.json()["reason"] == "no_payment_method"
    assert not Visit.objects.exists()


def test_card_declined_at_the_hold_is_refused(world):
    # 4000000000000341 is saved fine, but every payment on it is declined.
    declined = make_shopper("dee@example.com", card="4000000000000341")
    _, token = pass_issue(shopper=declined, store=world["store"])
    response = scan(world["key1"], token)
    assert response.status_code == 403
    assert response.json()["reason"] == "payment_declined"
    assert Visit.objects.get().state == Visit.State.REFUSED


def test_foreign_store_gate_is_refused(world):
    other_store = make_store("uptown", "Uptown")
    _, other_key = gate_create(store=other_store, name="door-1")
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    response = scan(other_key, token)
    assert response.status_code == 403 and response.json()["reason"] == "wrong_store"
    # still good at its own store
    assert scan(world["key1"], token).status_code == 200


@pytest.mark.parametrize("header", [None, "Gate", "Gate wrong-key", "Bearer something", "Gate a b"])
def test_unauthenticated_gate_gets_401(world, header):
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    client = APIClient()
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(SCAN, {"token": token}, format="json", **extra)
    assert response.status_code == 401, (header, response.content)
    assert response["WWW-Authenticate"].startswith("Gate")
    assert not Visit.objects.exists()
    assert EntryPass.objects.get().used_at is None


def test_inactive_gate_gets_401(world):
    world["gate1"].active = False
    world["gate1"].save()
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    assert scan(world["key1"], token).status_code == 401


def test_a_logged_in_user_is_not_a_gate(world):
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    client = APIClient()
    client.force_login(world["shopper"])
    assert client.post(SCAN, {"token": token}, format="json").status_code == 401


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": "x" * 5000}, {"token": ["a"]}])
def test_bad_body_is_400_with_reason(world, body):
    response = gate_client(world["key1"]).post(SCAN, body, format="json")
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_request"
    assert "token" in response.json()["errors"]


# --- staff scanner ----------------------------------------------------------------------------------------------

@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(username="staff@example.com", email="staff@example.com",
                                                password="pw", is_staff=True)


def test_staff_scan_admits_at_chosen_gate(world, staff):
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    client = APIClient()
    client.force_login(staff)
    response = client.post(STAFF_SCAN, {"gate": world["gate2"].pk, "token": token}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["admitted"] is True
    assert response.json()["shopper"] == "ann@example.com"
    assert EntryPass.objects.get().used_gate == world["gate2"]
    again = client.post(STAFF_SCAN, {"gate": world["gate1"].pk, "token": token}, format="json")
    assert again.status_code == 403 and again.json()["reason"] == "replayed"


def test_staff_scan_unknown_gate(world, staff):
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    client = APIClient()
    client.force_login(staff)
    response = client.post(STAFF_SCAN, {"gate": 99999, "token": token}, format="json")
    assert response.status_code == 400 and response.json()["reason"] == "unknown_gate"
    assert EntryPass.objects.get().used_at is None


def test_staff_scan_refuses_shoppers_anonymous_and_gate_keys(world):
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    body = {"gate": world["gate1"].pk, "token": token}
    assert APIClient().post(STAFF_SCAN, body, format="json").status_code == 403
    shopper_client = APIClient()
    shopper_client.force_login(world["shopper"])
    assert shopper_client.post(STAFF_SCAN, body, format="json").status_code == 403
    assert gate_client(world["key1"]).post(STAFF_SCAN, body, format="json").status_code == 403
    assert EntryPass.objects.get().used_at is None


def test_staff_scan_enforces_csrf(world, staff):
    _, token = pass_issue(shopper=world["shopper"], store=world["store"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    body = {"gate": world["gate1"].pk, "token": token}
    response = client.post(STAFF_SCAN, body, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert EntryPass.objects.get().used_at is None
    page = client.get("/gates/scanner/")  # the page hands out the CSRF token
    csrf = page.cookies["csrftoken"].value
    ok = client.post(STAFF_SCAN, body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert ok.status_code == 200, ok.content


def test_scanner_page_is_staff_only(world, staff, client):
    response = client.get("/gates/scanner/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(world["shopper"])
    assert client.get("/gates/scanner/").status_code == 403
    client.force_login(staff)
    page = client.get("/gates/scanner/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "BarcodeDetector" in html and 'id="token"' in html
    assert f'value="{world["gate1"].pk}"' in html and f'value="{world["gate2"].pk}"' in html


# --- two scans at once ------------------------------------------------------------------------------------------

class _RacingTransaction:
    """Stands in for ``django.db.transaction`` inside ``store.gates.services`` during the race test.

    The first ``atomic()`` of each request (the block that consumes the pass) waits at a barrier until the other
    request has got there too: both have then read the pass and found it unused. On SQLite each request then takes
    ``write_lock`` and keeps it to its end, because SQLite has one writer at a time and its shared-cache in-memory
    test database answers a concurrent writer "database table is locked" at once instead of waiting. With a
    server database (PostgreSQL) there is no lock and the two conditional UPDATEs really race on the row lock.
    """

    def __init__(self, real, barrier: threading.Barrier, write_lock: threading.Lock | None):
        self._real, self._barrier, self._write_lock = real, barrier, write_lock
        self.local = threading.local()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def atomic(self, *args, **kwargs):
        if not getattr(self.local, "raced", False):
            self.local.raced = True
            self._barrier.wait()
            if self._write_lock is not None:
                self._write_lock.acquire()
                self.local.holds_lock = True
        return self._real.atomic(*args, **kwargs)

    def release(self) -> None:
        if getattr(self.local, "holds_lock", False):
            self.local.holds_lock = False
            self._write_lock.release()


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_scans_admit_once(monkeypatch):
    """Two gates scan one pass at the same moment: exactly one admission, the other is "replayed".

    Both requests go through the whole API (gate authentication, signature, pass and card checks) in two threads,
    each with its own database connection, and meet at a barrier just before consuming the pass (see
    :class:`_RacingTransaction`; SQLite serialises the writes from there on, which this test documents).
    """
    from store.gates import services

    store = make_store()
    _, key1 = gate_create(store=store, name="door-1")
    _, key2 = gate_create(store=store, name="door-2")
    shopper = make_shopper()
    _, token = pass_issue(shopper=shopper, store=store)

    racing = _RacingTransaction(services.transaction, threading.Barrier(2, timeout=20),
                                threading.Lock() if connection.vendor == "sqlite" else None)
    monkeypatch.setattr(services, "transaction", racing)
    results: list = [None, None]

    def run(i: int, key: str) -> None:
        try:
            results[i] = scan(key, token)
        except Exception as exc:  # reported by the assertion below
            results[i] = exc
        finally:
            racing.release()
            connection.close()

    threads = [threading.Thread(target=run, args=(i, k)) for i, k in enumerate([key1, key2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None and not isinstance(r, Exception) for r in results), results
    assert sorted(r.status_code for r in results) == [200, 403], [r.content for r in results]
    refused = next(r for r in results if r.status_code == 403)
    assert refused.json()["reason"] == "replayed"
    assert Visit.objects.count() == 1
    assert EntryPass.objects.get().used_at is not None
