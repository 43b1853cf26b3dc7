"""``manage.py replay REC``: run the whole pipeline on a recording as if live, and print the receipts."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import models

from carts.offline.replay import (accounts_without_card, database_behind, replay_accounts_missing, replay_recording,
                                  speed_problem)
from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure
from store.billing.models import Receipt
from store.recording import RecordingError, read_recording
from store.gates.models import Visit


def format_minor(amount: int, currency: str) -> str:
    """Minor units → "12.34 USD" (two-decimal currencies)."""
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


def print_receipts(stdout, session: str) -> None:
    """Print every receipt billed in ``session``."""
    receipts = Receipt.objects.filter(visit__session=session).select_related("visit", "visit__shopper")
    for r in receipts.order_by("id"):
        stdout.write(f"receipt {r.pk} — visit {r.visit_id}, shopper {r.visit.shopper}, track {r.visit.track_id}")
        for line in r.lines.all():
            stdout.write(f"  {line.barcode}  {line.name[:32]:<32} × {line.quantity}  "
                         f"{format_minor(line.line_total_minor, r.currency)}")
        stdout.write(f"  total {format_minor(r.total_minor, r.currency)}")


def waiting_review(stdout, session: str, recording_path) -> None:
    """Name ``session``'s visits that wait on a review (each still holds its card authorisation, and its open shelf
    events are in the dashboard's review queue), and how to settle them: a manager decides them at /manage/, or
    ``evaluate`` decides them as the recording's truth says; nothing is printed when none waits."""
    waiting = list(Visit.objects.filter(session=session, state=Visit.State.UNDER_REVIEW).select_related("shopper")
                   .order_by("pk"))
    if not waiting:
        return
    stdout.write(f"{len(waiting)} visit(s) of session {session} wait on a review, their card holds kept: "
                 + ", ".join(f"visit {v.pk} ({v.shopper})" for v in waiting))
    stdout.write(f"  decide them in the review queue at /manage/ (each is billed when its last review is decided), "
                 f"or let the recording's truth decide them: manage.py evaluate {recording_path} --session {session}"
                 " (needs truth_events.json). Offline runs bill throwaway replay+<track>@walkout.test accounts with "
                 "the test card, and their receipts are not in the dashboard's Today's sales.")


class Command(BaseCommand):
    help = "Replay a recording through the real pipeline (sensors → fusion → carts → checkout) and print receipts."

    def add_arguments(self, parser):
        parser.add_argument("recording", help="recording folder (see docs/recording-format.md)")
        parser.add_argument("--speed", type=float, default=None, help="pace against the wall clock (1 = real time, at most 1000)")
        parser.add_argument("--session", help="session name (default: <recording>@<now>)")
        parser.add_argument("--shopper", default=None,
                            help="play the first shopper track without an account in gates.csv as this account, "
                                 "and the recorded accounts as themselves (default: a test run, every shopper on "
                                 "a throwaway account replay+<track>@walkout.test with the test card, never a real "
                                 f"shopper's; e.g. --shopper {DEMO_SHOPPER} to watch it on the demo shopper's "
                                 "phone)")
        parser.add_argument("--as-of-now", action="store_true",
                            help="shift the recording's clock so that it starts now (as a live session would)")
        parser.add_argument("--create-shoppers", action="store_true",
                            help="create missing shopper accounts with the provider's test card (demo, tests)")

    def handle(self, *args, recording, speed=None, session=None, shopper=None, create_shoppers=False,
               as_of_now=False, **options):
        behind = database_behind()
        if behind:
            raise CommandError(behind)
        if speed is not None and (problem := speed_problem(speed)):
            raise CommandError(problem)
        try:
            rec = read_recording(recording)
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        if shopper:
            from django.contrib.auth import get_user_model

            staff = get_user_model().objects.filter(username=shopper).filter(
                models.Q(is_staff=True) | models.Q(is_superuser=True)).exists()
            if staff:  # a replay saves a test card on its shoppers and bills them: never a manager's account
                raise CommandError(f"--shopper {shopper} is a manager's (staff) account; a replay plays shoppers "
                                   "only: name a shopper's e-mail, or leave --shopper out (throwaway accounts)")
        if shopper and rec.gates and all(g.account for g in rec.gates if g.kind == "entry"):
            self.stderr.write(f"note: every entry in {rec.path.name}/gates.csv names its account, so --shopper "
                              f"{shopper} plays no shopper of this recording")
        if not create_shoppers:
            # --shopper is checked even where gates.csv names every account (and so no track plays it): a name
            # that is not an account with a card is the same mistake whichever recording it is given with
            missing = sorted(set(replay_accounts_missing(rec, default_shopper=shopper))
                             | set(accounts_without_card([shopper] if shopper else [])))
            if missing:
                names = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise CommandError(f"the recording's shoppers need accounts with a card on file, and {names} "
                                   f"{'has' if len(missing) == 1 else 'have'} none: replay with --create-shoppers "
                                   "(accounts with the payment provider's test card), or create them and add a card")
        result = replay_recording(rec, session=session, default_shopper=shopper, speed=speed,
                                  shopper_factory=demo_shopper_ensure if create_shoppers else None,
                                  as_of_now=as_of_now)
        s = result.stats
        for p in rec.problems + s.problems:
            self.stderr.write(f"problem: {p}")
        billed = Receipt.objects.filter(visit__session=result.session).count()
        earlier = f" ({billed - s.receipts} billed by an earlier run of this session: nothing is billed twice)" \
            if billed > s.receipts else ""
        self.stdout.write(f"session {result.session}: {s.samples} samples, {s.shelf_events} shelf event(s), "
                          f"{s.cart_events} cart event(s), {s.reviews} to review, {s.visits} visit(s), "
                          f"{s.receipts} receipt(s){earlier}")
        print_receipts(self.stdout, result.session)
        waiting_review(self.stdout, result.session, rec.path)
