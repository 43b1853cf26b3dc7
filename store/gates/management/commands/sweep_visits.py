"""``manage.py sweep_visits [--every S]``: bill the visits stuck in ``exited`` (their checkout task was lost,
``store.gates.services.visits_stuck_sweep``) and end the visits left open with nobody to see them leave (no
activity for ``WALKOUT["VISIT_IDLE_EXIT_S"]`` and their track gone: ``visits_abandoned_sweep``), once or every S
seconds. For deployments without Celery beat."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from store.gates.services import visits_abandoned_sweep, visits_stuck_sweep


class Command(BaseCommand):
    help = ("Check out visits stuck in 'exited' past their due time, and exit and check out visits left open with "
            "no activity and no track (once, or every --every seconds).")

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0.0, help="repeat every S seconds (default: run once)")

    def handle(self, *args, every: float = 0.0, **options):
        if every < 0 or every != every:
            raise CommandError("--every must be a number of seconds ≥ 0")
        while True:
            n = visits_stuck_sweep()
            self.stdout.write(f"swept {n} visit(s)")
            for visit in visits_abandoned_sweep():
                self.stdout.write(f"visit {visit.pk} ({visit.shopper.get_username()}) was left open with no activity "
                                  f"and no track: exited, now {visit.state}")
            if not every:
                return
            time.sleep(every)
