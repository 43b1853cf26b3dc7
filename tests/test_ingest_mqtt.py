"""MQTT integration: a controller publishes to the real Mosquitto broker on 127.0.0.1:1883; the ingestion worker
(subscribed through paho-mqtt) authenticates, validates and feeds the pipeline, and the pick is stored as a shelf
event; a wrong key, an unknown controller and a malformed message are refused and counted. Marked ``services``
(skips without a broker, fails in CI)."""
from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from sensors.ingest import encode_payload, weights_topic
from sensors.live import ShelfIngestor
from sensors.models import ControllerProblem, ShelfController, ShelfEvent
from sensors.mqtt import MqttIngestWorker, Publisher, broker_address, make_client
from sensors.services import controller_create
from tests.services import MQTT, require
from store.inventory.services import catalogue_load
from store.layout.services import layout_load

pytestmark = [pytest.mark.django_db, pytest.mark.services]
URL = f"mqtt://{MQTT[0]}:{MQTT[1]}"
RATE = 60.0
N = 12


def store_with_controller(code: str):
    data = {"store": {"code": code, "name": "MQTT test store", "currency": "usd"}, "zones": [],
            "gondolas": [{"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 1.3, "depth_m": 0.4,
                          "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": [
                              {"number": p, "code": f"1-1-{p}", "x": 0.1 * p, "y": 0.2, "z": 1.0, "width_m": 0.1,
                               "depth_m": 0.4, "yaw_rad": 0.0} for p in range(1, 9)]}]}]}
    store = layout_load(data=data)
    catalogue_load(store=store, products=[{"barcode": "CHIPS", "name": "Chips", "price": "2.00",
                                           "unit_weight_g": 180.0, "unit_weight_sd_g": 3.0}],
                   facings=[{"bin": "1-1-3", "barcode": "CHIPS"}])
    return controller_create(store=store, name="g1", bin_codes=[f"1-1-{p}" for p in range(1, 9)])


def test_broker_url_parsing():
    assert broker_address("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883, None, None)
    assert broker_address("mqtt://u:p@broker") == ("broker", 1883, "u", "p")
    with pytest.raises(ValueError):
        broker_address("http://x")


def test_controller_publishes_and_the_event_is_stored():
    require("MQTT", MQTT)
    code = f"mqtt-{uuid.uuid4().hex[:8]}"
    controller, key = store_with_controller(code)
    rng = np.random.default_rng(0)
    n = int(12 * RATE)
    t0 = time.time() - 30.0
    t = t0 + np.arange(n) / RATE
    x = rng.uniform(1000, 5000, 8) + rng.normal(0, 1.0, (n, 8))
    x[int(5 * RATE):, 2] -= 180.6                                   # one bag of chips taken at 5 s
    topic = weights_topic(code, "g1")
    good = [encode_payload(controller="g1", seq=k, t0=float(t[i]), rate_hz=RATE, grams=x[i:i + N], key=key)
            for k, i in enumerate(range(0, n, N))]
    bad = [(topic, encode_payload(controller="g1", seq=999, t0=float(t[0]), rate_hz=RATE, grams=x[:N],
                                  key="stolen")),                  # wrong key
           (weights_topic(code, "ghost"), good[0]),                # no such controller
           (topic, b"{not json")]                                  # unreadable
    worker = MqttIngestWorker(url=URL, ingestor=ShelfIngestor(raw=None, session="live-test"),
                              subscription=f"walkout/{code}/shelf/+/weights", session_expiry_s=0)

    def publish() -> None:
        if not worker.subscribed.wait(10):
            return
        with Publisher(URL) as pub:
            for k, m in enumerate(good):
                pub.publish(topic, m)
                if k == 20:
                    for tp, payload in bad:
                        pub.publish(tp, payload)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    stats = worker.run(max_messages=len(good) + len(bad), max_seconds=60)
    thread.join(10)
    assert stats.received == len(good) + len(bad)
    assert stats.refused == 2 and stats.handled == len(good) + 1
    (ev,) = ShelfEvent.objects.filter(session="live-test")
    assert ev.bin.code == "1-1-3" and ev.delta_g == pytest.approx(-180.6, abs=3)
    assert (ev.hypotheses[0]["barcode"], ev.hypotheses[0]["quantity"]) == ("CHIPS", 1)
    assert abs(ev.t_start.timestamp() - (t0 + 5.0)) < 0.6
    counts = dict(ControllerProblem.objects.filter(controller=controller).values_list("reason", "count"))
    assert counts == {"unauthenticated": 1, "malformed_json": 1}
    controller = ShelfController.objects.get(pk=controller.pk)
    assert controller.messages == len(good) + 1 and controller.samples == n


def test_production_worker_on_postgres_stores_the_event(tmp_path):
    """The production profile end to end: ``manage.py ingest_mqtt`` on PostgreSQL (migrations included), a
    controller publishing to the real broker, the shelf event stored in PostgreSQL."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.services import postgres_database, production_env

    require("MQTT", MQTT)
    with postgres_database() as db_url:
        env = production_env(db_url)
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run(manage + ["migrate", "-v", "0"], env=env, cwd=REPO, check=True, timeout=120)
        code = f"pg-{uuid.uuid4().hex[:8]}"
        setup = (
            "from tests.test_ingest_mqtt import store_with_controller\n"
            f"c, key = store_with_controller({code!r})\nprint(key)\n")
        key = subprocess.run(manage + ["shell", "-c", setup], env=env, cwd=REPO, check=True, timeout=60,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rng = np.random.default_rng(1)
        n = int(8 * RATE)
        t0 = time.time() - 20.0
        x = rng.uniform(1000, 5000, 8) + rng.normal(0, 1.0, (n, 8))
        x[int(3 * RATE):, 2] -= 2 * 180.2                       # two bags at once
        msgs = [encode_payload(controller="g1", seq=k, t0=t0 + i / RATE, rate_hz=RATE, grams=x[i:i + N], key=key)
                for k, i in enumerate(range(0, n, N))]
        worker = subprocess.Popen(manage + ["ingest_mqtt", "--url", URL, "--session", "pg-live", "--subscription",
                                            f"walkout/{code}/shelf/+/weights", "--max-messages", str(len(msgs)),
                                            "--max-seconds", "60", "--raw-dir", str(tmp_path / "raw"),
                                            "--session-expiry", "0"],
                                  env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for line in worker.stderr:                       # wait until it has subscribed
                if "subscribed to" in line:
                    break
            with Publisher(URL) as pub:
                for m in msgs:
                    pub.publish(weights_topic(code, "g1"), m)
            out, err = worker.communicate(timeout=90)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, err[-2000:]
        assert f"messages {len(msgs)} refused 0" in out
        check = ("from sensors.models import ShelfEvent\n"
                 "print([(e.bin.code, e.hypotheses[0]['barcode'], e.hypotheses[0]['quantity']) "
                 "for e in ShelfEvent.objects.filter(session='pg-live')])\n")
        rows = subprocess.run(manage + ["shell", "-c", check], env=env, cwd=REPO, check=True, timeout=60,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        assert rows == "[('1-1-3', 'CHIPS', 2)]"
        files = list((tmp_path / "raw" / code / "g1").glob("*/*.npz"))
        assert files and sum(np.load(f)["t"].size for f in files) == n   # every sample kept on disk


def test_http_endpoint_forwards_to_the_broker_in_production():
    """With ``MQTT_URL`` set, the HTTP endpoint checks the body and forwards it (with the controller's key) to
    the controller's topic, so the one MQTT worker keeps all detector state."""
    import json

    from django.test import override_settings
    from rest_framework.test import APIRequestFactory

    from sensors.api import WeightsView

    require("MQTT", MQTT)
    code = f"fwd-{uuid.uuid4().hex[:8]}"
    controller, key = store_with_controller(code)
    got: list[bytes] = []
    ready = threading.Event()
    sub = make_client(URL, client_id=f"test-sub-{uuid.uuid4().hex[:6]}")
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(weights_topic(code, "g1"), qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    sub.on_message = lambda c, u, m: got.append(m.payload)
    host, port, _, _ = broker_address(URL)
    sub.connect(host, port)
    sub.loop_start()
    try:
        assert ready.wait(10)
        body = encode_payload(controller="g1", seq=0, t0=time.time(), rate_hz=RATE, grams=np.ones((N, 8)))
        factory = APIRequestFactory()
        with override_settings(MQTT_URL=URL):
            r = WeightsView.as_view()(factory.post("/sensors/api/weights/", data=body,
                                                   content_type="application/json",
                                                   HTTP_AUTHORIZATION=f"Controller {key}"))
            assert r.status_code == 202 and r.data == {"accepted": True, "forwarded": True}
            bad = WeightsView.as_view()(factory.post("/sensors/api/weights/", data=b"[]",
                                                     content_type="application/json",
                                                     HTTP_AUTHORIZATION=f"Controller {key}"))
            assert bad.status_code == 400 and bad.data["reason"] == "malformed_json"
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            time.sleep(0.02)
        (forwarded,) = got
        doc = json.loads(forwarded)
        assert doc["key"] == key and doc["seq"] == 0 and doc["controller"] == "g1"
    finally:
        sub.loop_stop()
        sub.disconnect()
