"""The live shelf path with the database: controller keys, the HTTP batch endpoint, the ingestor feeding the real
pipeline (BENCHMARK-1 sent as controller messages), restock mode and the stock ledger, misplaced put-backs,
load-cell health on the dashboard, raw-sample files, and the ``shelf_events``/``create_controller`` commands."""
from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.template.loader import render_to_string
from django.test import override_settings
from rest_framework.test import APIRequestFactory

from sensors.api import WeightsView
from sensors.ingest import encode_payload
from sensors.live import ShelfIngestor, http_ingestor, http_ingestor_reset
from sensors.models import ControllerProblem, SensorHealth, ShelfController, ShelfEvent
from sensors.selectors import dashboard_sensor_context
from sensors.health import HealthReport
from sensors.services import (
    ControllerInputError, controller_authenticate, controller_create, controller_key_hash, sensor_health_record,
)
from sensors import storage
from sensors.storage import RawSampleStore
from store.inventory.models import RestockTask, StockMovement
from store.inventory.services import (
    bin_restock_mode_set, catalogue_load, restock_session_end, restock_session_start,
)
from store.layout.models import Bin
from store.layout.services import layout_load
from store.recording import read_recording

pytestmark = pytest.mark.django_db
RATE = 60.0
N = 12
T0 = 1.7e9
CODES = [f"1-1-{p}" for p in range(1, 13)]
SHAPE = np.clip(np.linspace(0, 1.2, 26), 0, 1)


def small_store():
    data = {"store": {"code": "test-store", "name": "Test store", "currency": "usd"}, "zones": [],
            "gondolas": [{"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 1.3, "depth_m": 0.4,
                          "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": [
                              {"number": p, "code": f"1-1-{p}", "x": 0.1 * p, "y": 0.2, "z": 1.0, "width_m": 0.1,
                               "depth_m": 0.4, "yaw_rad": 0.0, "capacity_g": 20000} for p in range(1, 13)]}]}]}
    store = layout_load(data=data)
    products = [{"barcode": b, "name": b.title(), "price": p, "unit_weight_g": w, "unit_weight_sd_g": sd}
                for b, p, w, sd in (("WATER", "1.50", 621.67, 8.1), ("CHIPS", "2.00", 180.0, 3.0),
                                    ("SOAP", "3.25", 400.0, 6.0), ("CANDY", "0.80", 45.0, 2.0),
                                    ("SODA", "1.20", 255.0, 4.0))]
    facings = [{"bin": "1-1-1", "barcode": "WATER"}, {"bin": "1-1-2", "barcode": "WATER"},
               {"bin": "1-1-3", "barcode": "CHIPS"}, {"bin": "1-1-4", "barcode": "SOAP"},
               {"bin": "1-1-5", "barcode": "CANDY"}, {"bin": "1-1-6", "barcode": "SODA"}]
    catalogue_load(store=store, products=products, facings=facings)
    return store


def quiet(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return T0 + np.arange(n) / RATE, rng.uniform(1000, 6000, 12) + rng.normal(size=(n, 12)) * rng.uniform(0.3, 2, 12)


def change(x, at_s, col, delta):
    i = int(at_s * RATE)
    x[i:i + SHAPE.size, col] += delta * SHAPE
    x[i + SHAPE.size:, col] += delta


def payloads(name: str, t, x, key=None):
    return [encode_payload(controller=name, seq=k, t0=float(t[i]), rate_hz=RATE, grams=x[i:i + N], key=key)
            for k, i in enumerate(range(0, t.shape[0] - N + 1, N))]


def feed(ingestor: ShelfIngestor, controller, msgs, finish=True):
    for k, m in enumerate(msgs):
        ingestor.handle(controller=controller, payload=m, received_at=T0 + k * 0.2)
    ingestor.close(finish=finish)


# ----------------------------------------------------------------------------------------------- controllers
def test_controller_keys_are_hashed_and_checked():
    store = small_store()
    c, key = controller_create(store=store, name="g1", bin_codes=CODES)
    assert c.api_key_hash == controller_key_hash(key) and key not in json.dumps(list(
        ShelfController.objects.values()), default=str)
    assert controller_authenticate(api_key=key) == c
    assert controller_authenticate(api_key=key, store_code="test-store", name="g1") == c
    assert controller_authenticate(api_key=key, name="g2") is None
    assert controller_authenticate(api_key="nope") is None
    c.active = False
    c.save()
    assert controller_authenticate(api_key=key) is None
    with pytest.raises(ControllerInputError, match="no bin"):
        controller_create(store=store, name="g2", bin_codes=["9-9-9"])
    with pytest.raises(ControllerInputError, match="already has"):
        controller_create(store=store, name="g1", bin_codes=CODES)


def test_create_controller_command_prints_the_key_once():
    small_store()
    out, err = io.StringIO(), io.StringIO()
    call_command("create_controller", "test-store", "g1", "--gondola", "1", stdout=out, stderr=err)
    key = out.getvalue().strip()
    c = controller_authenticate(api_key=key)
    assert c is not None and c.bin_codes == CODES and "walkout/test-store/shelf/g1/weights" in err.getvalue()


# ----------------------------------------------------------------------------------------------- HTTP
@pytest.fixture
def http(tmp_path):
    http_ingestor_reset()
    with override_settings(MQTT_URL="", WALKOUT={**settings.WALKOUT, "RAW_SAMPLES_DIR": str(tmp_path / "raw")}):
        yield APIRequestFactory()
    http_ingestor_reset()


def post(factory, body: bytes, key: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Controller {key}"} if key else {}
    request = factory.post("/sensors/api/weights/", data=body, content_type="application/json", **headers)
    return WeightsView.as_view()(request)


def test_http_endpoint_authenticates_validates_and_counts(http):
    store = small_store()
    c, key = controller_create(store=store, name="g1", bin_codes=CODES)
    t, x = quiet(2)
    msgs = payloads("g1", t, x)
    assert post(http, msgs[0], None).status_code == 401
    assert post(http, msgs[0], "not-a-key").status_code == 401
    r = post(http, msgs[0], key)
    assert r.status_code == 202 and r.data["accepted"] and r.data["samples"] == N
    r = post(http, b"{oops", key)
    assert r.status_code == 400 and r.data["reason"] == "malformed_json"
    r = post(http, msgs[0], key)                      # sent twice (a retry): taken once, answered as success
    assert r.status_code == 200 and r.data["duplicate"] and r.data["samples"] == 0
    r = post(http, encode_payload(controller="g2", seq=9, t0=T0, rate_hz=RATE, grams=x[:N]), key)
    assert r.status_code == 400 and r.data["reason"] == "wrong_controller"
    counts = dict(ControllerProblem.objects.filter(controller=c).values_list("reason", "count"))
    assert counts == {"malformed_json": 1, "duplicate": 1, "wrong_controller": 1}
    ingestor, _ = http_ingestor()
    ingestor.close()
    c.refresh_from_db()
    assert c.messages == 4 and c.samples == N and c.last_seen_at is not None


def test_benchmark1_sent_as_controller_messages_over_http(http, benchmark1_recording, tmp_path):
    """The real BENCHMARK-1 samples, sent by four controllers as 12-sample messages over the HTTP endpoint, give
    exactly the one real event (1-5-11, one 071142008582) through the same pipeline the replay uses."""
    rec = read_recording(benchmark1_recording)
    store = layout_load(data=rec.store)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    keys = {}
    for k, s in enumerate(rec.shelves):
        c, keys[k] = controller_create(store=store, name=f"g{k}", bin_codes=list(s.bin_codes), rate_hz=60.0)
    for k, s in enumerate(rec.shelves):
        for m in payloads(f"g{k}", s.t, s.grams):
            assert post(http, m, keys[k]).status_code == 202
    ingestor, _ = http_ingestor()
    ingestor.close(finish=True)
    events = list(ShelfEvent.objects.filter(store=store))
    assert [(e.bin.code, e.hypotheses[0]["barcode"], e.hypotheses[0]["quantity"]) for e in events] == \
        [("1-5-11", "071142008582", 1)]
    assert events[0].delta_g == pytest.approx(-623, abs=10) and events[0].kind == "shopper"
    assert len(events[0].hypotheses) >= 2                     # the runner-up is kept for review/fusion
    # the raw samples were kept and read back exactly (float32 on the wire)
    raw = RawSampleStore(tmp_path / "raw", retention_h=1)
    main = next(k for k, s in enumerate(rec.shelves) if "1-5-11" in s.bin_codes)
    back = raw.read(store=store.code, controller=f"g{main}", t0=rec.t_start, t1=rec.t_end)
    s = rec.shelves[main]
    n = (s.t.shape[0] // N) * N
    assert back.bin_codes == s.bin_codes and back.t.shape[0] == n
    np.testing.assert_array_equal(back.grams, s.grams[:n].astype(np.float32).astype(np.float64))


# ----------------------------------------------------------------------------------------------- restock
def test_restock_mode_toggle_and_session_write_the_ledger_not_returns():
    store = small_store()
    c, _ = controller_create(store=store, name="g1", bin_codes=CODES)
    soap_bin = Bin.objects.get(store=store, code="1-1-4")
    bin_restock_mode_set(bin=soap_bin, on=True)
    t, x = quiet(40, seed=1)
    change(x, 5.0, 3, +2 * 400.0)                     # staff puts two soaps (toggle on)
    change(x, 12.0, 3, -400.0)                        # a shopper takes one meanwhile: still a pick
    ingestor = ShelfIngestor(raw=None)
    msgs = payloads("g1", t, x)
    for k, m in enumerate(msgs[:100]):               # first 20 s
        ingestor.handle(controller=c, payload=m, received_at=T0 + k * 0.2)
    bin_restock_mode_set(bin=soap_bin, on=False)
    staff = get_user_model().objects.create_user("staff@walkout.test", password="x", is_staff=True)
    from datetime import datetime, timezone
    session = restock_session_start(store=store, staff=staff, at=datetime.fromtimestamp(T0 + 20, tz=timezone.utc))
    # 25 s: three candies stocked during the staff session (whole store)
    x2 = x.copy()
    change(x2, 25.0, 4, +3 * 45.0)
    msgs2 = payloads("g1", t, x2)
    for k, m in enumerate(msgs2[100:150], start=100):
        ingestor.handle(controller=c, payload=m, received_at=T0 + k * 0.2)
    restock_session_end(session=session, at=datetime.fromtimestamp(T0 + 31, tz=timezone.utc))
    x3 = x2.copy()
    change(x3, 35.0, 2, +180.0)                       # after the session: a shopper's put-back of chips
    for k, m in enumerate(payloads("g1", t, x3)[150:], start=150):
        ingestor.handle(controller=c, payload=m, received_at=T0 + k * 0.2)
    ingestor.close(finish=True)
    rows = [(e.bin.code, e.kind, e.hypotheses[0]["barcode"], e.hypotheses[0]["quantity"])
            for e in ShelfEvent.objects.filter(store=store).order_by("t_start")]
    assert rows == [("1-1-4", "restock", "SOAP", -2), ("1-1-4", "shopper", "SOAP", 1),
                    ("1-1-5", "restock", "CANDY", -3), ("1-1-3", "shopper", "CHIPS", -1)]
    ledger = sorted(StockMovement.objects.filter(kind="restock").values_list("product__barcode", "quantity",
                                                                              "bin__code"))
    assert ledger == [("CANDY", 3, "1-1-5"), ("SOAP", 2, "1-1-4")]
    assert all(m.reference.startswith("shelf_event:") for m in StockMovement.objects.all())


def test_misplaced_put_back_raises_a_restock_task():
    store = small_store()
    c, _ = controller_create(store=store, name="g1", bin_codes=CODES)
    t, x = quiet(15, seed=2)
    change(x, 6.0, 3, +255.3)                         # a soda left on the soap plate
    feed(ShelfIngestor(raw=None), c, payloads("g1", t, x))
    (e,) = ShelfEvent.objects.filter(store=store)
    assert e.misplaced and e.kind == "shopper" and e.hypotheses[0]["barcode"] == "SODA"
    (task,) = RestockTask.objects.all()
    assert (task.reason, task.product.barcode, task.quantity, task.bin.code) == ("misplaced", "SODA", 1, "1-1-4")
    assert task.reference == f"shelf_event:{e.pk}"
    assert StockMovement.objects.count() == 0        # a misplaced put-back is no restock


# ----------------------------------------------------------------------------------------------- health
def test_sensor_health_flags_with_evidence_on_the_dashboard():
    store = small_store()
    c, _ = controller_create(store=store, name="g1", bin_codes=CODES)
    t, x = quiet(25, seed=3)
    x[:, 7] = np.nan                                  # 1-1-8: unplugged
    x[:, 8] = 2345.5                                  # 1-1-9: ADC stuck on one value
    x[:, 9] = 19990.0 + np.random.default_rng(3).normal(0, 1, t.size)   # 1-1-10: at its 20 kg rail
    x[:, 10] += np.random.default_rng(4).normal(0, 25, t.size)          # 1-1-11: 25 g of noise
    feed(ShelfIngestor(raw=None), c, payloads("g1", t, x), finish=False)
    status = dict(SensorHealth.objects.values_list("bin__code", "status"))
    assert {k: v for k, v in status.items() if v != "ok"} == {"1-1-8": "dead", "1-1-9": "stuck",
                                                              "1-1-10": "saturated", "1-1-11": "noisy"}
    panel = dashboard_sensor_context()["sensor_health"]
    assert [a.status for a in panel.alerts] == ["dead", "saturated", "stuck", "noisy"]
    html = render_to_string("dashboard/_sensor_health.html", {"sensor_health": panel})
    assert "1-1-8" in html and "no reading for" in html and "has not changed for" in html
    assert "sample noise 2" in html and "capacity rail" in html
    assert "nan_burst" in html                        # the controller's problem counters are shown too


def test_health_rows_keep_their_since_until_the_status_changes_and_every_row_is_checked():
    """Each check stamps every bin's row ``checked_at``; a status that changes gets its new ``since`` and evidence
    (and is counted); an alert that stays keeps its ``since`` with its evidence kept current."""
    store = small_store()
    c, _ = controller_create(store=store, name="g1", bin_codes=CODES)
    n = len(CODES)

    def report(t, dead=(), noise=2.0):
        status = np.array(["dead" if i in dead else "ok" for i in range(n)], dtype=object)
        return HealthReport(t, status, np.full(n, noise), np.full(n, 100.0), np.where(status == "dead", t - T0, 0.0),
                            np.zeros(n), np.zeros(n))

    T0 = 1_700_000_000.0
    assert sensor_health_record(controller=c, report=report(T0)) == n           # every row new
    assert sensor_health_record(controller=c, report=report(T0 + 10, dead=(2,))) == 1
    assert sensor_health_record(controller=c, report=report(T0 + 20, dead=(2,), noise=3.0)) == 0
    rows = {h.bin.code: h for h in SensorHealth.objects.select_related("bin")}
    assert {r.checked_at.timestamp() for r in rows.values()} == {T0 + 20}
    dead, ok = rows["1-1-3"], rows["1-1-4"]
    assert (dead.status, dead.since.timestamp(), dead.evidence, dead.noise_g) == ("dead", T0 + 10, "no reading for 20 s", 3.0)
    assert (ok.status, ok.since.timestamp(), ok.noise_g) == ("ok", T0, 2.0)
    assert sensor_health_record(controller=c, report=report(T0 + 30)) == 1          # back to ok
    dead.refresh_from_db()
    assert (dead.status, dead.since.timestamp(), dead.evidence) == ("ok", T0 + 30, "sample noise 2.0 g sd")


def test_a_health_write_that_fails_costs_no_message_and_is_retried(monkeypatch):
    """A locked database at the health write (seen live: SQLite "database table is locked" while the store loop
    wrote) must not fail the message whose samples were already fed: counted, and written at the next flush."""
    from django.db import OperationalError

    import sensors.live as live

    store = small_store()
    c, _ = controller_create(store=store, name="g1", bin_codes=CODES)
    t, x = quiet(25, seed=3)
    x[:, 7] = np.nan                                  # 1-1-8: unplugged, so the report has something to say
    real = live.sensor_health_record
    calls = {"n": 0}

    def locked_once(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("database table is locked: sensors_sensorhealth")
        return real(**kwargs)

    monkeypatch.setattr(live, "sensor_health_record", locked_once)
    ingestor = ShelfIngestor(raw=None)
    msgs = payloads("g1", t, x)
    outcomes = [ingestor.handle(controller=c, payload=m, received_at=T0 + k * 0.2) for k, m in enumerate(msgs)]
    assert all(o.blocks == 1 for o in outcomes)                       # every message was taken, none failed
    assert ingestor.stats.problems["health_write"] == 1
    assert calls["n"] >= 2                                             # due again, written at a later flush
    ingestor.close()
    assert SensorHealth.objects.get(bin__code="1-1-8").status == "dead"
    assert ShelfController.objects.get(pk=c.pk).samples == sum(o.samples for o in outcomes)


def test_raw_files_are_pruned_after_the_retention(tmp_path):
    raw = RawSampleStore(tmp_path, retention_h=1.0)
    t = 1_700_000_000.0 + np.arange(0, 150, 1 / 60)    # 2.5 minutes → 3 files
    g = np.random.default_rng(0).normal(size=(t.size, 3))
    raw.append(store="s", controller="c", bin_codes=("a", "b", "c"), t=t, grams=g, rate_hz=60)
    raw.flush()
    assert len(raw.files(store="s", controller="c")) == 3
    back = raw.read(store="s", controller="c", t0=t[100], t1=t[8000])
    np.testing.assert_allclose(back.grams, g[100:8001].astype(np.float32))
    # what two writes that failed half-way left: one of the oldest minute, one of the newest
    first, last = raw.files(store="s", controller="c")[0], raw.files(store="s", controller="c")[-1]
    partial_old, partial_new = first.with_name(first.stem + "-1.tmp"), last.with_name(last.stem + "-1.tmp")
    partial_old.write_bytes(b"PK\x03"), partial_new.write_bytes(b"PK\x03")
    assert raw.prune(now=t[-1] + 1800) == 0
    assert raw.prune(now=t[0] + 3600 + 121) == 3 and len(raw.files(store="s", controller="c")) == 1
    assert not partial_old.exists() and partial_new.exists()  # a write of a minute within the retention may be going on
    with pytest.raises(ValueError):
        raw.append(store="../x", controller="c", bin_codes=("a",), t=t[:1], grams=g[:1, :1], rate_hz=60)


def test_the_background_writer_writes_the_same_files_off_the_callers_thread(tmp_path, monkeypatch):
    """Live ingestion writes raw minutes in the background, in a thread of lower priority: ``append`` never
    compresses on the caller's thread (a minute of thousands of plates took the MQTT worker 5–7 s), the files are
    those a synchronous store writes, and ``flush`` waits for every one."""
    threads: list[str] = []
    nice: dict[str, int] = {}
    real = RawSampleStore._write_file

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        nice[threading.current_thread().name] = os.getpriority(os.PRIO_PROCESS, 0)  # Linux: the calling thread's
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RawSampleStore, "_write_file", spy)
    t = 1_700_000_000.0 + np.arange(0, 150, 1 / 60)    # 2.5 minutes → 3 files
    g = np.random.default_rng(0).normal(size=(t.size, 3))
    sync = RawSampleStore(tmp_path / "sync", retention_h=1.0)
    bg = RawSampleStore(tmp_path / "bg", retention_h=1.0, background=True)
    written = []
    for i in range(0, t.size, 300):                     # 5 s blocks, as a controller sends them
        written += sync.append(store="s", controller="c", bin_codes=("a", "b", "c"), t=t[i:i + 300],
                               grams=g[i:i + 300], rate_hz=60)
        assert bg.append(store="s", controller="c", bin_codes=("a", "b", "c"), t=t[i:i + 300], grams=g[i:i + 300],
                         rate_hz=60) == []
    assert len(written) == 2
    written += sync.flush()
    bg.flush()
    assert len(bg.files(store="s", controller="c")) == 3 and bg.take_failures() == 0
    # three files written by the caller (the synchronous store), three by the writer thread (the background one)
    assert sorted(threads) == [threading.current_thread().name] * 3 + ["raw-writer_0"] * 3
    # the writer yields the CPU to the thread that takes the messages (storage.WRITER_NICE)
    assert nice["raw-writer_0"] == min(19, nice[threading.current_thread().name] + storage.WRITER_NICE)
    assert [p.relative_to(tmp_path / "sync") for p in written] == \
        [p.relative_to(tmp_path / "bg") for p in bg.files(store="s", controller="c")]
    a = sync.read(store="s", controller="c", t0=t[0], t1=t[-1])
    b = bg.read(store="s", controller="c", t0=t[0], t1=t[-1])
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.grams, b.grams)
    bg.close()


def test_the_writer_renices_only_its_own_thread_where_a_thread_id_names_one(monkeypatch):
    """``setpriority(PRIO_PROCESS, id)`` acts on a thread only on Linux; elsewhere the id is taken for a process id,
    and a thread id that happens to be another process's would renice that process: the writer leaves it alone."""
    calls = []
    monkeypatch.setattr(os, "setpriority", lambda *a: calls.append(a))
    monkeypatch.setattr(storage.sys, "platform", "darwin")
    storage._writer_nice()
    assert calls == []
    monkeypatch.setattr(storage.sys, "platform", "linux")
    storage._writer_nice()
    assert [c[1] for c in calls] == [threading.get_native_id()]


def test_the_background_writer_counts_what_it_cannot_write_and_bounds_its_queue(tmp_path, monkeypatch):
    """A file the writer cannot write is logged and counted (``take_failures``; the ingestor's ``raw_write``), never
    raised into ingestion; with the disk behind, the caller waits for the oldest file beyond ``max_pending``."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    t = 1_700_000_000.0 + np.arange(0, 150, 1 / 60)
    g = np.zeros((t.size, 1))
    bad = RawSampleStore(blocker, retention_h=1.0, background=True)
    bad.append(store="s", controller="c", bin_codes=("a",), t=t, grams=g, rate_hz=60)
    assert bad.flush() == [] and bad.take_failures() == 3 and bad.take_failures() == 0
    real = np.savez_compressed

    def slow(*args, **kwargs):
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "savez_compressed", slow)
    queued = RawSampleStore(tmp_path / "q", retention_h=1.0, background=True, max_pending=1)
    for i in range(0, t.size, 600):
        queued.append(store="s", controller="c", bin_codes=("a",), t=t[i:i + 600] + 60 * i, grams=g[i:i + 600],
                      rate_hz=60)
        assert len(queued._pending) <= 1
    queued.flush()
    assert len(queued.files(store="s", controller="c")) == 15 and not queued._pending
    # the ingestor counts the writer's failures with its own problems
    store = small_store()
    c, _ = controller_create(store=store, name="g1", bin_codes=CODES)
    ingestor = ShelfIngestor(raw=RawSampleStore(blocker, retention_h=1.0, background=True))
    tq, x = quiet(70)
    for k, m in enumerate(payloads("g1", tq, x)):
        ingestor.handle(controller=c, payload=m, received_at=T0 + k * 0.2)
    ingestor.close()
    assert ingestor.stats.problems.get("raw_write", 0) >= 1


# ----------------------------------------------------------------------------------------------- command
def test_shelf_events_command_on_benchmark1(benchmark1_recording):
    out = io.StringIO()
    call_command("shelf_events", str(benchmark1_recording), stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert lines[-1] == "events 1"
    assert "1-5-11" in lines[0] and "071142008582 × 1" in lines[0] and "runner-up" in lines[0]
    assert float(lines[0].split()[3]) == pytest.approx(-623, abs=10)
