"""``manage.py evaluate REC``: billed receipts beside the true ones, and the AutoCheckout item-level score."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from carts.evaluation import score_receipts
from carts.replay import DEMO_SHOPPER, billed_receipts, demo_shopper_ensure, replay_recording
from store.gates.models import Visit
from store.recording import RecordingError, read_recording


class Command(BaseCommand):
    help = ("Compare what the pipeline billed for a recording with its true receipts (truth.json) and print "
            "item-level precision, recall and F1. Uses the latest replay of the recording, or replays it first.")

    def add_arguments(self, parser):
        parser.add_argument("recording")
        parser.add_argument("--session", help="score this replay session (default: the latest of this recording)")
        parser.add_argument("--replay", action="store_true", help="always replay first, in a new session")

    def handle(self, *args, recording, session=None, replay=False, **options):
        try:
            rec = read_recording(recording)
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        if rec.truth is None:
            raise CommandError(f"{rec.path / 'truth.json'}: missing file; nothing to evaluate against")
        if session is None and not replay:
            latest = (Visit.objects.filter(session__startswith=f"{rec.name}@").order_by("-entered_at", "-id")
                      .values_list("session", flat=True).first())
            session = latest
        if session is None:
            session = replay_recording(rec, default_shopper=DEMO_SHOPPER, shopper_factory=demo_shopper_ensure).session
        billed = billed_receipts(session=session)
        truth = {r.track: {line.barcode: line.quantity for line in r.lines} for r in rec.truth}
        self.stdout.write(f"session {session}")
        for track in sorted(set(billed) | set(truth)):
            b, t = billed.get(track, {}), truth.get(track, {})
            mark = "exact" if {k: v for k, v in b.items() if v} == {k: v for k, v in t.items() if v} else "WRONG"
            self.stdout.write(f"shopper track {track}: {mark}")
            self.stdout.write(f"  {'barcode':<16}{'billed':>8}{'true':>8}")
            for code in sorted(set(b) | set(t)):
                self.stdout.write(f"  {code:<16}{b.get(code, 0):>8}{t.get(code, 0):>8}")
        score = score_receipts(billed, truth)
        self.stdout.write(f"receipts exact {score.exact}/{score.receipts}")
        self.stdout.write(f"items billed {score.billed_items} true {score.true_items} correct {score.true_positives}")
        self.stdout.write(f"precision {score.precision:.3f} recall {score.recall:.3f}")
        self.stdout.write(f"F1 {score.f1:.3f}")
