"""The checkout after an exit: the Celery task a billing worker runs for an exited visit
(``store.gates.services.checkout_enqueue`` queues it). A module of its own so that the services queue it without
importing the periodic tasks, which call the services."""
from __future__ import annotations

import logging
import time
from datetime import datetime

from celery import shared_task

from . import hooks
from .models import Visit

log = logging.getLogger(__name__)


# named as when it lived in store.gates.tasks: a checkout queued by an earlier release still runs
@shared_task(name="store.gates.tasks.visit_checkout_task", acks_late=True, time_limit=120)
def visit_checkout_task(visit_id: int, at: str | None = None, queued_at: float | None = None) -> int | None:
    """Bill the exited visit ``visit_id`` (``carts.services.checkout.visit_checkout``: cart → receipt → capture, and the
    shopper's app gets the new snapshot), recorded at ``at`` (ISO 8601 with offset; default now). ``queued_at``:
    wall time (s UTC) the checkout was queued (logged: how long it waited for a billing worker). Idempotent: a
    billed visit returns its receipt; a visit that is no longer ``exited`` (already billed, under review, …) is left
    as it is. Returns the receipt id, or None."""
    if queued_at is not None:
        log.info("visit %s: checkout picked up %.3f s after it was queued", visit_id, time.time() - float(queued_at))
    visit = Visit.objects.select_related("store").filter(pk=visit_id).first()
    if visit is None:
        log.warning("checkout after exit: visit %s does not exist", visit_id)
        return None
    if visit.state not in (Visit.State.EXITED, Visit.State.BILLED):
        log.info("checkout after exit: visit %s is %s; nothing to do", visit_id, visit.state)
        return None
    receipt = hooks.visit_checkout(visit=visit, at=datetime.fromisoformat(at) if at else None)
    return receipt.pk if receipt is not None else None
