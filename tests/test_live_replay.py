"""The live demo path in the embedded profile: a manager starts a replay from the dashboard, the replay runs in
the server process, and the shopper's open WebSocket sees the cart fill and the receipt arrive."""
from __future__ import annotations

import shutil
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@database_sync_to_async
def setup_people():
    shopper = demo_shopper_ensure(DEMO_SHOPPER)
    staff = get_user_model().objects.create_user("boss", password="pw-boss-123456", is_staff=True)
    cookies = {}
    for name, user in (("shopper", shopper), ("staff", staff)):
        c = Client()
        c.force_login(user)
        cookies[name] = (c, f"{django_settings.SESSION_COOKIE_NAME}={c.cookies[django_settings.SESSION_COOKIE_NAME].value}")
    return shopper, staff, cookies


async def test_dashboard_live_replay_reaches_the_shoppers_socket(benchmark1_recording, settings, tmp_path):
    from store.asgi import application

    settings.RECORDINGS_DIR = tmp_path
    shutil.copytree(benchmark1_recording, tmp_path / "BENCHMARK-1")
    shopper, staff, cookies = await setup_people()

    ws = WebsocketCommunicator(application, "/ws/shopper/",
                               headers=[(b"origin", b"http://testserver"), (b"cookie", cookies["shopper"][1].encode())])
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=5))["type"] == "waiting"

    staff_client, staff_cookie = cookies["staff"]
    csrf = "a" * 32
    body = f"recording=BENCHMARK-1&speed=20&csrfmiddlewaretoken={csrf}".encode()
    http = HttpCommunicator(application, "POST", "/manage/replay/", body=body, headers=[
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"cookie", f"{staff_cookie}; {django_settings.CSRF_COOKIE_NAME}={csrf}".encode()),
        (b"host", b"testserver"), (b"origin", b"http://testserver")])
    response = await http.get_response(timeout=30)
    assert response["status"] == 302, response

    snapshots = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = await ws.receive_json_from(timeout=60)
        snapshots.append(msg)
        if msg.get("receipt"):
            break
    await ws.disconnect()
    assert snapshots[-1]["receipt"] and snapshots[-1]["state"] == "billed"
    assert any(s["lines"] and s["lines"][0]["barcode"] == "071142008582" for s in snapshots)
    # the first snapshot of the visit comes before the item: the shopper saw the cart change live
    assert snapshots[0]["lines"] == []


async def test_live_replay_is_for_managers_only(settings, tmp_path):
    from store.asgi import application

    settings.RECORDINGS_DIR = tmp_path
    shopper, staff, cookies = await setup_people()
    csrf = "b" * 32
    http = HttpCommunicator(application, "POST", "/manage/replay/",
                            body=f"recording=x&speed=1&csrfmiddlewaretoken={csrf}".encode(), headers=[
                                (b"content-type", b"application/x-www-form-urlencoded"),
                                (b"cookie", f"{cookies['shopper'][1]}; csrftoken={csrf}".encode()),
                                (b"host", b"testserver")])
    assert (await http.get_response(timeout=10))["status"] == 403
