"""The live store in the production profile, every process separate, on real PostgreSQL, Redis and Mosquitto:
daphne (gate API, tracker adapter), ``ingest_mqtt`` (shelf controllers over MQTT), two ``run_store`` workers (one
active, one standing by), a Celery billing worker (the checkouts the store loop queues) and the device emulator playing the real BENCHMARK-1 session at real speed.

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


class LiveStack:
    """A fresh PostgreSQL database with the recording's store loaded, and the store's processes started on demand
    (their logs under ``tmp_path``); everything is stopped on exit."""

    STORE = "aifi-nanostore"

    def __init__(self, recording: Path, tmp_path: Path, *, mqtt_url: str = "mqtt://127.0.0.1:1883") -> None:
        self.recording, self.tmp = recording, tmp_path
        self.mqtt_url = mqtt_url
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()

    def __enter__(self) -> "LiveStack":
        self._db = postgres_database()
        self.url = self._db.__enter__()
        self.env = production_env(self.url, redis_db=13)
        self.env.update({"WALKOUT_STREAM_PREFIX": f"test-{uuid.uuid4().hex[:8]}", "WALKOUT_STORE_LOOP": "on",
                         "WALKOUT_RAW_SAMPLES_DIR": str(self.tmp / "raw"), "WALKOUT_LOG_LEVEL": "INFO",
                         "MQTT_URL": self.mqtt_url})
        for cmd in (["migrate", "-v0"], ["load_store", str(self.recording)]):
            done = subprocess.run(self.manage(cmd), cwd=REPO, env=self.env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stderr
        return self

    def manage(self, args: list[str]) -> list[str]:
        return [sys.executable, "manage.py", *args]

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        self.procs[name] = start(args, self.env, self.log(name))
        return self.procs[name]

    def web(self) -> None:
        self.start("daphne", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "store.asgi:application"])
        wait_port(self.port)

    def ingest(self) -> None:
        self.start("ingest", self.manage(["ingest_mqtt", "--client-id", f"test-live-{uuid.uuid4().hex[:8]}",
                                          "--subscription", f"walkout/{self.STORE}/shelf/+/weights"]))
        wait_for(self.log("ingest"), "subscribed")

    def billing(self) -> None:
        """The billing worker: a Celery worker (solo pool) that runs the checkouts the store loop queues."""
        self.start("billing", [str(BIN / "celery"), "-A", "store", "worker", "--pool=solo", "--concurrency=1",
                               "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"])
        wait_for(self.log("billing"), "ready", timeout=120)

    def store_worker(self, name: str) -> None:
        self.start(name, self.manage(["run_store", self.STORE, "--lease", "2", "--checkpoint-every", "1"]))

    def emulate(self, speed: float = 1.0) -> None:
        self.start("emulator", self.manage(["emulate_store", str(self.recording), "--url",
                                            f"http://127.0.0.1:{self.port}", "--speed", str(speed)]))

    def shell(self, code: str) -> str:
        done = subprocess.run(self.manage(["shell", "-c", code]), cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def sql(self, query: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://")) as conn:
            return conn.execute(query).fetchall()

    def __exit__(self, *exc) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self._db.__exit__(*exc)

    def billed_once(self) -> None:
        """The session's outcome: F1 1.000, one cart line, one capture, bound at the gate, seen leaving."""
        out = self.log("emulator").read_text().strip().splitlines()
        assert out[-1] == "F1 1.000", "\n".join(out[-30:])
        assert self.sql("SELECT p.barcode, e.quantity FROM carts_cartevent e JOIN inventory_product p "
                        "ON p.id = e.product_id") == [("071142008582", 1)]
        assert self.sql("SELECT count(*) FROM billing_paymentattempt WHERE kind = 'capture'") == [(1,)]
        assert self.sql("SELECT barcode, quantity FROM billing_receiptline") == [("071142008582", 1)]
        reasons = [r for (r,) in self.sql("SELECT reason FROM gates_visittransition ORDER BY id")]
        assert any(r.startswith("bound to track emulate_store:") for r in reasons)
        assert "left the store" in reasons


def test_store_runs_live_and_survives_its_worker_killed(benchmark1_recording, tmp_path):
    """The shopper's phone (Chromium, logged in through the real form) watches the cart while the active store
    worker is killed just before the pick is decided: the item still appears, then the receipt."""
    from browser import CHROMIUM, CHROMIUM_ARGS, login, need_chromium, screenshot

    require("PostgreSQL", PG)
    require("Redis", REDIS)
    require("MQTT", MQTT)
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    with LiveStack(benchmark1_recording, tmp_path) as stack, sync_playwright() as pw:
        stack.web()
        stack.ingest()
        stack.billing()
        stack.store_worker("store-a")
        wait_for(stack.log("store-a"), "is active")
        stack.store_worker("store-b")
        stack.shell("from store.accounts.demo import demo_shopper_ensure\nprint(demo_shopper_ensure('shopper@walkout.test'))")
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        phone = chromium.new_context(base_url=f"http://127.0.0.1:{stack.port}", viewport={"width": 390, "height": 844})
        page = phone.new_page()
        page.set_default_timeout(30_000)
        login(page, "shopper@walkout.test")
        page.goto("/visits/current/")
        stack.emulate()
        # the pick is 13 s into the session: kill the active worker just before it is decided
        time.sleep(14.0)
        os.killpg(stack.procs["store-a"].pid, signal.SIGKILL)
        wait_for(stack.log("store-b"), "is active", timeout=20)
        wait_for(stack.log("store-b"), "resumed from the checkpoint", timeout=5)
        expect(page.locator("body")).to_contain_text("ARRWHD SPRNG WTR", timeout=60_000)
        screenshot(page, "live-production-item")
        expect(page.locator("#trip")).to_have_attribute("data-stage", "charged", timeout=90_000)
        screenshot(page, "live-production-charged")
        assert stack.procs["emulator"].wait(timeout=240) == 0, stack.log("emulator").read_text()[-3000:]
        chromium.close()
        stack.billed_once()  # once, though the worker that decided it may have died after


MOSQUITTO_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
"""


def test_store_survives_a_broker_restart_and_a_phone_that_never_reads(benchmark1_recording, tmp_path):
    """The MQTT broker is restarted in the middle of the session (controllers and ingest_mqtt reconnect; the broker
    keeps the ingestion worker's persistent session); a shopper's second phone opens its WebSocket and never reads.
    The take still reaches the cart, once; the reading phone sees the item and then the receipt."""
    import asyncio

    import aiohttp

    require("PostgreSQL", PG)
    require("Redis", REDIS)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port, dir=tmp_path))
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        with LiveStack(benchmark1_recording, tmp_path, mqtt_url=f"mqtt://127.0.0.1:{port}") as stack:
            stack.web()
            stack.ingest()
            stack.billing()
            stack.store_worker("store-a")
            wait_for(stack.log("store-a"), "is active")
            session = stack.shell("from django.test import Client\nfrom store.accounts.demo import demo_shopper_ensure\n"
                                  "c = Client()\nc.force_login(demo_shopper_ensure('shopper@walkout.test'))\n"
                                  "print(c.cookies['sessionid'].value)")
            # a phone that connects and then never reads a byte
            stuck = socket.create_connection(("127.0.0.1", stack.port))
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.sendall((f"GET /ws/shopper/ HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{stack.port}\r\n"
                           f"Cookie: sessionid={session}\r\n\r\n").encode())

            async def phone() -> list[dict]:
                seen = []
                async with aiohttp.ClientSession(cookies={"sessionid": session}) as http:
                    async with http.ws_connect(f"http://127.0.0.1:{stack.port}/ws/shopper/",
                                               origin=f"http://127.0.0.1:{stack.port}") as ws:
                        stack.emulate()
                        t_end = time.monotonic() + 200
                        restarted = False
                        while time.monotonic() < t_end:
                            if not restarted and time.monotonic() > t_end - 200 + 9:  # 9 s in: restart the broker
                                broker.terminate()
                                broker.wait(10)
                                await asyncio.sleep(2.0)
                                restart.append(subprocess.Popen(["mosquitto", "-c", str(conf)],
                                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                                restarted = True
                            try:
                                msg = await ws.receive_json(timeout=1.0)
                            except asyncio.TimeoutError:
                                continue
                            seen.append(msg)
                            if msg.get("receipt"):
                                break
                return seen

            restart: list[subprocess.Popen] = []
            try:
                seen = asyncio.run(phone())
                assert stack.procs["emulator"].wait(timeout=240) == 0, stack.log("emulator").read_text()[-3000:]
            finally:
                for p in restart:
                    p.terminate()
                    p.wait(10)
                stuck.close()
            assert any(s.get("lines") and s["lines"][0]["barcode"] == "071142008582" for s in seen)
            assert seen[-1]["receipt"] and seen[-1]["state"] == "billed"
            stack.billed_once()
            ingest_log = stack.log("ingest").read_text()  # it saw the broker go and come back
            assert "MQTT disconnected" in ingest_log and ingest_log.count("MQTT connected") >= 2, ingest_log[-2000:]
    finally:
        if broker.poll() is None:
            broker.terminate()
            broker.wait(10)
