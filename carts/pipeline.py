"""The store pipeline of one session, driven by time (Django shell around the pure cores).

Shelf samples → ``sensors.weight`` detection → shelf events (stored by ``sensors``) → ``carts.fusion.decide_event``
with the shopper tracks' hands, the carts of the eligible visits and their parties → cart events (or the review
queue, with the evidence) → live cart push; gate scans → visits (``gates``), parties (``gates.party``); exits →
checkout after the settle time (cart → receipt → capture, ``billing``). A shopper who left stays a candidate for
events that began up to ``settle_s`` after the exit, and the visit is billed only once no detected event that
could be theirs is waiting; an event that still reaches a billed visit goes to review, whose resolution issues the
correction through billing (``carts.services.review_resolve``).

``carts.evaluation.offline_replay`` runs the same decision function (``decide_event``) without the database.

The same object runs live (fed by ingestion workers) and in a replay (fed from a recording by
:func:`carts.replay.replay_recording`). It works on the sources' timestamps, never on arrival order
(DESIGN.md "Time"): an event is fused only once hand data up to ``t_end + pad`` has been fed (``advance(now)``).
"""
from __future__ import annotations

import logging
import math
from datetime import datetime
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from sensors import weight
from sensors.models import ShelfEvent
from sensors.services import planogram_for, shelf_event_record, utc
from store.gates.models import Visit
from store.gates.services import visit_exit
from store.inventory.models import Product
from store.layout.models import Bin, Store
from store.recording import TrackObservations
from vision.services import shopper_track_record

from .evaluation import pending_holdings, pending_picks, spend_picks
from .fusion import BinGeometry, Decision, FusionConfig, decide_event, eligible_tracks
from .models import CartEvent, ReviewItem
from .services import CartChange, cart_apply, cart_publish, review_followers_settle, visit_checkout

log = logging.getLogger(__name__)

#: Seconds of stream time a controller's settled weight changes wait for a neighbouring change before they become
#: shelf events (twice ``shelf_events_from_changes``'s 0.5 s merge gap, plus the detector's ~0.5 s settle lag), and
#: the longest any change waits on a busy controller.
HOLD_S = 1.5
HOLD_MAX_S = 10.0

OPEN_STATES = (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED)


def bin_geometry_for(*, store: Store) -> BinGeometry:
    """The store's bins as :class:`carts.fusion.BinGeometry` (metres, store coordinates)."""
    bins = list(Bin.objects.filter(store=store).order_by("code"))
    return BinGeometry(
        codes=tuple(b.code for b in bins),
        centre=np.array([[b.x, b.y, b.z] for b in bins], dtype=np.float64).reshape(-1, 3),
        half_size=np.array([[b.width_m / 2, b.depth_m / 2] for b in bins], dtype=np.float64).reshape(-1, 2),
        yaw=np.array([b.yaw_rad for b in bins], dtype=np.float64),
    )


@dataclass
class PipelineStats:
    """Counters of one pipeline run."""

    samples: int = 0
    shelf_events: int = 0
    cart_events: int = 0
    reviews: int = 0
    waiting: int = 0
    visits: int = 0
    receipts: int = 0
    problems: list[str] = field(default_factory=list)


class StorePipeline:
    """One store session's pipeline. Not thread-safe: feed it from one thread, in time order per source.

    ``review_confidence`` (default ``settings.WALKOUT["REVIEW_CONFIDENCE"]``): decisions below it go to review.
    ``settle_s`` (default ``settings.WALKOUT["EXIT_SETTLE_S"]``): how long after an exit events may still arrive.
    ``clock_offset_s``: added to every source time before it is stored (a replay "as of now" shifts the
    recording's clock to the present; live sources pass their measured clock offset). Fusion and detection work
    on the sources' own times.
    """

    def __init__(self, *, store: Store, session: str, fusion: FusionConfig = FusionConfig(),
                 detector: weight.DetectorConfig | None = None, review_confidence: float | None = None,
                 settle_s: float | None = None, clock_offset_s: float = 0.0):
        self.store = store
        self.clock_offset_s = float(clock_offset_s)
        self.session = session
        self.fusion = fusion
        self.detector_config = detector or weight.DetectorConfig()
        self.review_confidence = (settings.WALKOUT["REVIEW_CONFIDENCE"] if review_confidence is None
                                  else review_confidence)
        self.settle_s = settings.WALKOUT["EXIT_SETTLE_S"] if settle_s is None else settle_s
        self.planogram = planogram_for(store=store)
        self.bins = bin_geometry_for(store=store)
        self.products = {p.barcode: p for p in Product.objects.filter(store=store)}
        self._detectors: dict[tuple[str, ...], weight.WeightEventDetector] = {}
        self._planograms: dict[tuple[str, ...], weight.Planogram] = {}
        self._hands: list[TrackObservations] = []
        self._hands_cache: TrackObservations | None = None
        self._bodies: list[TrackObservations] = []
        self._bodies_cache: TrackObservations | None = None
        self._track_seen: dict[str, list[float]] = {}
        self._pending: list[tuple[ShelfEvent, weight.ShelfEvent]] = []
        self._held: dict[tuple[str, ...], list[weight.WeightChanges]] = {}
        self._exits: dict[int, float] = {}
        self.visits: dict[str, Visit] = {}
        self.party_of: dict[str, str] = {}
        self._entered: dict[str, float] = {}
        self.now = -math.inf
        self.stats = PipelineStats()
        self._review_picks: dict[int, list[tuple[str, str, int]]] = {}  # review item → picks it may give

    def at(self, t: float) -> datetime:
        """Source time ``t`` (s UTC) → the stored timezone-aware UTC datetime (``clock_offset_s`` applied)."""
        return utc(t + self.clock_offset_s)

    # ------------------------------------------------------------------------------------------------ inputs
    def on_samples(self, *, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray, rate_hz: float) -> None:
        """Feed one block of a shelf controller's samples: ``t`` (n,) s UTC, ``grams`` (n, B) for ``bin_codes``."""
        det = self._detectors.get(bin_codes)
        if det is None:
            det = self._detectors[bin_codes] = weight.WeightEventDetector(len(bin_codes), rate_hz,
                                                                         self.detector_config)
        self.stats.samples += int(grams.size)
        self._on_changes(bin_codes, det.push(t, grams))

    def on_tracks(self, obs: TrackObservations) -> None:
        """Feed shopper-track keypoints (metres, store coordinates)."""
        if len(obs) == 0:
            return
        self._hands.append(obs.hands())
        self._hands_cache = None
        self._bodies.append(obs[np.isin(obs.keypoint, ("neck", "head"))])
        self._bodies_cache = None
        for track in np.unique(obs.track_id):
            ts = obs.t[obs.track_id == track]
            seen = self._track_seen.setdefault(str(track), [math.inf, -math.inf, 0])
            seen[0], seen[1], seen[2] = min(seen[0], ts.min()), max(seen[1], ts.max()), seen[2] + ts.size

    def bind_visit(self, *, track_id: str, visit: Visit, t: float | None = None) -> None:
        """Remember that ``track_id`` belongs to ``visit`` (the gate bound them at ``t``, s UTC; default: now);
        the shopper's app gets the (empty) cart of the new visit."""
        self.visits[track_id] = visit
        self._entered[track_id] = self.now if t is None else float(t)
        self.stats.visits += 1
        cart_publish(visit=visit)

    def join_party(self, *, track_id: str, lead_track_id: str) -> None:
        """``track_id``'s visit is a guest of ``lead_track_id``'s party (``store.gates.party.visit_join_party`` has
        been called): fusion treats their carts as one for put-backs."""
        self.party_of[track_id] = self.party_of.get(lead_track_id, lead_track_id)

    def on_exit(self, *, track_id: str, t: float, reason: str) -> None:
        """The shopper of ``track_id`` left at ``t`` (s UTC): the visit exits and is billed after the settle time."""
        visit = self.visits.get(track_id)
        if visit is None:
            self._problem(f"exit of track {track_id} at {self.at(t):%H:%M:%S}: no visit bound to it; ignored")
            return
        visit.refresh_from_db(fields=["state"])
        if visit.state not in (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED):
            log.info("exit of track %s: visit %s is already %s (an earlier attempt of this session)", track_id,
                     visit.pk, visit.state)
            return
        visit_exit(visit=visit, at=self.at(t), reason=reason)
        self._exits[visit.pk] = t
        cart_publish(visit=visit)

    # -------------------------------------------------------------------------------------------------- time
    def advance(self, now: float) -> None:
        """All sources have been fed up to ``now`` (s UTC): fuse the events whose evidence is complete and bill
        the visits whose settle time has passed."""
        self.now = max(self.now, now)
        self._release(force=False)
        ready = [p for p in self._pending if p[1].t_end + self.fusion.pad_s <= self.now]
        self._pending = [p for p in self._pending if p[1].t_end + self.fusion.pad_s > self.now]
        for row, event in ready:
            self._fuse(row, event)
        for visit_id, t_exit in list(self._exits.items()):
            if t_exit + self.settle_s > self.now:
                continue
            if any(ev.t_start <= t_exit + self.settle_s for _, ev in self._pending) or any(
                    float(c.t_start.min()) <= t_exit + self.settle_s for cs in self._held.values() for c in cs):
                continue
            del self._exits[visit_id]
            visit = Visit.objects.get(pk=visit_id)
            receipt = visit_checkout(visit=visit, at=self.at(t_exit + self.settle_s))
            if receipt is not None:
                self.stats.receipts += 1

    def finish(self) -> None:
        """End of the stream: flush the detectors, fuse everything left, record track summaries, bill exits."""
        for codes, det in self._detectors.items():
            self._on_changes(codes, det.flush())
        self._release(force=True)
        for track, (t0, t1, n) in self._track_seen.items():
            shopper_track_record(store=self.store, session=self.session, track_id=track, first_seen=self.at(t0),
                                 last_seen=self.at(t1), observations=int(n))
        self.advance(math.inf)

    # ------------------------------------------------------------------------------------------------ inside
    def _problem(self, message: str) -> None:
        log.warning("%s", message)
        self.stats.problems.append(message)

    def _on_changes(self, bin_codes: tuple[str, ...], changes: weight.WeightChanges) -> None:
        """Hold a controller's settled changes until no new one has come for ``HOLD_S`` (or the oldest waited
        ``HOLD_MAX_S``): changes on neighbouring plates that settle a moment apart (two shoppers side by side, an
        item across two plates) then merge into one event as a batch detection would merge them."""
        if len(changes):
            self._held.setdefault(bin_codes, []).append(changes)

    def _release(self, *, force: bool) -> None:
        for bin_codes, parts in list(self._held.items()):
            newest = max(float(c.t_end.max()) for c in parts)
            oldest = min(float(c.t_end.min()) for c in parts)
            if force or self.now - newest >= HOLD_S or self.now - oldest >= HOLD_MAX_S:
                del self._held[bin_codes]
                self._emit(bin_codes, weight.WeightChanges.concat(parts))

    def _emit(self, bin_codes: tuple[str, ...], changes: weight.WeightChanges) -> None:
        for event in weight.shelf_events_from_changes(changes, self._controller_planogram(bin_codes)):
            row = shelf_event_record(store=self.store, session=self.session, event=event,
                                     clock_offset_s=self.clock_offset_s)
            self.stats.shelf_events += 1
            log.info("shelf event %s %+.0f g (%s)", ",".join(event.bin_codes), event.delta_g,
                     f"{event.best.barcode} × {event.best.quantity}" if event.best else "unexplained")
            if not row.for_fusion:  # a restock: stored by sensors, nobody's cart
                continue
            self._pending.append((row, event))

    def _controller_planogram(self, bin_codes: tuple[str, ...]) -> weight.Planogram:
        """The planogram restricted to one controller's bins, in its column order (the detector's bin index)."""
        cached = self._planograms.get(bin_codes)
        if cached is None:
            known = set(bin_codes)
            p = self.planogram
            cached = self._planograms[bin_codes] = weight.Planogram(
                bin_codes=bin_codes, facings={b: v for b, v in p.facings.items() if b in known},
                products=p.products,
                neighbours={b: tuple(n for n in v if n in known) for b, v in p.neighbours.items() if b in known})
        return cached

    def hands(self) -> TrackObservations:
        """All hand keypoints fed so far."""
        if self._hands_cache is None:
            if not self._hands:
                self._hands_cache = TrackObservations.empty()
            else:
                parts = self._hands
                self._hands_cache = TrackObservations(
                    np.concatenate([p.track_id for p in parts]), np.concatenate([p.t for p in parts]),
                    np.concatenate([p.keypoint for p in parts]), np.concatenate([p.xyz for p in parts]),
                    np.concatenate([p.score for p in parts]))
                self._hands = [self._hands_cache]
        return self._hands_cache

    def bodies(self) -> TrackObservations:
        """All neck and head keypoints fed so far (the identity check of fusion)."""
        if self._bodies_cache is None:
            parts = self._bodies or [TrackObservations.empty()]
            self._bodies_cache = TrackObservations(*(np.concatenate([getattr(p, f) for p in parts])
                                                     for f in ("track_id", "t", "keypoint", "xyz", "score")))
            self._bodies = [self._bodies_cache]
        return self._bodies_cache

    def _eligible(self, event: weight.ShelfEvent) -> list[str]:
        """Tracks bound to a visit that may have caused ``event`` (``carts.fusion.eligible_tracks``)."""
        exits = {track: self._exits[v.pk] for track, v in self.visits.items() if v.pk in self._exits}
        for track, visit in self.visits.items():  # exited and already billed: their exit time is the visit's
            if track not in exits and visit.state not in (Visit.State.ADMITTED, Visit.State.SHOPPING):
                exits[track] = visit.exited_at.timestamp() - self.clock_offset_s if visit.exited_at else -math.inf
        return eligible_tracks(self._entered, exits, event, now=self.now, settle_s=self.settle_s)

    def carts(self, tracks: list[str]) -> dict[str, dict[str, int]]:
        """What each of ``tracks``' visits holds now, from the cart ledger: {track: {barcode: units}}."""
        by_visit = {self.visits[t].pk: t for t in tracks if t in self.visits}
        out: dict[str, dict[str, int]] = {t: {} for t in by_visit.values()}
        rows = (CartEvent.objects.filter(visit_id__in=list(by_visit)).values("visit_id", "product__barcode")
                .annotate(q=Sum("quantity")))
        for r in rows:
            if r["q"]:
                out[by_visit[r["visit_id"]]][r["product__barcode"]] = int(r["q"])
        return out

    def _fuse(self, row: ShelfEvent, event: weight.ShelfEvent) -> None:
        if CartEvent.objects.filter(shelf_event=row).exists() or ReviewItem.objects.filter(shelf_event=row).exists():
            log.info("shelf event %s was fused in an earlier attempt of %s; not again", row.pk, self.session)
            return None
        eligible = self._eligible(event)
        decision = decide_event(event, self.hands(), self.bins, self.planogram, carts=self.carts(eligible),
                                party_of=self.party_of, eligible=eligible,
                                review_confidence=self.review_confidence, config=self.fusion, bodies=self.bodies(),
                                pending=self._pending_holdings(eligible))
        evidence = {"shelf_event": row.pk, "bins": list(event.bin_codes), "delta_g": round(event.delta_g, 1),
                    "hypotheses": row.hypotheses, **decision.evidence()}
        if decision.noise:  # a weak change nobody reached for (sensors.weight.ShelfEvent.weak)
            log.info("shelf event %s: %s", ",".join(event.bin_codes), decision.reason)
            return None
        if decision.review or not decision.changes:
            return self._review(row, decision, decision.reason)
        if decision.awaits_review:
            return self._wait(row, decision, evidence)
        missing = [code for _, code, _ in decision.changes if code not in self.products]
        if missing:
            return self._review(row, decision, f"product {missing[0]} is not in the catalogue")
        visits = [self.visits[track] for track, _, _ in decision.changes]
        for visit in visits:
            visit.refresh_from_db(fields=["state"])
            if visit.state not in (Visit.State.ADMITTED, Visit.State.SHOPPING, Visit.State.EXITED,
                                   Visit.State.UNDER_REVIEW):
                return self._review(row, decision, f"visit {visit.pk} is already {visit.state}: a person confirms "
                                                   f"the correction ({decision.reason})")
        try:
            with transaction.atomic():  # a split event changes two carts (or lines), or none
                for visit, (_, code, quantity) in zip(visits, decision.changes):
                    cart_apply(change=CartChange(visit=visit, product=self.products[code], quantity=int(quantity),
                                                 confidence=decision.confidence, evidence=evidence), shelf_event=row)
        except ValueError as exc:
            return self._review(row, decision, str(exc))
        self.stats.cart_events += len(visits)

    def _open_reviews(self) -> list[int]:
        """This session's review items still open, oldest first, among those this pipeline created."""
        if not self._review_picks:
            return []
        return list(ReviewItem.objects.filter(pk__in=list(self._review_picks), status=ReviewItem.Status.OPEN)
                    .order_by("pk").values_list("pk", flat=True))

    def _pending_holdings(self, tracks: list[str]) -> dict[str, dict[str, int]]:
        """What each of ``tracks`` may hold through picks still open in review (fusion's ``pending``)."""
        return pending_holdings({pk: self._review_picks[pk] for pk in self._open_reviews()}, tracks)

    def _wait(self, row: ShelfEvent, decision: Decision, evidence: dict) -> None:
        """A put-back whose item's pick is still in review: keep the decision on a ``waiting`` review item that
        follows that review; ``carts.services.review_resolve`` applies it (or opens it) once the pick is decided."""
        lead = self.party_of.get(decision.track_id, decision.track_id)
        follows = next((pk for pk in self._open_reviews() for track, code, q in self._review_picks[pk]
                        if code == decision.barcode and self.party_of.get(track, track) == lead), None)
        visit = self.visits.get(decision.track_id)
        if follows is None or visit is None:  # the pick's review was decided meanwhile: people decide this one
            return self._review(row, decision, decision.reason)
        ev = decision.evidence()
        candidates = [{"visit": self.visits[c["track_id"]].pk if c["track_id"] in self.visits else None, **c,
                       "options": ev["options"]} for c in ev["candidates"]]
        with transaction.atomic():
            item, _ = ReviewItem.objects.get_or_create(shelf_event=row, defaults={
                "status": ReviewItem.Status.WAITING, "follows_id": follows, "reason": decision.reason[:200],
                "candidates": candidates,
                "resolution": {"visit": visit.pk, "barcode": decision.barcode, "quantity": int(decision.quantity),
                               "confidence": round(decision.confidence, 4), "evidence": evidence}})
            self._review_picks[follows] = spend_picks(self._review_picks[follows], decision.barcode,
                                                      -decision.quantity)
            followed = ReviewItem.objects.select_for_update().get(pk=follows)
            if followed.status != ReviewItem.Status.OPEN:  # decided between our query and now
                review_followers_settle(item=followed)
        self.stats.waiting += 1
        log.info("shelf event %s waits for review %s: %s", row.pk, follows, decision.reason)

    def _review(self, row: ShelfEvent, decision: Decision, reason: str) -> None:
        ev = decision.evidence()
        candidates = [{"visit": self.visits[c["track_id"]].pk if c["track_id"] in self.visits else None, **c,
                       "options": ev["options"]} for c in ev["candidates"]]
        with transaction.atomic():
            item, _ = ReviewItem.objects.get_or_create(shelf_event=row, defaults={"reason": reason[:200],
                                                                                  "candidates": candidates})
        self._review_picks[item.pk] = pending_picks(decision)
        self.stats.reviews += 1
        log.warning("shelf event %s sent to review: %s", row.pk, reason)
        for c in candidates:
            if c["visit"] is not None:
                cart_publish(visit=self.visits[c["track_id"]])

