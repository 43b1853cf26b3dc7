"""The store loop's database shell: :class:`DatabaseSink` writes what :class:`carts.loop.StoreLoop` decides (shelf
events by ``sensors``, cart events, review items, waiting put-backs, checkouts) and reads back carts and open
reviews; :class:`StorePipeline` is a store's loop bound to that sink and to the store's visits.

Shelf samples → ``sensors.weight`` detection → shelf events (stored by ``sensors``) → ``carts.fusion.decide_event``
with the shopper tracks' hands, the carts of the eligible visits and their parties → cart events (or the review
queue, with the evidence) → live cart push; visits bound to tracks at the gate (``gates``), parties
(``gates.party``); exits → checkout after the settle time (cart → receipt → capture, ``billing``). An event that
still reaches a billed visit goes to review, whose resolution issues the correction through billing
(``carts.services.review.review_resolve``).

Every write is idempotent on the shelf event (shelf events on session, bin and start; fusion's cart events and
review items on their shelf event; checkouts on the visit), so a loop restored from a checkpoint that decides an
event again changes nothing.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from datetime import datetime
from typing import Hashable

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from sensors import weight
from sensors.models import ShelfEvent
from sensors.services import planogram_for, shelf_event_store, utc
from store.gates.models import Visit
from store.gates.services import VisitStateError, checkout_enqueue, visit_bind_track, visit_exit
from store.inventory.models import Product
from store.layout.models import Bin, Store
from store.recording import TrackObservations
from vision.services import shopper_track_record

from .fusion import Decision
from .fusion_config import BinGeometry, FusionConfig
from .loop import LoopStats, StoreLoop
from .loop_config import LoopConfig
from .models import CartEvent, ReviewItem, StoreAlert
from store.billing.senses import decision_change_senses
from .services.checkout import visit_checkout, visit_exit_tags_apply
from .services.ledger import CartChange, cart_apply, cart_publish, cart_publish_batch, cart_publish_flush
from .services.review import review_followers_settle

log = logging.getLogger(__name__)

OPEN_STATES = (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED)

#: Kept for callers of the previous pipeline: the loop's defaults (``carts.loop_config.LoopConfig``).
HOLD_S = LoopConfig.hold_s
HOLD_MAX_S = LoopConfig.hold_max_s

PipelineStats = LoopStats


def bin_geometry_for(*, store: Store) -> BinGeometry:
    """The store's bins as :class:`carts.fusion_config.BinGeometry` (metres, store coordinates)."""
    bins = list(Bin.objects.filter(store=store).order_by("code"))
    return BinGeometry(
        codes=tuple(b.code for b in bins),
        centre=np.array([[b.x, b.y, b.z] for b in bins], dtype=np.float64).reshape(-1, 3),
        half_size=np.array([[b.width_m / 2, b.depth_m / 2] for b in bins], dtype=np.float64).reshape(-1, 2),
        yaw=np.array([b.yaw_rad for b in bins], dtype=np.float64),
    )


class DatabaseSink:
    """:class:`carts.loop_sink.LoopSink` on the database. ``visits``: track → Visit of the visits bound in this loop.

    ``clock_offset_s`` is added to every source time before it is stored (a replay "as of now" shifts the
    recording's clock to the present; live sources pass 0: their clocks are already corrected to UTC).
    ``queue_checkouts``: hand checkouts to the billing worker (the live store, :meth:`checkout`); False: bill here
    (a replay, which reads its receipts as soon as it ends). ``images``: what the cameras saw in the taking hand
    (``carts.product_images.HandImageEvidence``; the store worker gives one, a replay of a recording none).
    """

    def __init__(self, *, store: Store, session: str, clock_offset_s: float = 0.0,
                 queue_checkouts: bool = False, images=None) -> None:
        self.images = images
        self.store = store
        self.queue_checkouts = queue_checkouts
        self.session = session
        self.clock_offset_s = float(clock_offset_s)
        self.products = {p.barcode: p for p in Product.objects.filter(store=store)}
        self.visits: dict[str, Visit] = {}
        self.down: set[str] = set()  # sources the store worker declared down (named in review reasons)
        self._rows: dict[int, ShelfEvent] = {}
        self._bins = {b.code: b for b in Bin.objects.filter(store=store)}  # the shelf events' main bins, by code
        #: shelf events this sink stored itself (not found stored by an earlier run) and has written no decision of
        #: yet: no cart event or review item can name them, so :meth:`decided` and :meth:`apply` need not ask
        self._fresh: set[int] = set()
        self._tags: dict[Hashable, list[dict]] = {}  # shelf event → the shelf tag events that back it
        #: visit pk → its cart (barcode → units, no zeros) as read during this step (:meth:`holdings`: the first
        #: read of a step reads every bound visit's, in one query): emptied when the step begins (a person's review
        #: decision lands between steps); this sink's own cart events are added to it as they are written
        #: (:meth:`apply`), and a visit whose cart another service may change (exit tags, a settled waiting
        #: put-back) is read again
        self._carts: dict[int, dict[str, int]] = {}
        #: track → wall time (s UTC) its checkout was queued (the store worker takes it to log the checkout's timing)
        self.queued_at: dict[str, float] = {}

    def step_begins(self) -> None:
        """The loop is about to step: carts read before may have changed since (a person's review decision)."""
        self._carts.clear()

    def at(self, t: float) -> datetime:
        """Source time ``t`` (s UTC) → the stored timezone-aware UTC datetime (``clock_offset_s`` applied)."""
        return utc(t + self.clock_offset_s)

    def _candidates(self, decision: Decision) -> list[dict]:
        ev = decision.evidence()
        return [{"visit": self.visits[c["track_id"]].pk if c["track_id"] in self.visits else None, **c,
                 "options": ev["options"]} for c in ev["candidates"]]

    # ------------------------------------------------------------------------------------------ LoopSink
    def shelf_event(self, event: weight.ShelfEvent) -> Hashable | None:
        row, created = shelf_event_store(store=self.store, session=self.session, event=event,
                                         clock_offset_s=self.clock_offset_s, bins=self._bins)
        log.info("shelf event %s %+.0f g (%s)", ",".join(event.bin_codes), event.delta_g,
                 f"{event.best.barcode} × {event.best.quantity}" if event.best else "unexplained")
        if not row.for_fusion:  # a restock: stored by sensors, nobody's cart
            return None
        self._rows[row.pk] = row
        if created:
            self._fresh.add(row.pk)
        return row.pk

    def _row(self, key: int) -> ShelfEvent:
        row = self._rows.pop(key, None)
        return row if row is not None else ShelfEvent.objects.get(pk=key)

    def decided(self, key) -> bool:
        if key in self._fresh:  # stored by this sink, nothing written for it yet
            return False
        row = self._rows.get(key) or ShelfEvent.objects.filter(pk=key).first()
        return row is None or CartEvent.objects.filter(shelf_event=row).exists() or \
            ReviewItem.objects.filter(shelf_event=row).exists()

    def holdings(self, tracks) -> dict[str, dict[str, int]]:
        by_visit = {self.visits[t].pk: t for t in tracks if t in self.visits}
        if any(pk not in self._carts for pk in by_visit):  # every bound visit not read yet this step, at once
            missing = list(dict.fromkeys(v.pk for v in self.visits.values() if v.pk not in self._carts))
            for pk in missing:
                self._carts[pk] = {}
            rows = (CartEvent.objects.filter(visit_id__in=missing).values("visit_id", "product__barcode")
                    .annotate(q=Sum("quantity")))
            for r in rows:
                if r["q"]:
                    self._carts[r["visit_id"]][r["product__barcode"]] = int(r["q"])
        return {t: dict(self._carts[pk]) for pk, t in by_visit.items()}

    def open_reviews(self, keys) -> list[Hashable]:
        return list(ReviewItem.objects.filter(pk__in=list(keys), status=ReviewItem.Status.OPEN)
                    .order_by("pk").values_list("pk", flat=True))

    def product_likelihood(self, event: weight.ShelfEvent, decision: Decision) -> dict[str, float] | None:
        """What the cameras saw in the taking hand: ``{barcode: probability}``, or None (no :attr:`images`, or no
        evidence for this decision: ``carts.product_images``)."""
        return self.images(event, decision) if self.images is not None else None

    def noise(self, key, event, decision) -> None:
        self._rows.pop(key, None)
        self._fresh.discard(key)
        log.info("shelf event %s: %s", ",".join(event.bin_codes), decision.reason)

    def apply(self, key, event, decision) -> str | None:
        row = self._row(key)
        if key not in self._fresh and (
                CartEvent.objects.filter(shelf_event=row, source=CartEvent.Source.FUSION).exists()
                or ReviewItem.objects.filter(shelf_event=row).exists()):
            return None  # decided before a restart: nothing to do twice
        missing = [code for _, code, _ in decision.changes if code not in self.products]
        if missing:
            return f"product {missing[0]} is not in the catalogue"
        unbound = [track for track, _, _ in decision.changes if track not in self.visits]
        if unbound:
            return f"track {unbound[0]} has no visit bound in this store worker"
        visits = [self.visits[track] for track, _, _ in decision.changes]
        states = dict(Visit.objects.filter(pk__in={v.pk for v in visits}).values_list("pk", "state"))
        for visit in visits:
            if visit.pk not in states:
                raise Visit.DoesNotExist(f"visit {visit.pk} does not exist")  # as refresh_from_db raised
            visit.state = states[visit.pk]  # the state now (a person's review, billing)
        for visit in visits:
            if visit.state not in (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED,
                                   Visit.State.UNDER_REVIEW):
                return f"visit {visit.pk} is already {visit.state}: a person confirms the correction ({decision.reason})"
        evidence = {"shelf_event": row.pk, "bins": list(event.bin_codes), "delta_g": round(event.delta_g, 1),
                    "hypotheses": row.hypotheses, **decision.evidence()}
        tags = self._tags.pop(key, None)
        if tags:
            evidence["tags"] = tags
        senses = decision_change_senses(decision, tags=bool(tags))  # one per change: weight, hand, image, tag
        try:  # a split event changes two carts (or lines), or none: one transaction (one change: cart_apply's own)
            with transaction.atomic() if len(visits) > 1 else contextlib.nullcontext():
                for visit, (_, code, quantity), sense in zip(visits, decision.changes, senses):
                    cart_apply(change=CartChange(visit=visit, product=self.products[code], quantity=int(quantity),
                                                 confidence=decision.confidence, evidence=evidence, senses=sense),
                               shelf_event=row)
        except ValueError as exc:
            return str(exc)
        except BaseException:
            self._carts.clear()  # whatever was written or not: read the carts again
            raise
        self._fresh.discard(key)
        for visit, (_, code, quantity) in zip(visits, decision.changes):  # the carts read are kept as the sums
            cart = self._carts.get(visit.pk)
            if cart is not None:
                units = cart.get(code, 0) + int(quantity)
                if units:
                    cart[code] = units
                else:
                    cart.pop(code, None)
        return None

    def review(self, key, event, decision, reason) -> Hashable:
        row = self._row(key)
        cameras = sorted(s.split(":", 1)[1] for s in self.down if s.startswith(("obs:", "cam:")))
        if cameras:
            reason = f"camera source {', '.join(cameras)} down: {reason}"
        candidates = self._candidates(decision)
        tags = self._tags.pop(key, None)
        if tags:  # what the shelf's RFID antenna saw, for the person deciding
            for c in candidates:
                c["tags"] = tags
        if key in self._fresh:  # nothing names the event yet: get_or_create would only create
            item, created = ReviewItem.objects.create(shelf_event=row, reason=reason[:200],
                                                      candidates=candidates), True
            self._fresh.discard(key)
        else:
            with transaction.atomic():
                item, created = ReviewItem.objects.get_or_create(shelf_event=row, defaults={
                    "reason": reason[:200], "candidates": candidates})
        if created:
            log.warning("shelf event %s sent to review: %s", row.pk, reason)
            for c in candidates:
                if c["visit"] is not None:
                    cart_publish(visit=self.visits[c["track_id"]])
        return item.pk

    def wait(self, key, event, decision, follows) -> bool:
        visit = self.visits.get(decision.track_id)
        if visit is None:
            return False
        row = self._row(key)
        ev = decision.evidence()
        evidence = {"shelf_event": row.pk, "bins": list(event.bin_codes), "delta_g": round(event.delta_g, 1),
                    "hypotheses": row.hypotheses, **ev}
        tags = self._tags.pop(key, None)
        if tags:
            evidence["tags"] = tags
        senses = decision_change_senses(decision, tags=bool(tags))
        with transaction.atomic():
            ReviewItem.objects.get_or_create(shelf_event=row, defaults={
                "status": ReviewItem.Status.WAITING, "follows_id": follows, "reason": decision.reason[:200],
                "candidates": self._candidates(decision),
                "resolution": {"visit": visit.pk, "barcode": decision.barcode, "quantity": int(decision.quantity),
                               "confidence": round(decision.confidence, 4), "evidence": evidence,
                               "senses": list(senses[0]) if senses else None}})
            self._fresh.discard(key)
            followed = ReviewItem.objects.select_for_update().get(pk=follows)
            if followed.status != ReviewItem.Status.OPEN:  # decided between our query and now
                self._carts.clear()  # the settled put-backs change carts: read them again
                review_followers_settle(item=followed)
        log.info("shelf event %s waits for review %s: %s", row.pk, follows, decision.reason)
        return True

    def tag_evidence(self, key, tags: list[dict]) -> None:
        """The shelf tag events backing shelf event ``key`` (``carts.loop.StoreLoop._shelf_tags``): kept in the
        evidence of its cart event, or on its review item's candidates."""
        self._tags[key] = tags

    def exit_tags(self, track: str, attribution) -> None:
        """The tags that left with ``track``'s shopper (``sensors.rfid.ExitAttribution``) go on the visit's receipt
        (``carts.services.checkout.visit_exit_tags_apply``) just before its checkout; tags shared with another party are
        raised as an alert for people."""
        visit = self.visits.get(track)
        if visit is None:
            return
        self._carts.pop(visit.pk, None)  # the exit's tags may add to this cart: read it again
        visit = Visit.objects.get(pk=visit.pk)
        if attribution.ambiguous:
            self.alert(StoreAlert.Kind.WORKER, f"visit {visit.pk}: {len(attribution.ambiguous)} RFID tag(s) read at "
                                               f"the exit while another shopper left; not charged",
                       key=f"rfid-ambiguous:{visit.pk}", visit_id=visit.pk)
        if attribution.tags and visit.state in (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED):
            visit_exit_tags_apply(visit=visit, tags=attribution.tags, at=timezone.now())

    def bind(self, track: str, visit, t: float, *, continues: str | None = None) -> None:
        row = Visit.objects.get(pk=visit)
        self.visits[track] = row
        if continues is None:
            if row.state == Visit.State.ADMITTED:
                # the gate may have exited it meanwhile: it keeps that state, and the loop takes the exit when
                # the scan's record comes
                row = visit_bind_track(visit=row, track_id=track, at=self.at(t))
                self.visits[track] = row
            log.info("visit %s bound to track %s", visit, track)
        else:
            StoreAlert.objects.filter(store=self.store, kind=StoreAlert.Kind.LOST, key=continues,
                                      resolved_at__isnull=True).update(resolved_at=timezone.now())
            log.info("visit %s: track %s continues lost track %s", visit, track, continues)
        cart_publish(visit=row)

    def unbound(self, visit, t: float, reason: str) -> None:
        self.alert(StoreAlert.Kind.UNBOUND, f"visit {visit}: {reason}", key=str(visit), visit_id=visit)

    def exit(self, track: str, visit, t: float, reason: str) -> None:
        row = self.visits.get(track) or Visit.objects.get(pk=visit)
        if row.state in (Visit.State.ADMITTED, Visit.State.SHOPPING):
            try:
                visit_exit(visit=row, at=self.at(t), reason=reason)
            except VisitStateError:  # the row read earlier is stale: the gate or a sweep moved the visit on
                log.info("visit %s: its exit was already past (%s)", visit, Visit.objects.get(pk=visit).state)
                return
            cart_publish(visit=row)

    def forget(self, track: str) -> None:
        self.visits.pop(track, None)
        self.queued_at.pop(track, None)

    def alert(self, kind: str, message: str, *, key: str | None = None, visit_id=None) -> None:
        StoreAlert.objects.get_or_create(store=self.store, kind=kind, key=(key or message)[:200],
                                         defaults={"message": message[:300], "visit_id": visit_id})
        log.warning("store %s: %s", self.store.code, message)

    def checkout(self, track: str, t: float) -> bool:
        """With ``queue_checkouts`` (the live store), hand the visit's checkout (cart → receipt → capture) to the
        billing worker: the Celery task
        ``store.gates.checkout_task.visit_checkout_task`` (the loop has waited the settle time and decided the
        visit's last events); in the embedded profile it runs here. A payment provider that is slow to answer then
        holds up a billing worker, never the store loop. It is queued once the current transaction commits, if one
        is open (the checkout must read every cart event written before it). If the task cannot be queued,
        the visit's ``checkout_due_at`` stands and the stuck-visit sweep bills it. Without it (a replay), bill here.
        Returns whether it was handed on (billed, for a replay)."""
        visit = self.visits.get(track)
        if visit is None:
            return False
        self._carts.pop(visit.pk, None)  # billed: its cart is not read again for decisions, and not kept
        if not self.queue_checkouts:
            return visit_checkout(visit=Visit.objects.get(pk=visit.pk), at=self.at(t)) is not None
        at = self.at(t)

        def enqueue() -> None:
            self.queued_at[track] = time.time()  # when it was queued (the store worker logs where the time went)
            checkout_enqueue(visit_id=visit.pk, countdown=0, at=at, queued_at=self.queued_at[track])

        # after the writes before it commit, where a transaction is open: the checkout reads them
        transaction.on_commit(enqueue)
        return True


class StorePipeline:
    """One store session's loop (:class:`carts.loop.StoreLoop`) on the database (:class:`DatabaseSink`).
    Not thread-safe: feed it from one thread, in time order per source.

    ``review_confidence`` (default ``settings.WALKOUT["REVIEW_CONFIDENCE"]``): decisions below it go to review.
    ``settle_s`` (default ``settings.WALKOUT["EXIT_SETTLE_S"]``): how long after an exit events may still arrive.
    ``clock_offset_s``: added to every source time before it is stored (see :class:`DatabaseSink`). Fusion and
    detection work on the sources' own times. ``queue_checkouts``: see :class:`DatabaseSink` (the store worker
    queues them; a replay bills itself).
    """

    def __init__(self, *, store: Store, session: str, fusion: FusionConfig = FusionConfig(),
                 detector: weight.DetectorConfig | None = None, review_confidence: float | None = None,
                 settle_s: float | None = None, clock_offset_s: float = 0.0, loop: StoreLoop | None = None,
                 queue_checkouts: bool = False):
        self.store = store
        self.session = session
        self.sink = DatabaseSink(store=store, session=session, clock_offset_s=clock_offset_s,
                                 queue_checkouts=queue_checkouts)
        if loop is None:
            config = LoopConfig(
                review_confidence=(settings.WALKOUT["REVIEW_CONFIDENCE"] if review_confidence is None
                                   else review_confidence),
                settle_s=settings.WALKOUT["EXIT_SETTLE_S"] if settle_s is None else settle_s)
            loop = StoreLoop(planogram=planogram_for(store=store), bins=bin_geometry_for(store=store),
                             sink=self.sink, fusion=fusion, detector=detector, config=config)
        else:
            loop.sink = self.sink
        self.loop = loop
        self._track_seen: dict[str, list[float]] = {}

    @property
    def stats(self) -> LoopStats:
        return self.loop.stats

    @property
    def visits(self) -> dict[str, Visit]:
        return self.sink.visits

    @property
    def clock_offset_s(self) -> float:
        return self.sink.clock_offset_s

    @property
    def now(self) -> float:
        return self.loop.now

    def at(self, t: float) -> datetime:
        return self.sink.at(t)

    def _problem(self, message: str) -> None:
        self.loop.stats.problem(message)

    # ------------------------------------------------------------------------------------------------ inputs
    def on_samples(self, *, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray, rate_hz: float) -> None:
        """Feed one block of a shelf controller's samples: ``t`` (n,) s UTC, ``grams`` (n, B) for ``bin_codes``."""
        self.loop.on_samples(bin_codes=bin_codes, t=t, grams=grams, rate_hz=rate_hz)

    def on_tracks(self, obs: TrackObservations) -> None:
        """Feed shopper-track keypoints (metres, store coordinates)."""
        if len(obs) == 0:
            return
        self.loop.on_observations(obs)
        for track in np.unique(obs.track_id):
            ts = obs.t[obs.track_id == track]
            seen = self._track_seen.setdefault(str(track), [math.inf, -math.inf, 0])
            seen[0], seen[1], seen[2] = min(seen[0], ts.min()), max(seen[1], ts.max()), seen[2] + ts.size

    def bind_visit(self, *, track_id: str, visit: Visit, t: float | None = None,
                   party_lead: str | None = None) -> None:
        """Remember that ``track_id`` belongs to ``visit`` (the gate bound them at ``t``, s UTC; default: now);
        the shopper's app gets the (empty) cart of the new visit."""
        self.sink.visits[track_id] = visit
        self.loop.on_entry(track=track_id, t=self.loop.now if t is None else float(t), party_lead=party_lead)
        cart_publish(visit=visit)

    def join_party(self, *, track_id: str, lead_track_id: str) -> None:
        """``track_id``'s visit is a guest of ``lead_track_id``'s party (``store.gates.party.visit_join_party`` has
        been called): fusion treats their carts as one for put-backs."""
        self.loop.party_of[track_id] = self.loop.party_of.get(lead_track_id, lead_track_id)

    def on_exit(self, *, track_id: str, t: float, reason: str) -> None:
        """The shopper of ``track_id`` left at ``t`` (s UTC): the visit exits and is billed after the settle time."""
        visit = self.sink.visits.get(track_id)
        if visit is None:
            self._problem(f"exit of track {track_id} at {self.at(t):%H:%M:%S}: no visit bound to it; ignored")
            return
        visit.refresh_from_db(fields=["state"])
        if visit.state not in (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED):
            log.info("exit of track %s: visit %s is already %s (an earlier attempt of this session)", track_id,
                     visit.pk, visit.state)
            return
        self.loop.on_exit(track=track_id, t=t)
        visit_exit(visit=visit, at=self.at(t), reason=reason)
        cart_publish(visit=visit)

    def advance(self, now: float, *, slice_s: float | None = None, push_every_s: float = 0.25) -> None:
        """All sources have been fed up to ``now`` (s UTC): decide the events whose evidence is complete and bill
        the visits whose settle time has passed. Each cart changed is pushed to its shopper once, at the end (without
        ``slice_s``) or once per push below.

        ``slice_s`` (store seconds; the store worker's ``StoreWorker.ADVANCE_SLICE_S``): a longer advance (a
        backlog, a source that held the watermark and caught up) goes in slices of it, and the carts changed so far
        are pushed after each slice that ends ``push_every_s`` wall seconds or more after the last push, so the first decisions
        of a 10 s advance reach the phones without waiting for the last, and checkouts are queued as their slice
        comes. The loop decides the same whatever the slices (``carts.loop`` module docstring)."""
        self.sink.step_begins()
        with cart_publish_batch():
            start = self.loop.now
            if slice_s is None or not (math.isfinite(start) and math.isfinite(now)) or now - start <= slice_s:
                self.loop.advance(now)
                return
            pushed = time.monotonic()
            t = start
            while t < now:
                t = min(now, t + slice_s)
                self.loop.advance(t)
                if time.monotonic() - pushed >= push_every_s:
                    cart_publish_flush()
                    pushed = time.monotonic()

    def finish(self) -> None:
        """End of the stream: flush the detectors, decide everything left, record track summaries, bill exits."""
        self.sink.step_begins()
        self.loop.finish()
        for track, (t0, t1, n) in self._track_seen.items():
            shopper_track_record(store=self.store, session=self.session, track_id=track, first_seen=self.at(t0),
                                 last_seen=self.at(t1), observations=int(n))


class PipelineSink:
    """A ``sensors.live.ShelfSink`` that runs detection and fusion in the ingesting process (the store loop off):
    one :class:`StorePipeline` per store (created on first use) with the ingestor's ``session``; samples go to its
    ``on_samples``, ``advance`` to ``advance``, ``finish`` to ``finish``. Returns shelf events stored."""

    def __init__(self, *, session: str) -> None:
        self.session = session
        self.pipelines: dict[int, StorePipeline] = {}

    def pipeline(self, store: Store) -> StorePipeline:
        """The store's :class:`StorePipeline` (created on first use)."""
        pipe = self.pipelines.get(store.pk)
        if pipe is None:
            pipe = self.pipelines[store.pk] = StorePipeline(store=store, session=self.session)
        return pipe

    def on_samples(self, *, store: Store, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray,
                   rate_hz: float) -> int:
        pipe = self.pipeline(store)
        before = pipe.stats.shelf_events
        pipe.on_samples(bin_codes=bin_codes, t=t, grams=grams, rate_hz=rate_hz)
        return pipe.stats.shelf_events - before

    def advance(self, *, store: Store, now: float) -> int:
        pipe = self.pipeline(store)
        before = pipe.stats.shelf_events
        pipe.advance(now)
        return pipe.stats.shelf_events - before

    def finish(self, *, store: Store) -> int:
        pipe = self.pipelines.get(store.pk)
        if pipe is None:
            return 0
        before = pipe.stats.shelf_events
        pipe.finish()
        return pipe.stats.shelf_events - before
