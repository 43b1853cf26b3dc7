"""The production profile for real: PostgreSQL for the data, Redis as the channel layer, in separate processes.

A listener process subscribes to the demo shopper's group on Redis; another process replays the real BENCHMARK-1
session against PostgreSQL; the listener must receive the live cart snapshots, the last one with the receipt.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.services import REDIS, postgres_database, production_env, require

pytestmark = pytest.mark.services

LISTENER = textwrap.dedent("""
    import asyncio, json, sys
    import django
    django.setup()
    from channels.layers import get_channel_layer
    from store.accounts.demo import demo_shopper_ensure
    from carts.services.ledger import shopper_group

    user = demo_shopper_ensure("shopper@walkout.test")
    async def main():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(shopper_group(user.pk), channel)
        print("ready", flush=True)
        seen = []
        while True:
            msg = await asyncio.wait_for(layer.receive(channel), timeout=120)
            seen.append(msg["snapshot"])
            if msg["snapshot"]["receipt"] is not None:
                break
        print(json.dumps(seen), flush=True)
    asyncio.run(main())
""")


def run(args, env, **kw):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          **kw)


def test_replay_on_postgres_pushes_live_cart_through_redis(benchmark1_recording):
    require("Redis", REDIS)
    with postgres_database() as url:
        env = production_env(url)
        migrate = run(["manage.py", "migrate", "-v0"], env)
        assert migrate.returncode == 0, migrate.stderr
        listener = subprocess.Popen([sys.executable, "-c", LISTENER], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            assert listener.stdout.readline().strip() == "ready", listener.stderr.read()
            # stay idle longer than channels_redis's 5 s blocking read: the connection must survive it
            import time

            time.sleep(7)
            # replay as the listening shopper (evaluate alone plays throwaway accounts), then score that replay
            rp = run(["manage.py", "replay", str(benchmark1_recording), "--shopper", "shopper@walkout.test"], env)
            assert rp.returncode == 0, rp.stderr
            ev = run(["manage.py", "evaluate", str(benchmark1_recording)], env)
            assert ev.returncode == 0, ev.stderr
            assert ev.stdout.strip().splitlines()[-1] == "F1 1.000"
            out, err = listener.communicate(timeout=120)
        finally:
            listener.kill()
        assert listener.returncode == 0, err
        snapshots = json.loads(out.strip().splitlines()[-1])
        # the cart went empty → one bottle of water → billed, with increasing sequence numbers
        assert [s["seq"] for s in snapshots] == sorted(s["seq"] for s in snapshots)
        assert any(s["lines"] and s["lines"][0]["barcode"] == "071142008582" for s in snapshots)
        assert snapshots[-1]["state"] == "billed" and snapshots[-1]["total_minor"] == 100

        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
            rows = conn.execute("SELECT barcode, quantity FROM billing_receiptline").fetchall()
            events = conn.execute("SELECT count(*) FROM sensors_shelfevent").fetchone()[0]
        assert rows == [("071142008582", 1)] and events == 1


def test_production_refuses_to_start_without_its_secrets():
    env = production_env("postgres://postgres@127.0.0.1:5432/postgres")
    del env["DJANGO_SECRET_KEY"]
    r = run(["manage.py", "check"], env)
    assert r.returncode != 0 and "DJANGO_SECRET_KEY" in r.stderr


@pytest.mark.parametrize("key", ["change-me-to-a-long-random-string", "ab" * 40,
                                 "django-insecure-" + "Zq8" + "".join(chr(97 + i % 26) for i in range(60))])
def test_production_refuses_a_short_or_repetitive_secret_key(key):
    """A key a newcomer copies from an example (33 characters) or a repeated pattern signs sessions and QR passes
    that can be guessed: production says so in one line and does not start; a key of 50 random characters runs."""
    env = production_env("postgres://postgres@127.0.0.1:5432/postgres")
    env["DJANGO_SECRET_KEY"] = key
    r = run(["manage.py", "check"], env)
    assert r.returncode != 0 and "DJANGO_SECRET_KEY is too weak" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    env["DJANGO_SECRET_KEY"] = "Zq8" + "".join(chr(ord("a") + i % 26) for i in range(60))
    assert run(["manage.py", "check"], env).returncode == 0
    # an old key kept while rotating still verifies signatures: held to the same rule
    env["DJANGO_SECRET_KEY_FALLBACKS"] = f"{env['DJANGO_SECRET_KEY'][::-1]},{key}"
    r = run(["manage.py", "check"], env)
    assert r.returncode != 0 and "DJANGO_SECRET_KEY_FALLBACKS is too weak" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_old_key_written_after_a_comma_and_a_space_still_verifies():
    """``DJANGO_SECRET_KEY_FALLBACKS="old1, old2"``: the space is not part of the second key (it was, and values
    signed with that key silently stopped verifying)."""
    env = production_env("postgres://postgres@127.0.0.1:5432/postgres")
    old1, old2 = ("".join(chr(ord("a") + (i * k) % 26) for i in range(60)) + str(k) for k in (7, 11))
    env["DJANGO_SECRET_KEY_FALLBACKS"] = f" {old1} , {old2}"
    script = ("from django.core import signing; from django.conf import settings; "
              f"print(settings.SECRET_KEY_FALLBACKS == [{old1!r}, {old2!r}], "
              f"signing.loads(signing.dumps('pass 7', key={old2!r})))")
    r = run(["manage.py", "shell", "-c", script], env)
    assert r.returncode == 0 and r.stdout.split()[-3:] == ["True", "pass", "7"], r.stdout + r.stderr


def test_celery_worker_on_redis_runs_the_replay_task(benchmark1_recording):
    """A real Celery worker (Redis broker) runs the pipeline task; the receipt lands in PostgreSQL."""
    require("Redis", REDIS)
    with postgres_database() as url:
        env = production_env(url, redis_db=13)
        assert run(["manage.py", "migrate", "-v0"], env).returncode == 0
        worker = subprocess.Popen([str(REPO / ".venv" / "bin" / "celery"), "-A", "store", "worker", "--pool=solo",
                                   "--concurrency=1", "-l", "warning", "--without-gossip", "--without-mingle",
                                   "--without-heartbeat"],
                                  cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            enqueue = run(["-c", textwrap.dedent(f"""
                import django; django.setup()
                from carts.tasks import replay_recording_task
                replay_recording_task.delay({str(benchmark1_recording)!r}, "celery-test-session", None)
                print("queued")
            """)], env)
            assert enqueue.returncode == 0 and "queued" in enqueue.stdout, enqueue.stderr
            import time

            import psycopg

            deadline = time.monotonic() + 180
            rows = []
            # the receipt is written before the capture; wait for the capture to bill the visit too
            while time.monotonic() < deadline and rows != [("071142008582", 1, "billed")]:
                with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
                    rows = conn.execute(
                        "SELECT l.barcode, l.quantity, v.state FROM billing_receiptline l "
                        "JOIN billing_receipt r ON r.id = l.receipt_id JOIN gates_visit v ON v.id = r.visit_id "
                        "WHERE v.session = 'celery-test-session'").fetchall()
                if not rows:
                    assert worker.poll() is None, worker.stderr.read()
                time.sleep(0.5)
            assert rows == [("071142008582", 1, "billed")]
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
