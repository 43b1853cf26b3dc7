"""Replay a recording through the real pipeline, as if live (``manage.py replay``, ``evaluate``, ``demo``).

The recording's sources are merged in time order and fed to :class:`carts.pipeline.StorePipeline` in steps of
``step_s`` seconds of recording time: gate scans, then shopper-track keypoints, then each shelf controller's samples
for the step, then ``advance``. Entries on one account within ``PARTY_WITHIN_S`` seconds are one party
(``carts.offline.simulation_truth.parties_from_gates``): the later visits join the first's (``store.gates.party``). With
``speed`` set, the replay is paced against the wall clock (1.0 = real time),
which the live demo uses so that a shopper's phone sees the cart change as it happened.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from collections.abc import Iterable
from typing import Callable

from django.contrib.auth import get_user_model

from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure, is_throwaway_shopper, throwaway_shopper
from store.gates.models import Gate, Visit
from store.gates.party import PartyError, visit_join_party
from store.gates.services import GateRefusal, gate_key_hash, pass_issue, visit_bind_track, visit_enter
from store.inventory.services import catalogue_load
from store.layout.models import Store
from store.layout.services import layout_load
from store.recording import GateScan, Recording

from carts.offline.steps import recording_steps
from carts.pipeline import PipelineStats, StorePipeline
from .simulation_truth import parties_from_gates
from carts.offline.video import apply_video
from vision.services import store_map_publish_observations
from store.billing.models import PaymentAttempt, ReceiptLine
from carts.models import CartEvent, ReviewItem
from .evaluation import Decisions, oracle_answers
from sensors.models import ShelfEvent
from store.inventory.models import Product
from carts.services.review import review_resolve
from carts.services.review_queue import ReviewError

log = logging.getLogger(__name__)

REPLAY_GATE = "replay-gate"
#: Entries on one account this close together (seconds) form a party (a family scanning one phone's passes).
PARTY_WITHIN_S = 10.0
#: The fastest pace (× real time) ``replay``, ``emulate_store`` and ``demo`` accept: past it the pacing never sleeps
#: on a real recording, so a larger figure would only claim a pace the run does not keep.
SPEED_MAX = 1000.0


def speed_problem(speed: float) -> str | None:
    """The one-line error for a ``--speed`` (× real time) that is not finite, > 0 and ≤ :data:`SPEED_MAX`; None for
    a valid one."""
    if math.isfinite(speed) and 0 < speed <= SPEED_MAX:
        return None
    return f"--speed must be a number > 0 and ≤ {SPEED_MAX:g} (× real time, 1 = real time), got {speed:g}"


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did: the session name, the store, the visits it opened (track id → visit id), counters."""

    session: str
    store: Store
    visits: dict[str, int]
    stats: PipelineStats


def database_behind() -> str | None:
    """A sentence naming the migrations this database lacks (the code is newer than the database: run
    ``manage.py migrate``), or None when it is up to date. Uses Django's migration executor, as ``runserver``'s
    check does."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return None
    first = plan[0][0]
    return (f"the database lacks {len(plan)} migration(s) of this code (first: {first.app_label}."
            f"{first.name}); run `python manage.py migrate`")


def session_prefix(recording: Recording) -> str:
    """``<name>~<6 hex of the folder's absolute path>``: sessions of one recording folder share it, and two folders
    with the same name (copies) do not."""
    digest = hashlib.sha1(str(Path(recording.path).resolve()).encode()).hexdigest()[:6]
    return f"{recording.name}~{digest}"


def session_name(recording: Recording) -> str:
    """A new session name for a replay of ``recording``: ``<session_prefix>@<UTC wall-clock time>``."""
    return f"{session_prefix(recording)}@{datetime.now(dt_timezone.utc):%Y%m%dT%H%M%S.%fZ}"


def replay_gate(*, store: Store) -> Gate:
    """The store's replay gate (a Gate row whose key nobody holds: replays call the gate service directly)."""
    gate, _ = Gate.objects.get_or_create(store=store, name=REPLAY_GATE,
                                         defaults={"api_key_hash": gate_key_hash(f"unusable:{store.code}")})
    return gate


def _account_assigner(shoppers: dict[str, str] | None,
                      default_shopper: str | None) -> Callable[[GateScan], str]:
    """The account a replay admits for an entry scan: its ``account`` column, else ``shoppers[track]``, else
    ``default_shopper`` for the first such track and ``shopper+<track>@walkout.test`` for the others.

    With ``default_shopper`` None (offline replays, evaluations: test runs), ``shoppers[track]`` where given, and no
    recorded account: the entries of one recorded account (a party scanning one phone's passes), or a track without
    one, are admitted as the throwaway ``replay+<track>@walkout.test`` of the first such track, so a recording made
    in a real store never puts a hold on a real shopper's card nor a visit in a real shopper's cart."""
    shoppers = dict(shoppers or {})
    assigned: dict[str, str] = {}
    throwaway_of: dict[str, str] = {}  # recorded account (or track without one) → its throwaway account

    def account_for(scan: GateScan) -> str:
        if default_shopper is None:
            if scan.track in shoppers:
                return shoppers[scan.track]
            key = scan.account or f"track:{scan.track}"
            return throwaway_of.setdefault(key, throwaway_shopper(scan.track))
        if scan.account:
            return scan.account
        if scan.track in shoppers:
            return shoppers[scan.track]
        if scan.track not in assigned:
            assigned[scan.track] = (default_shopper if default_shopper not in assigned.values()
                                    else f"shopper+{scan.track}@walkout.test")
        return assigned[scan.track]

    return account_for


def replay_accounts_missing(recording: Recording, *, shoppers: dict[str, str] | None = None,
                            default_shopper: str | None = DEMO_SHOPPER) -> list[str]:
    """The accounts a replay of ``recording`` would admit (:func:`replay_recording`'s rule) that do not exist or
    have no payment card on file, so that their entries would be refused: sorted e-mails (empty: all is well).
    Throwaway accounts (:func:`is_throwaway_shopper`) are never missing: the replay creates them."""
    account_for = _account_assigner(shoppers, default_shopper)
    return accounts_without_card(account_for(g) for g in sorted(recording.gates, key=lambda g: g.t)
                                 if g.kind == "entry")


def accounts_without_card(emails: Iterable[str]) -> list[str]:
    """Of ``emails`` (shopper accounts' usernames), those that do not exist or have no payment card on file: sorted,
    without duplicates. Throwaway accounts (:func:`is_throwaway_shopper`) are never listed: a replay creates them."""
    wanted = {e for e in emails if not is_throwaway_shopper(e)}
    ok = {u.get_username() for u in get_user_model().objects.filter(username__in=wanted).select_related("shopper")
          if getattr(getattr(u, "shopper", None), "has_payment_method", False)}
    return sorted(wanted - ok)


def replay_recording(recording: Recording, *, session: str | None = None, shoppers: dict[str, str] | None = None,
                     default_shopper: str | None = DEMO_SHOPPER, speed: float | None = None, step_s: float = 0.2,
                     shopper_factory: Callable[[str], object] | None = None, as_of_now: bool = False,
                     clock_offset_s: float | None = None, bind_visits: list[int] | None = None) -> ReplayResult:
    """Replay ``recording`` through the pipeline. Returns a :class:`ReplayResult`.

    Shopper accounts: a gate scan's ``account`` column, else ``shoppers[track]``, else ``default_shopper`` for the
    first track and ``shopper+<track>@walkout.test`` for the others; ``default_shopper=None`` (what the offline
    ``replay`` and ``evaluate`` commands pass) admits every entry not in ``shoppers`` on a throwaway
    ``replay+<track>@walkout.test`` account instead (one per recorded account), created with the test card, so an
    offline run never holds money on a real shopper's card nor shows in a real shopper's cart. ``shopper_factory(email)`` must return a user with a payment method on file (it
    may create one); by default the account must already exist with a card (throwaway accounts are created).
    A scan refused at the gate is logged and counted as a problem; that track's events then go to review.
    ``as_of_now``: store every time shifted so that the recording starts now (what a live demo wants); by default
    the database keeps the recording's own times. ``clock_offset_s``: the shift itself (overrides ``as_of_now``).

    ``bind_visits``: visits already admitted in the recording's store and not yet bound to a track (people really
    inside, e.g. a new shopper who scanned in at the gate; ``carts.live.visits_waiting``) whom the recording's first
    shoppers are, in that order: at each of the first entries that is not a guest's, the next such visit is bound
    to the recorded track (and labelled with ``session``) instead of a pass being issued to an account, so the
    cart fills on that shopper's phone. A listed visit no longer admitted (left, or bound meanwhile) is skipped.
    The embedded profile's live replay does the same through the emulator (``carts.offline.emulator.emulate``).

    Idempotent in ``session`` (a redo after a crash, same ``clock_offset_s``): an entry whose track already has a
    visit in the session reuses it, shelf events are found by their time (``sensors.services.shelf_event_record``),
    an event already in a cart or the review queue is not fused again, a visit already billed is not exited again.
    With ``speed``, the pacing follows the wall clock from the session's start, so a redo catches up at once.
    """
    if recording.cameras and len(recording.tracks) == 0:
        recording = apply_video(recording)  # camera video and no recorded keypoints: shopper tracks from the video
    store = layout_load(data=recording.store, listed=False)  # a store it creates is a test run's, never offered
    catalogue_load(store=store, products=recording.store["products"], facings=recording.store["facings"])
    session = session or session_name(recording)
    if clock_offset_s is not None:
        offset = float(clock_offset_s)
    else:
        offset = (time.time() - recording.t_start) if as_of_now else 0.0
    pipeline = StorePipeline(store=store, session=session, clock_offset_s=offset)
    gate = replay_gate(store=store)
    party_of = parties_from_gates(recording.gates, within_s=PARTY_WITHIN_S)
    inside = list(Visit.objects.filter(pk__in=bind_visits or [], store=store).select_related("shopper")
                  .order_by("entered_at", "pk"))

    def next_inside() -> Visit | None:
        """The next visit of ``bind_visits`` still admitted and unbound (a redo finds its own by track first)."""
        while inside:
            visit = inside.pop(0)
            visit.refresh_from_db()
            if visit.state == Visit.State.ADMITTED and not visit.track_id:
                return visit
            log.info("visit %s is %s (track %r): not bound to this replay", visit.pk, visit.state, visit.track_id)
        return None

    account_for = _account_assigner(shoppers, default_shopper)

    def user_for(email: str):
        if is_throwaway_shopper(email):
            return demo_shopper_ensure(email)
        if shopper_factory is not None:
            return shopper_factory(email)
        user = get_user_model().objects.filter(username=email).first()
        if user is None:
            pipeline._problem(f"no shopper account {email!r}: create it (with a card) or replay with "
                              "--create-shoppers; that shopper's entry is skipped")
        return user

    def on_gate(scan: GateScan) -> None:
        if scan.kind == "entry":
            earlier = Visit.objects.filter(store=store, session=session, track_id=scan.track).order_by("pk").first()
            if earlier is not None:  # a redo: this entry happened in an earlier attempt
                if earlier.state == Visit.State.ADMITTED:
                    earlier = visit_bind_track(visit=earlier, track_id=scan.track, at=pipeline.at(scan.t))
                pipeline.bind_visit(track_id=scan.track, visit=earlier, t=scan.t)
                lead = party_of.get(scan.track, scan.track)
                if lead != scan.track and lead in pipeline.visits:
                    pipeline.join_party(track_id=scan.track, lead_track_id=lead)
                log.info("track %s: visit %s of an earlier attempt of %s reused", scan.track, earlier.pk, session)
                return
            person = next_inside() if party_of.get(scan.track, scan.track) == scan.track else None
            if person is not None:  # someone really inside is this recorded shopper: bind, don't issue a pass
                Visit.objects.filter(pk=person.pk).update(session=session)
                person.session = session
                visit = visit_bind_track(visit=person, track_id=scan.track, at=pipeline.at(scan.t))
                pipeline.bind_visit(track_id=scan.track, visit=visit, t=scan.t)
                log.info("track %s is visit %s of %s, who is inside", scan.track, visit.pk, person.shopper)
                return
            user = user_for(account_for(scan))
            if user is None:
                return
            _, token = pass_issue(shopper=user, store=store)
            try:
                visit = visit_enter(token=token, gate=gate, at=pipeline.at(scan.t), session=session)
            except GateRefusal as exc:
                pipeline._problem(f"track {scan.track}: refused at the gate ({exc.code}: {exc.message})")
                return
            visit = visit_bind_track(visit=visit, track_id=scan.track, at=pipeline.at(scan.t))
            pipeline.bind_visit(track_id=scan.track, visit=visit, t=scan.t)
            lead = party_of.get(scan.track, scan.track)
            if lead != scan.track and lead in pipeline.visits:
                try:
                    visit_join_party(visit=visit, lead=pipeline.visits[lead])
                    pipeline.join_party(track_id=scan.track, lead_track_id=lead)
                except PartyError as exc:
                    pipeline._problem(f"track {scan.track}: could not join the party of track {lead} ({exc})")
            log.info("track %s entered as visit %s (%s)", scan.track, visit.pk, user)
        else:
            pipeline.on_exit(track_id=scan.track, t=scan.t,
                             reason="left the store" + (" (last sighting)" if scan.source == "inferred" else ""))

    t0 = recording.t_start
    # paced against the wall clock from the session's start (t0 + offset when the times are shifted to now), so a
    # redo of an interrupted live replay skips the part already played instead of playing it again
    wall0 = (t0 + offset) if (as_of_now or clock_offset_s is not None) else time.time()
    for step in recording_steps(recording, step_s=step_s):
        for scan in step.gates:
            on_gate(scan)
        if len(step.tracks):
            pipeline.on_tracks(step.tracks)
            store_map_publish_observations(store_code=store.code, obs=step.tracks)
        for bin_codes, t, grams, rate_hz in step.shelves:
            pipeline.on_samples(bin_codes=bin_codes, t=t, grams=grams, rate_hz=rate_hz)
        pipeline.advance(step.t_next)
        if speed:
            ahead = (step.t_next - t0) / speed - (time.time() - wall0)
            if ahead > 0:
                time.sleep(ahead)
    pipeline.finish()
    for track, visit in pipeline.visits.items():
        visit.refresh_from_db()
        if visit.state in (Visit.State.ADMITTED, Visit.State.SHOPPING):
            log.warning("visit %s (track %s) never left the store in this recording; it stays open", visit.pk, track)
    return ReplayResult(session=session, store=store, visits={k: v.pk for k, v in pipeline.visits.items()},
                        stats=pipeline.stats)


def billed_receipts(*, session: str) -> dict[str, dict[str, int]]:
    """What was billed in ``session``, keyed by the visit's shopper track id: {track: {barcode: quantity}}: the
    receipt lines, less the units refunded since, plus the units charged since by review corrections (cart events
    whose evidence records a ``correction`` of kind ``charge``, ``carts.services.review.review_resolve``), less the
    units of those a later put-back took back (a ``refund`` correction's ``from_unpaid`` and ``from_charges``).

    A visit that was not billed (open, under review, payment failed) counts as an empty receipt.
    """
    out: dict[str, dict[str, int]] = {}
    for visit in Visit.objects.filter(session=session).exclude(track_id=""):
        out.setdefault(visit.track_id, {})
    for track, barcode, qty in ReceiptLine.objects.filter(receipt__visit__session=session).values_list(
            "receipt__visit__track_id", "barcode", "quantity"):
        out.setdefault(track, {})
        out[track][barcode] = out[track].get(barcode, 0) + qty
    for track, barcode, qty in PaymentAttempt.objects.filter(
            visit__session=session, kind=PaymentAttempt.Kind.REFUND, status=PaymentAttempt.Status.SUCCEEDED,
            receipt_line__isnull=False).values_list("visit__track_id", "receipt_line__barcode", "quantity"):
        out.setdefault(track, {})
        out[track][barcode] = out[track].get(barcode, 0) - int(qty or 0)
    for ev in CartEvent.objects.filter(visit__session=session, source=CartEvent.Source.REVIEW).select_related(
            "visit", "product"):
        correction = (ev.evidence or {}).get("correction") or {}
        lines = out.setdefault(ev.visit.track_id, {})
        if correction.get("kind") == "charge":
            lines[ev.product.barcode] = lines.get(ev.product.barcode, 0) + ev.quantity
        elif correction.get("kind") == "refund":  # units a review had added, taken back (receipt refunds: above)
            back = int(correction.get("from_unpaid") or 0) + sum(int(p.get("units") or 0)
                                                                 for p in correction.get("from_charges") or [])
            if back:
                lines[ev.product.barcode] = lines.get(ev.product.barcode, 0) - back
    return out


def session_clock_offset(*, session: str, recording: Recording) -> float:
    """Seconds added to the recording's clock when ``session`` stored its times (0 unless replayed
    ``as_of_now``): first visit entry stored − first entry scan of the recording."""
    first = Visit.objects.filter(session=session).order_by("entered_at").values_list("entered_at", flat=True).first()
    scans = [g.t for g in recording.gates if g.kind == "entry"]
    if first is None or not scans:
        return 0.0
    return round(first.timestamp() - min(scans), 3)


def session_decisions(*, session: str, recording: Recording):
    """What the pipeline did with each shelf event of ``session``, as ``carts.offline.evaluation.Decisions`` on the
    recording's clock: ``review`` when the event went to the review queue (whatever its resolution since),
    ``follow`` for a put-back still waiting for the review of its pick, ``cart`` with the fusion cart event's
    visit track and line (a waiting put-back that fusion applied once its pick was decided included), ``none``
    otherwise."""
    rows, _ = _session_rows(session, session_clock_offset(session=session, recording=recording))
    return Decisions.from_rows(rows)


def _session_rows(session: str, offset: float) -> tuple[list[tuple], list[int]]:
    """The rows of :func:`session_decisions` (times minus ``offset``) and, for each, its shelf event's id: an
    event cut into two takes or split between two shoppers has one row per cart event."""
    items = ReviewItem.objects.filter(shelf_event__session=session)
    # sent to people: every item but the waiting put-backs and those fusion settled after their pick's review
    reviewed = set(items.exclude(status=ReviewItem.Status.WAITING).exclude(resolved_by="fusion")
                   .values_list("shelf_event_id", flat=True))
    tracks = dict(Visit.objects.filter(session=session).values_list("pk", "track_id"))
    waiting = {i.shelf_event_id: i.resolution for i in items.filter(status=ReviewItem.Status.WAITING)}
    fused: dict[int, list[CartEvent]] = {}
    for ce in CartEvent.objects.filter(shelf_event__session=session, source=CartEvent.Source.FUSION).select_related(
            "visit", "product").order_by("id"):
        fused.setdefault(ce.shelf_event_id, []).append(ce)
    rows, ids = [], []
    for ev in ShelfEvent.objects.filter(session=session).order_by("t_end", "id"):
        t0, t1 = ev.t_start.timestamp() - offset, ev.t_end.timestamp() - offset
        bins = tuple(ev.bin_codes or ())
        if ev.pk in reviewed:
            rows.append((bins, t0, t1, "review", "", (), 0.0))
        elif ev.pk in waiting:
            r = waiting[ev.pk]
            rows.append((bins, t0, t1, "follow", tracks.get(r.get("visit"), ""), ((r["barcode"], r["quantity"]),),
                         float(r.get("confidence", 0.0))))
        elif ev.pk in fused:
            for c in fused[ev.pk]:  # one row per cart event (an event split between two shoppers has two)
                rows.append((bins, t0, t1, "cart", c.visit.track_id, ((c.product.barcode, c.quantity),),
                             float(c.confidence)))
                ids.append(ev.pk)
            continue
        else:
            rows.append((bins, t0, t1, "none", "", (), 0.0))
        ids.append(ev.pk)
    return rows, ids


def reviews_resolve_by_truth(*, session: str, decisions, truth_events, party_of: dict[str, str]) -> tuple[int, int]:
    """Resolve the open review items of ``session`` as a perfect reviewer would (``carts.offline.evaluation.oracle_answers``
    on a simulated recording's truth events), through ``carts.services.review.review_resolve`` — the same path as a
    manager's decision in the dashboard, billing corrections included. A put-back goes to the party member who
    holds the item, and a put-back of an item nobody in the party was charged for is left out (the service would
    refuse it: the shopper owes nothing for it), the item dismissed when nothing else is left; a second product in
    one event (a mixed grab) is one more line of the same decision (``review_resolve``'s ``extra_lines``: charged
    when the visit is billed, never applied twice).
    Returns (resolved, failed); failures are logged and leave their item open."""
    visits = {v.track_id: v for v in Visit.objects.filter(session=session).exclude(track_id="")}
    answers = oracle_answers(decisions, truth_events)
    _, events = _session_rows(session, 0.0)  # decision row → its shelf event (rows, not events, are indexed)
    if len(events) != len(decisions):
        raise ValueError(f"session {session}: {len(decisions)} decisions given for {len(events)} rows; pass "
                         f"session_decisions() of this session")
    ok = failed = 0
    for j, found in sorted(answers.items()):
        item = ReviewItem.objects.filter(shelf_event_id=events[j], status=ReviewItem.Status.OPEN).first()
        if item is None:
            continue
        try:
            found = [(track, lines) for track, lines in found if track in visits and lines]
            if not found:
                review_resolve(item=item, visit_id=None, barcode=None, quantity=0, by="oracle")
                ok += 1
                continue
            targets = []
            for track, code, q in ((track, code, q) for track, lines in found for code, q in lines):
                dest = visits[track]
                if q < 0:
                    lead = party_of.get(track, track)
                    for member, v in visits.items():
                        if party_of.get(member, member) == lead and _held(v, code) >= -q:
                            dest = v if _held(dest, code) < -q else dest
                    if _held(dest, code) < -q:  # nobody in the party was charged for it: nothing to take back
                        continue  # (as the offline oracle, carts.offline.evaluation._oracle_apply)
                targets.append((dest, code, q))
            if not targets:
                review_resolve(item=item, visit_id=None, barcode=None, quantity=0, by="oracle")
                ok += 1
                continue
            # one decision: the extra lines stand or fall with it, billed visits corrected through billing
            dest, code, q = targets[0]
            review_resolve(item=item, visit_id=dest.pk, barcode=code, quantity=q, by="oracle",
                           extra_lines=[(v.pk, c, n) for v, c, n in targets[1:]])
            ok += 1
        except (ReviewError, ValueError, Product.DoesNotExist) as exc:
            log.warning("review %s: the oracle's decision could not be applied (%s)", item.pk, exc)
            failed += 1
    return ok, failed


def _held(visit: Visit, barcode: str) -> int:
    from django.db.models import Sum

    return visit.cart_events.filter(product__barcode=barcode).aggregate(s=Sum("quantity"))["s"] or 0
