"""What a fresh user met trying the README's commands: each now answers with a sentence instead of a traceback or
silently wrong figures. A recording is never written over stale files; ``emulate_store --url`` without a usable MQTT
broker, ``create_manager`` without a terminal, ``evaluate --session`` of another recording, a non-finite
``--speed``, and ``replay`` without the shoppers' accounts are refused with the reason; eager tasks of the
embedded profile never touch a broker (no kombu "No hostname was supplied" warning)."""
from __future__ import annotations

import io
import logging
import socket

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from conftest import shared_file
from store.accounts.demo import demo_shopper_ensure
from store.accounts.services import manager_create
from store.gates.models import Visit
from store.gates.services import checkout_enqueue
from store.layout.models import Store
from store.recording import read_recording

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------------------------ destinations of recordings
def test_import_autocheckout_refuses_a_non_empty_folder_and_force_clears_it(tmp_path):
    case = shared_file("datasets/autocheckout/BENCHMARK-1/plate_data.json").parent
    dest = tmp_path / "rec"
    call_command("import_autocheckout", str(case), str(dest), stdout=io.StringIO(), stderr=io.StringIO())
    (dest / "truth_events.json").write_text("[]")  # what an earlier simulation into this folder left
    with pytest.raises(CommandError, match=r"the folder is not empty; choose a new folder, or pass --force"):
        call_command("import_autocheckout", str(case), str(dest), stdout=io.StringIO(), stderr=io.StringIO())
    assert (dest / "truth_events.json").exists()  # refused: nothing touched
    call_command("import_autocheckout", str(case), str(dest), "--force", stdout=io.StringIO(), stderr=io.StringIO())
    assert not (dest / "truth_events.json").exists() and (dest / "recording.json").exists()


def test_simulate_refuses_a_non_empty_folder_before_simulating_and_never_clears_a_stranger(tmp_path):
    shared_file("datasets/autocheckout/store_meta")
    dest = tmp_path / "sim"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not empty"):
        call_command("simulate", str(dest), "--shoppers", "1", "--minutes", "0.5", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"not a recording folder \(no recording.json\)"):
        call_command("simulate", str(dest), "--shoppers", "1", "--minutes", "0.5", "--force", stdout=io.StringIO())
    assert (dest / "notes.txt").read_text() == "mine"
    (dest / "notes.txt").unlink()
    call_command("simulate", str(dest), "--shoppers", "1", "--minutes", "0.5", stdout=io.StringIO())
    (dest / "stale.csv").write_text("x")
    call_command("simulate", str(dest), "--shoppers", "1", "--minutes", "0.5", "--force", stdout=io.StringIO())
    assert not (dest / "stale.csv").exists() and (dest / "truth_events.json").exists()


# ------------------------------------------------------------------------------------------------ emulate_store
def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_emulate_store_url_needs_a_reachable_mqtt_broker(benchmark1_recording, settings):
    settings.MQTT_URL = ""
    with pytest.raises(CommandError, match=r"--url needs MQTT_URL"):
        call_command("emulate_store", str(benchmark1_recording), "--url", "http://127.0.0.1:8000",
                     stdout=io.StringIO(), stderr=io.StringIO())
    settings.MQTT_URL = f"mqtt://127.0.0.1:{_dead_port()}"
    with pytest.raises(CommandError, match=r"the shelf controllers cannot publish: cannot reach the MQTT broker"):
        call_command("emulate_store", str(benchmark1_recording), "--url", "http://127.0.0.1:8000",
                     stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("speed", ["inf", "nan", "0", "-2", "5000", "1e9"])
def test_replay_emulate_store_and_demo_refuse_a_speed_out_of_bounds_and_state_them(benchmark1_recording, speed):
    with pytest.raises(CommandError, match="--speed must be a number > 0 and ≤ 1000"):
        call_command("replay", str(benchmark1_recording), "--speed", speed, stdout=io.StringIO(),
                     stderr=io.StringIO())
    with pytest.raises(CommandError, match="--speed must be a number > 0 and ≤ 1000"):
        call_command("emulate_store", str(benchmark1_recording), "--speed", speed, stdout=io.StringIO(),
                     stderr=io.StringIO())
    with pytest.raises(CommandError, match="--speed must be a number > 0 and ≤ 1000"):
        call_command("demo", "--no-serve", "--speed", speed, stdout=io.StringIO())


# ----------------------------------------------------------------------------------------------- create_manager
class _NoTty(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_create_manager_without_a_terminal_says_how_to_give_the_password(monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setattr("sys.stdin", _NoTty(""))
    with pytest.raises(CommandError, match=r"no terminal to ask the password on: pass --password-stdin"):
        call_command("create_manager", "boss@example.com", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no password on stdin"):
        call_command("create_manager", "boss@example.com", "--password-stdin", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"\$BOSS_PW is not set"):
        call_command("create_manager", "boss@example.com", "--password-from-env", "BOSS_PW", stdout=io.StringIO())
    monkeypatch.setenv("BOSS_PW", "a-long-Passphrase-42")
    call_command("create_manager", "boss@example.com", "--password-from-env", "BOSS_PW", stdout=io.StringIO())
    monkeypatch.setenv("WALKOUT_MANAGER_PASSWORD", "another-long-Passphrase-43")
    call_command("create_manager", "deputy@example.com", "--no-input", stdout=io.StringIO())
    User = get_user_model()
    assert User.objects.get(username="boss@example.com").check_password("a-long-Passphrase-42")
    assert User.objects.get(username="deputy@example.com").check_password("another-long-Passphrase-43")


# -------------------------------------------------------------------------------------------- evaluate, replay
def test_evaluate_refuses_a_session_of_another_recording(benchmark1_recording):
    from django.utils import timezone

    rec = read_recording(benchmark1_recording)
    user = demo_shopper_ensure("x@walkout.test")
    other = Store.objects.create(code="elsewhere", name="Elsewhere", currency="usd")
    Visit.objects.create(store=other, shopper=user, session="sim~abc@1", track_id="7", entered_at=timezone.now())
    with pytest.raises(CommandError, match=r"ran in store elsewhere, not in aifi-nanostore"):
        call_command("evaluate", str(benchmark1_recording), session="sim~abc@1", stdout=io.StringIO())
    here = Store.objects.create(code=rec.store["store"]["code"], name="Nano", currency="usd")
    Visit.objects.create(store=here, shopper=user, session="sim~def@2", track_id="not-a-track",
                         entered_at=timezone.now())
    with pytest.raises(CommandError, match=r"holds shopper track\(s\) not-a-track that .* does not have"):
        call_command("evaluate", str(benchmark1_recording), session="sim~def@2", stdout=io.StringIO())


def test_replay_refuses_an_unknown_shopper_also_where_gates_csv_names_every_account(tmp_path, benchmark1_recording):
    """--shopper naming no account is the same error on a recording whose gates.csv names accounts (a simulated
    one, where it plays nobody) as on BENCHMARK-1 (where it plays the first shopper)."""
    shared_file("datasets/autocheckout/store_meta")
    sim = tmp_path / "sim"
    call_command("simulate", str(sim), "--shoppers", "1", "--minutes", "0.5", stdout=io.StringIO())
    for rec in (sim, benchmark1_recording):
        err = io.StringIO()
        with pytest.raises(CommandError, match=r"need accounts with a card on file, and .*nobody@example\.com"
                                               r".* none: replay with --create-shoppers"):
            call_command("replay", str(rec), "--shopper", "nobody@example.com", stdout=io.StringIO(), stderr=err)
        assert ("plays no shopper of this recording" in err.getvalue()) == (rec == sim)
    assert not Visit.objects.exists()


def test_replay_without_the_shoppers_accounts_fails_and_names_create_shoppers(benchmark1_recording):
    with pytest.raises(CommandError, match=r"shopper@walkout.test has none: replay with --create-shoppers"):
        call_command("replay", str(benchmark1_recording), "--shopper", "shopper@walkout.test", stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert not Visit.objects.exists()  # refused before replaying anything


def test_replay_never_plays_a_managers_account(benchmark1_recording):
    """`--shopper <a manager> --create-shoppers` saved the test card on the manager's account and billed it."""
    manager_create(email="boss@walkout.test", password="a long enough password 1")
    with pytest.raises(CommandError, match=r"boss@walkout.test is a manager's \(staff\) account"):
        call_command("replay", str(benchmark1_recording), "--shopper", "boss@walkout.test", "--create-shoppers",
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert not Visit.objects.exists()


# ---------------------------------------------------------------------------------------- no broker, no warning
def test_an_eager_task_of_the_embedded_profile_touches_no_broker(caplog):
    with caplog.at_level(logging.WARNING):
        assert checkout_enqueue(visit_id=987654, countdown=0) is True  # ran here: the visit does not exist
    assert not [r for r in caplog.records if r.name.startswith("kombu")], [r.getMessage() for r in caplog.records]
    assert any("visit 987654 does not exist" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("database_url, says, rc", [
    ("notaurl", "DATABASE_URL is not a database URL such as postgres://", 2),
    ("postgres://walkout@127.0.0.1:1/walkout", "walkout cannot reach its database: connection failed", 3),
])
def test_a_production_command_with_a_bad_or_unreachable_database_says_so_in_one_line(database_url, says, rc):
    """A newcomer's first production `migrate` with a mistyped DATABASE_URL or PostgreSQL down: one line naming the
    problem and a non-zero exit, not a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "WALKOUT_PROFILE": "production", "DATABASE_URL": database_url, "DJANGO_SECRET_KEY": "k" + "0123456789" * 6,
           "REDIS_URL": "redis://127.0.0.1:6379/0", "MQTT_URL": "mqtt://127.0.0.1:1883",
           "WALKOUT_PAYMENT_PROVIDER": "dummy"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, str(root / "manage.py"), "migrate", "--noinput"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == rc, done.stderr[-2000:]
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ the shared data
def test_simulate_and_demo_without_the_shared_data_say_to_set_walkout_shared(tmp_path, settings):
    """Without ../shared the error names the file, where it looked and WALKOUT_SHARED, not only "missing"."""
    settings.SHARED_DIR = tmp_path / "nowhere"
    hint = rf"set WALKOUT_SHARED to the folder that holds datasets/ and models/ \(looked under {tmp_path}/nowhere\)"
    with pytest.raises(CommandError, match=r"Plates.json: missing .*" + hint):
        call_command("simulate", str(tmp_path / "sim"), "--shoppers", "1", "--minutes", "0.5", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"the real test case is not there; pass --case PATH, or " + hint):
        call_command("demo", "--no-serve", stdout=io.StringIO())


# --------------------------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_during_an_emulation_is_one_line_and_status_130(benchmark1_recording, monkeypatch):
    """Ctrl-C in emulate_store (and demo, which plays the same emulation) ends in one line that says a later run
    bills the visits left inside, with the shell's status for SIGINT, not a traceback ending in time.sleep."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("carts.management.commands.emulate_store.emulate", interrupted)
    with pytest.raises(CommandError, match=r"^interrupted \(Ctrl-C\).* a later demo or emulate_store run exits and "
                                           r"bills any visit this one left inside") as caught:
        call_command("emulate_store", str(benchmark1_recording), stdout=io.StringIO(), stderr=io.StringIO())
    assert caught.value.returncode == 130


def test_a_command_on_an_unmigrated_database_says_to_migrate_not_that_it_cannot_reach_it(tmp_path):
    """A fresh WALKOUT_SQLITE_PATH is reachable but empty: "no such table" means run migrate, in one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "WALKOUT_SQLITE_PATH": str(tmp_path / "fresh.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("WALKOUT_PROFILE", None)
    done = subprocess.run([sys.executable, str(root / "manage.py"), "sweep_visits"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stderr.strip() == ("the database is not migrated (no such table: gates_visit); run "
                                   "`python manage.py migrate`"), done.stderr[-2000:]


# ------------------------------------------------------------------------------------------------------ run_store
def test_run_store_in_the_embedded_profile_warns_that_other_processes_cannot_feed_it():
    Store.objects.create(code="polish-run", name="Polish")
    err = io.StringIO()
    call_command("run_store", "polish-run", "--max-seconds", "0.3", stdout=io.StringIO(), stderr=err)
    first = err.getvalue().splitlines()[0]
    assert first.startswith("warning: embedded profile: the store's streams are in this process's memory")
    assert "WALKOUT_PROFILE=production (with REDIS_URL) puts them on Redis Streams" in first
