"""The store loop's knobs (pure Python, no Django): :class:`LoopConfig`, each field documented where it is declared.
Read by ``carts.loop.StoreLoop`` and its parts; the live store sets some from ``settings.WALKOUT``."""
from __future__ import annotations

from dataclasses import dataclass

from sensors.rfid import ExitLaneConfig
from store.checks import check_numbers

from .reach_look import ReachLookConfig


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
    #: reads ``REPAIR_LOOKBACK_S`` = 20 s of bodies before an event's padded start to undo id switches, fusion
    #: ``pad_s`` of hands around it; the billing look's 2 s grid needs the 3.5 s left over,
    #: ``CheckoutGate.SWITCH_GRID_S``).
    lookback_s: float = 25.0
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
    #: Two scans at one gate whose tracks were first seen less than this apart (each could have been either
    #: scan's) cannot be told apart: the tracker sees a newcomer first on a frame (0.07–0.1 s apart at the 10–15 Hz
    #: of the stores' trackers), a frame or two later when the first detection is missed, and a shopper walks from
    #: the reader into the entry zone at their own pace, so the order of first sightings less than a few frames
    #: apart says nothing of who scanned first. Both visits are bound (their exits watched) but flagged: their
    #: shelf events go to review. A turnstile admits one shopper per ~1.5 s (``carts.offline.simulation_config.
    #: GATE_CYCLE_S``), three times this: shoppers a cycle apart are not flagged unless one dawdles into view.
    bind_ambiguous_s: float = 0.5
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
                             "bind_before_s", "bind_after_s", "bind_timeout_s", "bind_ambiguous_s", "lost_s", "lost_max_s",
                             "reassociate_m"),
                      low=0)
