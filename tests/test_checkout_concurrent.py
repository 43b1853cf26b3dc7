"""Billing workers in parallel (``celery -A store worker --pool=prefork --concurrency N``) on PostgreSQL.

Each checkout runs ``store.gates.checkout_task.visit_checkout_task`` in a process of its own (as two prefork
children do), released together; the dummy provider's capture is slowed to ``CAPTURE_S`` so that the checkouts
overlap for certain (a real Stripe answers in a few hundred ms).

* Two deliveries of one visit's checkout at once: one receipt, one capture, one sale in the stock ledger, one
  transition to billed, one receipt e-mail queued, and both return the same receipt
  (``carts.services.checkout.visit_checkout`` locks the visit row for the whole checkout; without that lock the
  second one bills nothing twice but queues a second e-mail, and without ``receipt_issue``'s lock it fails).
* Two visits of one store at once are billed side by side, not one after the other: the visit row is locked, never
  the store's (``select_for_update(of=("self",))``; locking the joined store row made every capture of a store wait
  for the one before).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO
from tests.services import OwnRedis, postgres_database, production_env

pytestmark = pytest.mark.services

CAPTURE_S = 1.5

WORLD = textwrap.dedent("""
    import json, django; django.setup()
    from decimal import Decimal
    from django.utils import timezone
    from carts.services.ledger import CartChange, cart_apply
    from store.accounts.demo import demo_shopper_ensure
    from store.gates.models import Visit
    from store.gates.services import gate_create, pass_issue, visit_bind_track, visit_enter
    from store.inventory.models import Product
    from store.layout.models import Store
    store = Store.objects.create(code="par", name="Parallel", currency="usd")
    gate, _ = gate_create(store=store, name="door")
    water = Product.objects.create(store=store, barcode="0001", name="Water", price=Decimal("1.99"),
                                   unit_weight_g=600.0)
    chips = Product.objects.create(store=store, barcode="0002", name="Chips", price=Decimal("2.50"),
                                   unit_weight_g=150.0)
    visits = []
    for name in ("ann", "bob", "cy"):
        user = demo_shopper_ensure(f"{name}@example.com")
        visit = visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate)
        visit = visit_bind_track(visit=visit, track_id=name)
        for product in (water, chips):
            cart_apply(change=CartChange(visit=visit, product=product, quantity=1, confidence=0.95, evidence={}),
                       shelf_event=None)
        Visit.objects.filter(pk=visit.pk).update(state=Visit.State.EXITED, exited_at=timezone.now())
        visits.append(visit.pk)
    print(json.dumps(visits))
""")

# one billing worker's checkout: set up, say ready, wait for the go file, run the task, print what it returned
CHECKOUT = textwrap.dedent("""
    import json, os, sys, time, django; django.setup()
    from store.billing.provider_dummy import DummyProvider
    from store.gates.checkout_task import visit_checkout_task
    real = DummyProvider.capture
    def slow_capture(self, **kwargs):
        time.sleep(float(os.environ["CAPTURE_S"]))
        return real(self, **kwargs)
    DummyProvider.capture = slow_capture
    ready, go = sys.argv[2], sys.argv[3]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    receipt = visit_checkout_task(int(sys.argv[1]))
    print(json.dumps({"receipt": receipt, "done": time.time()}))
""")


def sql(url: str, query: str, *params):
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        return conn.execute(query, params).fetchall()


def checkouts_at_once(env, visit_ids: list[int], tmp_path) -> tuple[list[dict], float]:
    """Run each visit's checkout task in a process of its own, released together; ([each one's output], seconds
    from the release to the last one done)."""
    go = tmp_path / "go"
    procs, readies = [], []
    for i, visit_id in enumerate(visit_ids):
        ready = tmp_path / f"ready{i}"
        readies.append(ready)
        procs.append(subprocess.Popen([sys.executable, "-c", CHECKOUT, str(visit_id), str(ready), str(go)], cwd=REPO,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
            time.sleep(0.02)
        released = time.time()
        go.touch()
        outs = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs, max(o["done"] for o in outs) - released


@pytest.fixture
def world(tmp_path):
    with postgres_database() as url, OwnRedis() as redis:
        env = production_env(url)
        env.update({"REDIS_URL": redis.url, "CAPTURE_S": str(CAPTURE_S)})
        done = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        done = subprocess.run([sys.executable, "-c", WORLD], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        yield url, redis, env, json.loads(done.stdout.strip().splitlines()[-1])


def test_two_workers_checking_one_visit_out_bill_it_once(world, tmp_path):
    url, redis, env, (ann, _, _) = world
    outs, _ = checkouts_at_once(env, [ann, ann], tmp_path)
    receipts = sql(url, "SELECT id, total_minor FROM billing_receipt WHERE visit_id = %s", ann)
    assert len(receipts) == 1 and receipts[0][1] == 199 + 250
    assert [o["receipt"] for o in outs] == [receipts[0][0]] * 2
    captures = sql(url, "SELECT amount_minor, status FROM billing_paymentattempt WHERE visit_id = %s AND kind = "
                        "'capture'", ann)
    assert captures == [(449, "succeeded")]
    assert sql(url, "SELECT count(*) FROM inventory_stockmovement WHERE reference = %s", f"receipt:{receipts[0][0]}") \
        == [(2,)]
    assert sql(url, "SELECT count(*) FROM gates_visittransition WHERE visit_id = %s AND to_state = 'billed'", ann) \
        == [(1,)]
    import redis as redis_py

    queued = [json.loads(m) for m in redis_py.Redis.from_url(redis.url).lrange("celery", 0, -1)]
    assert [m["headers"]["task"] for m in queued] == ["carts.emails.receipt_email_task"]  # one e-mail, not two


def test_two_workers_bill_two_visits_of_one_store_side_by_side(world, tmp_path):
    url, _, env, (_, bob, cy) = world
    outs, seconds = checkouts_at_once(env, [bob, cy], tmp_path)
    assert all(o["receipt"] for o in outs)
    assert sql(url, "SELECT count(*) FROM billing_paymentattempt WHERE kind = 'capture' AND status = 'succeeded'") \
        == [(2,)]
    # one after the other would take two captures' time (3 s); side by side one capture's and the rest of a checkout
    assert seconds < 2 * CAPTURE_S - 0.3, seconds


# a phone's view: the cart group of each visit named, until each one's snapshot says billed; prints visit → state
LISTEN = textwrap.dedent("""
    import asyncio, json, sys, django; django.setup()
    from channels.layers import get_channel_layer
    from carts.services.ledger import cart_group
    async def main():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        visits = [int(v) for v in sys.argv[1:]]
        for v in visits:
            await layer.group_add(cart_group(v), channel)
        print("ready", flush=True)
        seen = {}
        while sorted(v for v, state in seen.items() if state == "billed") != sorted(visits):
            snapshot = (await asyncio.wait_for(layer.receive(channel), 90))["snapshot"]
            seen[snapshot["visit"]] = snapshot["state"]
        print(json.dumps(seen), flush=True)
    asyncio.run(main())
""")


QUEUE = textwrap.dedent("""
    import json, sys, django; django.setup()
    from store.gates.services import checkout_enqueue
    print(json.dumps([checkout_enqueue(visit_id=int(v), countdown=0) for v in sys.argv[1:]]))
""")


def test_the_readme_billing_worker_bills_queued_checkouts_and_mails_each_receipt_once(world, tmp_path, monkeypatch):
    """The README's billing worker (prefork, two processes) runs the queued checkouts and then their receipt e-mails
    (a task of its own; the file backend here); its log lines still read as ``bench/live_analysis.py`` parses them.
    Each billed cart reaches the phones' channel group (pushed by the pool process's sender thread,
    ``store.celery``), and the pool processes keep their database connections between tasks
    (``WORKER_DB_CONN_MAX_AGE_S``: Celery's fixup closed them after every task)."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # the bench's modules import each other as scripts
    from live_analysis import _PICKED

    url, _, env, visits = world
    env = {**env, "CAPTURE_S": "0", "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
           "DJANGO_EMAIL_FILE_PATH": str(tmp_path / "mail")}
    log_path = tmp_path / "billing.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen([str(REPO / ".venv" / "bin" / "celery"), "-A", "store", "worker", "--pool=prefork",
                                   "--concurrency", "2", "-l", "info", "--without-gossip", "--without-mingle",
                                   "--without-heartbeat"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    listener = subprocess.Popen([sys.executable, "-c", LISTEN, *map(str, visits)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready", listener.stderr.read()[-2000:]
        queued = subprocess.run([sys.executable, "-c", QUEUE, *map(str, visits)], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=120)
        assert queued.returncode == 0 and json.loads(queued.stdout.strip().splitlines()[-1]) == [True] * 3, \
            queued.stderr[-2000:]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            mailed = sql(url, "SELECT count(*) FROM carts_receiptemail WHERE sent_at IS NOT NULL")[0][0]
            if mailed == 3:
                break
            time.sleep(0.5)
        # the pool processes' connections outlive their tasks (this query's own is not counted)
        kept = sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")[0][0]
        pushed, errors = listener.communicate(timeout=90)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    text = log_path.read_text()
    assert sql(url, "SELECT count(*) FROM gates_visit WHERE state = 'billed'") == [(3,)], text[-3000:]
    assert sql(url, "SELECT count(*) FROM carts_receiptemail WHERE sent_at IS NOT NULL") == [(3,)], text[-3000:]
    assert len(list((tmp_path / "mail").iterdir())) == 3
    assert sorted(int(m.group(1)) for m in _PICKED.finditer(text)) == sorted(visits)
    assert "ForkPoolWorker" in text
    assert json.loads(pushed.strip().splitlines()[-1]) == {str(v): "billed" for v in visits}, errors[-2000:]
    assert 1 <= kept <= 2, kept
