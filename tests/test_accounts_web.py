"""Shopper accounts: sign-up, log-in/out, home page, the card on file, CSRF; and the account services."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from store.accounts.models import ShopperProfile
from store.accounts.payment import shopper_card_attach
from store.accounts.services import manager_create, shopper_create

pytestmark = pytest.mark.django_db

User = get_user_model()
PASSWORD = "a long enough password 1"
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


def csrf_of(response) -> str:
    return CSRF_RE.search(response.content.decode()).group(1)


def signup(client: Client, email: str, password: str = PASSWORD, password2: str | None = None, csrf: str = ""):
    data = {"email": email, "password1": password, "password2": password if password2 is None else password2}
    if csrf:
        data["csrfmiddlewaretoken"] = csrf
    return client.post("/accounts/signup/", data)


# --- sign up, log in, log out -------------------------------------------------------------------------------------

def test_signup_login_logout_flow():
    client = Client(enforce_csrf_checks=True)
    assert client.get("/").status_code == 302  # home needs a login
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    response = signup(client, "Ann@Example.com", csrf=csrf_of(page))
    assert response.status_code == 302 and response["Location"] == "/accounts/card/"
    user = User.objects.get()
    assert user.username == user.email == "ann@example.com"
    assert not user.is_staff and ShopperProfile.objects.filter(user=user).exists()
    home = client.get("/")
    assert home.status_code == 200 and b"ann@example.com" in home.content  # logged in by the sign-up

    logout_csrf = csrf_of(home)
    assert client.get("/accounts/logout/").status_code == 405  # log out by POST only
    out = client.post("/accounts/logout/", {"csrfmiddlewaretoken": logout_csrf})
    assert out.status_code == 302
    assert client.get("/").status_code == 302

    login_page = client.get("/accounts/login/")
    bad = client.post("/accounts/login/", {"username": "ann@example.com", "password": "wrong",
                                           "csrfmiddlewaretoken": csrf_of(login_page)})
    assert bad.status_code == 200 and b"correct" in bad.content  # Django's "Please enter a correct …"
    good = client.post("/accounts/login/", {"username": "ANN@example.com ", "password": PASSWORD,
                                            "csrfmiddlewaretoken": csrf_of(bad), "next": "/gates/pass/"})
    assert good.status_code == 302 and good["Location"] == "/gates/pass/"
    assert client.get("/").status_code == 200


def test_login_does_not_redirect_off_site():
    shopper_create(email="ann@example.com", password=PASSWORD)
    client = Client()
    response = client.post("/accounts/login/", {"username": "ann@example.com", "password": PASSWORD,
                                                "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.parametrize("email,password,password2,field", [
    ("not-an-email", PASSWORD, None, "email"),
    ("ann@example.com", "short", None, "password1"),
    ("ann@example.com", "password", None, "password1"),  # too common
    ("ann@example.com", PASSWORD, "another password 2", "password2"),
])
def test_signup_rejects_bad_input(email, password, password2, field):
    client = Client()
    response = signup(client, email, password, password2)
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not User.objects.exists()


def test_signup_rejects_a_taken_email_in_any_case():
    shopper_create(email="ann@example.com", password=PASSWORD)
    response = signup(Client(), "ANN@example.COM")
    assert response.status_code == 400
    assert "already exists" in str(response.context["form"].errors["email"])
    assert User.objects.count() == 1


def test_forms_enforce_csrf():
    shopper_create(email="ann@example.com", password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    assert signup(client, "bob@example.com").status_code == 403
    assert not User.objects.filter(username="bob@example.com").exists()
    login = client.post("/accounts/login/", {"username": "ann@example.com", "password": PASSWORD})
    assert login.status_code == 403
    client.force_login(User.objects.get())
    card = client.post("/accounts/card/", {"number": "4242424242424242", "expiry": "12/40", "cvc": "123"})
    assert card.status_code == 403
    assert not ShopperProfile.objects.get().has_payment_method
    assert client.post("/accounts/logout/").status_code == 403
    assert client.get("/").status_code == 200  # still logged in


# --- home and card --------------------------------------------------------------------------------------------

def test_home_without_card_links_to_add_card(client):
    client.force_login(shopper_create(email="ann@example.com", password=PASSWORD))
    html = client.get("/").content.decode()
    assert 'id="no-card"' in html and 'href="/accounts/card/"' in html
    for link in ("/gates/pass/", "/visits/current/", "/visits/receipts/"):
        assert f'href="{link}"' in html
    assert "/gates/scanner/" not in html


def test_add_card_accepted(client):
    user = shopper_create(email="ann@example.com", password=PASSWORD)
    client.force_login(user)
    page = client.get("/accounts/card/")
    assert page.status_code == 200 and b"4242 4242 4242 4242" in page.content
    response = client.post("/accounts/card/", {"number": "4242 4242 4242 4242", "expiry": "12/40", "cvc": "123",
                                               "next": "/gates/pass/"})
    assert response.status_code == 302 and response["Location"] == "/gates/pass/"
    profile = ShopperProfile.objects.get(user=user)
    assert (profile.provider, profile.card_brand, profile.card_last4) == ("dummy", "visa", "4242")
    assert profile.customer_ref.startswith("dummy_cus_") and profile.payment_method_ref.startswith("dummy_pm_")
    stored = " ".join(str(v) for v in ShopperProfile.objects.filter(user=user).values().get().values())
    assert "4242424242424242" not in stored
    html = client.get("/").content.decode()
    assert 'id="card-on-file"' in html and "Visa •••• 4242" in html


def test_add_card_declined_keeps_previous_card(client):
    user = shopper_create(email="ann@example.com", password=PASSWORD)
    shopper_card_attach(user=user, card_token="5555555555554444")
    client.force_login(user)
    response = client.post("/accounts/card/", {"number": "4000000000000002", "expiry": "12/40", "cvc": "123"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Card not saved" in html and "declined" in html
    assert "4000000000000002" not in html  # the number is not echoed back
    profile = ShopperProfile.objects.get(user=user)
    assert (profile.card_brand, profile.card_last4) == ("mastercard", "4444")


@pytest.mark.parametrize("data,field", [
    ({"number": "4242424242424241", "expiry": "12/40", "cvc": "123"}, "number"),  # Luhn
    ({"number": "4242424242424242", "expiry": "01/20", "cvc": "123"}, "expiry"),  # expired
    ({"number": "4242424242424242", "expiry": "13/40", "cvc": "123"}, "expiry"),
    ({"number": "4242424242424242", "expiry": "12/40", "cvc": "12"}, "cvc"),
])
def test_add_card_rejects_bad_input(client, data, field):
    user = shopper_create(email="ann@example.com", password=PASSWORD)
    client.force_login(user)
    response = client.post("/accounts/card/", data)
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not ShopperProfile.objects.get(user=user).has_payment_method


def test_add_card_requires_login(client):
    response = client.get("/accounts/card/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_add_card_never_redirects_off_site(client):
    client.force_login(shopper_create(email="ann@example.com", password=PASSWORD))
    response = client.post("/accounts/card/", {"number": "4242424242424242", "expiry": "12/40", "cvc": "123",
                                               "next": "//evil.example/x"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_stripe_profile_renders_elements_page(client, settings):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_123"
    client.force_login(shopper_create(email="ann@example.com", password=PASSWORD))
    html = client.get("/accounts/card/").content.decode()
    assert "https://js.stripe.com/v3/" in html and '"pk_test_123"' in html
    assert "/accounts/card/attach/" in html and 'name="number"' not in html


def test_card_attach_endpoint_validates_and_needs_login(settings):
    from rest_framework.test import APIClient

    assert APIClient().post("/accounts/card/attach/", {"payment_method": "pm_x"}, format="json").status_code == 403
    api = APIClient()
    api.force_login(shopper_create(email="ann@example.com", password=PASSWORD))
    response = api.post("/accounts/card/attach/", {"payment_method": "4242424242424242"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    # with the dummy provider a pm_ id is no test card: refused by the provider, nothing saved
    refused = api.post("/accounts/card/attach/", {"payment_method": "pm_card_visa"}, format="json")
    assert refused.status_code == 402 and refused.json()["status"] == "failed"
    assert not ShopperProfile.objects.get().has_payment_method


# --- services ---------------------------------------------------------------------------------------------------

def test_shopper_create_validates():
    with pytest.raises(ValidationError) as exc:
        shopper_create(email="nope", password=PASSWORD)
    assert "email" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        shopper_create(email="ann@example.com", password="ann@example.com")  # too similar, too common
    assert "password" in exc.value.message_dict
    assert not User.objects.exists()


def test_manager_create_gets_view_change_and_add_but_no_delete():
    manager = manager_create(email="Boss@Example.com", password=PASSWORD)
    manager = User.objects.get(pk=manager.pk)  # fresh permission cache
    assert manager.username == "boss@example.com"
    assert manager.is_staff and not manager.is_superuser
    for perm in ("layout.view_store", "layout.change_bin", "inventory.change_product", "gates.view_visit",
                 "gates.change_gate", "billing.view_receipt", "carts.view_cartevent", "sensors.view_shelfevent",
                 "inventory.add_product", "vision.add_camera", "gates.add_gate"):
        assert manager.has_perm(perm), perm
    for perm in ("layout.delete_store", "auth.change_user", "accounts.view_shopperprofile", "billing.delete_receipt"):
        assert not manager.has_perm(perm), perm
    perms = Permission.objects.filter(group__user=manager)
    assert perms.exists() and all(p.codename.split("_")[0] in {"view", "change", "add"} for p in perms)
    assert {p.content_type.app_label for p in perms} == {"layout", "inventory", "gates", "billing", "carts",
                                                         "sensors", "vision"}


def test_manager_can_use_the_admin():
    manager_create(email="boss@example.com", password=PASSWORD)
    client = Client()
    assert client.login(username="boss@example.com", password=PASSWORD)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/layout/bin/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 403


def test_create_manager_command(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    out = io.StringIO()
    call_command("create_manager", "boss@example.com", "--password-stdin", stdout=out)
    assert "boss@example.com" in out.getvalue()
    user = User.objects.get(username="boss@example.com")
    assert user.is_staff and not user.is_superuser and user.check_password(PASSWORD)
