"""``python manage.py camera_clocks REC [--stride N] [--write]``: each camera's clock offset against the shelves'
clock in a recording (``carts.offline.clock``: reaches against weight changes), and whether the replay applies it;
``--write`` moves the applied cameras' clocks in the recording itself (``store.recording.cameras_shift``), so that
``emulate_store``'s live cameras, which cannot wait for two shelf events, play on the shelves' clock too."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carts.offline.video import track_recording
from store.recording import RecordingError, cameras_shift, read_recording


class Command(BaseCommand):
    help = "Print each camera's clock offset against the shelves' in a recording; --write moves the applied ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("recording", help="recording folder with cameras.json (docs/recording-format.md)")
        parser.add_argument("--stride", type=int, default=1, help="track every N-th frame (default 1: all)")
        parser.add_argument("--write", action="store_true",
                            help="move the applied cameras' clocks in the recording's cameras.json (t_start + "
                                 "offset; the total kept as clock_shift_s)")

    def handle(self, *args, recording: str, stride: int, write: bool, **options) -> None:
        if stride < 1:
            raise CommandError("--stride must be ≥ 1")
        try:
            rec = read_recording(recording)
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        if not rec.cameras:
            raise CommandError(f"{recording}: no cameras (cameras.json)")
        result = track_recording(rec, stride=stride)  # finds the offsets (before applying them)
        for o in result.clock.values():
            found = "not found" if o.offset_s is None else f"{o.offset_s:+.2f} ± {o.spread_s:.2f} s"
            applied = "; applied" if o.camera in result.applied else ""
            self.stdout.write(f"{o.camera}: clock offset {found} ({o.source}, {o.events} events){applied}")
        if write and result.applied:
            moved = cameras_shift(recording, result.applied)
            self.stdout.write(f"written: {', '.join(f'{c} {result.applied[c]:+.2f} s' for c in moved)} "
                              "(cameras.json t_start)")
        elif write:
            self.stdout.write("written: nothing (no offset worth applying)")
