"""Password reset by email, deleting an account (anonymise when the ledger must stay), and the PWA files."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from store.accounts.models import ShopperProfile
from store.accounts.payment import shopper_card_attach
from store.accounts.services import AccountDeleteRefused, manager_create, shopper_create, shopper_delete
from store.billing.models import Receipt
from store.gates.models import EntryPass, Visit
from store.gates.services import pass_issue
from store.layout.models import Store

pytestmark = pytest.mark.django_db

User = get_user_model()
PASSWORD = "a long enough password 1"
RESET_LINK = re.compile(r"http://testserver(/accounts/password/reset/[^/\s]+/[^/\s]+/)")


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


def shopper(email: str = "ann@example.com", card: bool = True):
    user = shopper_create(email=email, password=PASSWORD)
    if card:
        shopper_card_attach(user=user, card_token="4242424242424242")
    return user


# --- password reset -------------------------------------------------------------------------------------------

def test_password_reset_by_email_link_works_once():
    shopper()
    client = Client()
    assert 'href="/accounts/password/reset/"' in client.get("/accounts/login/").content.decode()
    response = client.post("/accounts/password/reset/", {"email": "  ANN@example.com "})
    assert response.status_code == 302 and response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ann@example.com"]
    link = RESET_LINK.search(mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200 and "Choose a new password" in form.content.decode()
    set_url = form.redirect_chain[-1][0]
    weak = client.post(set_url, {"new_password1": "short", "new_password2": "short"})
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    done = client.post(set_url, {"new_password1": "a brand new password 2", "new_password2": "a brand new password 2"})
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/done/"
    assert Client().login(username="ann@example.com", password="a brand new password 2")
    assert not Client().login(username="ann@example.com", password=PASSWORD)
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()


def test_password_reset_for_an_unknown_address_says_the_same_and_sends_nothing():
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password/reset/sent/"
    assert mail.outbox == []


def test_password_reset_forms_enforce_csrf():
    shopper()
    assert Client(enforce_csrf_checks=True).post("/accounts/password/reset/",
                                                 {"email": "ann@example.com"}).status_code == 403
    assert mail.outbox == []


# --- delete account -------------------------------------------------------------------------------------------

def test_shopper_without_visits_is_deleted_outright():
    user = shopper()
    pass_issue(shopper=user, store=Store.objects.create(code="s1", name="S1"))
    client = Client()
    client.force_login(user)
    page = client.get("/accounts/delete/")
    assert page.status_code == 200 and "Receipts and payments of past visits are kept" in page.content.decode()
    wrong = client.post("/accounts/delete/", {"password": "not it", "confirm": "on"})
    assert wrong.status_code == 400 and User.objects.filter(pk=user.pk).exists()
    unticked = client.post("/accounts/delete/", {"password": PASSWORD})
    assert unticked.status_code == 400 and User.objects.filter(pk=user.pk).exists()
    done = client.post("/accounts/delete/", {"password": PASSWORD, "confirm": "on"})
    assert done.status_code == 302 and done["Location"] == "/accounts/login/"
    assert not User.objects.filter(pk=user.pk).exists()
    assert not ShopperProfile.objects.exists() and not EntryPass.objects.exists()
    assert client.get("/").status_code == 302  # logged out


def _billed_visit(user, store):
    now = timezone.now()
    visit = Visit.objects.create(store=store, shopper=user, state=Visit.State.BILLED, entered_at=now - timedelta(
        minutes=9), exited_at=now - timedelta(minutes=2), billed_at=now)
    Receipt.objects.create(visit=visit, currency="usd", total_minor=199, issued_at=now)
    return visit


def test_shopper_with_receipts_is_anonymised_and_the_ledger_stays():
    user = shopper()
    store = Store.objects.create(code="s1", name="S1")
    visit = _billed_visit(user, store)
    pass_issue(shopper=user, store=store)
    client = Client()
    client.force_login(user)
    assert client.post("/accounts/delete/", {"password": PASSWORD, "confirm": "on"}).status_code == 302
    user.refresh_from_db()
    assert user.username == f"deleted-{user.pk}" and user.email == "" and not user.is_active
    assert not user.has_usable_password()
    profile = ShopperProfile.objects.get(user=user)
    assert (profile.payment_method_ref, profile.card_brand, profile.card_last4) == ("", "", "")
    assert not EntryPass.objects.filter(shopper=user).exists()
    assert Visit.objects.get(pk=visit.pk).shopper_id == user.pk and Receipt.objects.filter(visit=visit).exists()
    assert client.get("/").status_code == 302
    assert not Client().login(username="ann@example.com", password=PASSWORD)
    # the address is free again
    shopper_create(email="ann@example.com", password=PASSWORD)


@pytest.mark.parametrize("state", ["admitted", "shopping", "exited", "under_review", "payment_failed"])
def test_delete_is_refused_while_a_visit_is_unsettled(state):
    user = shopper()
    store = Store.objects.create(code="s1", name="S1")
    Visit.objects.create(store=store, shopper=user, state=state, entered_at=timezone.now())
    with pytest.raises(AccountDeleteRefused) as exc:
        shopper_delete(user=user)
    assert exc.value.code == "open_visit"
    client = Client()
    client.force_login(user)
    response = client.post("/accounts/delete/", {"password": PASSWORD, "confirm": "on"})
    assert response.status_code == 400 and "not settled yet" in response.content.decode()
    user.refresh_from_db()
    assert user.is_active and user.email == "ann@example.com"


def test_a_manager_cannot_delete_their_account_here():
    boss = manager_create(email="boss@example.com", password=PASSWORD)
    with pytest.raises(AccountDeleteRefused) as exc:
        shopper_delete(user=boss)
    assert exc.value.code == "staff"
    assert User.objects.filter(pk=boss.pk, is_active=True).exists()


def test_delete_needs_login_and_csrf():
    user = shopper()
    assert Client().post("/accounts/delete/", {"password": PASSWORD, "confirm": "on"}).status_code == 302
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/accounts/delete/", {"password": PASSWORD, "confirm": "on"}).status_code == 403
    assert User.objects.filter(pk=user.pk).exists()


# --- PWA ------------------------------------------------------------------------------------------------------

def test_manifest_service_worker_and_icons_are_served_and_linked():
    client = Client()
    manifest = client.get("/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest["Content-Type"] == "application/manifest+json"
    data = json.loads(b"".join(manifest.streaming_content))
    assert data["display"] == "standalone" and data["start_url"] == "/"
    for icon in data["icons"]:
        response = client.get(icon["src"])
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    sw = client.get("/sw.js")
    assert sw.status_code == 200 and sw["Content-Type"].startswith("text/javascript")
    assert "no-cache" in sw["Cache-Control"]
    assert b"/gates/pass/" in b"".join(sw.streaming_content)
    assert client.get("/pwa/icon-64.png").status_code == 404
    login_page = client.get("/accounts/login/").content.decode()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in login_page
    assert 'serviceWorker.register("/sw.js")' in login_page


def test_pass_page_is_marked_for_the_offline_copy_and_the_unavailable_page_is_not():
    user = shopper()
    Store.objects.create(code="s1", name="S1")
    client = Client()
    client.force_login(user)
    page = client.get("/gates/pass/")
    assert page.status_code == 200 and page["X-Walkout-Pass"] == "1"
    assert "no-store" in page["Cache-Control"]
    nocard = Client()
    nocard.force_login(shopper("bob@example.com", card=False))
    refused = nocard.get("/gates/pass/")
    assert refused.status_code == 403 and "X-Walkout-Pass" not in refused
