"""Helpers for tests that use the production services (PostgreSQL, Redis, MQTT) on 127.0.0.1.

Where a service is not reachable the test skips with a message naming it, except in CI (``CI=true``), where the
services must be there (``.ci/run`` starts them) and a missing one fails the test.
"""
from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager

import pytest

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
MQTT = ("127.0.0.1", 1883)


def require(name: str, addr: tuple[str, int]) -> None:
    """Skip (fail in CI) unless ``addr`` accepts a TCP connection."""
    try:
        with socket.create_connection(addr, timeout=2):
            return
    except OSError as exc:
        message = f"needs {name} on {addr[0]}:{addr[1]} ({exc})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def postgres_database(prefix: str = "walkout_test"):
    """A fresh PostgreSQL database ``<prefix>_<10 hex digits>`` (trust auth, user postgres), dropped afterwards (with
    ``FORCE``: connections still open are closed). Yields its URL. Skips (fails in CI) where PostgreSQL is not
    reachable. ``bench/bench_live.py`` uses it too (``prefix="walkout_bench"``)."""
    require("PostgreSQL", PG)
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(database_url: str, redis_db: int = 14) -> dict[str, str]:
    """Environment for a subprocess in the production profile against the local services (dummy payments)."""
    env = dict(os.environ)
    env.update({
        "WALKOUT_PROFILE": "production",
        "DJANGO_SECRET_KEY": f"test-{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "WALKOUT_PAYMENT_PROVIDER": "dummy",
        "PYTHONUNBUFFERED": "1",
        # the store loop's streams are turned on by the tests of the live store (test_live_production); the others
        # exercise one process each and must not leave unread streams in the shared Redis
        "WALKOUT_STORE_LOOP": "off",
    })
    env["DJANGO_SETTINGS_MODULE"] = "store.settings"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A private ``redis-server`` on a free port (no persistence), for tests that break the broker or leave messages
    in it: the shared Redis is never touched. ``start()``/``kill()`` (SIGKILL, by PID) may be called repeatedly."""

    def __init__(self) -> None:
        import shutil

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            message = "needs redis-server on PATH (a private Redis instance)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> "OwnRedis":
        import subprocess
        import time

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> "OwnRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
