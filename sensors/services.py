"""Sensors services: the planogram as the weight-event code needs it, recording shelf events (one writer, with
restock mode and misplaced items), shelf controllers (registration, API keys, problem counters) and load-cell
health. The live ingestion loop that uses them is :mod:`sensors.live`."""
from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from collections import Counter, defaultdict
from datetime import datetime, timezone as dt_timezone
from typing import Iterable, Mapping

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import F

from store.inventory.models import Facing, Product, RestockTask
from store.inventory.services import restock_mode_bins, restock_task_open, stock_record_shelf_restock
from store.layout.models import Bin, Store

from . import weight
from .health import HealthReport
from .ingest import IngestProblem
from .models import ControllerProblem, SensorHealth, ShelfController, ShelfEvent

log = logging.getLogger(__name__)


def utc(t: float) -> datetime:
    """Seconds since epoch → timezone-aware UTC datetime."""
    return datetime.fromtimestamp(t, tz=dt_timezone.utc)


def planogram_for(*, store: Store) -> weight.Planogram:
    """The store's planogram as :class:`sensors.weight.Planogram`: bins, facings, product unit weights (g), and
    each bin's neighbours (the bins numbered ±1 on the same shelf)."""
    bins = list(Bin.objects.filter(store=store).select_related("shelf").order_by("code"))
    facings: dict[str, list[str]] = defaultdict(list)
    for code, barcode in Facing.objects.filter(bin__store=store).values_list("bin__code", "product__barcode"):
        facings[code].append(barcode)
    by_shelf: dict[int, dict[int, str]] = defaultdict(dict)
    for b in bins:
        by_shelf[b.shelf_id][b.number] = b.code
    neighbours = {
        b.code: tuple(c for n in (b.number - 1, b.number + 1) if (c := by_shelf[b.shelf_id].get(n)))
        for b in bins
    }
    products = list(Product.objects.filter(store=store).order_by("barcode"))
    pw = weight.ProductWeights(
        barcode=np.array([p.barcode for p in products], dtype=object),
        mean_g=np.array([p.unit_weight_g for p in products], dtype=np.float64),
        sd_g=np.array([p.unit_weight_sd_g for p in products], dtype=np.float64),
    )
    return weight.Planogram(bin_codes=tuple(b.code for b in bins),
                            facings={k: tuple(v) for k, v in facings.items()}, products=pw, neighbours=neighbours)


def shelf_event_record(*, store: Store, session: str, event: weight.ShelfEvent,
                       clock_offset_s: float = 0.0, bins: Mapping[str, Bin] | None = None) -> ShelfEvent:
    """Store one detected shelf event (idempotent on session, main bin and start time); ``clock_offset_s`` is added
    to the event's source times. Raises Bin.DoesNotExist if the event's first bin is not in the store. ``bins``:
    the store's bins by code, when the caller holds them (a bin not among them is read).

    The stored ``kind``: ``disturbance`` for an event flagged so by the detector; ``restock`` for a weight increase
    on a bin in restock mode at the event's start (``store.inventory.services.restock_mode_bins``: a staff
    restock session or the manager's per-bin toggle), which records a ledger restock of the best product (or, when
    nothing explains it, a restock task to check) instead of a shopper's return; else ``shopper``. A misplaced
    put-back (``event.misplaced``) raises a ``misplaced`` restock task. Side effects happen once, when the row is
    created.
    """
    return shelf_event_store(store=store, session=session, event=event, clock_offset_s=clock_offset_s,
                             bins=bins)[0]


def shelf_event_store(*, store: Store, session: str, event: weight.ShelfEvent, clock_offset_s: float = 0.0,
                      bins: Mapping[str, Bin] | None = None) -> tuple[ShelfEvent, bool]:
    """:func:`shelf_event_record`, and whether this call created the row (False: it was stored before, by an
    earlier run of the session, and is returned as stored)."""
    main = bins.get(event.bin_codes[0]) if bins is not None else None
    if main is None:
        main = Bin.objects.get(store=store, code=event.bin_codes[0])
    hypotheses = [{"barcode": h.barcode, "quantity": int(h.quantity), "likelihood": round(float(h.likelihood), 6),
                   "residual_g": round(float(h.residual_g), 2)} for h in event.hypotheses]
    t_start = utc(event.t_start + clock_offset_s)
    kind = ShelfEvent.Kind.SHOPPER
    if event.disturbance:
        kind = ShelfEvent.Kind.DISTURBANCE
    elif event.delta_g > 0 and restock_mode_bins(store=store, bin_codes=event.bin_codes, at=t_start):
        kind = ShelfEvent.Kind.RESTOCK
    try:
        with transaction.atomic():
            row = ShelfEvent.objects.create(
                store=store, session=session, bin=main, bin_codes=list(event.bin_codes), t_start=t_start,
                t_end=utc(event.t_end + clock_offset_s), delta_g=float(event.delta_g),
                noise_sd_g=float(event.noise_sd_g), hypotheses=hypotheses, kind=kind, misplaced=event.misplaced,
                weak=event.weak,
                parts=[{"bin": b.code, "t_start": round(b.t_start + clock_offset_s, 6),
                        "t_end": round(b.t_end + clock_offset_s, 6), "delta_g": round(float(b.delta_g), 2),
                        "noise_sd_g": round(float(b.noise_sd_g), 3)} for b in event.parts],
            )
            _shelf_event_effects(store=store, row=row, event=event, main=main)
    except IntegrityError:
        return ShelfEvent.objects.get(session=session, bin=main, t_start=t_start), False
    return row, True


def _shelf_event_effects(*, store: Store, row: ShelfEvent, event: weight.ShelfEvent, main: Bin) -> None:
    best = event.best
    if row.kind != ShelfEvent.Kind.RESTOCK and not (event.misplaced and best is not None):
        return  # a shopper's event or a disturbance: nothing else to record (the product is not read)
    reference = f"shelf_event:{row.pk}"
    product = Product.objects.filter(store=store, barcode=best.barcode).first() if best is not None else None
    if row.kind == ShelfEvent.Kind.RESTOCK:
        if product is not None and best.quantity < 0:
            stock_record_shelf_restock(product=product, quantity=-int(best.quantity), bin=main, reference=reference)
            log.info("shelf event %s: restock of %d × %s on %s", row.pk, -best.quantity, best.barcode, main.code)
        else:
            restock_task_open(store=store, bin=main, reason=RestockTask.Reason.UNEXPLAINED_RESTOCK,
                              detail=f"+{event.delta_g:.0f} g matches no product", reference=reference)
            log.warning("shelf event %s: restock of %+.0f g on %s matches no product; task raised", row.pk,
                        event.delta_g, main.code)
    if event.misplaced and best is not None:
        restock_task_open(store=store, bin=main, reason=RestockTask.Reason.MISPLACED, product=product,
                          quantity=max(1, -int(best.quantity)),
                          detail=f"{best.barcode} put back on {','.join(event.bin_codes)}, where it does not face",
                          reference=reference)
        log.warning("shelf event %s: %d × %s put back on %s, where it does not belong; restock task raised",
                    row.pk, -best.quantity, best.barcode, ",".join(event.bin_codes))


# --------------------------------------------------------------------------------------------- controllers
def controller_key_hash(api_key: str) -> str:
    """SHA-256 hex digest of a controller's API key (the database never stores the key itself)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class ControllerInputError(ValueError):
    """A controller registration that cannot be saved; the message says why."""


def controller_create(*, store: Store, name: str, bin_codes: list[str], rate_hz: float = 60.0,
                      clock_offset_s: float = 0.0) -> tuple[ShelfController, str]:
    """Register a shelf controller of ``store`` reading ``bin_codes`` (column order of its samples) at ``rate_hz``.

    Returns the controller and its API key (32 random bytes, URL-safe base64; shown once, stored as SHA-256).
    Raises :class:`ControllerInputError` for a bad name, an empty or repeated bin list, a bin the store does not
    have, a non-positive rate or a name already used in the store."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name or ""):
        raise ControllerInputError(f"controller name {name!r} must be 1–64 letters, digits, - or _")
    codes = [str(c) for c in bin_codes]
    if not codes or len(set(codes)) != len(codes):
        raise ControllerInputError("bin_codes must list each bin once, at least one")
    known = set(Bin.objects.filter(store=store, code__in=codes).values_list("code", flat=True))
    missing = [c for c in codes if c not in known]
    if missing:
        raise ControllerInputError(f"store {store.code} has no bin(s) {', '.join(missing[:10])}")
    if not (math.isfinite(rate_hz) and rate_hz > 0) or not math.isfinite(clock_offset_s):
        raise ControllerInputError(f"rate_hz must be > 0 and clock_offset_s finite, got {rate_hz}, {clock_offset_s}")
    if ShelfController.objects.filter(store=store, name=name).exists():
        raise ControllerInputError(f"store {store.code} already has a controller named {name!r}")
    api_key = secrets.token_urlsafe(32)
    controller = ShelfController.objects.create(store=store, name=name, api_key_hash=controller_key_hash(api_key),
                                                bin_codes=codes, rate_hz=float(rate_hz),
                                                clock_offset_s=float(clock_offset_s))
    return controller, api_key


def controller_key_rotate(*, controller: ShelfController) -> str:
    """A new API key for ``controller``; the old one stops working at once. Returns the key (shown once)."""
    api_key = secrets.token_urlsafe(32)
    controller.api_key_hash = controller_key_hash(api_key)
    controller.save(update_fields=["api_key_hash"])
    return api_key


def controller_authenticate(*, api_key: str, store_code: str | None = None,
                            name: str | None = None) -> ShelfController | None:
    """The active controller whose API key is ``api_key`` (and, when given, whose store code and name match the
    MQTT topic), its store loaded; None otherwise (the caller logs and counts the refusal)."""
    if not api_key or len(api_key) > 200:
        return None
    controller = (ShelfController.objects.select_related("store")
                  .filter(api_key_hash=controller_key_hash(api_key), active=True).first())
    if controller is None:
        return None
    if (store_code is not None and controller.store.code != store_code) or (name is not None and
                                                                           controller.name != name):
        return None
    return controller


def controller_problems_record(*, controller: ShelfController, problems: Iterable[IngestProblem]) -> int:
    """Add ``problems`` to the controller's per-reason counters (count, samples lost, last message and time) and
    log each at WARNING (INFO for repaired ones). Returns how many were recorded."""
    from django.utils import timezone

    problems = list(problems)
    if not problems:
        return 0
    counts = Counter(p.reason for p in problems)
    lost: dict[str, int] = defaultdict(int)
    last: dict[str, str] = {}
    for p in problems:
        lost[p.reason] += p.samples_lost
        last[p.reason] = p.message
        log.log(logging.INFO if p.repaired else logging.WARNING, "%s", p.message)
    now = timezone.now()
    for reason, n in counts.items():
        row, _ = ControllerProblem.objects.get_or_create(controller=controller, reason=reason)
        ControllerProblem.objects.filter(pk=row.pk).update(count=F("count") + n,
                                                           samples_lost=F("samples_lost") + lost[reason],
                                                           last_message=last[reason][:300], last_at=now)
    return len(problems)


def controller_counters(*, controller: ShelfController) -> dict[str, int]:
    """{reason: count} of the controller's problems so far."""
    return dict(ControllerProblem.objects.filter(controller=controller).values_list("reason", "count"))


# --------------------------------------------------------------------------------------------- health
def sensor_health_record(*, controller: ShelfController, report: HealthReport) -> int:
    """Store ``report`` (one entry per bin of ``controller``, in its column order) as ``SensorHealth`` rows.

    A bin whose status changed gets the new status, evidence and ``since``; an alert keeps its evidence and noise
    current; every row gets ``checked_at`` (one transaction of a few bulk statements: one writer per controller).
    A new problem status is logged at WARNING. Returns the number of bins whose status changed. Raises ``ValueError``
    when the report does not have one entry per bin."""
    codes = list(controller.bin_codes)
    if len(report) != len(codes):
        raise ValueError(f"health report has {len(report)} bins; controller {controller} has {len(codes)}")
    at = utc(report.t)
    # values, not model instances: a controller of a thousand plates is checked every few seconds, and building a
    # thousand Bin and SensorHealth objects each time was most of the ingestion worker's CPU in those seconds
    bins = dict(Bin.objects.filter(store=controller.store_id, code__in=codes).values_list("code", "pk"))
    rows = {bin_id: (pk, status) for pk, bin_id, status in
            SensorHealth.objects.filter(bin_id__in=bins.values()).order_by().values_list("pk", "bin_id", "status")}
    changed = 0
    new: list[SensorHealth] = []
    moved: list[SensorHealth] = []
    same: list[SensorHealth] = []
    for i, code in enumerate(codes):
        bin_id = bins.get(code)
        if bin_id is None:
            continue
        status = str(report.status[i])
        noise = float(report.noise_g[i]) if np.isfinite(report.noise_g[i]) else None
        row = rows.get(bin_id)
        if row is None or row[1] != status:
            if status not in ("ok", "unknown"):
                log.warning("load cell %s: %s (%s)", code, status, report.evidence(i))
            (new if row is None else moved).append(SensorHealth(
                pk=None if row is None else row[0], bin_id=bin_id, controller=controller, status=status, since=at,
                checked_at=at, evidence=report.evidence(i)[:200], noise_g=noise))
            changed += 1
        elif status not in ("ok", "unknown"):  # keep an alert's evidence current (few rows)
            same.append(SensorHealth(pk=row[0], bin_id=bin_id, evidence=report.evidence(i)[:200], noise_g=noise,
                                     checked_at=at))
    with transaction.atomic():  # a few statements whatever the number of bins (one writer per controller)
        if new:
            SensorHealth.objects.bulk_create(new, batch_size=500)
        if moved:
            SensorHealth.objects.bulk_update(moved, ["controller", "status", "evidence", "noise_g", "since",
                                                     "checked_at"], batch_size=500)
        if same:
            SensorHealth.objects.bulk_update(same, ["evidence", "noise_g", "checked_at"], batch_size=500)
        SensorHealth.objects.filter(bin_id__in=bins.values()).update(checked_at=at)
    return changed
