"""Issue #12 item 9: every JSON API answers a hostile body with a 4xx and a reason, never a 500.

Regressions first (``[`` × 100 000 and a 5 001-digit number were 500s on the gate scan/exit, the pass token and the
weights endpoint), then a Hypothesis fuzz over every API's body: random bytes, random JSON, the expected fields with
hostile values, deep nesting and huge numbers, under several content types. The weights endpoint is fuzzed in both
profiles' paths: processed in this process (embedded) and forwarded to the real MQTT broker (production).
"""
from __future__ import annotations

import base64
import json

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from rest_framework.test import APIClient

from sensors.ingest import PayloadError, decode_payload
from sensors.live import http_ingestor_reset
from sensors.services import controller_create
from store.accounts.payment import shopper_card_attach
from store.accounts.services import shopper_create
from store.gates.services import gate_create
from store.jsonbody import BAD_BODIES
from store.layout.services import layout_load
from tests.services import MQTT, require

SCAN, EXIT, STAFF, TOKEN, WEIGHTS = ("/gates/api/scan/", "/gates/api/exit/", "/gates/api/staff-scan/",
                                     "/gates/pass/token/", "/sensors/api/weights/")
DEEP = b"[" * 100_000
HUGE = b'{"token": ' + b"9" * 5001 + b"}"
HUGE_WEIGHTS = b'{"v": 1, "controller": "g1", "seq": ' + b"9" * 5001 + b"}"
CODES = [f"1-1-{p}" for p in range(1, 4)]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYMENT_PROVIDER = "dummy"


@pytest.fixture
def world(db, tmp_path):
    data = {"store": {"code": "fuzz", "name": "Fuzz", "currency": "usd"}, "zones": [],
            "gondolas": [{"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 1.0, "depth_m": 0.4,
                          "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": [
                              {"number": p, "code": f"1-1-{p}", "x": 0.1 * p, "y": 0.2, "z": 1.0, "width_m": 0.1,
                               "depth_m": 0.4, "yaw_rad": 0.0, "capacity_g": 20000} for p in range(1, 4)]}]}]}
    store = layout_load(data=data)
    gate, gate_key = gate_create(store=store, name="door")
    _, controller_key = controller_create(store=store, name="g1", bin_codes=CODES)
    shopper = shopper_create(email="fuzz@example.com", password="a long enough password 1")
    shopper_card_attach(user=shopper, card_token="4242424242424242")
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user(username="staff@example.com", password="x", is_staff=True)
    clients = {}
    for path, auth in ((SCAN, f"Gate {gate_key}"), (EXIT, f"Gate {gate_key}"),
                       (WEIGHTS, f"Controller {controller_key}")):
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=auth)
        clients[path] = c
    clients[STAFF] = APIClient()
    clients[STAFF].force_authenticate(staff)
    clients[TOKEN] = APIClient()
    clients[TOKEN].force_authenticate(shopper)
    http_ingestor_reset()
    with override_settings(MQTT_URL="", WALKOUT={**settings.WALKOUT, "RAW_SAMPLES_DIR": str(tmp_path / "raw")}):
        yield {"store": store, "gate": gate, "shopper": shopper, "clients": clients}
    http_ingestor_reset()


def check(response, path: str) -> None:
    """The promise: a 2xx/4xx answer, and an error answer says why in ``reason`` and ``message``."""
    assert response.status_code < 500, (path, response.status_code, response.content[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("reason"), str) and body["reason"], (path, body)
        assert isinstance(body.get("message"), str) and body["message"], (path, body)


@pytest.mark.parametrize("path", [SCAN, EXIT, STAFF, TOKEN, WEIGHTS])
@pytest.mark.parametrize("body", [DEEP, HUGE, HUGE_WEIGHTS, b'{"token": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
                         ids=["deep", "huge-int", "huge-seq", "deep-value"])
def test_hostile_bodies_are_400_with_a_reason(world, path, body):
    before = sum(BAD_BODIES.values())
    response = world["clients"][path].post(path, data=body, content_type="application/json")
    check(response, path)
    if body in (DEEP, HUGE, HUGE_WEIGHTS):
        assert response.status_code == 400 and response.json()["reason"] == "malformed_json", response.json()
        if path != WEIGHTS:  # the weights endpoint counts per controller (ControllerProblem)
            assert sum(BAD_BODIES.values()) == before + 1


@pytest.mark.parametrize("path", [SCAN, TOKEN, WEIGHTS])
def test_a_body_over_the_request_limit_is_413_in_json(world, path):
    """Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE before the view runs: the device APIs still answer in
    JSON with a reason (it was Django's HTML 400 page), and a tracker body within its own 5 MB limit is read."""
    client = world["clients"].get(path, APIClient())
    body = b'{"v": 1, "rows": [' + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b"]}"
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413 and response.json()["reason"] == "too_large", response.content[:300]
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= 5_000_000  # vision.api.MAX_BODY_BYTES: 50 000 tracker rows


def test_weights_payload_decoder_never_raises_but_payload_error():
    """The same promise where MQTT messages are decoded (``sensors.ingest.decode_payload``)."""
    for raw in (DEEP, HUGE_WEIGHTS, b'{"v":1,"controller":"g1","seq":1,"t0":' + b"9" * 400 + b"}"):
        with pytest.raises(PayloadError) as info:
            decode_payload(raw, controller="g1", n_bins=3, rate_hz=60.0)
        assert info.value.reason in ("malformed_json", "bad_field")


# ------------------------------------------------------------------------------------------------- fuzz
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _dumps(value) -> bytes:
    return json.dumps(value).encode()


def _field_docs(fields: dict) -> st.SearchStrategy[bytes]:
    """Objects with the endpoint's own fields, each either a plausible value or any JSON value."""
    return st.fixed_dictionaries({k: v | json_values for k, v in fields.items()}).map(_dumps)


def _nested(depth: int, inner: bytes) -> bytes:
    return b"[" * depth + inner + b"]" * depth


FIELDS = {
    SCAN: {"token": st.text(max_size=60)},
    EXIT: {"token": st.text(max_size=60)},
    STAFF: {"gate": st.integers(), "token": st.text(max_size=60), "direction": st.sampled_from(["entry", "exit"])},
    TOKEN: {"store": st.sampled_from(["fuzz", "", "nope"]), "guests": st.integers(-3, 200)},
    WEIGHTS: {"v": st.just(1), "controller": st.sampled_from(["g1", "g2"]), "seq": st.integers(-5, 2 ** 60),
              "t0": st.floats() | st.integers(), "rate_hz": st.sampled_from([60.0, 60, 0, -1.0]),
              "dtype": st.just("<f4"), "n": st.integers(-2, 2000), "bins": st.integers(0, 5),
              "data": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=20)},
}


def bodies(path: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(_dumps),
        _field_docs(FIELDS[path]),
        st.tuples(st.integers(1, 200_000), json_values.map(_dumps)).map(lambda t: _nested(*t)),
        st.integers(4290, 6000).map(lambda n: b'{"token": ' + b"1" * n + b', "seq": 1}'),
    )


CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=xx"])


@pytest.mark.parametrize("path", [SCAN, EXIT, STAFF, TOKEN, WEIGHTS])
def test_fuzz_every_api_body(world, path):
    client = world["clients"][path]

    @hsettings(max_examples=120, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=bodies(path), content_type=CONTENT_TYPES)
    def fuzz(body, content_type):
        check(client.post(path, data=body, content_type=content_type), path)

    fuzz()


@pytest.mark.services
def test_fuzz_weights_forwarded_to_the_real_broker(world):
    """Production path of the weights endpoint: the body is checked, then forwarded to the MQTT broker."""
    require("Mosquitto", MQTT)
    client = world["clients"][WEIGHTS]
    with override_settings(MQTT_URL=f"mqtt://{MQTT[0]}:{MQTT[1]}"):
        for body in (DEEP, HUGE_WEIGHTS):
            response = client.post(WEIGHTS, data=body, content_type="application/json")
            assert response.status_code == 400 and response.json()["reason"] == "malformed_json"

        @hsettings(max_examples=60, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(body=bodies(WEIGHTS))
        def fuzz(body):
            check(client.post(WEIGHTS, data=body, content_type="application/json"), WEIGHTS)

        fuzz()
