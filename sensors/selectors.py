"""Sensors reads for the manager's dashboard: load-cell health alerts with their evidence, controllers' problem
counters, open restock tasks (misplaced items, unexplained restocks). Read only; typed rows, no model instances
leak into templates."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


from store.inventory.models import RestockTask
from store.layout.models import Store

from .models import ControllerProblem, SensorHealth, ShelfController

#: Statuses that are alerts (``sensors.health``), worst first.
ALERT_STATUSES = ("dead", "saturated", "stuck", "noisy")


@dataclass(frozen=True)
class SensorAlert:
    """A load cell that needs a look: bin code, status (dead/saturated/stuck/noisy), the evidence line, the
    measured sample noise (grams, or None), since when (UTC) and when last checked (UTC)."""

    store_code: str
    bin_code: str
    status: str
    evidence: str
    noise_g: float | None
    since: datetime
    checked_at: datetime


@dataclass(frozen=True)
class ControllerRow:
    """A shelf controller: name, bins, messages and samples accepted, last seen (UTC or None), and its problem
    counts as ``(reason, count, samples lost, last message)`` tuples, most frequent first."""

    store_code: str
    name: str
    bins: int
    messages: int
    samples: int
    last_seen_at: datetime | None
    problems: tuple[tuple[str, int, int, str], ...]


@dataclass(frozen=True)
class RestockTaskRow:
    """An open restock task: id, reason label, bin code, product barcode ("" if unknown), units, detail, created."""

    id: int
    reason: str
    bin_code: str
    barcode: str
    quantity: int
    detail: str
    created_at: datetime


@dataclass(frozen=True)
class SensorHealthPanel:
    """What ``templates/dashboard/_sensor_health.html`` shows: ``alerts`` (worst first), ``counts`` {status: bins},
    ``controllers``, open ``restock_tasks``."""

    alerts: tuple[SensorAlert, ...]
    counts: dict[str, int]
    controllers: tuple[ControllerRow, ...]
    restock_tasks: tuple[RestockTaskRow, ...]

    @property
    def alert_count(self) -> int:
        return sum(self.counts.get(s, 0) for s in ALERT_STATUSES)


def sensor_health_alerts(*, store: Store | None = None, limit: int = 50) -> list[SensorAlert]:
    """Load cells whose status is an alert, worst status first, then by bin code."""
    qs = SensorHealth.objects.filter(status__in=ALERT_STATUSES).select_related("bin", "bin__store")
    if store is not None:
        qs = qs.filter(bin__store=store)
    rows = sorted(qs, key=lambda h: (ALERT_STATUSES.index(h.status), h.bin.store.code, h.bin.code))[:limit]
    return [SensorAlert(h.bin.store.code, h.bin.code, h.status, h.evidence, h.noise_g, h.since, h.checked_at)
            for h in rows]


def sensor_health_counts(*, store: Store | None = None) -> dict[str, int]:
    """{status: number of bins} over the bins that have a health row."""
    qs = SensorHealth.objects.all()
    if store is not None:
        qs = qs.filter(bin__store=store)
    out: dict[str, int] = {}
    for status in qs.values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def controller_rows(*, store: Store | None = None) -> list[ControllerRow]:
    """Every shelf controller with its counters and problems."""
    qs = ShelfController.objects.select_related("store").order_by("store__code", "name")
    if store is not None:
        qs = qs.filter(store=store)
    controllers = list(qs)
    problems: dict[int, list[tuple[str, int, int, str]]] = {}
    for p in ControllerProblem.objects.filter(controller__in=controllers).order_by("-count", "reason"):
        problems.setdefault(p.controller_id, []).append((p.reason, p.count, p.samples_lost, p.last_message))
    return [ControllerRow(c.store.code, c.name, len(c.bin_codes), c.messages, c.samples, c.last_seen_at,
                          tuple(problems.get(c.pk, ()))) for c in controllers]


def restock_tasks_open(*, store: Store | None = None, limit: int = 50) -> list[RestockTaskRow]:
    """Open restock tasks, newest first."""
    qs = RestockTask.objects.filter(done_at__isnull=True).select_related("bin", "product").order_by("-created_at",
                                                                                                     "-id")
    if store is not None:
        qs = qs.filter(store=store)
    return [RestockTaskRow(t.pk, t.get_reason_display(), t.bin.code, t.product.barcode if t.product_id else "",
                           t.quantity, t.detail, t.created_at) for t in qs[:limit]]


def sensor_health_panel(*, store: Store | None = None) -> SensorHealthPanel:
    """Everything the dashboard's sensor-health include shows."""
    return SensorHealthPanel(tuple(sensor_health_alerts(store=store)), sensor_health_counts(store=store),
                             tuple(controller_rows(store=store)), tuple(restock_tasks_open(store=store)))


def dashboard_sensor_context() -> dict:
    """The dashboard's context for ``dashboard/_sensor_health.html``: ``{"sensor_health": SensorHealthPanel}``."""
    return {"sensor_health": sensor_health_panel()}


