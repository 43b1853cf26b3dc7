"""The live store in the production profile, every process separate, on real PostgreSQL, Redis and Mosquitto:
daphne (gate API, tracker adapter), ``ingest_mqtt`` (shelf controllers over MQTT), two ``run_store`` workers (one
active, one standing by) and the device emulator playing the real BENCHMARK-1 session at real speed.

The active store worker is killed with SIGKILL in the middle of the session; the standby takes the lease over,
resumes from the last checkpoint and re-reads the streams. The shopper must still get exactly one bottle of water:
one cart event, one capture, F1 1.000 — what the uninterrupted session bills.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.services import MQTT, PG, REDIS, postgres_database, production_env, require

pytestmark = pytest.mark.services

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_port(port: int, timeout: float = 30.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


def wait_for(path: Path, text: str, timeout: float = 30.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path.name} never said {text!r}:\n{path.read_text(errors='replace')[-3000:]}")


def test_store_runs_live_and_survives_its_worker_killed(benchmark1_recording, tmp_path):
    require("PostgreSQL", PG)
    require("Redis", REDIS)
    require("MQTT", MQTT)
    with postgres_database() as url:
        env = production_env(url, redis_db=13)
        env.update({"WALKOUT_STREAM_PREFIX": f"test-{uuid.uuid4().hex[:8]}", "WALKOUT_STORE_LOOP": "on",
                    "WALKOUT_RAW_SAMPLES_DIR": str(tmp_path / "raw"), "WALKOUT_LOG_LEVEL": "INFO"})
        py = [sys.executable, "manage.py"]
        for cmd in (["migrate", "-v0"], ["load_store", str(benchmark1_recording)]):
            done = subprocess.run(py + cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
        store = "aifi-nanostore"
        port = free_port()
        procs: dict[str, subprocess.Popen] = {}
        logs = {name: tmp_path / f"{name}.log" for name in ("daphne", "ingest", "store-a", "store-b", "emulator")}
        try:
            procs["daphne"] = start([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                     "store.asgi:application"], env, logs["daphne"])
            procs["ingest"] = start(py + ["ingest_mqtt", "--client-id", f"test-live-{uuid.uuid4().hex[:8]}",
                                          "--subscription", f"walkout/{store}/shelf/+/weights"], env, logs["ingest"])
            procs["store-a"] = start(py + ["run_store", store, "--lease", "2", "--checkpoint-every", "1"], env,
                                     logs["store-a"])
            wait_for(logs["store-a"], "is active")
            procs["store-b"] = start(py + ["run_store", store, "--lease", "2", "--checkpoint-every", "1"], env,
                                     logs["store-b"])
            wait_port(port)
            wait_for(logs["ingest"], "subscribed")
            procs["emulator"] = start(py + ["emulate_store", str(benchmark1_recording), "--url",
                                            f"http://127.0.0.1:{port}", "--speed", "1"], env, logs["emulator"])
            # the pick is 13 s into the session: kill the active worker just before it is decided
            time.sleep(14.0)
            os.killpg(procs["store-a"].pid, signal.SIGKILL)
            wait_for(logs["store-b"], "is active", timeout=20)
            wait_for(logs["store-b"], "resumed from the checkpoint", timeout=5)
            assert procs["emulator"].wait(timeout=240) == 0, logs["emulator"].read_text()[-3000:]
        finally:
            for p in procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        out = logs["emulator"].read_text().strip().splitlines()
        assert out[-1] == "F1 1.000", "\n".join(out[-30:])
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
            cart = conn.execute("SELECT p.barcode, e.quantity FROM carts_cartevent e JOIN inventory_product p "
                                "ON p.id = e.product_id").fetchall()
            captures = conn.execute("SELECT count(*) FROM billing_paymentattempt WHERE kind = 'capture'").fetchone()
            lines = conn.execute("SELECT barcode, quantity FROM billing_receiptline").fetchall()
            reasons = [r for (r,) in conn.execute("SELECT reason FROM gates_visittransition ORDER BY id")]
        assert cart == [("071142008582", 1)]  # once, though the worker that decided it may have died after
        assert captures == (1,)
        assert lines == [("071142008582", 1)]
        assert any(r.startswith("bound to track emulator:") for r in reasons)
        assert "left the store" in reasons
