"""Fusion's knobs and the shelves' geometry (pure NumPy, no Django): :class:`FusionConfig`, every field documented
where it is declared, and :class:`BinGeometry`, the bins as oriented boxes that hand distances are measured to.
The model they parametrise: docs/fusion.md; the decision itself: ``carts.fusion``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np

from store.checks import check_numbers, check_rows


class _Event(Protocol):
    """What fusion reads of a shelf event (``sensors.weight.ShelfEvent``, ``carts.loop_billing.HeldWindow``: frozen
    dataclasses, so read-only here): its bins and its interval, s UTC."""

    @property
    def bin_codes(self) -> tuple[str, ...]: ...

    @property
    def t_start(self) -> float: ...

    @property
    def t_end(self) -> float: ...


#: m. A plate is directly above another when their centres are within this across (the store's plates of one
#: gondola stand at the same x, y on every shelf) …
ABOVE_XY_M = 0.05
#: m. … and it is at least this higher (plates of one shelf stand at one height).
ABOVE_MIN_DZ_M = 0.05


@dataclass(frozen=True)
class BinGeometry:
    """Bins as oriented boxes in store coordinates.

    ``codes`` (B,) str; ``centre`` (B, 3) metres (centre of the plate's top face); ``half_size`` (B, 2) metres
    (half width along the shelf, half depth into it); ``yaw`` (B,) radians (shelf long axis from store +x).
    ``headroom`` (B,) metres, derived: the height from a plate's top face to the plate directly above it (a centre
    within :data:`ABOVE_XY_M` across, at least :data:`ABOVE_MIN_DZ_M` higher; inf for a top shelf): the volume a
    hand reaches into over a plate ends there.
    Raises ValueError on mismatched shapes.
    """

    codes: tuple[str, ...]
    centre: np.ndarray
    half_size: np.ndarray
    yaw: np.ndarray
    index: dict[str, int] = field(init=False, repr=False, compare=False)
    headroom: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        b = len(self.codes)
        check_rows(self, ("centre:3", "half_size:2", "yaw"), b)
        object.__setattr__(self, "index", {c: i for i, c in enumerate(self.codes)})
        c = np.asarray(self.centre, dtype=np.float64).reshape(-1, 3)
        room = np.full(b, math.inf)
        for i in range(b):
            above = (np.hypot(c[:, 0] - c[i, 0], c[:, 1] - c[i, 1]) < ABOVE_XY_M) & (c[:, 2] > c[i, 2] + ABOVE_MIN_DZ_M)
            if above.any():
                room[i] = float((c[above, 2] - c[i, 2]).min())
        object.__setattr__(self, "headroom", room)

    @classmethod
    def from_store(cls, store: Mapping) -> "BinGeometry":
        """The bins of a parsed ``store.json`` (``store.recording.read_store``), in code order."""
        bins = sorted((b for g in store["gondolas"] for s in g["shelves"] for b in s.get("bins", [])),
                      key=lambda b: b["code"])
        return cls(codes=tuple(b["code"] for b in bins),
                   centre=np.array([[b["x"], b["y"], b["z"]] for b in bins], dtype=np.float64).reshape(-1, 3),
                   half_size=np.array([[b["width_m"] / 2, b["depth_m"] / 2] for b in bins],
                                      dtype=np.float64).reshape(-1, 2),
                   yaw=np.array([b["yaw_rad"] for b in bins], dtype=np.float64))

    def distance(self, points: np.ndarray, code: str, clearance_m: float, along_scale: float = 1.0) -> np.ndarray:
        """Euclidean distance (metres) from each of ``points`` (n, 3) to the volume above bin ``code``:
        its rectangle, from the plate surface up to ``clearance_m`` above, or to the plate above it when that is
        lower (:attr:`headroom`: shelves stand 0.22–0.3 m apart in the AutoCheckout store, under fusion's 0.35 m
        clearance, and a hand reaching into the shelf above is not over this plate). 0 inside. ``along_scale``
        multiplies the part of the distance along the shelf (fusion weighs a hand beside the plate more than one
        in front of it). Raises KeyError for an unknown bin."""
        i = self.index[code]
        clearance_m = min(clearance_m, float(self.headroom[i]))
        d = points - self.centre[i]
        c, s = math.cos(self.yaw[i]), math.sin(self.yaw[i])
        along = d[:, 0] * c + d[:, 1] * s
        into = -d[:, 0] * s + d[:, 1] * c
        ex = np.maximum(np.abs(along) - self.half_size[i, 0], 0.0) * along_scale
        ey = np.maximum(np.abs(into) - self.half_size[i, 1], 0.0)
        ez = np.maximum(np.maximum(-d[:, 2], d[:, 2] - clearance_m), 0.0)
        return np.sqrt(ex * ex + ey * ey + ez * ez)

    def nearest_distance(self, points: np.ndarray, codes: Sequence[str], clearance_m: float,
                         along_scale: float = 1.0) -> np.ndarray:
        """(n,) metres: for each of ``points`` (n, 3), the smallest :meth:`distance` to the volume above any bin of
        ``codes`` (at least one), bit for bit ``np.min`` over one :meth:`distance` per code (the same operations
        on each point, read from the coordinate columns once). Raises KeyError for an unknown bin, ValueError for
        no codes."""
        if len(codes) == 0:
            raise ValueError("nearest_distance needs at least one bin code")
        x, y, z = (np.ascontiguousarray(points[:, k]) for k in range(3))
        best: np.ndarray | None = None
        for code in codes:
            i = self.index[code]
            clear = min(clearance_m, float(self.headroom[i]))
            c, s = math.cos(self.yaw[i]), math.sin(self.yaw[i])
            dx, dy, dz = x - self.centre[i, 0], y - self.centre[i, 1], z - self.centre[i, 2]
            ex = np.maximum(np.abs(dx * c + dy * s) - self.half_size[i, 0], 0.0) * along_scale
            ey = np.maximum(np.abs(-dx * s + dy * c) - self.half_size[i, 1], 0.0)
            ez = np.maximum(np.maximum(-dz, dz - clear), 0.0)
            d = np.sqrt(ex * ex + ey * ey + ez * ez)
            best = d if best is None else np.minimum(best, d, out=best)
        assert best is not None
        return best

    def nearest_floor_distance(self, points: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """(n,) metres: for each of ``points`` (n, 3; z ignored), the smallest horizontal distance to the footprint
        of a bin of ``codes`` (at least one): its rectangle on the floor plan, 0 inside. Raises KeyError for an
        unknown bin, ValueError for no codes."""
        if len(codes) == 0:
            raise ValueError("nearest_floor_distance needs at least one bin code")
        x, y = np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])
        best: np.ndarray | None = None
        for code in codes:
            i = self.index[code]
            c, s = math.cos(self.yaw[i]), math.sin(self.yaw[i])
            dx, dy = x - self.centre[i, 0], y - self.centre[i, 1]
            along = np.maximum(np.abs(dx * c + dy * s) - self.half_size[i, 0], 0.0)
            into = np.maximum(np.abs(-dx * s + dy * c) - self.half_size[i, 1], 0.0)
            d = np.hypot(along, into)
            best = d if best is None else np.minimum(best, d, out=best)
        assert best is not None
        return best

    def may_reach(self, points: np.ndarray, codes: Sequence[str], reach_m: float, along_scale: float = 1.0
                  ) -> np.ndarray:
        """(n,) bool: the points that may lie within ``reach_m`` metres of a bin of ``codes`` by :meth:`distance`
        (any clearance, this ``along_scale``) or by :meth:`nearest_floor_distance`: every such point and some
        more, by a square test around each bin's centre, a few operations per point (a bin's footprint lies within
        the hypotenuse of its half sizes of its centre; its distance is at least ``min(1, along_scale)`` times the
        floor distance; 1 mm to spare). Lets a caller that keeps only the points within reach compute the exact
        distance of far fewer. Every point when ``along_scale <= 0`` or ``reach_m`` is not finite. Raises KeyError
        for an unknown bin."""
        n = points.shape[0]
        if not along_scale > 0 or not math.isfinite(reach_m):
            return np.ones(n, dtype=bool)
        x, y = points[:, 0], points[:, 1]
        out = np.zeros(n, dtype=bool)
        for code in codes:
            i = self.index[code]
            r = math.hypot(float(self.half_size[i, 0]), float(self.half_size[i, 1])) + (
                max(reach_m, 0.0) + 1e-3) / min(1.0, along_scale)
            out |= (np.abs(x - self.centre[i, 0]) <= r) & (np.abs(y - self.centre[i, 1]) <= r)
        return out


@dataclass(frozen=True)
class FusionConfig:
    """Knobs of fusion. Metres, seconds, probabilities (relative weights in (0, 1] for the priors). Each field says
    what it does and where its default comes from; how the tuned ones were chosen is in docs/accuracy.md ("Fusion
    defaults: where they come from").

    Raises ValueError for non-positive distances or times, or priors outside (0, 1].
    """

    # --- hand at the bin (hand_evidence)
    #: s. Hand sightings from ``t_start − pad_s`` to ``t_end + pad_s`` of the event are read: a reach lasts
    #: 0.5–1.5 s around the weight change (BENCHMARK-1's real pick and the labelled AutoCheckout events).
    pad_s: float = 1.5
    #: s. The event's core interval is ``[t_start − core_pad_s, t_end + core_pad_s]``; a sighting outside it counts
    #: as ``gap_speed_m_s`` × its time outside farther from the bin. Not tuned (set with the first fusion).
    core_pad_s: float = 0.3
    #: m. Width σ of the hand score ``exp(−d_eff² / 2σ²)`` (σ in the formulas): the wrist stays 0.1–0.2 m in front
    #: of the plate it takes from on BENCHMARK-1 (``carts.offline.autocheckout``, measured on the real pick).
    sigma_m: float = 0.15
    #: m. The offset *along* the shelf counts ``sigma_m / along_sigma_m`` times the depth in front of it: how far
    #: in front a hand takes from depends on the arm (0.04–0.2 m on BENCHMARK-1), while along the shelf it stands
    #: within the plate's 0.1 m width; 0.07 = half a plate's width plus 2–3 cm of wrist keypoint noise.
    along_sigma_m: float = 0.07
    #: Sightings (count) over the weight change itself needed to use their quantile as ``d_eff`` (else the smallest
    #: penalised distance counts). Not tuned (set with the first fusion).
    min_core_samples: int = 3
    #: Quantile (0–1) of the hand's distances over the weight change taken as ``d_eff``: a hand that stayed at the
    #: bin for a good part of the change (two shoppers side by side each do), not one that passed by. Not tuned.
    core_quantile: float = 0.3
    #: s. Over a longer change (a swinging or settling plate) ``d_eff`` is the best such quantile over any
    #: stretch this long, and for a one-unit change the quantile over this long from its start: the hand that took
    #: the item was at the bin at the start. Added for swinging plates.
    core_window_s: float = 1.0
    #: m. An arm's length past the shelf edge; tracks whose hands never came within ``2 · reach_m`` of the bin are
    #: not candidates, and the "nobody" outcome's plausibility falls from ``reach_m`` to ``2 · reach_m``.
    reach_m: float = 0.6
    #: m. Height above the plate surface of the volume a hand reaches into (distances are to that volume, 0 inside).
    #: Not tuned (set with the first fusion: less than a shelf's spacing).
    clearance_m: float = 0.35
    #: Keypoint score (0–1) below which a hand sighting is ignored. Not tuned (set with the first fusion).
    min_hand_score: float = 0.2
    #: m/s. A hand's speed while reaching: how much farther a sighting outside the core interval counts per second.
    gap_speed_m_s: float = 0.6

    # --- hand entered and left (motion term ``motion_floor + (1 − motion_floor) · logistic((motion − motion_m0) /
    # motion_scale_m)``) and the "nobody we can see" score; all chosen on tuning seeds of the simulator
    #: m. Motion (farthest before/after the closest approach, less the closest distance) at which the logistic is ½:
    #: a reaching hand scores ≈ 0.3–0.5 m, a hand resting near the shelf ≈ 0.
    motion_m0: float = 0.12
    #: m. Scale of that logistic.
    motion_scale_m: float = 0.04
    #: Share (0–1] of the hand score kept by a hand that did not move in and out (a resting hand still counts this).
    motion_floor: float = 0.3
    #: m. The "nobody we can see" outcome scores as a hand this far away (``exp(−nobody_m² / 2σ²) · ½``).
    nobody_m: float = 0.55

    # --- the carts
    #: Prior (0–1] of a put-back of a held product into a bin that does not face it (a misplaced item). Tuning seeds.
    misplaced_prior: float = 0.15
    #: Prior (0–1] of a put-back of more than the track's party holds. Tuning seeds.
    infeasible_prior: float = 0.02
    #: Most units one event may move (``sensors.weight.explain_change``'s ``max_quantity``). Not tuned.
    max_quantity: int = 6

    # --- priors on what was taken
    #: m. When the event's bins face different products, a product is as likely as ``exp(−d² / 2·product_sigma_m²)``,
    #: ``d`` the hand's distance to the nearest bin facing it: one plate's width.
    product_sigma_m: float = 0.1
    #: Relative prior of 1, 2, 3, ≥ 4 units per event: softened from the labelled AutoCheckout events (232 of 237 move
    #: one unit, 4 two, 1 three) so that a clean multi-unit fit still beats the reject option.
    quantity_prior: tuple[float, ...] = (1.0, 0.3, 0.15, 0.1)
    #: Prior (0–1] of splitting a merged event's units between the two best tracks (two shoppers taking the same
    #: product side by side) against giving all to one.
    split_prior: float = 0.5

    # --- two takes side by side or one after the other (decide_event cuts a merged event in two)
    #: Whether a merged event may be cut into two takes (by plates, or in time).
    partition: bool = True
    #: Cut when the whole event's product posterior (``Decision.product``, 0–1) is below this, or it goes to review,
    #: or comes out as several units. Set with the cuts (not tuned).
    partition_below: float = 0.5
    #: s. A cut in time needs the earlier take's plates settled at least this long before the later one began
    #: (12 samples at 60 Hz: longer than a load cell's spikes and lost messages).
    partition_gap_s: float = 0.2
    #: Prior (0–1] of one shopper making both takes of a cut event, against two different shoppers.
    same_track_prior: float = 0.3
    #: Prior (0–1] of a put-back the party can hold only through a pick waiting in the review queue (the decision
    #: then waits for that review instead of sending a second one to people). Set with waiting put-backs.
    pending_prior: float = 0.5

    # --- weight off plates not facing the product
    #: Share (0–1] of a take's weight that may come off plates not facing the product (an item standing across a
    #: facing's edge) before ``foreign_prior`` applies.
    foreign_share: float = 0.3
    #: Prior (0–1] of a take beyond that share being q units of the product: one time in ten (the simulator's items
    #: straddle plates of their own facing; labelled AutoCheckout events spanning two facings hold two products).
    foreign_prior: float = 0.1

    # --- reaches that take nothing
    #: Share (0–1] of reaches that take nothing: a guess (the labels record takes only; the simulator's
    #: ``touch_share`` default); weighs one shopper grabbing several units while another's hand reached into the
    #: same bin against each taking one.
    touch_prior: float = 0.1
    #: Units (≥ 1) from which ``touch_prior`` applies: takes of two units or more (tuning seeds, docs/accuracy.md).
    touch_min_units: int = 2
    #: Hand score (0–1] a weak event (``sensors.weight.ShelfEvent.weak``: a light item on a noisy plate) needs to be a
    #: take: within about 0.15 m of the bin while it moved, and reaching; elsewhere it is noise.
    weak_hand_min: float = 0.5
    #: m. How near (``d_eff``) a hand must come to a weak event's bins to be one of its candidates, in place of
    #: ``2 · reach_m``: the event exists because a hand scoring ``weak_hand_min`` reached in (within about 0.15 m),
    #: and a hand 0.45 m away scores at most exp(−0.45² / (2 · 0.15²)) ≈ 0.011 (``sigma_m`` 0.15): under 2.5 % of
    #: ``weak_hand_min``, it cannot be the light item's taker. Narrowing it lets the store bill a shopper who stood
    #: near someone else's reach without waiting for that reach's look (``carts.loop.StoreLoop._may_involve``).
    #: Set from that bound, not tuned (docs/store-worker-load.md).
    weak_reach_m: float = 0.45

    # --- hidden hands (hidden_hands): a shopper standing at the bin with no hand in sight
    #: Score [0–1] of such a shopper: below any visible reach (0.7–1.0), near a hand resting at the bin (0.3).
    #: Tuning seeds.
    hidden_prior: float = 0.25
    #: m. How near the bin the shopper's body stood, just before and after the change (the simulator's shoppers
    #: stand 0.45 m in front of the shelf edge; BENCHMARK-1's shopper 0.3–0.5 m).
    hidden_standoff_m: float = 0.5
    #: s. Seen within this long either side of the change (an occlusion lasts ~1 s, a whole-track gap up to a few).
    hidden_seen_s: float = 2.5

    # --- tracker id switches (vision.identity)
    #: Whether id switches between neighbours around an event are undone before the hands are read.
    repair_id_switches: bool = True
    #: s. Window either side of the event searched for id switches and jumps. Not tuned (set with the first fusion).
    id_window_s: float = 3.0
    #: m/s. A body moving faster than this between sightings ≤ 0.3 s apart sends the event to review
    #: (``carts.fusion.identity_jumps``); inf: off (on the simulator every useful threshold sent too many events to review).
    id_jump_speed_m_s: float = math.inf

    # --- walking past (carts.fusion_activity)
    #: A candidate whose body moved faster than ``walking_speed_m_s`` (m/s) around the change has its hand score
    #: multiplied by ``walking_factor`` (``carts.fusion_activity``: a hand passing the bin while walking is weak
    #: evidence; ``vision.activity``'s 0.45 m/s walking threshold). 1: off (the default; docs/activity.md).
    walking_factor: float = 1.0
    #: m/s. The walking threshold of ``walking_factor`` (``vision.activity``).
    walking_speed_m_s: float = 0.45

    def __post_init__(self) -> None:
        check_numbers(self, ("pad_s", "sigma_m", "reach_m", "weak_reach_m", "clearance_m", "gap_speed_m_s", "motion_scale_m", "nobody_m",
                             "walking_speed_m_s", "hidden_standoff_m", "hidden_seen_s"), low=0, low_open=True)
        check_numbers(self, ("motion_floor", "misplaced_prior", "infeasible_prior", "same_track_prior", "pending_prior",
                             "foreign_share", "foreign_prior", "touch_prior", "weak_hand_min", "walking_factor"),
                      low=0, high=1, low_open=True)
        check_numbers(self, ("hidden_prior",), low=0, high=1)
        check_numbers(self, ("touch_min_units",), low=1, integer=True)
