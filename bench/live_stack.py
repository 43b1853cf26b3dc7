"""Process and stack management of ``bench/bench_live.py``: child processes in their own process groups (:class:`Procs`),
the production environment on the local services, ``manage.py`` calls and the run's
Redis keys."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STORE = "walkout-sim"  # the simulated store's code (carts.offline.simulation_store.load_store)
REDIS_DB = 12


def say(msg: str = "") -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Procs:
    """Child processes, each in its own process group (``start_new_session``), all killed by :meth:`stop_all`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict, *, stdout_to_log: bool = True) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log if stdout_to_log else subprocess.PIPE,
                             stderr=log if stdout_to_log else subprocess.STDOUT, start_new_session=True,
                             text=not stdout_to_log)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, text: str, timeout: float) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if text in self.log(name):
                return
            p = self.procs[name]
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) before saying {text!r}:\n{self.log(name)[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} never said {text!r} in {timeout:.0f} s:\n{self.log(name)[-2000:]}")

    def stop(self, name: str, grace: float = 10.0) -> None:
        p = self.procs.get(name)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        try:  # whatever the group left behind (daphne's children)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for name in list(self.procs)[::-1]:
            self.stop(name)


def _sigterm(*_):
    raise KeyboardInterrupt("SIGTERM")


def production_env(database_url: str, prefix: str, raw_dir: Path) -> dict[str, str]:
    """The production profile on the local services (tests/services.py:production_env) with the store loop on.
    Receipt e-mails are written as files under ``raw_dir``'s folder (``mail/``) instead of to an SMTP server on
    localhost, which a bench machine does not run (the production default stays SMTP, store/settings.py)."""
    env = dict(os.environ)
    env.update({
        "WALKOUT_PROFILE": "production",
        "DJANGO_SECRET_KEY": f"bench-{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "WALKOUT_PAYMENT_PROVIDER": "dummy",
        "PYTHONUNBUFFERED": "1",
        "WALKOUT_STORE_LOOP": "on",
        "WALKOUT_STREAM_PREFIX": prefix,
        "WALKOUT_RAW_SAMPLES_DIR": str(raw_dir),
        "DJANGO_SETTINGS_MODULE": "store.settings",
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "DJANGO_EMAIL_FILE_PATH": str(raw_dir.parent / "mail"),
    })
    return env


def manage(args: list[str], env: dict, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def redis_cleanup(prefix: str) -> None:
    """Delete the run's stream keys and the Celery messages its checkouts queued (db 12 is the bench's own)."""
    import redis

    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}")
    keys = list(r.scan_iter(f"{prefix}:*", count=1000))
    keys += [k for k in r.scan_iter("*", count=1000) if k.startswith((b"celery", b"_kombu", b"unacked"))]
    if keys:
        r.delete(*keys)
