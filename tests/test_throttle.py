"""Issue #12 item 8: login throttling by account and by address (django-axes), and failed API keys throttled per
address at the gate and shelf-controller APIs.

Before: 100 wrong passwords in a row, then the right one logged in; API keys could be guessed without limit.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from django.test import Client
from rest_framework.test import APIClient

from sensors.services import controller_create
from store.accounts.services import shopper_create
from store.gates.services import gate_create
from store.layout.models import Store
from store.layout.services import layout_load
from tests.conftest import REPO
from tests.services import OwnRedis, postgres_database, production_env

PASSWORD = "a long enough password 1"
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


def login(client: Client, email: str, password: str, addr: str = "10.0.0.1", **extra):
    return client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=addr, **extra)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def lock_text(response) -> str:
    assert response.status_code == 429, (response.status_code, response.content[:300])
    return response.content.decode()


@pytest.mark.django_db
def test_100_wrong_passwords_then_the_right_one_is_locked_out():
    shopper_create(email="ann@example.com", password=PASSWORD)
    client = Client()
    statuses = [login(client, "ann@example.com", f"wrong {i}").status_code for i in range(100)]
    assert statuses[:9] == [200] * 9 and set(statuses[10:]) == {429}
    response = login(client, "ann@example.com", PASSWORD)
    assert "Too many failed log-in attempts" in lock_text(response) and not logged_in(client)
    # the account is locked from another address too (by account), even spelled in capitals
    other = Client()
    assert lock_text(login(other, "ANN@example.com ", PASSWORD, addr="10.0.0.2")) and not logged_in(other)


@pytest.mark.django_db
def test_the_lockout_does_not_reveal_whether_the_account_exists():
    shopper_create(email="ann@example.com", password=PASSWORD)
    for i in range(10):
        login(Client(), "ann@example.com", f"wrong {i}", addr="10.0.1.1")
        login(Client(), "ghost@example.com", f"wrong {i}", addr="10.0.1.2")
    known = lock_text(login(Client(), "ann@example.com", "wrong", addr="10.0.1.1"))
    unknown = lock_text(login(Client(), "ghost@example.com", "wrong", addr="10.0.1.2"))
    assert known == unknown


@pytest.mark.django_db
def test_one_address_guessing_many_accounts_is_locked_and_a_forged_forwarded_for_does_not_help():
    shopper_create(email="bob@example.com", password=PASSWORD)
    # one guess each at ten accounts, each with another forged X-Forwarded-For: no account reaches the limit, the
    # address does (the tenth failure is answered with the lockout)
    statuses = [login(Client(), f"user{i}@example.com", "wrong", addr="10.0.2.1",
                      HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(10)]
    assert statuses == [200] * 9 + [429]
    client = Client()
    assert lock_text(login(client, "bob@example.com", PASSWORD, addr="10.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9"))
    assert not logged_in(client)
    elsewhere = Client()  # bob himself, from his own network, is not locked out
    assert login(elsewhere, "bob@example.com", PASSWORD, addr="10.0.2.2").status_code == 302 and logged_in(elsewhere)


@pytest.mark.django_db
def test_a_successful_login_below_the_limit_is_not_throttled():
    shopper_create(email="cat@example.com", password=PASSWORD)
    client = Client()
    for i in range(5):
        assert login(client, "cat@example.com", f"wrong {i}").status_code == 200
    assert login(client, "cat@example.com", PASSWORD).status_code == 302 and logged_in(client)


def small_store() -> Store:
    return layout_load(data={"store": {"code": "thr", "name": "Thr", "currency": "usd"}, "zones": [], "gondolas": [
        {"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 1.0, "depth_m": 0.4, "height_m": 2.0,
         "shelves": [{"number": 1, "z": 1.0, "bins": [{"number": 1, "code": "1-1-1", "x": 0.1, "y": 0.2, "z": 1.0,
                                                       "width_m": 0.1, "depth_m": 0.4, "yaw_rad": 0.0,
                                                       "capacity_g": 20000}]}]}]})


@pytest.mark.django_db
@pytest.mark.parametrize("path,scheme", [("/gates/api/scan/", "Gate"), ("/gates/api/exit/", "Gate"),
                                         ("/sensors/api/weights/", "Controller")])
def test_failed_api_keys_are_throttled_per_address(settings, path, scheme):
    settings.MQTT_URL = ""
    store = small_store()
    _, gate_key = gate_create(store=store, name="door")
    _, controller_key = controller_create(store=store, name="c1", bin_codes=["1-1-1"])
    good = gate_key if scheme == "Gate" else controller_key
    body = {"token": "x"} if scheme == "Gate" else {"v": 1, "controller": "c1"}

    def post(key, addr):
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
        return c.post(path, body, format="json", REMOTE_ADDR=addr)

    assert post(good, "10.1.0.1").status_code in (400, 403)  # the key works (the body is refused)
    for i in range(20):
        assert post(f"guess-{i}", "10.1.0.1").status_code == 401
    locked = post(good, "10.1.0.1")  # even the right key: a right guess must look like a wrong one
    assert locked.status_code == 429 and locked.json()["reason"] == "throttled", locked.content
    assert "try again later" in locked.json()["message"] and int(locked["Retry-After"]) > 0
    assert post(good, "10.1.0.2").status_code in (400, 403)  # another address is not locked out


THROTTLE_IN_PRODUCTION = textwrap.dedent("""
    import json, django; django.setup()
    from django.test import Client
    from store.gates.services import gate_create
    from store.layout.models import Store
    _, key = gate_create(store=Store.objects.create(code="p", name="P"), name="door")
    post = lambda k, addr: Client().post("/gates/api/scan/", data='{"token": "x"}', content_type="application/json",
                                         HTTP_AUTHORIZATION="Gate " + k, REMOTE_ADDR=addr).status_code
    print(json.dumps([post("guess-%d" % i, "10.9.0.1") for i in range(20)] + [post(key, "10.9.0.1")]))
""")


@pytest.mark.services
def test_api_key_throttle_is_shared_through_redis_in_production():
    """Production profile: the counters are in Redis, so every web process sees the same lockout."""
    with postgres_database() as url, OwnRedis() as redis:
        env = {**production_env(url), "REDIS_URL": redis.url, "DJANGO_ALLOWED_HOSTS": "testserver"}
        assert subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env).returncode == 0
        r = subprocess.run([sys.executable, "-c", THROTTLE_IN_PRODUCTION], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout.strip().splitlines()[-1]) == [401] * 20 + [429]
        import redis as redis_py

        assert any(b"keyfail" in k for k in redis_py.Redis.from_url(redis.url).keys("*"))
