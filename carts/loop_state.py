"""The store loop's state, declared once (pure Python, no Django): :class:`LoopState` names the attributes of
``carts.loop.StoreLoop`` with their types, so that the mixins holding its methods (``carts.loop_shelves``,
``carts.loop_binding``, ``carts.loop_billing``) type-check without importing ``carts.loop`` (no import cycle);
``StoreLoop.__init__`` and ``StoreLoop.restore`` set them. With the records that state holds: :class:`LoopStats`
and :class:`BillWait` (importable from ``carts.loop`` too, and ``BillWait`` from ``carts.loop_billing``, where
checkpoints and callers name them)."""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Hashable

import numpy as np

from sensors import weight
from sensors.rfid import TagEvent
from vision.identity_frames import BodyFrames

from .fusion_config import BinGeometry, FusionConfig
from .loop_config import LoopConfig
from .loop_sink import LoopSink
from .loop_window import ObservationWindow
from .reach_look import ReachLook

log = logging.getLogger("carts.loop")  # the loop's problems, logged under the loop's name


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
    after_bill: int = 0  # decisions naming a shopper already checked out, sent to review (should stay 0)
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        log.warning("%s", message)
        self.problems.append(message)
        del self.problems[:-100]  # the last 100 (a day of trading must not grow this)


@dataclass
class BillWait:
    """How one exited track's checkout waited, in seconds of the sources' clock (:meth:`carts.loop.StoreLoop._bill`;
    read by the store worker to log where exit → receipt time goes). ``t_exit``: the exit; ``deadline``: ``t_exit +
    settle_s``; ``due``: the loop's clock at its first look past the deadline (the loop steps: ``due − deadline``
    is the step's overshoot); ``waited``: reason (:data:`carts.loop_billing.BILL_WAITS`) → seconds it waited on it
    after ``due``; ``now``: the loop's clock at the checkout (``now − t_exit`` = settle + overshoot + the waits)."""

    track: str
    t_exit: float
    deadline: float
    due: float
    waited: dict[str, float] = field(default_factory=dict)
    last: str | None = None
    now: float = math.nan


class LoopState:
    """The attributes of :class:`carts.loop.StoreLoop`, annotations only (no values, no behaviour): the base of
    each of its mixins. Times are s on the sources' clock; places metres, store coordinates."""

    # the store (not checkpointed: the restorer passes them afresh) and the knobs
    planogram: weight.Planogram  # facings and unit weights of the whole store
    bins: BinGeometry
    sink: LoopSink  # where outputs go (not checkpointed)
    fusion: FusionConfig
    detector_config: weight.DetectorConfig
    config: LoopConfig
    now: float  # every source has been fed up to here (``StoreLoop.advance``; -inf before the first step)
    stats: LoopStats

    # visits and billing (carts.loop_billing)
    entries: dict[str, float]  # track → entry time
    exits: dict[str, float]  # track → exit time
    party_of: dict[str, str]  # track → its party's lead track (absent: alone)
    _to_bill: dict[str, float]  # exited tracks not yet checked out → exit time
    _billed: dict[str, float]  # exited tracks checked out → the loop's clock then (forgotten with the visit)
    _bill_waits: dict[str, BillWait]  # exited tracks past their deadline, not yet checked out
    #: the latest checkouts' :class:`BillWait` (newest last; the store worker takes them after each step)
    bill_timings: deque[BillWait]
    #: Billing waits until the shelves have been fed up to an exit's deadline too (the store worker sets it from
    #: its shelf sources, a silent controller included for a while): a take that a controller's outage delays must
    #: still reach the cart, not a billed visit. Infinite: the shelves are no later than ``now``.
    shelf_horizon: float

    # live binding and exits (carts.loop_binding)
    visit_of: dict[str, Hashable]  # bound track → its visit's key
    #: gate-bound tracks → the moment their binding was settled (the scan's time plus ``bind_after_s``): eligible
    #: for the shelf events decided from then on only, whatever step bound them (absent: from entry)
    _bound_at: dict[str, float]
    _binds: list[tuple[float, Hashable, Hashable | None, str]]  # pending scans: (t, visit, party lead visit, gate)
    #: exit scans of a party member's visit not yet taken (live exits, ``LoopConfig.infer_exits``): (t, track).
    #: The gate exits every open visit of the pass's holder at once (``store.gates.services.visit_exit_scan``),
    #: so each member's visit gets one member's scan: only a member whose track ends there left then
    #: (``_settle_exit_scans``)
    _exit_scans: list[tuple[float, str]]
    #: scans bound lately: (t, visit, gate name, track), in binding order (``_flag_ambiguous``)
    _recent_binds: list[tuple[float, Hashable, str, str]]
    #: bound tracks whose binding may have swapped them with another shopper's → why (their events go to review)
    _ambiguous: dict[str, str]
    _seen: dict[str, list[float]]  # track → [first t, last t, last x, last y, first x, first y]
    _lost: dict[str, float]  # bound tracks lost outside an exit zone → when the alert was raised
    #: (k, 2) polygons: where shoppers appear once a gate has let them in. Empty: the cameras do not say where
    #: people come in, and a scan binds the track first seen nearest it in time.
    entry_zones: list[np.ndarray]
    #: gate name → its own entry zone (the entry zone named like the gate); a gate absent here uses every polygon
    #: of ``entry_zones``
    gate_zones: dict[str, np.ndarray]
    exit_zones: list[np.ndarray]  # (k, 2) polygons (live exits)

    # shelves (carts.loop_shelves)
    #: one detector per gondola of each controller (``on_samples``), keyed by the gondola's bin codes
    _detectors: dict[tuple[str, ...], weight.WeightEventDetector]
    #: controller's bin codes → its gondolas' (bin codes, columns) (``gondola_blocks``; not checkpointed)
    _gondolas: dict[tuple[str, ...], list[tuple[tuple[str, ...], np.ndarray | None]]]
    _planograms: dict[tuple[str, ...], weight.Planogram]  # gondola's bin codes → its planogram (a cache)
    _held: dict[tuple[str, ...], list[weight.WeightChanges]]  # gondola's bin codes → changes held back
    _pending: list[tuple[Hashable, weight.ShelfEvent]]  # undecided shelf events: (sink's key, event)
    _look: ReachLook  # light items the detector cannot see: a look at the plates' levels after each reach

    # decisions
    #: (event times and bins, gone party) → whether the event may name the party (``_may_involve``)
    _involved: dict[tuple, bool]
    _review_picks: dict[Hashable, list[tuple[str, str, int]]]  # review → picks it may give (track, barcode, units)
    #: during a step's decisions (``advance``): the open reviews of ``_review_picks``, oldest first (else None)
    _open: list[Hashable] | None
    #: bin → {barcode: units} put back there automatically though the bin does not face them (misplaced), not yet
    #: taken again: fusion explains picks there over these too (in memory: after a restart, only the items
    #: misplaced since)
    _strays: dict[str, dict[str, int]]

    # observations
    hands: ObservationWindow
    bodies: ObservationWindow
    #: the same body rows per track (the id-switch repair's per-frame positions, ``vision.identity``)
    body_frames: BodyFrames
    _tag_events: list[TagEvent]  # recent shelf tag events (take/return), time order
    _exit_reads: list[TagEvent]  # recent exit-lane reads, time order

    if TYPE_CHECKING:  # methods of carts.loop.StoreLoop that the mixins call (typing only)
        def on_entry(self, *, track: str, t: float, party_lead: str | None = None) -> None: ...

        def on_exit(self, *, track: str, t: float) -> bool: ...
