"""``manage.py sweep_visits [--every S]``: bill the visits stuck in ``exited`` (their checkout task was lost), once or
every S seconds (``store.gates.services.visits_stuck_sweep``). For deployments without Celery beat."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from store.gates.services import visits_stuck_sweep


class Command(BaseCommand):
    help = "Check out visits stuck in 'exited' past their due time (once, or every --every seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0.0, help="repeat every S seconds (default: run once)")

    def handle(self, *args, every: float = 0.0, **options):
        if every < 0 or every != every:
            raise CommandError("--every must be a number of seconds ≥ 0")
        while True:
            n = visits_stuck_sweep()
            self.stdout.write(f"swept {n} visit(s)")
            if not every:
                return
            time.sleep(every)
