"""The store loop: the one orchestrator of a store's live decisions (pure Python and NumPy, no Django).

One :class:`StoreLoop` per store takes time-stamped records from four sources — shelf sample blocks, shopper-track
observations (keypoints in store metres), entries (a visit bound to a track) and exits, plus RFID tag events (shelf
takes and returns as evidence, exit-lane reads as the tags a leaving shopper carries) — and turns them into
shelf events, cart changes, review items, waiting put-backs and checkouts, which it hands to a :class:`LoopSink`.
The live store (``carts.runtime``: ``run_store``, the embedded ingestion path), ``replay`` and the offline accuracy
benchmark (``carts.offline.evaluation.offline_replay``) all run this object; only their sinks differ (the database, or
memory). DESIGN.md "Running a store live".

Time: the loop works on the sources' own clocks, never on arrival order. ``advance(now)`` says every source has
been fed up to ``now``; a shelf event is decided once hand data up to ``t_end + fusion.pad_s`` is in, always with
the visits entered and exited by that moment, so a decision does not depend on how the input was batched.

Memory is bounded by the fusion window and the settle time: observations are kept only as far back as the
oldest undecided event needs (``LoopConfig.lookback_s``), and visits long gone are forgotten
(``LoopConfig.forget_after_s``), so a day of trading holds no more than a busy minute. The whole state pickles
(:meth:`StoreLoop.snapshot`, :meth:`StoreLoop.restore`): the store worker checkpoints it with its stream offsets.
"""
from __future__ import annotations

import io
import logging
import math
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from sensors import weight
from sensors.rfid import ExitLaneConfig, TagEvent, exit_lane_tags
from store.checks import check_numbers
from store.recording import TrackObservations, member
from vision.identity import BodyFrames, FramedBodies, swaps_of

from .chunks import ChunkStore, PackedChunk, ChunkPickler, ChunkUnpickler
from .fusion import Decision, decide_event, eligible_tracks, evidence_window
from .fusion_config import BinGeometry, FusionConfig
from .fusion_hands import _floor_distance, candidate_reach_m, wrist_ray_hands
from .reach_look import ReachLook, ReachLookConfig

log = logging.getLogger(__name__)

#: The keypoints kept for the identity check of fusion (``vision.identity``: where a track's body is).
BODY_KEYPOINTS = ("neck", "head")


@dataclass(frozen=True)
class LoopConfig:
    """Knobs of the store loop (seconds of source time unless said otherwise).

    Raises ValueError for a negative time.
    """

    #: Decisions below this confidence go to the review queue (``settings.WALKOUT["REVIEW_CONFIDENCE"]``).
    review_confidence: float = 0.6
    #: After an exit, events beginning up to this long after it may still be the shopper's; billing waits for them
    #: (``settings.WALKOUT["EXIT_SETTLE_S"]``: a plate settles within 1–2 s of the hand leaving it).
    settle_s: float = 3.0
    #: A gondola's settled changes (each gondola of a controller has its own detector, :meth:`StoreLoop.on_samples`)
    #: become shelf events as soon as its detector has passed their end by this much
    #: with no other change begun by then (``WeightEventDetector.settled_until``: a neighbouring change that
    #: starts within this of their end still joins them; one still moving holds them). ``t_end`` is already the
    #: last active window's centre, half a detector window after the last moving sample, so 0.25 s waits for a
    #: neighbour that starts moving up to ~0.75 s after this plate stopped (1.0 s at 0.5; docs/ingestion.md)…
    hold_gap_s: float = 0.25
    #: …or, whatever the detector says, once none came for this long (twice the merge gap plus the detector's
    #: ~0.5 s settle lag)…
    hold_s: float = 1.5
    #: …and never longer than this on a busy gondola.
    hold_max_s: float = 10.0
    #: Observations are kept this far back before the oldest undecided shelf event (``vision.identity.repair``
    #: reads 60 s of bodies before an event to undo id switches; fusion reads ``pad_s`` of hands around it).
    lookback_s: float = 65.0
    #: A visit whose shopper left this long ago is forgotten by the loop (its cart lives on in the sink).
    forget_after_s: float = 120.0
    #: Live binding (:meth:`StoreLoop.on_gate_entry`): a track that first appeared within this long before…
    bind_before_s: float = 3.0
    #: …or after a gate scan is the scanned shopper; the binding is decided once this much later is fed. Where
    #: the store has entry zones (``StoreLoop.entry_zones``), only a track first seen inside the scanning gate's
    #: zone qualifies (one first seen elsewhere is a shopper already inside: a camera worker's restart, a split).
    bind_after_s: float = 2.0
    #: A scan that no track could be bound to within this long is reported unbound (cameras down: its visit's
    #: events go to review rather than to a wrong cart).
    bind_timeout_s: float = 10.0
    #: Live exits (``infer_exits``): a bound track unseen this long has left (store cameras cover the floor; with
    #: exit zones, only when it was last seen inside one)…
    lost_s: float = 2.0
    #: …a track lost outside every exit zone raises an alert, may be continued by a new track appearing within
    #: ``reassociate_m`` of where it was lost, and exits anyway (its visit flagged) after this long.
    lost_max_s: float = 300.0
    #: Metres: how close a new track must appear to a lost one to continue it (one or two strides).
    reassociate_m: float = 1.5
    #: True in the live store (no one tells the loop who left: it watches the tracks); False for recordings, whose
    #: gate file names each exit.
    infer_exits: bool = False
    #: RFID exit lanes: which exit-lane reads are a leaving shopper's tags (``sensors.rfid.ExitLaneConfig``; its
    #: ``after_s`` should not exceed ``settle_s``, as billing reads the tags at the end of the settle time).
    exit_lane: ExitLaneConfig = ExitLaneConfig()
    #: Metres: a shelf tag event (``take``/``return``) is backed by a hand when one came this close to the bin's
    #: centre within ``FusionConfig.pad_s`` of it.
    tag_hand_m: float = 0.6
    #: Product image evidence (the sink's ``product_likelihood``): the share of the recogniser's likelihood
    #: replaced by a uniform one (``carts.fusion_products.with_product_evidence``'s ``mix``), its error rate: a
    #: recogniser right 73 % of the time (6 photos per product, docs/recognition.md) says little when it is wrong.
    image_mix: float = 0.27
    #: The reach-triggered look at the plates' levels (``carts.reach_look``): after a hand reached into a shelf,
    #: a change too small for the blind detector that fits one unit becomes a (weak) shelf event for fusion.
    reach_look: ReachLookConfig = ReachLookConfig()

    def __post_init__(self) -> None:
        check_numbers(self, ("image_mix",), low=0, high=1)
        check_numbers(self, ("settle_s", "hold_gap_s", "hold_s", "hold_max_s", "lookback_s", "forget_after_s",
                             "bind_before_s", "bind_after_s", "bind_timeout_s", "lost_s", "lost_max_s", "reassociate_m"),
                      low=0)


@dataclass(frozen=True)
class HeldWindow:
    """Where and when a shelf event may still come from changes a controller holds back, or from a reach the look
    has not looked at yet (:meth:`StoreLoop._bill`): ``t_start``/``t_end`` s UTC (the oldest held change's start;
    the loop's now — for a reach, the reach's interval, or up to now while it goes on), ``bin_codes`` the bins the
    event may lie on. ``weak``: the event would be a look's (``sensors.weight.ShelfEvent.weak``), which fusion
    attributes to seen hands only (``carts.fusion.decide_event``)."""

    t_start: float
    t_end: float
    bin_codes: tuple[str, ...]
    weak: bool = False


#: What can keep an exited party's checkout waiting past its settle time (:class:`BillWait`): ``shelves`` a shelf
#: controller not yet fed up to the deadline (``StoreLoop.shelf_horizon``), ``party`` a member still inside or seen
#: too recently, ``held`` changes held back from becoming events on bins they may have reached, ``reach`` a reach
#: the look may still turn into an event there, ``events`` an undecided event that may name them.
BILL_WAITS = ("shelves", "party", "held", "reach", "events")


@dataclass
class BillWait:
    """How one exited track's checkout waited, in seconds of the sources' clock (:meth:`StoreLoop._bill`; read by
    the store worker to log where exit → receipt time goes). ``t_exit``: the exit; ``deadline``: ``t_exit +
    settle_s``; ``due``: the loop's clock at its first look past the deadline (the loop steps: ``due − deadline``
    is the step's overshoot); ``waited``: reason (:data:`BILL_WAITS`) → seconds it waited on it after ``due``;
    ``now``: the loop's clock at the checkout (``now − t_exit`` = settle + overshoot + the waits)."""

    track: str
    t_exit: float
    deadline: float
    due: float
    waited: dict[str, float] = field(default_factory=dict)
    last: str | None = None
    now: float = math.nan


class LoopSink(Protocol):
    """Where the loop's outputs go and what it reads back (the database, or memory for a benchmark).

    Event keys are the sink's own handles for stored shelf events (a database id, a row number); review keys
    likewise for review items. Every method must be idempotent on its key: a loop restored from a checkpoint may
    hand the same output again.
    """

    def shelf_event(self, event: weight.ShelfEvent) -> Hashable | None:
        """Store a detected shelf event; its key, or None when it is not for fusion (a restock)."""

    def decided(self, key: Hashable) -> bool:
        """The event was decided already (by a worker before a restart, or an earlier attempt of a replay):
        the loop does not decide it again."""

    def holdings(self, tracks: Sequence[str]) -> dict[str, dict[str, int]]:
        """What each of ``tracks``' visits holds now: {track: {barcode: units}} (tracks without a visit omitted)."""

    def open_reviews(self, keys: Sequence[Hashable]) -> list[Hashable]:
        """Those of ``keys`` whose review item is still open, oldest first."""

    def noise(self, key: Hashable, event: weight.ShelfEvent, decision: Decision) -> None:
        """A weak change nobody reached for: nothing to do."""

    def apply(self, key: Hashable, event: weight.ShelfEvent, decision: Decision) -> str | None:
        """Apply ``decision.changes`` to the carts, all or none; None when applied, else why it could not be (the
        loop then sends the event to review with that reason)."""

    def review(self, key: Hashable, event: weight.ShelfEvent, decision: Decision, reason: str) -> Hashable:
        """Send the event to people; returns the review item's key."""

    def wait(self, key: Hashable, event: weight.ShelfEvent, decision: Decision, follows: Hashable) -> bool:
        """Keep a put-back waiting for the review ``follows`` of its pick; False when it cannot wait (the loop
        then sends it to review)."""

    def bind(self, track: str, visit: Hashable, t: float, *, continues: str | None = None) -> None:
        """The loop bound ``track`` to ``visit`` at ``t`` (a gate scan; ``continues``: the lost track of the same
        visit that this new track carries on)."""

    def unbound(self, visit: Hashable, t: float, reason: str) -> None:
        """No track could be bound to the visit scanned in at ``t``: flag it (its events go to review)."""

    def exit(self, track: str, visit: Hashable, t: float, reason: str) -> None:
        """The loop saw ``track``'s shopper leave at ``t`` (the visit exits; billing follows after the settle)."""

    def forget(self, track: str) -> None:
        """The loop forgot ``track`` (its visit ended long ago): drop what the sink keeps for it in memory."""

    def alert(self, kind: str, message: str, *, key: str | None = None) -> None:
        """Something people should look at (a shopper lost inside the store); ``key``: what it is about (one
        alert per key and kind)."""

    # Optional (RFID; a sink without them ignores tags):
    #   tag_evidence(key, tags: list[dict]) — the shelf tag events (TagEvent.as_dict() + "hand": bool) that back
    #       the shelf event ``key``, called before apply/review/wait of it;
    #   exit_tags(track, attribution: sensors.rfid.ExitAttribution) — the tags that left with ``track``'s shopper,
    #       called just before ``checkout(track, …)``: they go on the receipt by the rules of
    #       ``sensors.rfid.exit_charges``.

    def checkout(self, track: str, t: float) -> bool:
        """The shopper of ``track`` left and every event that could be theirs is decided: bill the visit (``t``:
        the end of the settle time, s on the sources' clock). True when a receipt was issued (False: the visit
        waits for a review, or its payment failed)."""


class ObservationWindow:
    """Recent shopper-track observations, appended in chunks (one per step) and pruned from the front (bounded
    memory). :meth:`between` reads only the chunks that overlap the interval asked for."""

    def __init__(self) -> None:
        self._parts: list[TrackObservations] = []
        #: each part's pickled form once made (:meth:`__getstate__`; None until then): a checkpoint every few
        #: seconds packs only the parts added since the last one
        self._packed: list[tuple | None] = []
        self._spans: list[tuple[float, float]] = []  # each part's (earliest, latest) time, s
        self.t_min = math.inf

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def add(self, obs: TrackObservations) -> None:
        if len(obs):
            self._parts.append(obs)
            self._packed.append(None)
            self._spans.append((float(obs.t.min()), float(obs.t.max())))
            self.t_min = min(self.t_min, self._spans[-1][0])

    def prune(self, before: float) -> None:
        """Drop observations older than ``before`` (s)."""
        if not self._parts or self.t_min >= before:
            return
        kept, packed, spans = [], [], []
        for p, pk, (lo, hi) in zip(self._parts, self._packed, self._spans):
            if hi < before:
                continue
            if lo < before:
                p, pk = p[p.t >= before], None
                if not len(p):
                    continue
                lo = float(p.t.min())
            kept.append(p)
            packed.append(pk)
            spans.append((lo, hi))
        self._parts, self._packed, self._spans = kept, packed, spans
        self.t_min = min((lo for lo, _ in spans), default=math.inf)

    def __getstate__(self) -> dict:
        """The parts with their string columns (track ids, keypoint names: object arrays, slow to pickle row by
        row) as codes into their distinct values; each part packed once."""
        self._packed = [pk if pk is not None else PackedChunk(_pack(p)) for p, pk in zip(self._parts, self._packed)]
        return {"t_min": self.t_min, "packed": self._packed}

    def __setstate__(self, state: dict) -> None:
        if "packed" not in state:  # a checkpoint of the code before packing
            self.__dict__.update(state)
            self._packed = [None] * len(self._parts)
            self._spans = [(float(p.t.min()), float(p.t.max())) for p in self._parts]
            return
        self.t_min = state["t_min"]
        self._packed = list(state["packed"])
        self._parts = [_unpack(pk) for pk in self._packed]
        self._spans = [(float(p.t.min()), float(p.t.max())) for p in self._parts]

    def between(self, t0: float, t1: float) -> TrackObservations:
        """The kept observations with ``t0 <= t <= t1`` (s), in the order they were added."""
        parts = [p if t0 <= lo and hi <= t1 else p.between(t0, t1)
                 for p, (lo, hi) in zip(self._parts, self._spans) if lo <= t1 and hi >= t0]
        parts = [p for p in parts if len(p)]
        if not parts:
            return TrackObservations.empty()
        if len(parts) == 1:
            return parts[0]
        return TrackObservations(
            np.concatenate([x.track_id for x in parts]), np.concatenate([x.t for x in parts]),
            np.concatenate([x.keypoint for x in parts]), np.concatenate([x.xyz for x in parts]),
            np.concatenate([x.score for x in parts]))


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An object array (n,) as (its distinct values (k,) object, codes (n,) int32 into them)."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values.tolist()), dtype=np.int32,
                        count=len(values))
    uniques = np.empty(len(index), dtype=object)
    uniques[:] = list(index)
    return uniques, codes


def _pack(obs: TrackObservations) -> tuple:
    """``obs`` for pickling (:meth:`ObservationWindow.__getstate__`); :func:`_unpack` gives it back equal."""
    return (*_codes(obs.track_id), obs.t, *_codes(obs.keypoint), obs.xyz, obs.score)


def _unpack(packed: "tuple | PackedChunk") -> TrackObservations:
    if isinstance(packed, PackedChunk):
        packed = packed.data
    ids, id_codes, t, names, name_codes, xyz, score = packed
    return TrackObservations(ids[id_codes], t, names[name_codes], xyz, score)


@dataclass
class LoopStats:
    """Counters of one loop (since it was created or restored from a checkpoint's counts)."""

    samples: int = 0
    shelf_events: int = 0
    cart_events: int = 0
    reviews: int = 0
    waiting: int = 0
    noise: int = 0
    visits: int = 0
    receipts: int = 0
    late_evidence: int = 0  # events decided with part of their hand window already pruned (should stay 0)
    tag_events: int = 0  # RFID tag events fed (shelf takes and returns, exit-lane reads)
    exit_tags: int = 0  # tags attributed to leaving shoppers
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        log.warning("%s", message)
        self.problems.append(message)
        del self.problems[:-100]  # the last 100 (a day of trading must not grow this)


def controller_planogram(planogram: weight.Planogram, bin_codes: tuple[str, ...]) -> weight.Planogram:
    """``planogram`` restricted to one controller's bins, in its column order (the detector's bin index)."""
    known = set(bin_codes)
    return weight.Planogram(bin_codes=bin_codes,
                            facings={b: v for b, v in planogram.facings.items() if b in known},
                            products=planogram.products,
                            neighbours={b: tuple(n for n in v if n in known)
                                        for b, v in planogram.neighbours.items() if b in known})


def gondola_blocks(bin_codes: tuple[str, ...]) -> list[tuple[tuple[str, ...], np.ndarray | None]]:
    """A controller's bins (``bin_codes``, its column order) as its gondolas: ``[(gondola's bin codes, their
    column indices (k,) int64)]`` in order of first appearance, bins coded ``"<gondola>-<shelf>-<bin>"`` grouped by
    the part before the first ``-``. Columns are None when the whole controller is one group (one gondola, or
    codes without a ``-``, where the gondola is unknown and the controller stays whole). Changes merge into one
    shelf event only on neighbouring plates of one shelf, so a gondola is the widest unit detection needs."""
    groups: dict[str, list[int]] = {}
    for j, code in enumerate(bin_codes):
        if "-" not in code:
            return [(bin_codes, None)]
        groups.setdefault(code.split("-", 1)[0], []).append(j)
    if len(groups) <= 1:
        return [(bin_codes, None)]
    return [(tuple(bin_codes[j] for j in cols), np.asarray(cols, dtype=np.int64)) for cols in groups.values()]


def _check_block(t: np.ndarray, grams: np.ndarray, n_bins: int) -> None:
    """Raise ValueError unless ``grams`` is (len(t), ``n_bins``): a malformed block is refused whole, before any
    gondola's detector takes its share."""
    shape = np.shape(grams)
    if np.ndim(t) != 1 or shape != (np.shape(t)[0], n_bins):
        raise ValueError(f"a block of {n_bins} bins needs grams of shape (n, {n_bins}) for t (n,), got "
                         f"{shape} for t {np.shape(t)}")


def pending_picks(decision: Decision, event: weight.ShelfEvent | None = None,
                  planogram: weight.Planogram | None = None) -> list[tuple[str, str, int]]:
    """What a decision sent to review may have put in carts: (track, barcode, units) for every candidate track
    with a posterior of at least 5 % and every pick option with a posterior of at least 5 % — what fusion's
    ``pending`` holdings are made of (a later put-back of such an item waits for this review instead of becoming a
    second one). With ``event`` (a loss, Δ < 0) and ``planogram``: also one unit of every product facing the
    event's bins that the options do not list. A pick goes to review mostly because its weight fits no option
    well (part of the item resting on a plate outside the event, two changes merged): the person who decides it
    may well find a facing product there, and the shopper who then puts that product back holds it through this
    review (tuning seeds: such put-backs read as another held item of a poor fit, docs/accuracy.md change 8)."""
    tracks = [c.track_id for c in decision.candidates if c.posterior >= 0.05]
    opts = [(o.barcode, o.quantity) for o in decision.options if o.quantity > 0 and o.barcode and o.posterior >= 0.05]
    if event is not None and planogram is not None and event.delta_g < 0 and not event.weak:
        listed = {b for b, _ in opts}
        opts += [(b, 1) for b in sorted({p for c in event.bin_codes for p in planogram.facings.get(c, ())} - listed)]
    return [(t, b, q) for t in tracks for b, q in opts]


def pending_holdings(review_picks: Mapping[Hashable, Sequence[tuple[str, str, int]]], tracks: Sequence[str]
                     ) -> dict[str, dict[str, int]]:
    """What each of ``tracks`` may hold through the picks of open reviews (``review_picks``: review → its
    :func:`pending_picks`, in the order the reviews were opened): fusion's ``pending``."""
    out: dict[str, dict[str, int]] = {}
    wanted = set(tracks)
    for key in review_picks:
        for track, code, q in review_picks[key]:
            if track in wanted:
                out.setdefault(track, {})[code] = out.get(track, {}).get(code, 0) + q
    return out


def spend_picks(picks: Sequence[tuple[str, str, int]], code: str, units: int) -> list[tuple[str, str, int]]:
    """``picks`` with ``units`` of ``code`` taken off each candidate's entry (a waiting put-back used them)."""
    return [(t, c, q - units if c == code else q) for t, c, q in picks if c != code or q - units > 0]


class StoreLoop:
    """One store's live state and decisions (module docstring). Not thread-safe: feed it from one thread, in time
    order per source.

    ``planogram``: facings and unit weights of the whole store (``sensors.weight.Planogram``); ``bins``: bin
    geometry (metres, store coordinates); ``sink``: where outputs go (:class:`LoopSink`); ``fusion``/``detector``/
    ``config``: knobs. Raises KeyError from fusion when an event names a bin missing from ``bins``.
    """

    def __init__(self, *, planogram: weight.Planogram, bins: BinGeometry, sink: LoopSink,
                 fusion: FusionConfig = FusionConfig(), detector: weight.DetectorConfig | None = None,
                 config: LoopConfig = LoopConfig()) -> None:
        self.planogram = planogram
        self.bins = bins
        self.sink = sink
        self.fusion = fusion
        self.detector_config = detector or weight.DetectorConfig()
        self.config = config
        self.now = -math.inf
        self.stats = LoopStats()
        self.entries: dict[str, float] = {}  # track → entry time (s)
        self.exits: dict[str, float] = {}  # track → exit time (s)
        self.party_of: dict[str, str] = {}  # track → its party's lead track (absent: alone)
        self._to_bill: dict[str, float] = {}  # exited tracks not yet checked out → exit time
        self._bill_waits: dict[str, BillWait] = {}  # exited tracks past their deadline, not yet checked out
        #: the latest checkouts' :class:`BillWait` (newest last; the store worker takes them after each step)
        self.bill_timings: deque[BillWait] = deque(maxlen=1000)
        self.visit_of: dict[str, Hashable] = {}  # bound track → its visit's key (live binding)
        #: pending scans: (t, visit, party lead visit, gate name)
        self._binds: list[tuple[float, Hashable, Hashable | None, str]] = []
        #: track → [first t, last t, last x, last y, first x, first y] (s, metres)
        self._seen: dict[str, list[float]] = {}
        self._lost: dict[str, float] = {}  # bound tracks lost outside an exit zone → when the alert was raised
        #: (k, 2) polygons, metres: where shoppers appear once a gate has let them in (live binding). Empty: the
        #: cameras do not say where people come in, and a scan binds the track first seen nearest it in time.
        self.entry_zones: list[np.ndarray] = []
        #: gate name → its own entry zone (the entry zone named like the gate); a gate absent here uses every
        #: polygon of ``entry_zones``.
        self.gate_zones: dict[str, np.ndarray] = {}
        self.exit_zones: list[np.ndarray] = []  # (k, 2) polygons, metres (live exits)
        #: one detector per gondola of each controller (:meth:`on_samples`), keyed by the gondola's bin codes
        self._detectors: dict[tuple[str, ...], weight.WeightEventDetector] = {}
        #: controller's bin codes → its gondolas' (bin codes, columns) (:func:`gondola_blocks`; not checkpointed)
        self._gondolas: dict[tuple[str, ...], list[tuple[tuple[str, ...], np.ndarray | None]]] = {}
        self._planograms: dict[tuple[str, ...], weight.Planogram] = {}
        self._held: dict[tuple[str, ...], list[weight.WeightChanges]] = {}
        self._pending: list[tuple[Hashable, weight.ShelfEvent]] = []
        #: (event times and bins, gone party) → whether the event may name the party (:meth:`_may_involve`)
        self._involved: dict[tuple, bool] = {}
        self._review_picks: dict[Hashable, list[tuple[str, str, int]]] = {}  # review → picks it may give
        #: during a step's decisions (:meth:`advance`): the open reviews of ``_review_picks``, oldest first (else None)
        self._open: list[Hashable] | None = None
        # bin → {barcode: units} put back there automatically though the bin does not face them (misplaced), not
        # yet taken again: fusion explains picks there over these too (in memory: after a restart, only the
        # items misplaced since)
        self._strays: dict[str, dict[str, int]] = {}
        self.hands = ObservationWindow()
        self.bodies = ObservationWindow()
        #: the same body rows per track (the id-switch repair's per-frame positions, ``vision.identity``)
        self.body_frames = BodyFrames()
        self._tag_events: list[TagEvent] = []  # recent shelf tag events (take/return), time order
        self._exit_reads: list[TagEvent] = []  # recent exit-lane reads, time order
        #: Billing waits until the shelves have been fed up to an exit's deadline too (s; the store worker sets it
        #: from its shelf sources, a silent controller included for a while): a take that a controller's outage
        #: delays must still reach the cart, not a billed visit. Infinite: the shelves are no later than ``now``.
        self.shelf_horizon = math.inf
        #: light items the detector cannot see: a look at the plates' levels after each reach (carts.reach_look)
        self._look = ReachLook(planogram, bins, getattr(config, "reach_look", ReachLookConfig()))

    # ------------------------------------------------------------------------------------------- checkpoints
    def snapshot(self, chunks: tuple[ChunkStore, str, set[str]] | None = None) -> bytes:
        """The loop's whole state (detectors, held changes, undecided events, windows, visits) as bytes for a
        checkpoint, without the sink and the store's configuration (planogram, bin geometry: the restorer reads
        them afresh). Pickle: only ever read back by :meth:`restore` of the same code.

        ``chunks`` = (chunk store, store code, keys it holds already): the observation windows' parts go there
        by reference, each written once (:class:`PackedChunk`); the set is updated to the keys this snapshot
        refers to, and chunks no longer referred to are dropped from the store. Without it, one self-contained
        pickle."""
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("sink", "_planograms", "planogram", "bins", "body_frames",  # frames: from bodies
                              "_open", "_involved", "_gondolas", "_gone_chunks", "restored_chunks",
                              "bill_timings")}
        if chunks is None:
            return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        store_chunks, store, saved = chunks
        buf = io.BytesIO()
        pickler = ChunkPickler(buf, saved)
        pickler.dump(state)
        if pickler.new:
            store_chunks.save_chunks(store, pickler.new)
        gone = saved - pickler.used
        saved.clear()
        saved.update(pickler.used)
        self._gone_chunks = gone  # dropped by the caller once the checkpoint that no longer needs them is saved
        return buf.getvalue()

    def drop_gone_chunks(self, chunks: ChunkStore, store: str) -> None:
        """Drop the chunks the last :meth:`snapshot` stopped referring to (call after saving that snapshot)."""
        gone = self.__dict__.pop("_gone_chunks", set())
        if gone:
            chunks.drop_chunks(store, gone)

    @classmethod
    def restore(cls, data: bytes, *, sink: LoopSink, planogram: weight.Planogram, bins: BinGeometry,
                chunks: tuple[ChunkStore, str] | None = None) -> "StoreLoop":
        """A loop from :meth:`snapshot`'s bytes, writing to ``sink``, with the store's current ``planogram`` and
        ``bins``; ``chunks`` = (chunk store, store code) where the snapshot was taken with one. Raises
        ``pickle.UnpicklingError`` (or another unpickling error) for bytes that are not a snapshot, or whose
        chunks are missing."""
        loop = cls.__new__(cls)
        if chunks is None:
            state = pickle.loads(data)  # noqa: S301 — our own checkpoint, never input from outside
        else:
            store_chunks, store = chunks
            unpickler = ChunkUnpickler(io.BytesIO(data), lambda key: store_chunks.load_chunk(store, key))
            state = unpickler.load()
            #: the chunk keys the checkpoint referred to (the store's saved set for the next snapshot)
            state["restored_chunks"] = unpickler.keys
        loop.__dict__.update(state)
        loop.__dict__.setdefault("_tag_events", [])  # a checkpoint of the code before RFID
        loop.__dict__.setdefault("_exit_reads", [])
        loop.__dict__.setdefault("_bill_waits", {})  # a checkpoint of the code before billing's timings
        loop.bill_timings = deque(maxlen=1000)
        loop.sink, loop.planogram, loop.bins, loop._planograms, loop._open = sink, planogram, bins, {}, None
        loop._involved = {}
        loop._gondolas = {}
        loop.body_frames = BodyFrames()
        loop.body_frames.add(loop.bodies.between(-math.inf, math.inf))  # the window's rows, in the order they came
        if "_look" in loop.__dict__:
            loop._look.attach(planogram, bins)
        else:  # a checkpoint of the code before the reach look starts one afresh
            loop._look = ReachLook(planogram, bins, getattr(loop.config, "reach_look", ReachLookConfig()))
        # a checkpoint of the code before entry-zone binding: scans without a gate, tracks without a first place
        loop.__dict__.setdefault("gate_zones", {})
        loop._binds = [tuple(b) + ("",) * (4 - len(b)) for b in loop._binds]
        for seen in loop._seen.values():
            if len(seen) == 4:
                seen += seen[2:4]
        return loop

    # ------------------------------------------------------------------------------------------------ inputs
    def on_samples(self, *, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray, rate_hz: float) -> None:
        """Feed one block of a shelf controller's samples: ``t`` (n,) s, ``grams`` (n, B) for ``bin_codes``.
        Detected per gondola (:func:`gondola_blocks`): one detector, one hold and one release of changes per
        gondola of the controller, so that the shelf events do not depend on how the store's gondolas are wired to
        controllers (no change is ever merged across gondolas, and a change is never held back by a shopper at
        another gondola). Raises ValueError from the detector on malformed samples (no gondola takes the block)."""
        parts = self._gondolas.get(bin_codes)
        if parts is None:
            parts = self._gondolas[bin_codes] = gondola_blocks(bin_codes)
        if len(parts) > 1:
            _check_block(t, grams, len(bin_codes))
        for codes, cols in parts:
            self._on_gondola(codes, t, grams if cols is None else grams[:, cols], rate_hz)

    def _on_gondola(self, codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray, rate_hz: float) -> None:
        det = self._detectors.get(codes)
        if det is None:
            det = self._detectors[codes] = weight.WeightEventDetector(len(codes), rate_hz, self.detector_config)
        self.stats.samples += int(grams.size)
        changes = det.push(t, grams)
        self._look.on_samples(codes, t, grams)
        if len(changes):
            self._held.setdefault(codes, []).append(changes)
        if codes in self._held:  # released as soon as this gondola's detector has settled past them
            self._release(force=False, only=codes)

    def shelves_restocked(self, bin_codes: Iterable[str]) -> int:
        """Forget the weight baselines (detectors), held changes and plate levels of every gondola with a bin in
        ``bin_codes``: its plates were refilled while no samples came (an emulation replaying a recording from its
        start on a store resumed from its checkpoint), so their next samples set a new baseline instead of reading
        as a put-back by nobody. Events already stored are kept. Returns the gondolas forgotten."""
        codes = set(bin_codes)
        gone = [g for g in set(self._detectors) | set(self._held) if codes & set(g)]
        for g in gone:
            self._detectors.pop(g, None)
            self._held.pop(g, None)
        self._look.forget(codes)
        return len(gone)

    def on_events(self, events: Iterable[weight.ShelfEvent]) -> None:
        """Feed shelf events detected elsewhere (a benchmark's threshold sweep reuses one detection): stored and
        decided as if the loop had detected them."""
        for event in events:
            self._store_event(event)

    def on_observations(self, obs: TrackObservations) -> None:
        """Feed shopper-track keypoints (metres, store coordinates); only hands and bodies are kept."""
        if len(obs) == 0:
            return
        hands = obs.hands()
        self.hands.add(hands)
        self._look.on_hands(hands)
        body = obs[np.isin(obs.keypoint, BODY_KEYPOINTS)]
        self.bodies.add(body)
        self.body_frames.add(body)
        ids, inverse = np.unique(obs.track_id.astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")  # each track's rows together, in their own order
        bounds = np.searchsorted(inverse[order], np.arange(len(ids) + 1))
        for i, track in enumerate(ids.tolist()):
            sel = order[bounds[i]:bounds[i + 1]]
            first, last = sel[np.argmin(obs.t[sel])], sel[np.argmax(obs.t[sel])]
            t0, t1 = float(obs.t[first]), float(obs.t[last])
            x0, y0 = float(obs.xyz[first, 0]), float(obs.xyz[first, 1])
            seen = self._seen.get(track)
            if seen is None:
                self._seen[track] = [t0, t1, float(obs.xyz[last, 0]), float(obs.xyz[last, 1]), x0, y0]
                continue
            if t0 < seen[0]:  # an older record of the track came late (another batch, a slower camera)
                seen[0], seen[4], seen[5] = t0, x0, y0
            if t1 >= seen[1]:
                seen[1:4] = [t1, float(obs.xyz[last, 0]), float(obs.xyz[last, 1])]

    def on_tags(self, events: Iterable[TagEvent]) -> None:
        """Feed RFID tag events (``sensors.rfid.TagEvent``, s UTC on the store clock): shelf ``take``/``return``
        events back the shelf events of their bin (:meth:`_decide`); ``exit`` reads are the tags that leave with
        the shopper exiting then (:meth:`_bill`)."""
        for e in events:
            self.stats.tag_events += 1
            (self._exit_reads if e.kind == "exit" else self._tag_events).append(e)
        self._exit_reads.sort(key=lambda e: e.t)
        self._tag_events.sort(key=lambda e: e.t)

    def on_entry(self, *, track: str, t: float, party_lead: str | None = None) -> None:
        """``track``'s shopper entered at ``t`` (s) with a visit (the gate bound them); ``party_lead``: the track
        of the party's first member when this visit joined a party (their carts are one for put-backs)."""
        self.entries[track] = float(t)
        self.exits.pop(track, None)
        if party_lead is not None and party_lead != track:
            self.party_of[track] = self.party_of.get(party_lead, party_lead)
        self.stats.visits += 1

    def on_gate_entry(self, *, visit: Hashable, t: float, party_lead: Hashable | None = None, gate: str = "") -> None:
        """A gate admitted ``visit`` at ``t`` (s): the track that appeared at the gate then is bound to it once
        ``bind_after_s`` more is fed (:meth:`advance`); ``party_lead``: the visit whose party this one joined;
        ``gate``: the scanning gate's name (its entry zone, :attr:`gate_zones`, is where the track must appear)."""
        if visit in self.visit_of.values() or any(b[1] == visit for b in self._binds):
            return  # a redelivered scan
        self._binds.append((float(t), visit, party_lead, str(gate or "")))
        self._binds.sort(key=lambda b: b[0])

    def on_visit_exit(self, *, visit: Hashable, t: float) -> bool:
        """The visit left at ``t`` (an exit scan at the gate): its track exits. False when no track is bound."""
        track = next((k for k, v in self.visit_of.items() if v == visit and k not in self.exits), None)
        if track is None:
            self._binds = [b for b in self._binds if b[1] != visit]
            return False
        return self.on_exit(track=track, t=t)

    def on_exit(self, *, track: str, t: float) -> bool:
        """``track``'s shopper left at ``t`` (s): billed once every event that could be theirs is decided.
        Returns False (and counts a problem) for a track with no visit."""
        if track not in self.entries:
            self.stats.problem(f"exit of track {track} at {t:.1f} s: no visit bound to it; ignored")
            return False
        if track in self.exits:
            return True
        self.exits[track] = float(t)
        self._to_bill[track] = float(t)
        return True

    # -------------------------------------------------------------------------------------------------- time
    def advance(self, now: float) -> None:
        """Every source has been fed up to ``now`` (s): decide the events whose evidence is complete, bill the
        visits whose settle time has passed, forget what no decision can need any more."""
        self.now = max(self.now, float(now))
        if self._binds:
            self._bind()
        if self.config.infer_exits and self.visit_of:
            self._watch_exits()
        self._release(force=False)
        self._reach_events()
        pad = self.fusion.pad_s
        ready = sorted((p for p in self._pending if p[1].t_end + pad <= self.now),
                       key=lambda p: (p[1].t_end, p[1].bin_codes))
        if ready:
            done = {id(p) for p in ready}
            self._pending = [p for p in self._pending if id(p) not in done]
            # the open reviews, read once per step (one query of the sink, not one per event); the reviews this
            # step opens join them as it goes (_review)
            self._open = self._open_reviews()
            try:
                for key, event in ready:
                    self._decide(key, event)
            finally:
                self._open = None
        self._bill()
        self._forget()

    def finish(self) -> None:
        """End of the stream (a bounded run: a replay, a benchmark): flush the detectors, decide everything left,
        bill every exit. Never for a worker restart, which must not bill open visits early."""
        for codes, det in self._detectors.items():
            changes = det.flush()
            if len(changes):
                self._held.setdefault(codes, []).append(changes)
        self._release(force=True)
        self.advance(math.inf)

    # ------------------------------------------------------------------------------------------------ inside
    def _bind(self) -> None:
        """Decide the pending gate scans whose window is fed (``[t − bind_before_s, t + bind_after_s]`` around the
        scan), in scan order, each to a track not bound yet whose first sighting falls in that window:

        - without entry zones: the track first seen nearest the scan in time;
        - with entry zones, only a track first seen inside the scanning gate's zone (:attr:`gate_zones`, else any
          of :attr:`entry_zones`): a shopper already inside whose track restarts (a camera worker restarted, a
          track split) appears elsewhere and is never taken for a newly admitted visit. The scanned shopper is
          the one first seen nearest the scan in time (gates have no position in the layout: the zone is the
          gate's place, the scan time its order); a party lead whose guests were scanned takes the first track
          through the zone in the window, and each guest (waiting for its lead) the next one after the lead's.

        A scan with no such track by ``bind_timeout_s`` is reported unbound (its visit's events go to review)."""
        cfg = self.config
        bound = set(self.visit_of)
        left: list[tuple[float, Hashable, Hashable | None, str]] = []
        for scan in self._binds:
            t, visit, lead, gate = scan
            if self.now < t + cfg.bind_after_s:
                left.append(scan)
                continue
            zones = self._gate_zones(gate)
            lead_track = self._track_of(lead) if lead is not None else None
            if zones and lead is not None and lead_track is None and any(b[1] == lead for b in left):
                left.append(scan)  # a guest is the next through the zone after its lead: the lead goes first
                continue
            window = [(seen[0], track) for track, seen in self._seen.items()
                      if track not in bound and t - cfg.bind_before_s <= seen[0] <= t + cfg.bind_after_s
                      and (not zones or self._in_zone(seen[4], seen[5], zones))]
            best = None
            if window and zones and lead_track is not None and lead_track in self._seen:
                after = [c for c in window if c[0] >= self._seen[lead_track][0]]
                best = min(after)[1] if after else min(window, key=lambda c: abs(c[0] - t))[1]
            elif window and zones and any(b[2] == visit for b in self._binds):
                best = min(window)[1]  # a party lead: the first of the party through the zone
            elif window:  # the first of equals in arrival order, as before zones were used
                best = min(window, key=lambda c: abs(c[0] - t))[1]
            if best is None:
                if self.now >= t + cfg.bind_timeout_s:
                    where = (f" in the entry zone of gate {gate or '?'}" if gate in self.gate_zones
                             else " in an entry zone") if zones else " at the gate"
                    self.sink.unbound(visit, t, f"no shopper track appeared{where} within "
                                                f"{cfg.bind_before_s:g} s before and {cfg.bind_after_s:g} s after the "
                                                f"scan (cameras down?)")
                else:
                    left.append(scan)
                continue
            bound.add(best)
            self.visit_of[best] = visit
            self.on_entry(track=best, t=t, party_lead=lead_track)
            self.sink.bind(best, visit, t)
        self._binds = left

    def _gate_zones(self, gate: str) -> list[np.ndarray]:
        """The entry zone(s) where a shopper admitted by ``gate`` appears: its own, else every entry zone (none:
        the store has no entry zones)."""
        own = self.gate_zones.get(gate) if gate else None
        return [own] if own is not None else self.entry_zones

    def _track_of(self, visit: Hashable) -> str | None:
        """The track bound to ``visit`` (its first, when a lost track was continued), or None."""
        return next((k for k, v in self.visit_of.items() if v == visit), None)

    def _in_zone(self, x: float, y: float, zones: list[np.ndarray]) -> bool:
        for poly in zones:
            inside = False
            n = len(poly)
            for i in range(n):
                (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
                if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
                    inside = not inside
            if inside:
                return True
        return False

    def _watch_exits(self) -> None:
        """Bound tracks unseen for ``lost_s``: gone through an exit (or, in a store without exit zones, gone);
        lost inside: an alert, a new track appearing close by continues the visit, and after ``lost_max_s`` the
        visit exits flagged."""
        cfg = self.config
        for track, visit in list(self.visit_of.items()):
            if track in self.exits:
                continue
            seen = self._seen.get(track)
            if seen is None or self.now - seen[1] < cfg.lost_s:
                continue
            t_last, x, y = seen[1], seen[2], seen[3]
            if not self.exit_zones or self._in_zone(x, y, self.exit_zones):
                if self.on_exit(track=track, t=t_last):
                    self.sink.exit(track, visit, t_last, "left the store" if not self.exit_zones
                                   else "left through the exit zone")
                continue
            if track not in self._lost:
                self._lost[track] = self.now
                self.sink.alert("lost", f"shopper track {track} (visit {visit}) lost inside the store at "
                                        f"({x:.1f}, {y:.1f}) m", key=track)
            successor = self._successor(track, t_last, x, y)
            if successor is not None:
                del self._lost[track]
                self.exits[track] = t_last  # the old id is over; the visit goes on under the new one
                self.visit_of[successor] = visit
                self.on_entry(track=successor, t=self._seen[successor][0], party_lead=track)
                self.sink.bind(successor, visit, self._seen[successor][0], continues=track)
            elif self.now - t_last >= cfg.lost_max_s:
                del self._lost[track]
                if self.on_exit(track=track, t=t_last):
                    self.sink.exit(track, visit, t_last, f"lost inside the store for {cfg.lost_max_s:g} s")

    def _successor(self, track: str, t_last: float, x: float, y: float) -> str | None:
        """An unbound track first seen after ``t_last`` within ``reassociate_m`` of (x, y): the lost shopper."""
        best, best_d = None, self.config.reassociate_m
        bound = set(self.visit_of)
        for other, (t0, _, _, _, ox, oy) in self._seen.items():  # where it first appeared
            if other in bound or t0 < t_last or any(abs(t0 - b[0]) <= self.config.bind_before_s + self.config.bind_after_s
                                                   for b in self._binds):
                continue
            d = math.hypot(ox - x, oy - y)
            if d <= best_d:
                best, best_d = other, d
        return best

    def _release(self, *, force: bool, only: tuple[str, ...] | None = None) -> None:
        """Held changes of a gondola become shelf events once its detector has settled ``hold_gap_s`` past them,
        or none came for ``hold_s`` (or the oldest waited ``hold_max_s``): changes on neighbouring plates that
        settle a moment apart (two shoppers side by side, an item across two plates) then merge into one event as
        a batch detection would merge them."""
        for codes, parts in list(self._held.items()):
            if only is not None and codes != only:
                continue
            newest = max(float(c.t_end.max()) for c in parts)
            oldest = min(float(c.t_end.min()) for c in parts)
            det = self._detectors.get(codes)
            settled = det is not None and det.settled_until() >= newest + self.config.hold_gap_s
            if force or settled or self.now - newest >= self.config.hold_s or \
                    self.now - oldest >= self.config.hold_max_s:
                del self._held[codes]
                for event in weight.shelf_events_from_changes(weight.WeightChanges.concat(parts),
                                                              self._controller_planogram(codes)):
                    self._store_event(event)

    def _reach_events(self) -> None:
        """Shelf events of the reach-triggered look (``carts.reach_look``) whose windows are in."""
        for event in self._look.scan(self.now, settled=self._settled_until, holdings=self.sink.holdings):
            self._store_event(event)

    def _settled_until(self, codes: tuple[str, ...]) -> float:
        """Source time (s) before which every change of gondola ``codes`` (its bin codes) is a stored event (the detector has
        emitted it and the loop released it)."""
        det = self._detectors.get(codes)
        until = det.settled_until() if det is not None else -math.inf
        held = self._held.get(codes)
        if held:
            until = min(until, min(float(c.t_start.min()) for c in held))
        return until

    def _store_event(self, event: weight.ShelfEvent) -> None:
        self._look.on_event(event)
        self.stats.shelf_events += 1
        key = self.sink.shelf_event(event)
        if key is not None:
            self._pending.append((key, event))

    def _controller_planogram(self, codes: tuple[str, ...]) -> weight.Planogram:
        cached = self._planograms.get(codes)
        if cached is None:
            cached = self._planograms[codes] = controller_planogram(self.planogram, codes)
        return cached

    def _open_reviews(self) -> list[Hashable]:
        if not self._review_picks:
            return []
        open_ = self.sink.open_reviews(list(self._review_picks))
        for key in set(self._review_picks) - set(open_):  # decided by people: their picks are in the carts now
            del self._review_picks[key]
        return open_

    def _decide(self, key: Hashable, event: weight.ShelfEvent) -> None:
        if self.sink.decided(key):
            log.info("shelf event %s was decided before; not again", key)
            return
        cfg, pad = self.fusion, self.fusion.pad_s
        now = event.t_end + pad
        if event.t_start - pad < self.hands.t_min - 1e-9 and math.isfinite(self.hands.t_min) and len(self.hands):
            self.stats.late_evidence += 1
        eligible = eligible_tracks(self.entries, {k: v for k, v in self.exits.items() if v <= now}, event, now=now,
                                   settle_s=self.config.settle_s)
        open_reviews = self._open if self._open is not None else self._open_reviews()
        (h0, h1), (b0, b1) = evidence_window(event, cfg)
        d = decide_event(event, self.hands.between(h0, h1), self.bins, self.planogram, carts=self.sink.holdings(eligible),
                         party_of=self.party_of, eligible=eligible, review_confidence=self.config.review_confidence,
                         config=cfg, bodies=self._bodies(b0, b1),
                         pending=pending_holdings({k: self._review_picks[k] for k in open_reviews}, eligible),
                         strays={c: self._strays[c] for c in event.bin_codes if c in self._strays})
        if not d.noise and self._tag_events and hasattr(self.sink, "tag_evidence"):
            tags = self._shelf_tags(event)
            if tags:
                self.sink.tag_evidence(key, tags)
        if d.noise:
            self.stats.noise += 1
            self.sink.noise(key, event, d)
            return
        if hasattr(self.sink, "product_likelihood"):
            d = self._image_evidence(event, d)
        if d.review or not d.changes:
            return self._review(key, event, d, d.reason)
        if d.awaits_review:
            lead = self.party_of.get(d.track_id, d.track_id)
            follows = next((k for k in open_reviews for track, code, _ in self._review_picks[k]
                            if code == d.barcode and self.party_of.get(track, track) == lead), None)
            if follows is None or not self.sink.wait(key, event, d, follows):
                return self._review(key, event, d, d.reason)
            self._review_picks[follows] = spend_picks(self._review_picks[follows], d.barcode, -d.quantity)
            self.stats.waiting += 1
            return None
        reason = self.sink.apply(key, event, d)
        if reason is not None:
            return self._review(key, event, d, reason)
        self.stats.cart_events += len(d.changes)
        self._track_strays(event, d)
        return None

    def _track_strays(self, event: weight.ShelfEvent, d: Decision) -> None:
        """Keep :attr:`_strays` (items lying on bins that do not face them) after an applied decision: a put-back
        of a product facing none of the event's bins adds its units on each of them (it lies on one); a pick of a
        stray product takes them away."""
        facings = self.planogram.facings
        for _, code, q in d.changes:
            faced = any(code in facings.get(c, ()) for c in event.bin_codes)
            if q < 0 and not faced:
                for c in event.bin_codes:
                    here = self._strays.setdefault(c, {})
                    here[code] = here.get(code, 0) - q
            elif q > 0 and not faced:
                for c in event.bin_codes:
                    here = self._strays.get(c, {})
                    if code in here:
                        here[code] = max(0, here[code] - q)
                        if not here[code]:
                            del here[code]

    def _image_evidence(self, event: weight.ShelfEvent, decision: Decision) -> Decision:
        """``decision`` re-weighted by what the camera saw in the taking hand: the sink's ``product_likelihood(event,
        decision)`` (``{barcode: probability}`` or None) through ``carts.fusion_products.with_product_evidence``. A
        likelihood that is refused (negative, not finite, not a mapping) is a counted problem; the decision stands."""
        from .fusion_products import with_product_evidence

        try:
            likelihood = self.sink.product_likelihood(event, decision)
            if not likelihood:
                return decision
            return with_product_evidence(decision, likelihood, review_confidence=self.config.review_confidence,
                                         mix=getattr(self.config, "image_mix", LoopConfig.image_mix))
        except (TypeError, ValueError, AttributeError) as exc:
            self.stats.problem(f"product image evidence for the event on {','.join(event.bin_codes)} at "
                               f"{event.t_start:.1f} refused: {exc}")
            return decision

    def _bodies(self, t0: float, t1: float) -> FramedBodies:
        """The body rows of ``[t0, t1]`` with the per-track frames they came with (``vision.identity.find_swaps``
        reads those, not the rows)."""
        rows = self.bodies.between(t0, t1)
        return FramedBodies(rows.track_id, rows.t, rows.keypoint, rows.xyz, rows.score, frames=self.body_frames,
                            t0=t0, t1=t1)

    def _shelf_tags(self, event: weight.ShelfEvent) -> list[dict]:
        """The shelf tag events on the event's bins within ``pad_s`` of it, each with ``hand``: a hand came within
        ``tag_hand_m`` of the bin then (a tag that stops being read with a hand there is a take)."""
        pad = self.fusion.pad_s
        out = []
        hands = self.hands.view()
        for e in self._tag_events:
            if e.where not in event.bin_codes or not event.t_start - pad <= e.t <= event.t_end + pad:
                continue
            d = e.as_dict()
            d["hand"] = False
            if e.where in self.bins.codes and len(hands):
                centre = self.bins.centre[self.bins.codes.index(e.where)]
                near = np.abs(hands.t - e.t) <= pad
                if near.any():
                    dist = np.hypot(hands.xyz[near, 0] - centre[0], hands.xyz[near, 1] - centre[1])
                    d["hand"] = bool(dist.min() <= self.config.tag_hand_m)
            out.append(d)
        return out

    def _review(self, key: Hashable, event: weight.ShelfEvent, decision: Decision, reason: str) -> None:
        review_key = self.sink.review(key, event, decision, reason)
        if self._open is not None and review_key not in self._review_picks:
            self._open.append(review_key)  # open, and the newest: last, as the sink lists them
        self._review_picks[review_key] = pending_picks(decision, event, self.planogram)
        self.stats.reviews += 1

    def _bill(self) -> None:
        """Check out the exited visits whose settle time has passed and for whom no event that could still be
        theirs is undecided: every shelf event that began by the end of the settle time and may name one of the
        party's tracks (:meth:`_may_involve`; all of them while a member of the party is still inside or was seen
        too recently), every change begun by then and still held back from becoming an event on a controller whose
        bins the party may have reached, and every reach begun by then that the look may still make an event of
        whose decision may name the party (the same test over the bins and interval of the event it would make,
        a weak one: the party's own hand, a hand of theirs near those bins, or an id switch reaching a track whose
        hand came near them; not a body alone)."""
        if not self._to_bill:
            return
        settle = self.config.settle_s
        for track, t_exit in sorted(self._to_bill.items(), key=lambda kv: kv[1]):
            deadline = t_exit + settle
            if deadline > self.now:
                continue
            wait = self._bill_wait(track, deadline)
            timing = self._bill_waits.get(track)
            if timing is None:
                timing = self._bill_waits[track] = BillWait(track, t_exit, deadline, due=self.now)
            elif timing.last is not None:
                timing.waited[timing.last] = timing.waited.get(timing.last, 0.0) + self.now - timing.now
            timing.last, timing.now = wait, self.now
            if wait is not None:
                continue
            del self._to_bill[track]
            del self._bill_waits[track]
            self.bill_timings.append(timing)
            if self._exit_reads and hasattr(self.sink, "exit_tags"):
                att = exit_lane_tags(track, self._exit_reads, self.exits, self.party_of, self.config.exit_lane)
                if att.ambiguous:
                    self.stats.problem(f"track {track}: {len(att.ambiguous)} exit-lane tag(s) shared with another "
                                       f"party leaving within {self.config.exit_lane.tie_s:g} s; not charged")
                if att.tags or att.ambiguous:
                    self.stats.exit_tags += len(att.tags)
                    self.sink.exit_tags(track, att)
            if self.sink.checkout(track, deadline):
                self.stats.receipts += 1

    def _bill_wait(self, track: str, deadline: float) -> str | None:
        """What still keeps ``track``'s checkout (its settle time ending at ``deadline``, passed) waiting: one of
        :data:`BILL_WAITS`, or None when it can be billed now (:meth:`_bill`)."""
        if deadline > self.shelf_horizon:
            return "shelves"
        early = [ev for _, ev in self._pending if ev.t_start <= deadline]
        # changes held back from becoming events: the event they will make lies on their controller's bins and
        # ends by now at the latest (a change joining them later comes after now, when the party is gone); and
        # reaches the look may still turn into events, on the bins the hand came to
        held = [HeldWindow(min(float(c.t_start.min()) for c in cs), self.now, codes)
                for codes, cs in self._held.items() if min(float(c.t_start.min()) for c in cs) <= deadline]
        # a reach that ended makes its event over its own interval (ReachLook._event); one going on, up to now
        reach = [HeldWindow(t0, t1 if math.isfinite(t1) else max(t0, self.now), codes, weak=True)
                 for t0, t1, codes in self._look.pending_windows(deadline)]
        if not (early or held or reach):
            return None
        members = self._gone_party(track)
        if members is None:
            return "party"
        for name, windows in (("held", held), ("reach", reach)):
            for w in windows:
                codes = tuple(c for c in w.bin_codes if c in self.bins.index)
                if not codes or self._may_involve(HeldWindow(w.t_start, w.t_end, codes, w.weak), members,
                                                  cache=False):
                    return name
        if any(self._may_involve(ev, members) for ev in early):
            return "events"
        return None

    def _gone_party(self, track: str) -> tuple[str, ...] | None:
        """The tracks of ``track``'s party (itself included) when every one of them has exited and none was seen
        for ``max(pad_s, hidden_seen_s)``: no hand or body of theirs can enter a window of an event not yet begun,
        and the windows of the events pending now hold all of their sightings. None otherwise."""
        lead = self.party_of.get(track, track)
        members = tuple(sorted(t for t in self.entries if self.party_of.get(t, t) == lead) or (track,))
        quiet = max(self.fusion.pad_s, self.fusion.hidden_seen_s)
        for m in members:
            if m not in self.exits:
                return None
            seen = self._seen.get(m)
            if seen is not None and self.now < seen[1] + quiet:
                return None
        return members

    def _may_involve(self, event: weight.ShelfEvent | HeldWindow, members: tuple[str, ...], *,
                     cache: bool = True) -> bool:
        """Whether deciding ``event`` (pending) may name one of ``members`` (a party gone from the store,
        :meth:`_gone_party`) as a candidate, the cart of a put-back or a review. Fusion names only tracks of its
        hand evidence (:func:`carts.fusion.decide_event`): a hand within ``2 · reach_m`` (``weak_reach_m`` for a weak
        event: :func:`carts.fusion.candidate_reach_m`) of one of the event's bins
        in its padded window (``hand_evidence``; a single-view wrist ray read at its nearest point,
        ``wrist_ray_hands``), under its label after the id-switch repair; and, for an event that is not weak, a
        body within reach of ``hidden_hands`` in its window. So the test is: a hand of theirs that near; for an
        event that is not ``weak`` (a look's event names seen hands only), a body of theirs that near; or a chain of
        id switches from one of them, each overlapping the hand window (``vision.identity.swaps_of``: a sighting is
        relabelled through every switch on at its moment, ``apply_swaps``), that reaches a track with a hand that
        near (a neighbour's sighting relabelled with their id), or that is still on past what is fed (a hand to come
        may be relabelled). False means its decision and their carts are independent: their visit may be billed
        first. Cached per event and party (their sightings are all in) unless ``cache`` is False (a
        :class:`HeldWindow`, whose end moves with the loop's clock)."""
        key = (event.t_start, event.t_end, event.bin_codes, members)
        cached = self._involved.get(key) if cache else None
        if cached is not None:
            return cached
        cfg = self.fusion
        lo, hi = event.t_start - cfg.pad_s, event.t_end + cfg.pad_s
        found = bool(self._near_hands(event, lo, hi, members))
        if not found and cfg.hidden_prior > 0 and not getattr(event, "weak", False):
            bodies = self.bodies.between(event.t_start - cfg.hidden_seen_s, event.t_end + cfg.hidden_seen_s)
            bodies = bodies[member(bodies.track_id, members)]
            if len(bodies):
                # hidden_hands scores a body up to e metres beyond hidden_standoff_m above 1e-6
                reach = cfg.hidden_standoff_m + cfg.sigma_m * math.sqrt(
                    2 * math.log(max(cfg.hidden_prior, 1e-6) / 1e-6))
                d = np.min(np.stack([_floor_distance(self.bins, bodies.xyz, c) for c in event.bin_codes]), axis=0)
                found = bool((d <= reach + 1e-6).any())
        if not found and cfg.repair_id_switches:
            found = self._switch_may_involve(event, lo, hi, members)
        if cache:
            self._involved[key] = found
        return found

    def _near_hands(self, event: weight.ShelfEvent | HeldWindow, lo: float, hi: float,
                    tracks: Iterable[str] | None) -> set[str]:
        """The tracks (of ``tracks``; None: any) with a hand sighting in ``[lo, hi]`` (s) within
        :func:`carts.fusion.candidate_reach_m` of one of ``event``'s bins by fusion's distance (rays at their nearest point): those ``hand_evidence`` may
        read (it also drops sightings scored below ``min_hand_score``; these are kept, a superset)."""
        cfg = self.fusion
        hands = self.hands.between(lo, hi)
        if tracks is not None:
            hands = hands[member(hands.track_id, tuple(tracks))]
        if not len(hands):
            return set()
        hands = wrist_ray_hands(hands, event.bin_codes, self.bins, cfg)
        if not len(hands):
            return set()
        scale = cfg.sigma_m / cfg.along_sigma_m
        d = np.min(np.stack([self.bins.distance(hands.xyz, c, cfg.clearance_m, scale) for c in event.bin_codes]),
                   axis=0)
        return {str(x) for x in hands.track_id[d <= candidate_reach_m(event, cfg) + 1e-6]}

    #: s: a chain of id switches still on this close to the loop's clock may relabel sightings not fed yet
    #: (:meth:`_switch_may_involve`): two body frames (``vision.identity`` reads 0.1 s frames; the newest may be
    #: partly fed, and a switch found there may yet move)
    SWITCH_FED_MARGIN_S = 0.2

    def _switch_may_involve(self, event: weight.ShelfEvent | HeldWindow, lo: float, hi: float,
                            members: tuple[str, ...]) -> bool:
        """Whether an id switch may label a hand sighting near ``event``'s bins in ``[lo, hi]`` (its hand window, s)
        with one of ``members`` (:meth:`_may_involve`): the switches of the members with any track over the frames
        the repair reads (``vision.identity.swaps_of``), then those of each partner reached, each cut to the part of
        the hand window where every switch of its chain is on; True when a track reached had a hand near the bins
        in its part, when a part ends within ``SWITCH_FED_MARGIN_S`` of the loop's clock (a sighting still to come
        may be relabelled), or when a track of the window is placed by its head (``swaps_of`` None)."""
        (_, _), (b0, _) = evidence_window(event, self.fusion)
        # the frames the repair reads for this event (from its look-back to the end of the hand window), not the
        # rows: swaps_of reads frames only
        empty = TrackObservations.empty()
        frames = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score,
                              frames=self.body_frames, t0=b0, t1=hi)
        # each track a sighting may be relabelled from, with when: a relabelling needs every switch of the chain
        # on at the sighting's moment (``apply_swaps``), so each link's interval is cut to the one before it
        switches: dict[str, list] = {}
        reached: dict[str, list[tuple[float, float]]] = {m: [(lo, hi)] for m in members}
        todo = [(m, lo, hi) for m in members]
        partners: list[tuple[str, float, float]] = []
        while todo:
            x, a, b = todo.pop()
            if x not in switches:
                found = swaps_of(frames, [x])
                if found is None:
                    return True
                switches[x] = found
            for sw in switches[x]:
                a2, b2 = max(a, sw.t_from), min(b, sw.t_to)
                y = sw.b if sw.a == x else sw.a
                if a2 > b2 or y in members or any(c0 <= a2 and b2 <= c1 for c0, c1 in reached.get(y, [])):
                    continue
                reached.setdefault(y, []).append((a2, b2))
                todo.append((y, a2, b2))
                partners.append((y, a2, b2))
        for y, a2, b2 in partners:
            if b2 > self.now - self.SWITCH_FED_MARGIN_S or self._near_hands(event, a2, b2, (y,)):
                return True
        return False

    def _forget(self) -> None:
        """Drop observations older than any undecided event needs, and visits gone long ago."""
        oldest = min([ev.t_start for _, ev in self._pending]
                     + [float(c.t_start.min()) for cs in self._held.values() for c in cs] + [self.now])
        if math.isfinite(oldest):
            before = oldest - max(self.config.lookback_s, self.fusion.pad_s, self.fusion.id_window_s)
            self.hands.prune(before)
            self.bodies.prune(before)
            self.body_frames.prune(before)
        if self._involved:
            pending = {(ev.t_start, ev.t_end, ev.bin_codes) for _, ev in self._pending}
            self._involved = {k: v for k, v in self._involved.items() if k[:3] in pending}
        if math.isfinite(oldest):
            keep = oldest - max(self.config.lookback_s, self.fusion.pad_s)
            if self._tag_events and self._tag_events[0].t < keep:
                self._tag_events = [e for e in self._tag_events if e.t >= keep]
        if self._exit_reads and math.isfinite(self.now):
            lane = self.config.exit_lane
            keep = min([t for t in self._to_bill.values()] + [self.now]) - lane.before_s - lane.after_s - 1.0
            if self._exit_reads[0].t < keep:
                self._exit_reads = [e for e in self._exit_reads if e.t >= keep]
        horizon = self.now - self.config.forget_after_s
        if not math.isfinite(horizon):
            return
        for t in [t for t, seen in self._seen.items() if seen[1] < horizon and t not in self.entries]:
            del self._seen[t]  # never bound (a passer-by seen through the glass, a track split off a shopper)
        gone = [t for t, t_out in self.exits.items() if t_out < horizon and t not in self._to_bill]
        if not gone:
            return
        leads_in_use = {self.party_of.get(t, t) for t in self.entries if t not in gone}
        for t in gone:
            self.sink.forget(t)
            self.entries.pop(t, None)
            self.exits.pop(t, None)
            self.visit_of.pop(t, None)
            self._seen.pop(t, None)
            if self.party_of.get(t, t) not in leads_in_use:
                self.party_of.pop(t, None)
        for key, picks in list(self._review_picks.items()):
            kept = [p for p in picks if p[0] in self.entries]
            if kept:
                self._review_picks[key] = kept
            else:
                del self._review_picks[key]


@dataclass(frozen=True)
class Step:
    """One step of a recording fed in time order (:func:`recording_steps`): everything with a time in
    ``[t, t_next)``: ``gates`` (``store.recording.GateScan``), ``tracks`` (observations), ``shelves`` (per controller:
    bin codes, t (n,), grams (n, B), rate Hz)."""

    t: float
    t_next: float
    gates: list
    tracks: TrackObservations
    shelves: list[tuple[tuple[str, ...], np.ndarray, np.ndarray, float]]


def _span(recording, tracks: TrackObservations, gates: list) -> tuple[float, float]:
    """(first, last) time of anything in ``recording`` (its own ``t_start``/``t_end`` where it has them)."""
    if hasattr(recording, "t_start") and hasattr(recording, "t_end"):
        return float(recording.t_start), float(recording.t_end)
    starts = [float(b.t[0]) for b in recording.shelves if len(b.t)] + [g.t for g in gates[:1]]
    ends = [float(b.t[-1]) for b in recording.shelves if len(b.t)] + [g.t for g in gates[-1:]]
    if len(tracks):
        starts.append(float(tracks.t[0]))
        ends.append(float(tracks.t[-1]))
    return (min(starts), max(ends)) if starts else (0.0, 0.0)


def recording_steps(recording, *, step_s: float = 0.2) -> Iterable[Step]:
    """A recording's sources merged in time order, in steps of ``step_s`` seconds of recording time (the last
    step also carries the gate scans after the end). ``recording``: a ``store.recording.Recording`` or anything
    with ``gates``, ``tracks``, ``shelves``, ``t_start``, ``t_end``. Raises ValueError for ``step_s`` ≤ 0."""
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    tracks = recording.tracks
    tracks = tracks[np.argsort(tracks.t, kind="stable")]
    gates = sorted(recording.gates, key=lambda g: g.t)
    gi = ti = 0
    si = [0] * len(recording.shelves)
    rates = [block.rate_hz for block in recording.shelves]  # a median over the whole block: once, not per step
    t, t_end = _span(recording, tracks, gates)
    while t <= t_end + step_s:
        t_next = t + step_s
        g0 = gi
        while gi < len(gates) and gates[gi].t < t_next:
            gi += 1
        tj = int(np.searchsorted(tracks.t, t_next, side="left"))
        shelves = []
        for k, block in enumerate(recording.shelves):
            j = int(np.searchsorted(block.t, t_next, side="left"))
            if j > si[k]:
                shelves.append((block.bin_codes, block.t[si[k]:j], block.grams[si[k]:j], rates[k]))
                si[k] = j
        last = t_next > t_end + step_s
        yield Step(t, t_next, gates[g0:gi] + (gates[gi:] if last else []), tracks[ti:tj], shelves)
        if last:
            gi = len(gates)
        ti = tj
        t = t_next
