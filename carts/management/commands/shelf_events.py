"""``python manage.py shelf_events REC``: weight-event detection over a recording's shelf samples, one line per
event (time from the recording's start, bins, Δ grams, best product × quantity with its likelihood, runner-up);
the last line is ``events <N>``. Reads the recording only; the database is not touched."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carts.offline.shelf_events import event_line, recording_shelf_events
from store.recording import RecordingError, read_recording


class Command(BaseCommand):
    help = "Detect shelf events in a recording's shelves.csv and print them; last line 'events <N>'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("recording", help="recording folder (docs/recording-format.md)")
        parser.add_argument("--block", type=int, default=12, help="samples per push, as a controller sends them")

    def handle(self, *args, recording: str, block: int, **options) -> None:
        if block < 1:
            raise CommandError("--block must be ≥ 1")
        try:
            rec = read_recording(recording)
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        for p in rec.problems:
            self.stderr.write(f"problem: {p}")
        events = recording_shelf_events(rec, block=block)
        for ev in events:
            self.stdout.write(event_line(ev, rec.t_start))
        self.stdout.write(f"events {len(events)}")
