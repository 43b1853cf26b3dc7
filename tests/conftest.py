"""Shared test fixtures: where ../shared is, and the real BENCHMARK-1 recording converted once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WALKOUT_SHARED", REPO.parent / "shared"))
AUTOCHECKOUT = SHARED / "datasets" / "autocheckout"
BENCHMARK_1 = AUTOCHECKOUT / "BENCHMARK-1"

from vision import yolo_environment  # noqa: E402 — ultralytics' offline settings before any test imports it

yolo_environment()


def shared_file(relative: str) -> Path:
    """Path of a file in ../shared, or skip the test with a message naming it when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the checkout); not present on this machine")
    return path


def needs_ultralytics() -> None:
    """Skip (naming the extra to install) where ultralytics or onnxruntime is not installed."""
    pytest.importorskip("ultralytics", reason="needs the vision extra: pip install -e '.[vision]'")
    pytest.importorskip("onnxruntime", reason="needs the vision extra: pip install -e '.[vision]'")


@pytest.fixture(scope="session")
def person_detector():
    """The project's person detector on ../shared/models/yolo11n_int8.onnx (skips where it cannot be built)."""
    needs_ultralytics()
    from vision.detector import PersonDetector

    return PersonDetector(shared_file("models/yolo11n_int8.onnx"))


def need(path: Path) -> Path:
    """``path`` (a file under ``SHARED``), or skip the test with a message naming it when it is absent."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the checkout); not present on this machine")
    return path


@pytest.fixture(scope="session")
def benchmark1_recording(tmp_path_factory) -> Path:
    """The real AutoCheckout BENCHMARK-1 test case converted into a recording folder (once per test session)."""
    case = shared_file("datasets/autocheckout/BENCHMARK-1/plate_data.json").parent
    from carts.offline.autocheckout import import_case

    dest = tmp_path_factory.mktemp("rec") / "BENCHMARK-1"
    import_case(case, dest)
    return dest


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty Django cache (the API key throttle counts failures in it, per address)."""
    from django.conf import settings

    if settings.configured:
        from django.core.cache import cache

        cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_store_loop():
    """Each test starts without the embedded profile's process-wide store-loop bus (its streams and checkpoints name
    stores by code, and every test database starts afresh) and with the HTTP ingestor rebuilt."""
    yield
    from django.conf import settings

    if settings.configured:
        from carts.runtime_publish import bus_reset
        from sensors.live import http_ingestor_reset

        bus_reset()
        http_ingestor_reset()


@pytest.fixture(autouse=True)
def _no_review_release_timer(monkeypatch):
    """A held review decision (carts.services.review.review_resolve with hold_s) is released from a timer thread in the
    embedded profile; in tests that timer would fire after the test, on a closed test database. Tests release held
    decisions themselves (carts.services.review.review_holds_release)."""
    monkeypatch.setattr("carts.services.review._release_schedule", lambda **kwargs: None)


# Test files that use the shared services on 127.0.0.1 (the Celery queues on Redis databases 13/14, the shared
# Mosquitto's topics): under pytest-xdist (`make test TEST_WORKERS=2`, `--dist loadgroup`) they all run in one
# worker, one after the other, so two of them never read each other's messages. Every other file may run beside them.
SHARED_SERVICES = {
    "test_api_bodies.py", "test_faults_tasks.py", "test_ingest_mqtt.py", "test_ingest_realtime.py",
    "test_ingest_robust.py", "test_live_camera_fault.py", "test_live_production.py", "test_production_profile.py",
    "test_rfid_live.py", "test_sensors_live.py", "test_throttle.py",
}


# Test files that run a production stack (daphne, run_store, ingest, camera and billing workers, the emulator) at a
# recording's real speed and wait on the wall clock for what a shopper would see: marked `realtime`, and `make test`
# runs them after the rest, in one process with both cores to themselves (beside a second xdist worker they missed
# their waits: a standby's takeover, a receipt within the emulator's settle time).
REALTIME = {
    "test_faults_tasks.py", "test_ingest_realtime.py", "test_live_camera_fault.py", "test_live_production.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SHARED_SERVICES:
            item.add_marker(pytest.mark.xdist_group("shared-services"))
        if item.path.name in REALTIME:
            item.add_marker(pytest.mark.realtime)
