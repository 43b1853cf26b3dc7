"""The store pipeline of one session, driven by time (Django shell around the pure cores).

Shelf samples → ``sensors.weight`` detection → shelf events (stored by ``sensors``) → ``carts.fusion`` with the
shopper tracks' hands → cart events (or the review queue) → live cart push; gate scans → visits (``gates``); exits →
checkout after the settle time (cart → receipt → capture, ``billing``).

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

from sensors import weight
from sensors.models import ShelfEvent
from sensors.services import planogram_for, shelf_event_record, utc
from store.gates.models import Visit
from store.gates.services import visit_exit
from store.inventory.models import Product
from store.layout.models import Bin, Store
from store.recording import TrackObservations
from vision.services import shopper_track_record

from .fusion import Attribution, BinGeometry, FusionConfig, attribute_event
from .models import ReviewItem
from .services import CartChange, cart_apply, cart_publish, visit_checkout

log = logging.getLogger(__name__)

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
        self._track_seen: dict[str, list[float]] = {}
        self._pending: list[tuple[ShelfEvent, weight.ShelfEvent]] = []
        self._exits: dict[int, float] = {}
        self.visits: dict[str, Visit] = {}
        self.now = -math.inf
        self.stats = PipelineStats()

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
        for track in np.unique(obs.track_id):
            ts = obs.t[obs.track_id == track]
            seen = self._track_seen.setdefault(str(track), [math.inf, -math.inf, 0])
            seen[0], seen[1], seen[2] = min(seen[0], ts.min()), max(seen[1], ts.max()), seen[2] + ts.size

    def bind_visit(self, *, track_id: str, visit: Visit) -> None:
        """Remember that ``track_id`` belongs to ``visit`` (the gate bound them); the shopper's app gets the
        (empty) cart of the new visit."""
        self.visits[track_id] = visit
        self.stats.visits += 1
        cart_publish(visit=visit)

    def on_exit(self, *, track_id: str, t: float, reason: str) -> None:
        """The shopper of ``track_id`` left at ``t`` (s UTC): the visit exits and is billed after the settle time."""
        visit = self.visits.get(track_id)
        if visit is None:
            self._problem(f"exit of track {track_id} at {self.at(t):%H:%M:%S}: no visit bound to it; ignored")
            return
        visit_exit(visit=visit, at=self.at(t), reason=reason)
        self._exits[visit.pk] = t
        cart_publish(visit=visit)

    # -------------------------------------------------------------------------------------------------- time
    def advance(self, now: float) -> None:
        """All sources have been fed up to ``now`` (s UTC): fuse the events whose evidence is complete and bill
        the visits whose settle time has passed."""
        self.now = max(self.now, now)
        ready = [p for p in self._pending if p[1].t_end + self.fusion.pad_s <= self.now]
        self._pending = [p for p in self._pending if p[1].t_end + self.fusion.pad_s > self.now]
        for row, event in ready:
            self._fuse(row, event)
        for visit_id, t_exit in list(self._exits.items()):
            if t_exit + self.settle_s > self.now:
                continue
            if any(ev.t_start <= t_exit + self.settle_s for _, ev in self._pending):
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
        for track, (t0, t1, n) in self._track_seen.items():
            shopper_track_record(store=self.store, session=self.session, track_id=track, first_seen=self.at(t0),
                                 last_seen=self.at(t1), observations=int(n))
        self.advance(math.inf)

    # ------------------------------------------------------------------------------------------------ inside
    def _problem(self, message: str) -> None:
        log.warning("%s", message)
        self.stats.problems.append(message)

    def _on_changes(self, bin_codes: tuple[str, ...], changes: weight.WeightChanges) -> None:
        if len(changes) == 0:
            return
        for event in weight.shelf_events_from_changes(changes, self._controller_planogram(bin_codes)):
            row = shelf_event_record(store=self.store, session=self.session, event=event,
                                     clock_offset_s=self.clock_offset_s)
            self.stats.shelf_events += 1
            log.info("shelf event %s %+.0f g (%s)", ",".join(event.bin_codes), event.delta_g,
                     f"{event.best.barcode} × {event.best.quantity}" if event.best else "unexplained")
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

    def _eligible(self, event: weight.ShelfEvent) -> list[str]:
        out = []
        for track, visit in self.visits.items():
            t_exit = self._exits.get(visit.pk)
            if visit.state in (Visit.State.ADMITTED, Visit.State.SHOPPING) or (
                    t_exit is not None and event.t_start <= t_exit + self.settle_s):
                out.append(track)
        return out

    def _fuse(self, row: ShelfEvent, event: weight.ShelfEvent) -> None:
        attribution = attribute_event(event, self.hands(), self.bins, self.fusion, eligible=self._eligible(event))
        best = event.best
        evidence = {
            "shelf_event": row.pk, "bins": list(event.bin_codes), "delta_g": round(event.delta_g, 1),
            "hypotheses": row.hypotheses, "attribution": attribution.reason,
            "candidates": [{"track_id": c.track_id, "distance_m": round(c.distance_m, 3),
                            "score": round(c.score, 4)} for c in attribution.candidates],
        }
        if best is None:
            return self._review(row, attribution, "the weight change matches no product facing these bins")
        if attribution.track_id is None:
            return self._review(row, attribution, attribution.reason)
        confidence = attribution.confidence * float(best.likelihood)
        evidence["confidence"] = {"attribution": round(attribution.confidence, 4),
                                  "product": round(float(best.likelihood), 4)}
        if confidence < self.review_confidence:
            return self._review(row, attribution, f"confidence {confidence:.2f} below {self.review_confidence:.2f}")
        product = self.products.get(best.barcode)
        if product is None:
            return self._review(row, attribution, f"product {best.barcode} is not in the catalogue")
        visit = self.visits[attribution.track_id]
        try:
            cart_apply(change=CartChange(visit=visit, product=product, quantity=int(best.quantity),
                                         confidence=confidence, evidence=evidence), shelf_event=row)
        except ValueError as exc:
            return self._review(row, attribution, str(exc))
        self.stats.cart_events += 1

    def _review(self, row: ShelfEvent, attribution: Attribution, reason: str) -> None:
        candidates = [{"visit": self.visits[c.track_id].pk if c.track_id in self.visits else None,
                       "track_id": c.track_id, "distance_m": round(c.distance_m, 3), "score": round(c.score, 4)}
                      for c in attribution.candidates]
        with transaction.atomic():
            ReviewItem.objects.get_or_create(shelf_event=row, defaults={"reason": reason[:200],
                                                                        "candidates": candidates})
        self.stats.reviews += 1
        log.warning("shelf event %s sent to review: %s", row.pk, reason)
        for c in candidates:
            if c["visit"] is not None:
                cart_publish(visit=self.visits[c["track_id"]])
