"""``manage.py emulate_store REC [--speed S] [--url URL]``: play a recording's devices against a running Walkout
(``carts.offline.emulator``), wait until every visit is billed, then print the receipts and ``evaluate``'s score lines
(last line ``F1 <value>``) when the recording has truth.

Whoever is inside the recording's store when it starts (admitted at one of the store's real gates, not yet placed
by a camera: ``carts.live.visits_waiting``) plays its first shoppers, in the order they came in, as in the
dashboard's live replay: the recorded take fills that shopper's cart and they are billed for it when the recorded
shopper leaves. The command says who before it starts; ``--no-bind`` plays every shopper as a demo account."""
from __future__ import annotations

import io
import math

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from carts.offline.emulator import emulate
from carts.offline.emulator_devices import INTERRUPTED
from carts.offline.emulator_transport import EmulatorError
from carts.offline.replay import database_behind, speed_problem
from store.recording import RecordingError, read_recording
from carts.live import recording_cast


class Command(BaseCommand):
    help = ("Play a recording's devices (shelf controllers, the store's tracker or its camera videos, the gate with "
            "real shopper passes) against a running Walkout as real devices would; exits when every visit is billed and "
            "prints the receipts and the score. Embedded profile: runs the store loop in this process; production: "
            "talks to --url (daphne), the MQTT broker and run_store.")

    def add_arguments(self, parser):
        parser.add_argument("recording")
        parser.add_argument("--speed", type=float, default=1.0, help="× real time, at most 1000 (default 1)")
        parser.add_argument("--url", default=None,
                            help="a running Walkout, e.g. http://127.0.0.1:8000 (default: this process, embedded)")
        parser.add_argument("--no-bind", action="store_true",
                            help="never bind the people inside the store (admitted at a real gate) to the "
                                 "recording's shoppers: every recorded shopper scans a demo account's pass")
        parser.add_argument("--settle-timeout", type=float, default=120.0, metavar="S",
                            help="wall seconds to wait after the recording for every visit to be billed")

    def handle(self, *args, recording, speed, url, settle_timeout, no_bind=False, **options):
        behind = database_behind()
        if behind:
            raise CommandError(behind)
        if problem := speed_problem(speed):
            raise CommandError(problem)
        if not (math.isfinite(settle_timeout) and settle_timeout > 0):
            raise CommandError(f"--settle-timeout must be a finite number of seconds > 0, got {settle_timeout:g}")
        try:
            rec = read_recording(recording)
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        bind = [] if no_bind else self._people_inside(rec)
        try:
            result = emulate(rec, speed=speed, url=url, settle_timeout_s=settle_timeout, out=self.stderr,
                             bind_visits=[visit for _, visit in bind])
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:  # one line and 130 (as a shell reports Ctrl-C), not the traceback of a sleep
            raise CommandError(INTERRUPTED, returncode=130) from None
        for problem in result.problems:
            self.stderr.write(f"problem: {problem}")
        self.stderr.write(f"emulated in {result.wall_s:.1f} s: sent {result.sent}; every visit settled "
                          f"{result.settled_after_s:.1f} s (recording time) after the recording's end; "
                          f"session {result.session}")
        if rec.truth is None:
            self.stdout.write(f"session {result.session}: {len(result.visits)} visit(s); no truth.json to score")
            return
        buf = io.StringIO()
        call_command("evaluate", str(rec.path), session=result.session, stdout=buf)
        self.stdout.write(buf.getvalue().rstrip("\n"))

    def _people_inside(self, rec) -> list[tuple[str, int]]:
        """``[(account, visit id)]`` of the people inside ``rec``'s store who play its first shoppers (module
        docstring), said on stderr; empty when nobody is inside (the demo accounts play)."""
        inside = [(who, visit) for who, visit in recording_cast(rec) if visit is not None]
        if inside:
            who = ", ".join(f"{name} (visit {visit})" for name, visit in inside)
            self.stderr.write(f"inside the store now, so the recording's first shopper{'s' if len(inside) > 1 else ''}"
                              f": {who} (--no-bind to play demo accounts only)")
        return inside
