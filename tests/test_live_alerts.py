"""The store worker's degraded modes: a source that goes silent is declared down (the loop stops waiting for it, an
alert says which), comes back and the alert is resolved; an unreadable record is counted and skipped; the manager's
dashboard shows what is down."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from carts.loop_billing import BillWait
from carts.models import StoreAlert
from carts.bus import MemoryBus, RedisBus
from carts.records import gate_record, obs_record, shelf_record
from carts.runtime import StoreWorker
from carts.runtime_publish import register_local, unregister_local
from store.gates.models import Visit
from store.layout.services import layout_load
from store.recording import TrackObservations, read_recording

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(benchmark1_recording):
    return layout_load(data=read_recording(benchmark1_recording).store)


def obs(t: float) -> TrackObservations:
    return TrackObservations(np.array(["p1"], dtype=object), np.array([t]), np.array(["neck"], dtype=object),
                             np.array([[1.0, 1.0, 1.4]]), np.array([0.9]))


def test_a_silent_camera_is_declared_down_and_alerted_then_resolved(store):
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus, source_down_s=0.3)
    codes = ("1-1-1", "1-1-2")
    t0 = 1_700_000_000.0

    def shelf(t):
        return shelf_record(controller="g1", bin_codes=codes, t=t + np.arange(12) / 60, grams=np.full((12, 2), 500.0),
                            rate_hz=60.0)

    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0)))
    bus.publish(store.code, "shelf", shelf(t0))
    worker.step(block_ms=0)
    assert worker.watermark() == pytest.approx(t0)  # the slowest source: the camera at t0
    time.sleep(0.4)
    for k in range(1, 4):  # the shelves go on; the camera says nothing
        bus.publish(store.code, "shelf", shelf(t0 + k))
    worker.step(block_ms=0)
    # the camera is down: no longer waited for, and the manager is told
    assert worker.watermark() == pytest.approx(t0 + 3 + 11 / 60)
    alert = StoreAlert.objects.get(store=store, kind=StoreAlert.Kind.SOURCE_DOWN, key="obs:cam-a")
    assert alert.resolved_at is None and "review" in alert.message
    assert worker.pipeline.sink.down == {"obs:cam-a"}
    # the dashboard names it
    staff = get_user_model().objects.create_user("boss", password="pw-boss-123456", is_staff=True)
    from django.test import Client

    c = Client()
    c.force_login(staff)
    page = c.get("/manage/").content.decode()
    assert "obs:cam-a sent nothing" in page and store.code in page
    # the camera comes back
    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 + 4)))
    worker.step(block_ms=0)
    alert.refresh_from_db()
    assert alert.resolved_at is not None and "obs:cam-a" not in worker.down



def test_records_waiting_behind_a_full_read_are_not_their_sources_silence(store, monkeypatch):
    """A backlog (200 shoppers live, the worker behind at the peak): the camera's records wait in the streams behind
    a full read of the shelves' while the worker steps longer than the down bound; the camera is not declared down,
    and the loop waits for it. Once a read is not full, silence counts again."""
    monkeypatch.setattr(StoreWorker, "READ_COUNT", 3)
    # the count stays 3 however long the slowed steps take on a loaded machine (a step over the target would shrink
    # it: that is test_live_runtime's to check, not this test's)
    monkeypatch.setattr(StoreWorker, "STEP_TARGET_S", 60.0)
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus, source_down_s=0.3)
    t0 = 1_700_000_000.0

    def shelf(t):
        return shelf_record(controller="g1", bin_codes=("1-1-1",), t=t + np.arange(12) / 60,
                            grams=np.full((12, 1), 500.0), rate_hz=60.0)

    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0)))
    bus.publish(store.code, "shelf", shelf(t0))
    worker.step(block_ms=0)
    for k in range(1, 7):  # six shelf blocks, then the camera's next record: two full reads before it
        bus.publish(store.code, "shelf", shelf(t0 + k))
    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 + 6)))
    real_advance = worker.pipeline.advance

    def slow_advance(t, **slicing):  # each step takes longer than the down bound
        time.sleep(0.4)
        return real_advance(t, **slicing)

    monkeypatch.setattr(worker.pipeline, "advance", slow_advance)
    assert worker.step(block_ms=0) == 3 and worker.step(block_ms=0) == 3
    assert "obs:cam-a" not in worker.down and worker.watermark() == pytest.approx(t0)  # waited for, not down
    worker.step(block_ms=0)  # the rest: the camera's record arrives, nothing was taken for down
    assert not StoreAlert.objects.filter(store=store, kind=StoreAlert.Kind.SOURCE_DOWN).exists()
    assert worker.watermark() == pytest.approx(t0 + 6)
    # a read that is not full: a source silent past the bound is down again, as before
    time.sleep(0.4)
    bus.publish(store.code, "shelf", shelf(t0 + 7))
    worker.step(block_ms=0)
    assert "obs:cam-a" in worker.down

def test_a_long_step_of_the_worker_is_not_a_source_s_silence(store):
    """The worker itself busy longer than the down bound (a first JIT compile, a slow database) between applying a
    camera's record and computing the watermark: the camera kept sending all along, so it is not declared down."""
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus, source_down_s=0.3)
    t0 = 1_700_000_000.0
    worker.step(block_ms=0)
    scans = []

    def busy(**kw):  # applied after the camera's record, before the watermark (no visit rows: not bound here)
        time.sleep(0.5)
        scans.append(kw["visit"])

    worker.pipeline.loop.on_gate_entry = busy
    for k in range(3):
        bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 + k)))
        bus.publish(store.code, "gate", gate_record(event="entry", visit=100 + k, t=t0 + k))
        worker.step(block_ms=0)
        assert "obs:cam-a" not in worker.down
    assert scans == [100, 101, 102]
    assert not StoreAlert.objects.filter(kind=StoreAlert.Kind.SOURCE_DOWN).exists()


def test_a_worker_stepped_by_its_devices_caller_does_not_count_its_own_step_as_their_silence(store):
    """The emulator (embedded profile) publishes its devices' records and steps the worker itself on the same thread
    (``register_local``): while a step runs, the devices cannot send. A step longer than the down bound (a first JIT
    compile on a loaded machine: 36 s seen) followed by the emulator's next, empty read must not declare them down and
    run the watermark ahead of the records by the step's length — it ran the loop 36 s ahead: shoppers' scans timed
    out unbound, hands missed, decisions unlike the offline run's. A worker of its own thread (``run_store``) still
    counts the time: there the devices go on sending while it steps."""
    t0 = 1_700_000_000.0
    for driven in (True, False):
        bus = MemoryBus()
        worker = StoreWorker(store.code, bus_=bus, source_down_s=0.3)
        if driven:
            register_local(store.code, worker)
        try:
            worker.step(block_ms=0)
            advance = worker.pipeline.advance

            def slow(now, advance=advance, **slicing):
                advance(now, **slicing)
                time.sleep(0.5)

            worker.pipeline.advance = slow
            bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0)))
            worker.step(block_ms=0)  # reads the camera's record, then takes 0.5 s
            worker.pipeline.advance = advance
            assert worker.step(block_ms=0) == 0  # the caller's read right after: nothing new
            if driven:
                assert not worker.down and worker.watermark() == pytest.approx(t0)
            else:
                assert worker.down == {"obs:cam-a"}
        finally:
            if driven:
                unregister_local(store.code)


def test_a_slow_step_is_logged_with_where_its_time_went(store, caplog):
    """A step over ``SLOW_STEP_S`` of wall time (the loop falling behind at a busy moment) is logged with its
    parts: the read, the apply, the advance (store seconds covered) and the worker's own CPU against the wall, so an
    operator can tell a busy worker from one waiting on the database or the broker. A quick step is not logged."""
    import logging

    t0 = 1_700_000_000.0
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    worker.SLOW_STEP_S = 0.2
    worker.step(block_ms=0)
    advance = worker.pipeline.advance

    def slow(now, advance=advance, **slicing):
        advance(now, **slicing)
        time.sleep(0.3)  # waiting (on a database, say): wall time, no CPU

    with caplog.at_level(logging.INFO, logger="carts.runtime"):
        bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0)))
        worker.step(block_ms=0)
        worker.pipeline.advance = slow
        bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 + 1.0)))
        worker.step(block_ms=0)
    lines = [r.getMessage() for r in caplog.records if "slow step" in r.getMessage()]
    assert len(lines) == 1, lines
    m = re.search(r"slow step, ([0-9.]+) s wall \(([0-9.]+) s CPU of this worker\): read 1 records \(count \d+\) in "
                  r"[0-9.]+ s, applied in [0-9.]+ s, advanced ([0-9.]+) store s in ([0-9.]+) s", lines[0])
    assert m, lines[0]
    wall, cpu, store_s, advance_s = map(float, m.groups())
    assert wall >= 0.3 and advance_s >= 0.3 and cpu < wall - 0.2
    assert store_s == pytest.approx(1.0, abs=0.2)


def test_unreadable_records_are_counted_and_skipped(store):
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    bus.publish(store.code, "shelf", {"controller": "g1", "bins": ["1-1-1"], "n": 3, "t": "!!", "grams": "",
                                      "rate_hz": 60})
    bus.publish(store.code, "obs", {"source": "x", "n": 2, "track": ["a"], "keypoint": [], "t": "", "xyz": "",
                                    "score": ""})
    bus.publish(store.code, "gate", {"event": "teleport", "visit": 1, "t": 1.0})
    bus.publish(store.code, "gate", {"_error": "unreadable record 7-0: not JSON"})
    bus.publish(store.code, "gate", gate_record(event="entry", visit=99, t=1_700_000_000.0))
    worker.step(block_ms=0)
    assert worker.stats.bad_records == 4
    assert worker.pipeline.loop._binds and worker.pipeline.loop._binds[0][1] == 99  # the good one went through
    assert worker.offsets == {"shelf": "1-0", "obs": "2-0", "gate": "5-0"}


def test_a_silent_shelf_controller_holds_billing_only_for_bill_wait_s(store):
    """A controller that stops sending is down after ``source_down_s`` (alerted; time goes on with the cameras), and
    billing waits for it only ``bill_wait_s``: then the shelf horizon lets exits be billed without it (its late events
    go to review). One that keeps sending (the device emulator's idle plates) keeps the horizon at its clock."""
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus, source_down_s=0.2, bill_wait_s=0.6)
    codes = {"g1": ("1-1-1", "1-1-2"), "g2": ("1-1-3", "1-1-4")}
    t0 = 1_700_000_000.0

    def shelf(controller, t):
        return shelf_record(controller=controller, bin_codes=codes[controller], t=t + np.arange(12) / 60,
                            grams=np.full((12, 2), 500.0), rate_hz=60.0)

    bus.publish(store.code, "shelf", shelf("g1", t0))
    bus.publish(store.code, "shelf", shelf("g2", t0))
    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0)))
    worker.step(block_ms=0)
    assert worker.shelf_horizon() == pytest.approx(t0 + 11 / 60)
    time.sleep(0.3)
    for k in range(1, 4):  # g1 and the camera go on; g2 says nothing
        bus.publish(store.code, "shelf", shelf("g1", t0 + k))
        bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 + k)))
    worker.step(block_ms=0)
    assert "shelf:g2" in worker.down and worker.watermark() == pytest.approx(t0 + 3)
    assert StoreAlert.objects.filter(kind=StoreAlert.Kind.SOURCE_DOWN, key="shelf:g2", resolved_at=None).exists()
    assert worker.shelf_horizon() == pytest.approx(t0 + 11 / 60)  # billing still waits for g2…
    time.sleep(0.4)
    bus.publish(store.code, "shelf", shelf("g1", t0 + 4))
    worker.step(block_ms=0)
    assert worker.shelf_horizon() == pytest.approx(t0 + 4 + 11 / 60)  # …no longer: only g1 counts
    assert worker.pipeline.loop.shelf_horizon == worker.shelf_horizon()


def test_a_restarted_worker_deletes_the_chunks_its_checkpoint_does_not_refer_to(store):
    """A worker killed between saving a checkpoint's new chunks and the checkpoint (or between the checkpoint and
    deleting the chunks it stopped using) leaves chunks nobody refers to; the next worker deletes them at start and
    keeps every chunk its checkpoint needs."""
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    t0 = 1_700_000_000.0
    for k in range(60):  # 12 s of a shopper's observations: the loop seals its windows into chunks every 5 s
        bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 + k * 0.2)))
        worker.step(block_ms=0)
    worker.checkpoint()
    referred = bus.chunk_keys(store.code)
    assert referred and worker._chunks == referred
    bus.save_chunks(store.code, {"left-by-a-crash-1": b"x", "left-by-a-crash-2": b"y"})  # the crash's leftovers

    again = StoreWorker(store.code, bus_=bus)
    again.step(block_ms=0)
    assert again.stats.restored and again.stats.orphan_chunks == 2
    assert bus.chunk_keys(store.code) == referred  # the leftovers gone, every chunk of the checkpoint kept
    assert again.pipeline.loop.snapshot()  # the restored loop reads all its chunks


@pytest.mark.services
def test_the_redis_bus_lists_a_stores_chunks_only():
    import uuid

    from tests.services import REDIS, require

    require("Redis", REDIS)
    bus = RedisBus(f"redis://{REDIS[0]}:{REDIS[1]}/13", prefix=f"test-chunks-{uuid.uuid4().hex[:8]}")
    try:
        bus.save_chunks("s1", {"a": b"1", "b": b"2"})
        bus.save_chunks("s10", {"c": b"3"})
        assert bus.chunk_keys("s1") == {"a", "b"} and bus.chunk_keys("s10") == {"c"}
        bus.drop_chunks("s1", ["a"])
        assert bus.chunk_keys("s1") == {"b"}
    finally:
        bus.drop_chunks("s1", ["b"])
        bus.drop_chunks("s10", ["c"])
def test_each_queued_checkout_is_logged_with_where_its_time_went(store, caplog):
    """One INFO line per checkout the step queued: settle, the loop's step past the deadline, what held it
    (``carts.loop_billing.BILL_WAITS``), and how far the loop ran behind the wall clock, split into the devices' newest
    record's lateness and the watermark's wait for the slowest source; the parts add up to exit → queued."""
    import re

    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    now = time.time()
    t0 = now - 10.0  # the devices' newest record is 10 s old; the camera's is 0.5 s older
    bus.publish(store.code, "shelf", shelf_record(controller="g1", bin_codes=("1-1-1",), t=t0 - 11 / 60 +
                                                  np.arange(12) / 60, grams=np.full((12, 1), 500.0), rate_hz=60.0))
    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0 - 0.5)))
    worker.step(block_ms=0)
    loop, sink = worker.pipeline.loop, worker.pipeline.sink
    exit_t = t0 - 0.5 - 4.0
    loop.visit_of["p1"] = 42
    loop.bill_timings.append(BillWait("p1", exit_t, exit_t + 3.0, due=exit_t + 3.2, waited={"reach": 0.8},
                                      now=t0 - 0.5))
    sink.queued_at["p1"] = now + 0.1
    with caplog.at_level("INFO", logger="carts.runtime"):
        worker._log_checkouts(now)
    line = next(r.getMessage() for r in caplog.records if "checkout queued" in r.getMessage())
    got = dict(zip(("total", "settle", "over", "waited", "behind", "watermark", "late", "slowest", "step"),
                   map(float, re.findall(r"(-?\d+\.\d+) s", line))))
    assert "visit 42 " in line and "(reach 0.80)" in line and "slowest source obs:cam-a" in line, line
    assert got["settle"] == 3.0 and got["over"] == pytest.approx(0.2) and got["waited"] == pytest.approx(0.8)
    assert got["late"] == pytest.approx(10.0, abs=0.01) and got["slowest"] == pytest.approx(0.5)
    assert got["total"] == pytest.approx(got["settle"] + got["over"] + got["waited"] + got["behind"], abs=0.02)
    assert got["behind"] == pytest.approx(got["late"] + got["slowest"] + got["step"], abs=0.02)
    assert not loop.bill_timings and "p1" not in sink.queued_at


def test_a_loop_ahead_of_the_wall_clock_is_logged_as_ahead_not_negative_behind(store, caplog):
    """Devices whose clock runs ahead of the wall clock (the demo's 5× emulation): the line says how far the loop
    ran *ahead of* the wall clock and the newest record came *early*, never "-5.74 s behind"."""
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    now = time.time()
    t0 = now + 6.0  # the devices' clock is 6 s ahead of the wall clock
    bus.publish(store.code, "shelf", shelf_record(controller="g1", bin_codes=("1-1-1",), t=t0 - 11 / 60 +
                                                  np.arange(12) / 60, grams=np.full((12, 1), 500.0), rate_hz=60.0))
    bus.publish(store.code, "obs", obs_record(source="cam-a", obs=obs(t0)))
    worker.step(block_ms=0)
    loop, sink = worker.pipeline.loop, worker.pipeline.sink
    loop.visit_of["p1"] = 42
    loop.bill_timings.append(BillWait("p1", t0 - 4.0, t0 - 1.0, due=t0 - 1.0, waited={}, now=t0))
    sink.queued_at["p1"] = now + 0.1
    with caplog.at_level("INFO", logger="carts.runtime"):
        worker._log_checkouts(now)
    line = next(r.getMessage() for r in caplog.records if "checkout queued" in r.getMessage())
    assert "s behind the wall clock" not in line and "s late" not in line, line
    assert "the loop ran 5.90 s ahead of the wall clock" in line and "the newest record 6.00 s early" in line, line



def test_a_backlog_is_read_in_steps_of_about_the_target_time(store, monkeypatch):
    """While records wait in the streams, a full read whose step took longer than ``STEP_TARGET_S`` makes the next
    read smaller in proportion (decisions, checkouts and cart pushes go out each step, not at the end of one long
    step); steps under half the target double it back to ``READ_COUNT``. Every record is applied once, in order."""
    monkeypatch.setattr(StoreWorker, "READ_COUNT", 16)
    monkeypatch.setattr(StoreWorker, "READ_COUNT_MIN", 2)
    monkeypatch.setattr(StoreWorker, "STEP_TARGET_S", 0.1)
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    t0 = 1_700_000_000.0
    for k in range(41):
        bus.publish(store.code, "shelf", shelf_record(controller="g1", bin_codes=("1-1-1",),
                                                      t=t0 + k / 5 + np.arange(12) / 60,
                                                      grams=np.full((12, 1), 500.0), rate_hz=60.0))
        if k == 0:  # the first step builds the loop: however long it takes, a read that is not full keeps the count
            assert worker.step(block_ms=0) == 1 and worker.read_count == 16
    real_advance = worker.pipeline.advance

    def slow_advance(t, **slicing):  # a step takes 4 to 5 times the target: the next read is 16 × 0.1 / 0.4… = 3 at most
        time.sleep(0.4)
        return real_advance(t, **slicing)

    monkeypatch.setattr(worker.pipeline, "advance", slow_advance)
    assert worker.step(block_ms=0) == 16 and 2 <= worker.read_count <= 4
    n = worker.read_count
    assert worker.step(block_ms=0) == n and worker.read_count == 2   # n × 0.1 / 0.4… < 1: READ_COUNT_MIN
    assert worker.step(block_ms=0) == 2 and worker.read_count == 2   # never below it
    monkeypatch.setattr(worker.pipeline, "advance", real_advance)
    monkeypatch.setattr(StoreWorker, "STEP_TARGET_S", 60.0)          # every step now well under half the target
    assert worker.step(block_ms=0) == 2 and worker.read_count == 4   # doubled
    assert worker.step(block_ms=0) == 4 and worker.read_count == 8
    assert worker.step(block_ms=0) == 8 and worker.read_count == 16  # up to READ_COUNT
    assert worker.step(block_ms=0) == 40 - 16 - n - 2 - 2 - 4 - 8 and worker.read_count == 16
    assert worker.stats.records["shelf"] == 41 and worker.step(block_ms=0) == 0
    assert worker.pipeline.loop.now == pytest.approx(t0 + 40 / 5 + 11 / 60)


def test_a_long_advance_goes_in_slices_and_pushes_carts_as_it_goes(store, monkeypatch):
    """A watermark that jumps (a source that held it caught up) is followed in ``slice_s`` slices of store time, and
    the carts changed so far are pushed every ``push_every_s`` wall seconds: a cart changed in the first slice reaches
    its phone before the last slice runs, not at the end of the whole advance. A short advance is one call."""
    from django.utils import timezone

    from carts.services import ledger

    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    t0 = 1_700_000_000.0
    bus.publish(store.code, "shelf", shelf_record(controller="g1", bin_codes=("1-1-1",), t=t0 + np.arange(12) / 60,
                                                  grams=np.full((12, 1), 500.0), rate_hz=60.0))
    worker.step(block_ms=0)
    pipeline, loop = worker.pipeline, worker.pipeline.loop
    shopper = get_user_model().objects.create_user("slices@walkout.test", password="x")
    visit = Visit.objects.create(store=store, shopper=shopper, entered_at=timezone.now())
    events: list[tuple[str, float]] = []
    published: list[list[int]] = []
    real_loop_advance = loop.advance

    def loop_advance(now):
        real_loop_advance(now)
        events.append(("advance", now))
        if len(events) == 1:  # the first slice changes a cart
            ledger.cart_publish(visit=visit)

    monkeypatch.setattr(loop, "advance", loop_advance)
    monkeypatch.setattr(ledger, "_publish_many", lambda visits: (published.append([v.pk for v in visits]),
                                                                 events.append(("push", 0.0))))
    start = loop.now
    pipeline.advance(start + 3.0, slice_s=0.5, push_every_s=0.0)
    slices = [t for kind, t in events if kind == "advance"]
    assert slices == pytest.approx([start + 0.5 * k for k in range(1, 7)])
    assert published == [[visit.pk]] and events.index(("push", 0.0)) == 1  # pushed right after the first slice
    events.clear()
    pipeline.advance(loop.now + 0.4, slice_s=0.5, push_every_s=0.0)
    assert [kind for kind, _ in events] == ["advance", "push"]  # one call; the batch's end pushes the cart


def test_checkpoints_take_at_most_their_share_of_the_workers_time_and_pushes_go_from_a_thread(store, monkeypatch):
    """``run`` checkpoints ``checkpoint_every_s`` after the last checkpoint, or later where the last one took more
    than ``CHECKPOINT_SHARE`` of that (a big store's state pickled every 2 s was 7 % of the worker's time at its
    exodus); with ``background_pushes`` (run_store's), cart pushes go from a thread of their own while it runs
    (``store.pushes``), and after it they are made by their caller again."""
    from store import pushes

    bus = MemoryBus()
    saved = bus.save_checkpoint

    def slow_save(code, data):  # a 30 ms checkpoint: due every 1 s at a 3 % share, not every 50 ms
        time.sleep(0.03)
        saved(code, data)

    monkeypatch.setattr(bus, "save_checkpoint", slow_save)
    worker = StoreWorker(store.code, bus_=bus, checkpoint_every_s=0.05)
    senders = []
    step = worker.step

    def spy_step(**kw):
        senders.append(pushes._background)
        return step(**kw)

    monkeypatch.setattr(worker, "step", spy_step)
    stats = worker.run(max_seconds=0.8, background_pushes=True)
    assert 2 <= stats.checkpoints <= 3  # at 50 ms apart it would be ~10
    assert worker.checkpoint_due_s() >= 0.03 / worker.CHECKPOINT_SHARE
    assert senders and all(s is not None for s in senders) and pushes._background is None
