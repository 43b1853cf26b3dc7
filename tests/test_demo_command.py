"""``manage.py demo`` (``make demo``): the real BENCHMARK-1 session run live; with ``--no-serve`` the last line is the
score's ``F1 <value>`` (the accounts come before the run), when serving the accounts follow the score, just above
"serving on". A second run reuses the emulator's own devices."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from carts.offline.emulator_devices import EMULATOR
from carts.management.commands.demo import DEMO_MANAGER
from sensors.models import ShelfController
from store.accounts.demo import DEMO_PASSWORD, DEMO_SHOPPER
from store.gates.models import EntryPass, Gate
from tests.services import free_port
from conftest import shared_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(settings, tmp_path, monkeypatch):
    """Run ``demo`` with its arguments; returns its stdout lines (``runserver`` recorded, not run)."""
    case = shared_file("datasets/autocheckout/BENCHMARK-1/plate_data.json").parent
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    from carts.management.commands import demo as demo_command

    served = []
    real = demo_command.call_command

    def call(name, *args, **kwargs):
        if name == "runserver":
            served.append(args)
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(demo_command, "call_command", call)

    def run(*args) -> tuple[list[str], list]:
        out = io.StringIO()
        served.clear()
        call_command("demo", "--case", str(case), "--speed", "10", *args, stdout=out, stderr=io.StringIO())
        return out.getvalue().rstrip("\n").splitlines(), list(served)

    return run


def test_demo_no_serve_ends_with_the_f1_line_and_serving_shows_the_accounts_last(demo, mailoutbox, monkeypatch):
    lines, served = demo("--no-serve")
    assert lines[-1] == "F1 1.000", lines[-12:]
    assert not served
    accounts = next(i for i, line in enumerate(lines) if line.startswith("shopper:"))
    assert accounts < next(i for i, line in enumerate(lines) if line.startswith("ran BENCHMARK-1 live"))
    assert f"          log in as {DEMO_MANAGER} / {DEMO_PASSWORD}" in lines
    # the demo shopper is offered the demo's store on the pass page (Store.listed; issue #11)
    from django.contrib.auth import get_user_model
    from django.test import Client

    shopper = Client()
    shopper.force_login(get_user_model().objects.get(username=DEMO_SHOPPER))
    assert shopper.get("/gates/pass/").status_code == 200
    assert EntryPass.objects.filter(shopper__username=DEMO_SHOPPER).latest("pk").store.code == "aifi-nanostore"
    devices = (set(Gate.objects.filter(emulated=True).values_list("pk", flat=True)),
               set(ShelfController.objects.filter(emulated=True).values_list("pk", flat=True)))

    port = free_port()  # the demo checks that the port is free before it runs
    monkeypatch.delenv("WALKOUT_SITE_URL", raising=False)
    from django.conf import settings

    monkeypatch.setitem(settings.WALKOUT, "SITE_URL", settings.WALKOUT["SITE_URL"])  # the demo sets it: put back
    mailoutbox.clear()
    lines, served = demo("--addr", f"127.0.0.1:{port}")
    assert served == [(f"127.0.0.1:{port}",)]
    # the receipt e-mail links to the site where the demo serves, not to the default port
    assert any(f"http://127.0.0.1:{port}/visits/receipts/" in m.body for m in mailoutbox), [m.body for m in mailoutbox]
    f1 = lines.index("F1 1.000")
    assert lines[f1 + 1:] == [
        "",
        f"shopper:  http://127.0.0.1:{port}/  (live cart http://127.0.0.1:{port}/visits/current/, receipts "
        f"http://127.0.0.1:{port}/visits/receipts/)",
        f"          log in as {DEMO_SHOPPER} / {DEMO_PASSWORD}",
        f"manager:  http://127.0.0.1:{port}/manage/  (admin http://127.0.0.1:{port}/admin/)",
        f"          log in as {DEMO_MANAGER} / {DEMO_PASSWORD}",
        f"serving on http://127.0.0.1:{port} — Ctrl-C to stop"]
    # the second run played the same devices of the emulator's (re-keyed), none new
    assert devices == (set(Gate.objects.filter(emulated=True).values_list("pk", flat=True)),
                       set(ShelfController.objects.filter(emulated=True).values_list("pk", flat=True)))
    assert Gate.objects.get(emulated=True).name == EMULATOR


@pytest.mark.django_db
def test_a_second_demo_on_the_same_database_is_refused_naming_the_first(tmp_path):
    """Two demos in one checkout share its database: the second re-created the devices' keys and the first one's
    devices got 401 from their own server. While a demo runs, another says so in one line (naming its pid) before
    touching anything; once the first is gone, a demo runs again (the lock goes with its process)."""
    import os

    from django.core.management.base import CommandError

    from carts.management.commands.demo import demo_lock

    with demo_lock():
        with pytest.raises(CommandError, match=rf"another demo is running on this checkout's database \(pid "
                                               rf"{os.getpid()}\)"):
            call_command("demo", "--no-serve", "--case", str(tmp_path / "nowhere"), stdout=io.StringIO())
        with pytest.raises(CommandError, match="another demo is running"):
            with demo_lock():
                pass
    with demo_lock():  # let go: taken again
        pass
    with pytest.raises(CommandError, match="the real test case is not there"):  # past the lock, to the next check
        call_command("demo", "--no-serve", "--case", str(tmp_path / "nowhere"), stdout=io.StringIO())
    # another process holding it (a demo in another terminal), then killed: the kernel lets its lock go
    import subprocess
    import sys

    from carts.management.commands.demo import demo_lock_path

    lock = str(demo_lock_path())
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); f.seek(0); f.truncate(); f.write(str(os.getpid())); "
                               "f.flush(); print('held', flush=True); time.sleep(60)", lock],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CommandError, match=rf"\(pid {holder.pid}\)"):
            call_command("demo", "--no-serve", "--case", str(tmp_path / "nowhere"), stdout=io.StringIO())
    finally:
        holder.kill()
        holder.wait()
    with demo_lock():  # taken once the holder is gone (raises otherwise)
        pass
