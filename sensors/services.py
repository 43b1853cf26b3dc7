"""Sensors services: the planogram as the weight-event code needs it, and recording shelf events (one writer)."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone as dt_timezone

import numpy as np
from django.db import IntegrityError, transaction

from store.inventory.models import Facing, Product
from store.layout.models import Bin, Store

from . import weight
from .models import ShelfEvent


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
                       clock_offset_s: float = 0.0) -> ShelfEvent:
    """Store one detected shelf event (idempotent on session, main bin and start time); ``clock_offset_s`` is added
    to the event's source times. Raises Bin.DoesNotExist if the event's first bin is not in the store."""
    main = Bin.objects.get(store=store, code=event.bin_codes[0])
    hypotheses = [{"barcode": h.barcode, "quantity": int(h.quantity), "likelihood": round(float(h.likelihood), 6),
                   "residual_g": round(float(h.residual_g), 2)} for h in event.hypotheses]
    try:
        with transaction.atomic():
            return ShelfEvent.objects.create(
                store=store, session=session, bin=main, bin_codes=list(event.bin_codes), t_start=utc(event.t_start + clock_offset_s),
                t_end=utc(event.t_end + clock_offset_s), delta_g=float(event.delta_g), noise_sd_g=float(event.noise_sd_g),
                hypotheses=hypotheses,
            )
    except IntegrityError:
        return ShelfEvent.objects.get(session=session, bin=main, t_start=utc(event.t_start + clock_offset_s))
