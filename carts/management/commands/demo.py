"""``manage.py demo``: the main job on the embedded default — set up, run the real AutoCheckout session live (its
devices emulated against this site, the store loop deciding and billing), serve.

Output: with ``--no-serve`` the last line is ``evaluate``'s ``F1 <value>`` (scripts read it), the accounts to log in
with come before the live run; when serving, the accounts follow the score, just above "serving on"."""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from carts.offline.autocheckout import import_case
from carts.offline.autocheckout_store import AutoCheckoutError
from carts.offline.emulator import emulate
from carts.offline.emulator_devices import INTERRUPTED
from carts.offline.emulator_transport import EmulatorError
from carts.offline.replay import speed_problem
from carts.shared_data import shared_hint
from store.accounts.demo import DEMO_PASSWORD, DEMO_SHOPPER, demo_shopper_ensure
from store.accounts.services import manager_create
from store.inventory.models import Facing, StockMovement
from store.inventory.services import catalogue_load, stock_record_restock
from store.layout.models import Store
from store.layout.services import layout_load
from store.recording import RecordingError, destination_prepare, read_recording

from .replay import print_receipts

DEMO_MANAGER = "manager@walkout.test"


DEMO_OPENING_UNITS = 12


def addr_unavailable(addr: str) -> str | None:
    """Why ``addr`` (``[HOST:]PORT`` as runserver takes it; ``[::1]:PORT`` for IPv6) cannot be listened on now, as
    a phrase ("port 8000 of 127.0.0.1 is in use"), or None when it can (checked by binding it, then letting go)."""
    host, _, port_s = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
    except ValueError:
        return f"{port_s!r} is not a port number"
    if not 0 < port < 65536:
        return f"{port} is not a port number (1–65535)"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"port {port} of {host} is in use" if exc.errno == 98 else f"{host}:{port}: {exc.strerror}"
    return None


def demo_lock_path() -> Path:
    """The embedded database's demo lock: ``<database file>.demo-lock`` (``VAR_DIR/demo.lock`` for an in-memory
    one)."""
    name = str(settings.DATABASES["default"]["NAME"] or "")
    if not name or name.startswith((":memory:", "file:")):
        return settings.VAR_DIR / "demo.lock"
    return Path(f"{name}.demo-lock")


@contextlib.contextmanager
def demo_lock():
    """Held while a demo runs on the embedded database (an exclusive ``flock`` on ``<database>.demo-lock``, let
    go when the process ends however it ends). Raises CommandError naming the other demo's pid while one holds it:
    two demos on one database re-create each other's device keys and accounts, and the first one's devices then
    got 401 from its own server. Production (a staging store's database) takes no lock."""
    if settings.PRODUCTION:
        yield
        return
    path = demo_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            other = fh.read().strip() or "?"
            raise CommandError(f"another demo is running on this checkout's database (pid {other}): stop it first "
                               "(Ctrl-C in its terminal); two demos on one database break each other's devices "
                               "and accounts") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


class Command(BaseCommand):
    help = ("Migrate, create the demo accounts, import the real AutoCheckout BENCHMARK-1 session and run it live "
            "(its shelf controllers, tracker and gate emulated against this site), print the receipts and the "
            "score, then serve the site on http://127.0.0.1:8000 (unless --no-serve).")

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="print the receipts and exit")
        parser.add_argument("--case", default=None,
                            help="AutoCheckout test case folder (default: <shared>/datasets/autocheckout/BENCHMARK-1)")
        parser.add_argument("--addr", default="127.0.0.1:8000",
                            help="address to serve on afterwards, [HOST:]PORT as runserver takes it (default "
                                 "127.0.0.1:8000); checked free before the demo runs")
        parser.add_argument("--speed", type=float, default=5.0,
                            help="× real time of the live session played before serving (default 5)")
        parser.add_argument("--allow-production", action="store_true",
                            help="run in the production profile too (creates accounts with the demo password)")

    def handle(self, *args, **options):
        self._emulating = False
        try:
            with demo_lock():
                self._demo(**options)
        except KeyboardInterrupt:  # one line and 130 (as a shell reports Ctrl-C), not the traceback of a sleep
            raise CommandError(INTERRUPTED if self._emulating else "interrupted (Ctrl-C) before the store ran; "
                               "nothing was billed", returncode=130) from None

    def _demo(self, *, no_serve=False, case=None, addr="127.0.0.1:8000", allow_production=False, speed=5.0,
              **options):
        if problem := speed_problem(speed):
            raise CommandError(problem)
        if not no_serve:
            why = addr_unavailable(addr)
            if why:
                raise CommandError(f"cannot serve on {addr}: {why}; stop what listens there, or pass "
                                   "--addr 127.0.0.1:<another port> (or --no-serve)")
        if settings.PRODUCTION and not allow_production:
            raise CommandError("the demo creates accounts with a published password; it runs in the embedded "
                               "profile (unset WALKOUT_PROFILE), or pass --allow-production for a staging store")
        case_dir = Path(case) if case else settings.SHARED_DIR / "datasets" / "autocheckout" / "BENCHMARK-1"
        if not case_dir.is_dir():
            raise CommandError(f"{case_dir}: the real test case is not there; pass --case PATH"
                               + ("" if case else f", or {shared_hint(settings.SHARED_DIR)}"))
        call_command("migrate", verbosity=0, interactive=False)
        User = get_user_model()
        if not User.objects.filter(username=DEMO_MANAGER).exists():
            manager_create(email=DEMO_MANAGER, password=DEMO_PASSWORD)
        demo_shopper_ensure(DEMO_SHOPPER, password=DEMO_PASSWORD)

        rec_dir = settings.RECORDINGS_DIR / case_dir.name
        try:
            destination_prepare(rec_dir, force=True)  # the demo's own folder: re-imported afresh each run
            import_case(case_dir, rec_dir)
            rec = read_recording(rec_dir)
        except (AutoCheckoutError, RecordingError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"imported {case_dir} → {rec_dir}")
        host = addr if "://" in addr else f"http://{addr}"
        if not no_serve and not os.environ.get("WALKOUT_SITE_URL"):  # the receipts' links point at where it serves
            settings.WALKOUT["SITE_URL"] = host
        if no_serve:  # the score's F1 line stays the last line
            self._accounts(host, serving=False)
        demo_store_prepare(rec)  # listed on the pass page, with its opening stock
        # the store runs live: the recording's devices are played against this site's own APIs (shelf controllers,
        # the store's tracker, the gate scanning the demo shopper's pass) and the store loop decides and bills
        self._emulating = True
        try:
            result = emulate(rec, speed=speed)
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None
        self._emulating = False
        for note in result.recovered:  # an earlier demo killed before its shopper left
            self.stdout.write(note)
        self.stdout.write(f"ran {rec.name} live at {speed:g}× real time in {result.wall_s:.1f} s: the devices sent "
                          f"{result.sent['shelf']} shelf block(s), {result.sent['obs']} tracker message(s), "
                          f"{result.sent['entry']} gate scan(s)")
        for problem in result.problems:
            self.stdout.write(f"problem: {problem}")
        print_receipts(self.stdout, result.session)
        call_command("evaluate", str(rec_dir), session=result.session, stdout=self.stdout)
        if no_serve:
            return
        self.stdout.write("")
        self._accounts(host, serving=True)
        self.stdout.write(f"serving on {host} — Ctrl-C to stop")
        call_command("runserver", addr, use_reloader=False)

    def _accounts(self, host: str, *, serving: bool) -> None:
        """Where to log in and as whom (``serving``: this command serves ``host`` next; else how to serve it)."""
        self.stdout.write(f"shopper:  {host}/  (live cart {host}/visits/current/, receipts {host}/visits/receipts/)")
        self.stdout.write(f"          log in as {DEMO_SHOPPER} / {DEMO_PASSWORD}")
        self.stdout.write(f"manager:  {host}/manage/  (admin {host}/admin/)")
        self.stdout.write(f"          log in as {DEMO_MANAGER} / {DEMO_PASSWORD}")
        if not serving:
            self.stdout.write("          (serve them with `make demo`, or `manage.py runserver` on this database)")


def demo_store_prepare(rec):
    """The demo's store (``rec``'s, AutoCheckout's ``aifi-nanostore``) loaded (layout, catalogue) and listed: it is
    the store the demo shopper enters, so the pass page offers it (``Store.listed``) even where an ``emulate_store``
    run created it first, unlisted. The AutoCheckout data has no stock counts (plates are not zeroed): every shelved
    product gets an opening stock of DEMO_OPENING_UNITS on its first facing, once, marked as the demo's. Returns the
    Store."""
    from django.db.models import Sum

    store = layout_load(data=rec.store)
    Store.objects.filter(pk=store.pk).update(listed=True)
    catalogue_load(store=store, products=rec.store["products"], facings=rec.store["facings"])
    done = set()
    for facing in Facing.objects.filter(bin__store=store).select_related("product", "bin").order_by("id"):
        p = facing.product
        if p.pk in done:
            continue
        done.add(p.pk)
        level = StockMovement.objects.filter(product=p).aggregate(s=Sum("quantity"))["s"] or 0
        if level <= 0 and not StockMovement.objects.filter(product=p, kind=StockMovement.Kind.RESTOCK).exists():
            stock_record_restock(product=p, quantity=DEMO_OPENING_UNITS, bin=facing.bin, by="demo",
                                 note="opening stock (demo)")
    store.refresh_from_db()
    return store
