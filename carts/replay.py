"""Replay a recording through the real pipeline, as if live (``manage.py replay``, ``evaluate``, ``demo``).

The recording's sources are merged in time order and fed to :class:`carts.pipeline.StorePipeline` in steps of
``step_s`` seconds of recording time: gate scans, then shopper-track keypoints, then each shelf controller's samples
for the step, then ``advance``. With ``speed`` set, the replay is paced against the wall clock (1.0 = real time),
which the live demo uses so that a shopper's phone sees the cart change as it happened.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Callable

import numpy as np
from django.contrib.auth import get_user_model

from store.gates.models import Gate, Visit
from store.gates.services import GateRefusal, gate_key_hash, pass_issue, visit_bind_track, visit_enter
from store.inventory.services import catalogue_load
from store.layout.models import Store
from store.layout.services import layout_load
from store.recording import GateScan, Recording

from .pipeline import PipelineStats, StorePipeline

log = logging.getLogger(__name__)

DEMO_SHOPPER = "shopper@walkout.test"
REPLAY_GATE = "replay-gate"


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did: the session name, the store, the visits it opened (track id → visit id), counters."""

    session: str
    store: Store
    visits: dict[str, int]
    stats: PipelineStats


def session_name(recording: Recording) -> str:
    """A new session name for a replay of ``recording``: ``<name>@<UTC wall-clock time>``."""
    return f"{recording.name}@{datetime.now(dt_timezone.utc):%Y%m%dT%H%M%S.%fZ}"


def replay_gate(*, store: Store) -> Gate:
    """The store's replay gate (a Gate row whose key nobody holds: replays call the gate service directly)."""
    gate, _ = Gate.objects.get_or_create(store=store, name=REPLAY_GATE,
                                         defaults={"api_key_hash": gate_key_hash(f"unusable:{store.code}")})
    return gate


def replay_recording(recording: Recording, *, session: str | None = None, shoppers: dict[str, str] | None = None,
                     default_shopper: str = DEMO_SHOPPER, speed: float | None = None, step_s: float = 0.2,
                     shopper_factory: Callable[[str], object] | None = None, as_of_now: bool = False) -> ReplayResult:
    """Replay ``recording`` through the pipeline. Returns a :class:`ReplayResult`.

    Shopper accounts: a gate scan's ``account`` column, else ``shoppers[track]``, else ``default_shopper`` for the
    first track and ``shopper+<track>@walkout.test`` for the others. ``shopper_factory(email)`` must return a user
    with a payment method on file (it may create one); by default the account must already exist with a card.
    A scan refused at the gate is logged and counted as a problem; that track's events then go to review.
    ``as_of_now``: store every time shifted so that the recording starts now (what a live demo wants); by default
    the database keeps the recording's own times.
    """
    store = layout_load(data=recording.store)
    catalogue_load(store=store, products=recording.store["products"], facings=recording.store["facings"])
    session = session or session_name(recording)
    offset = (time.time() - recording.t_start) if as_of_now else 0.0
    pipeline = StorePipeline(store=store, session=session, clock_offset_s=offset)
    gate = replay_gate(store=store)
    shoppers = dict(shoppers or {})
    assigned: dict[str, str] = {}

    def account_for(scan: GateScan) -> str:
        if scan.account:
            return scan.account
        if scan.track in shoppers:
            return shoppers[scan.track]
        if scan.track not in assigned:
            assigned[scan.track] = (default_shopper if default_shopper not in assigned.values()
                                    else f"shopper+{scan.track}@walkout.test")
        return assigned[scan.track]

    def user_for(email: str):
        if shopper_factory is not None:
            return shopper_factory(email)
        return get_user_model().objects.get(username=email)

    def on_gate(scan: GateScan) -> None:
        if scan.kind == "entry":
            user = user_for(account_for(scan))
            _, token = pass_issue(shopper=user, store=store)
            try:
                visit = visit_enter(token=token, gate=gate, at=pipeline.at(scan.t), session=session)
            except GateRefusal as exc:
                pipeline._problem(f"track {scan.track}: refused at the gate ({exc.code}: {exc.message})")
                return
            visit = visit_bind_track(visit=visit, track_id=scan.track, at=pipeline.at(scan.t))
            pipeline.bind_visit(track_id=scan.track, visit=visit)
            log.info("track %s entered as visit %s (%s)", scan.track, visit.pk, user)
        else:
            pipeline.on_exit(track_id=scan.track, t=scan.t,
                             reason="left the store" + (" (last sighting)" if scan.source == "inferred" else ""))

    tracks = recording.tracks
    t_order = np.argsort(tracks.t, kind="stable")
    tracks = tracks[t_order]
    gates = list(recording.gates)
    gi = 0
    ti = 0
    si = [0] * len(recording.shelves)
    t0, t_end = recording.t_start, recording.t_end
    wall0 = time.monotonic()
    t = t0
    while t <= t_end + step_s:
        t_next = t + step_s
        while gi < len(gates) and gates[gi].t < t_next:
            on_gate(gates[gi])
            gi += 1
        tj = int(np.searchsorted(tracks.t, t_next, side="left"))
        if tj > ti:
            pipeline.on_tracks(tracks[ti:tj])
            ti = tj
        for k, block in enumerate(recording.shelves):
            j = int(np.searchsorted(block.t, t_next, side="left"))
            if j > si[k]:
                pipeline.on_samples(bin_codes=block.bin_codes, t=block.t[si[k]:j], grams=block.grams[si[k]:j],
                                    rate_hz=block.rate_hz)
                si[k] = j
        pipeline.advance(t_next)
        if speed:
            ahead = (t_next - t0) / speed - (time.monotonic() - wall0)
            if ahead > 0:
                time.sleep(ahead)
        t = t_next
    while gi < len(gates):
        on_gate(gates[gi])
        gi += 1
    pipeline.finish()
    for track, visit in pipeline.visits.items():
        visit.refresh_from_db()
        if visit.state in (Visit.State.ADMITTED, Visit.State.SHOPPING):
            log.warning("visit %s (track %s) never left the store in this recording; it stays open", visit.pk, track)
    return ReplayResult(session=session, store=store, visits={k: v.pk for k, v in pipeline.visits.items()},
                        stats=pipeline.stats)


DEMO_PASSWORD = "take-it-and-go"


def demo_shopper_ensure(email: str, *, password: str = DEMO_PASSWORD) -> object:
    """The shopper ``email``, created if missing with ``password`` and the payment provider's test card
    (4242 4242 4242 4242 with the dummy provider, ``pm_card_visa`` with Stripe in test mode) on file.
    Raises ``store.accounts.payment.CardRejected`` if the provider refuses the card."""
    from store.accounts.payment import shopper_card_attach
    from store.accounts.services import shopper_create
    from store.billing.providers import get_provider

    User = get_user_model()
    user = User.objects.filter(username=email).first() or shopper_create(email=email, password=password)
    profile = getattr(user, "shopper", None)
    if profile is None or not profile.has_payment_method:
        token = "4242424242424242" if get_provider().name == "dummy" else "pm_card_visa"
        shopper_card_attach(user=user, card_token=token)
    return user


def billed_receipts(*, session: str) -> dict[str, dict[str, int]]:
    """Receipts billed in ``session``, keyed by the visit's shopper track id: {track: {barcode: quantity}}.

    A visit that was not billed (open, under review, payment failed) counts as an empty receipt.
    """
    from store.billing.models import ReceiptLine

    out: dict[str, dict[str, int]] = {}
    for visit in Visit.objects.filter(session=session).exclude(track_id=""):
        out.setdefault(visit.track_id, {})
    for track, barcode, qty in ReceiptLine.objects.filter(receipt__visit__session=session).values_list(
            "receipt__visit__track_id", "barcode", "quantity"):
        out.setdefault(track, {})
        out[track][barcode] = out[track].get(barcode, 0) + qty
    return out
