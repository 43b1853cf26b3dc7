"""Gate tasks: the periodic sweep that bills visits whose checkout task was lost
(``store.gates.services.visits_stuck_sweep``). The checkout after an exit scan is ``store.gates.checkout_task``
(queued by the services this module calls)."""
from __future__ import annotations

from celery import shared_task

from .services import visits_abandoned_sweep, visits_stuck_sweep


@shared_task(acks_late=True, time_limit=120)
def visits_stuck_sweep_task() -> int:
    """Celery beat, every ``settings.WALKOUT["SWEEP_EVERY_S"]`` seconds: ``visits_stuck_sweep()``, then
    ``visits_abandoned_sweep()`` (open visits nobody will see leave). Returns how many visits it checked out."""
    return visits_stuck_sweep() + len(visits_abandoned_sweep())
