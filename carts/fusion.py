"""Fusion: who caused a shelf event, and what they took or put back (pure NumPy, no Django).

One decision function, :func:`decide_event`, is called by both shells: the Django pipeline
(``carts.pipeline.StorePipeline``) and the in-memory offline pipeline (``carts.offline.evaluation.offline_replay``) used by
the accuracy benchmark. It joins three kinds of evidence into one posterior over (shopper track, product ×
quantity):

1. **Hand at the bin** (:func:`hand_evidence`). For every hand keypoint (``*_wrist``, ``*_hand``) of every eligible
   track seen during the event padded by ``pad_s`` each side, the distance ``d`` (metres) to the volume above the
   event's bin(s). A sighting outside the event's core interval ``[t_start − core_pad_s, t_end + core_pad_s]``
   counts as if ``gap_speed_m_s × (its time outside)`` metres farther: a hand seen 1 s before the weight moved says
   less than one seen while it moved, and a missed frame or an occlusion gap only weakens the evidence instead of
   erasing it. ``d_eff`` = the ``core_quantile`` (0.3) quantile of the distances over the weight change itself
   (``[t_start, t_end]``) when the hand was seen at least ``min_core_samples`` times then — a hand that stayed at
   the bin for a good part of the change (two shoppers side by side each do, when their changes merge), not one
   that passed by — else the smallest penalised distance. For an event of one unit the quantile is read over the
   first ``core_window_s`` of the core interval from the change's start (and each merged change's): one unit moves
   at one moment, and a neighbour's hand that came later, for an item of its own beside it, did not move it. The
   volume over a plate ends at the plate above it (:attr:`BinGeometry.headroom`).
2. **Hand entered and left** the shelf zone around the change: ``motion`` = min(farthest distance before the
   closest approach, farthest after it) − closest distance (metres), within the padded window; a reaching hand
   scores ≈ 0.3–0.5 m, a hand resting near the shelf (a neighbour standing in front of it, a shopper reached across)
   ≈ 0. A side with no sighting is neutral.
   Track score ``s = exp(−d_eff² / 2σ²) · (motion_floor + (1 − motion_floor) · logistic((motion − motion_m0) /
   motion_scale_m))`` for its best hand (σ = ``sigma_m``). A constant "nobody we can see" score
   ``s₀ = exp(−nobody_m² / 2σ²) · ½`` competes with the tracks.
3. **The carts**. A put-back (Δ > 0) is re-explained over the products facing the bin(s) *and* those held by the
   candidates' parties (a party = visits entered together on one account, billed together), with the weight
   model of ``sensors.weight.explain_change``; a held product that does not face the bin gets ``misplaced_prior``
   (a put-back in the wrong bin). A put-back of more than the track's party holds gets ``infeasible_prior``,
   unless the party may hold it through a pick waiting in the review queue (``pending_prior``; the decision
   then waits for that review instead of sending a second one to people).
   Picks (Δ < 0) use the sensors' hypotheses as they come.
4. **Priors**: units per event — ``quantity_prior`` (1, 0.3, 0.15, 0.1 for 1, 2, 3, ≥ 4 units), softened from the
   labelled AutoCheckout events (232 of 237 events move one unit, 4 two, 1 three) so that a clean multi-unit fit
   still beats the reject option; and, when the event's bins face different products, where the hand was: a
   product is as likely as ``exp(−d² / 2·product_sigma_m²)`` with ``d`` the track's hand distance to the nearest
   bin facing it (relative to the nearest product; ``product_sigma_m = 0.1`` m, one plate's width).
5. **Two shoppers, one event**: when two shoppers take the same product side by side, the plates' changes merge
   into one event of several units; a split of the units between the two best tracks competes with giving all
   to one (``split_prior = 0.5``), which needs every other hand that reached into the bin to have taken
   nothing (``touch_prior``).

6. **Two takes side by side or one after the other, told apart by plate or by time** (:func:`decide_event`):
   a merged event whose whole fits poorly, goes to review or comes out as several units is cut into two runs
   of plates along the shelf, or into the changes before and after a moment when its plates had settled, each
   part decided alone over its own interval, the pair of shoppers chosen jointly (one shopper at both is
   ``same_track_prior`` as likely).
7. **Id switches undone first** (``vision.identity``): around each event, where two neighbours' tracks
   exchanged ids (both jump onto where the other was), the hand observations get their ids back. A switch whose
   end is not seen by the time the event is decided may be one beginning or the end of one whose start was
   missed (two shoppers who came in together): when the two readings give different carts, the event goes to
   people.

Hand distances weigh the offset *along* the shelf ``sigma_m / along_sigma_m`` times more than the depth in front
of it: a hand taking from a plate stands in front of it (within its 0.1 m width plus the wrist keypoint's few
cm), while how far in front depends on the arm (0.04–0.2 m on BENCHMARK-1), so the offset along the shelf is
what tells neighbouring plates apart (``along_sigma_m = 0.07``: half a plate's width plus 2–3 cm of keypoint
noise).

Joint score of (track k, hypothesis h) = ``s_k · L_h · feasible(k, h)``; the unexplained outcome and the nobody
track compete as well. The decision is the best (track, product × quantity) pair; its **confidence** is its share
of the total (a posterior under the model, not yet fitted on real data; ``carts.offline.evaluation.reliability`` tabulates
confidence against the share right on simulated truth, so that calibration can be checked). Below the review
threshold the event goes to people with all of this evidence.

Every knob is a field of :class:`FusionConfig`, documented where it is declared (units, source); how the tuned
defaults were chosen is in docs/accuracy.md ("Fusion defaults: where they come from").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Protocol, Sequence

import numpy as np

from sensors import weight
from store.checks import check_numbers, check_rows
from store.recording import HAND_KEYPOINTS, RAY_KEYPOINTS, WRIST_RAY_KEYPOINTS, TrackObservations, member
from vision import identity


class _Event(Protocol):
    bin_codes: tuple[str, ...]
    t_start: float
    t_end: float


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
    #: (:func:`identity_jumps`); inf: off (on the simulator every useful threshold sent too many events to review).
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


# ---------------------------------------------------------------------------------------------- hand evidence
@dataclass(frozen=True)
class HandEvidence:
    """Hand-at-bin evidence of one shelf event, one row per candidate track (best hand), best score first.

    ``track_id`` (k,) object str; ``distance_m`` (k,) float64 closest raw hand-to-bin distance, metres;
    ``effective_m`` (k,) float64 the time-penalised distance ``d_eff``; ``t_closest`` (k,) float64 s UTC;
    ``motion_m`` (k,) float64 metres (entered-and-left depth, NaN when neither side was seen); ``score`` (k,)
    float64 in (0, 1] (module docstring); ``hand_xyz`` (k, 3) float64 metres, the closest hand sighting (the
    keypoint snapshot a reviewer sees). Raises ValueError on mismatched shapes.
    """

    track_id: np.ndarray
    distance_m: np.ndarray
    effective_m: np.ndarray
    t_closest: np.ndarray
    motion_m: np.ndarray
    score: np.ndarray
    hand_xyz: np.ndarray

    def __post_init__(self) -> None:
        n = self.track_id.shape[0]
        check_rows(self, ("distance_m", "effective_m", "t_closest", "motion_m", "score", "hand_xyz:3"), n)

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    @classmethod
    def empty(cls) -> "HandEvidence":
        z = np.zeros(0)
        return cls(np.array([], dtype=object), z, z, z, z, z, np.zeros((0, 3)))


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def _quantile(x: np.ndarray, q: float) -> float:
    """``float(np.quantile(x, q))`` for a 1-D float64 ``x`` of at least one value and ``0 <= q <= 1``, bit for bit
    (numpy's default ``linear`` method: its virtual index ``(n − 1)·q``, the two order statistics around it
    and its two-sided linear interpolation), without numpy's per-call overhead (~0.3 ms: fusion reads tens of
    thousands of short windows per minute in a crowd). NaN anywhere: numpy's answer."""
    n = x.size
    if n == 0 or np.isnan(x).any():
        return float(np.quantile(x, q))
    v = (n - 1) * q
    s = np.sort(x)
    if v >= n - 1:
        return float(s[-1])
    if v < 0:
        return float(s[0])
    i = math.floor(v)
    a, b, g = float(s[i]), float(s[i + 1]), v - i
    diff = b - a
    return b - diff * (1 - g) if g >= 0.5 else a + diff * g


def _core_distance(t: np.ndarray, d: np.ndarray, t0: float, t1: float, config: FusionConfig) -> float | None:
    """The hand's distance while the weight changed: the ``core_quantile`` quantile of ``d`` (metres) over the
    samples ``t`` (s, sorted) in ``[t0, t1]``; over a long change (a swinging or settling plate, or several takes
    merged), the smallest such quantile over any ``core_window_s`` stretch of it — the hand that took an item
    whose plate then swung for seconds was at the bin at the start, not for a good part of the whole interval,
    while a neighbour who lingered was. None when fewer than ``min_core_samples`` samples fall in every stretch."""
    core = np.flatnonzero((t >= t0) & (t <= t1))
    if core.size < config.min_core_samples:
        return None
    if t1 - t0 <= config.core_window_s:
        return _quantile(d[core], config.core_quantile)
    tc, dc = t[core], d[core]
    ends = np.searchsorted(tc, tc + config.core_window_s, side="right")
    starts = np.flatnonzero(ends - np.arange(ends.size) >= config.min_core_samples)
    if starts.size == 0:
        return None
    # a stretch's quantile is at least its minimum: read the stretches from the lowest minimum up and stop at the
    # first whose minimum is no lower than the best quantile so far (the same answer as reading them all)
    lows = np.array([dc[i:ends[i]].min() for i in starts.tolist()])
    best = math.inf
    for k in np.argsort(lows, kind="stable").tolist():
        if lows[k] >= best:
            break
        i = int(starts[k])
        best = min(best, _quantile(dc[i:ends[i]], config.core_quantile))
    return best


def _onset_distance(t: np.ndarray, d: np.ndarray, starts: Sequence[float], t1: float, config: FusionConfig
                    ) -> float | None:
    """The hand's distance when a one-unit change began: the ``core_quantile`` quantile of ``d`` (metres) over the
    samples ``t`` (s, sorted) in the first ``core_window_s`` of the core interval from each start in ``starts``
    (s UTC: the event's, and each of its merged changes'), ``[a − core_pad_s, min(a − core_pad_s +
    core_window_s, t1 + core_pad_s)]``, the smallest over the starts (``t1``: the event's end). One unit moves at
    one moment, and the hand that took or put it back was at the bin then: the detector's start is that hand's
    touch (docs/accuracy.md, change 7). A neighbour whose hand came to these plates only later, for an item of
    its own beside them, was not, even if it then stayed for the rest of a change that settles for a second.
    None when fewer than ``min_core_samples`` samples fall in every such window."""
    best: float | None = None
    for a in starts:
        lo = a - config.core_pad_s
        hi = min(lo + config.core_window_s, t1 + config.core_pad_s)
        i0, i1 = int(np.searchsorted(t, lo, side="left")), int(np.searchsorted(t, hi, side="right"))
        if i1 - i0 < config.min_core_samples:
            continue
        q = _quantile(d[i0:i1], config.core_quantile)
        best = q if best is None else min(best, q)
    return best


#: Points read along a single-view wrist's stretch of ray (:func:`wrist_ray_hands`): 2 cm apart on an arm's reach
#: of 0.8 m either side of the body (1.6 m), finer than the hand score's σ (0.15 m) by far.
RAY_SAMPLES = 81


def wrist_ray_hands(hands: TrackObservations, codes: Sequence[str], bins: BinGeometry,
                    config: FusionConfig = FusionConfig()) -> TrackObservations:
    """``hands`` with every single-view wrist ray (``store.recording.WRIST_RAY_KEYPOINTS``: the two ends of the
    stretch of one camera's wrist ray where the wrist can be, rows ``…_ray_a`` and ``…_ray_b`` of one track at one
    time, paired in row order) replaced by one wrist row (``l_wrist``/``r_wrist``, same track, time and score) at
    the point of that stretch nearest to the volume above the bins ``codes`` by fusion's distance
    (:meth:`BinGeometry.distance` with ``clearance_m`` and the along-shelf weight ``sigma_m / along_sigma_m``).
    One camera cannot tell how deep along its ray the wrist is; the stretch's nearest point is a lower bound of
    the hand's distance that needs no depth. Where several points of the stretch are equally near (a ray grazing
    the bins), the middle one. Rows that are not rays are returned as they are, first; ``hands`` without rays is
    returned itself (keypoint sources with 3-D hands). An ``…_ray_a`` row without its ``…_ray_b`` is dropped.
    Raises KeyError for a bin not in ``bins``."""
    is_ray = member(hands.keypoint, RAY_KEYPOINTS)
    if not is_ray.any():
        return hands
    keep = hands[~is_ray]
    out_name: list[str] = []
    ends_a: list[int] = []
    ends_b: list[int] = []
    for name, (ka, kb) in WRIST_RAY_KEYPOINTS.items():
        a_rows: dict[tuple[str, float], list[int]] = {}
        for i in np.flatnonzero(hands.keypoint == ka).tolist():
            a_rows.setdefault((str(hands.track_id[i]), float(hands.t[i])), []).append(i)
        for i in np.flatnonzero(hands.keypoint == kb).tolist():
            queue = a_rows.get((str(hands.track_id[i]), float(hands.t[i])))
            if queue:
                ends_a.append(queue.pop(0))
                ends_b.append(i)
                out_name.append(name)
    if not ends_a:
        return keep
    A, B = hands.xyz[ends_a], hands.xyz[ends_b]                              # (m, 3) each
    u = np.linspace(0.0, 1.0, RAY_SAMPLES)
    pts = A[:, None, :] + u[None, :, None] * (B - A)[:, None, :]            # (m, S, 3)
    flat = pts.reshape(-1, 3)
    d = np.min(np.stack([bins.distance(flat, code, config.clearance_m, config.sigma_m / config.along_sigma_m)
                         for code in codes]), axis=0).reshape(len(ends_a), RAY_SAMPLES)
    near = d <= d.min(axis=1, keepdims=True) + 1e-9                          # the nearest samples of each stretch
    first = np.argmax(near, axis=1)
    last = RAY_SAMPLES - 1 - np.argmax(near[:, ::-1], axis=1)
    pick = (first + last) // 2
    xyz = pts[np.arange(len(ends_a)), pick]
    rows = np.asarray(ends_a, dtype=np.int64)
    resolved = TrackObservations(hands.track_id[rows], hands.t[rows], np.array(out_name, dtype=object), xyz,
                                 hands.score[rows])
    return TrackObservations(np.concatenate([keep.track_id, resolved.track_id]), np.concatenate([keep.t, resolved.t]),
                             np.concatenate([keep.keypoint, resolved.keypoint]), np.vstack([keep.xyz, resolved.xyz]),
                             np.concatenate([keep.score, resolved.score]))


def candidate_reach_m(event: _Event, config: FusionConfig) -> float:
    """m: how near a track's hand must come to ``event``'s bins to be a candidate of its decision
    (:func:`hand_evidence`): ``2 · reach_m``, or ``weak_reach_m`` for a weak event (``ShelfEvent.weak``)."""
    return config.weak_reach_m if getattr(event, "weak", False) else 2 * config.reach_m


def hand_evidence(event: _Event, hands: TrackObservations, bins: BinGeometry, config: FusionConfig = FusionConfig(),
                  *, eligible: Sequence[str] | None = None, onset: bool = False) -> HandEvidence:
    """Hand-at-bin evidence for ``event`` from ``hands`` (hand keypoints; other keypoints are ignored).

    ``eligible``: only these tracks (None: all). Tracks whose best ``d_eff`` exceeds ``2 · reach_m`` are left out
    (:func:`candidate_reach_m`: ``weak_reach_m`` for a weak event).
    ``onset``: the event is one unit (:func:`_one_unit`): ``d_eff`` is read when its change (or each merged
    change, ``event.parts``) began (:func:`_onset_distance`), not over its whole length (:func:`_core_distance`).
    Raises KeyError if the event names a bin not in ``bins``.
    """
    lo, hi = event.t_start - config.pad_s, event.t_end + config.pad_s
    w = wrist_ray_hands(hands[(hands.t >= lo) & (hands.t <= hi)], event.bin_codes, bins, config)
    w = w[(w.score >= config.min_hand_score) & member(w.keypoint, HAND_KEYPOINTS)]
    if eligible is not None:
        w = w[member(w.track_id, eligible)]
    if len(w) == 0:
        return HandEvidence.empty()
    d = np.min(np.stack([bins.distance(w.xyz, code, config.clearance_m, config.sigma_m / config.along_sigma_m)
                         for code in event.bin_codes]), axis=0)
    # a track none of whose sightings came within 2 · reach_m is left out below whatever its core distance (every
    # quantile of d is at least its minimum, and the effective distance at least d): skip it here
    limit = candidate_reach_m(event, config)
    near = member(w.track_id, set(w.track_id[d <= limit].tolist()))
    w, d = w[near], d[near]
    if len(w) == 0:
        return HandEvidence.empty()
    c0, c1 = event.t_start - config.core_pad_s, event.t_end + config.core_pad_s
    starts = sorted({float(event.t_start), *(float(p.t_start) for p in getattr(event, "parts", ()))}) if onset else []
    outside = np.maximum(np.maximum(c0 - w.t, w.t - c1), 0.0)
    eff = d + config.gap_speed_m_s * outside
    # one group per (track, keypoint), in the order of their "track\0keypoint" keys (what np.unique of the keys
    # gives), each group's rows by time (ties in their order): one sort, not one scan of the rows per group
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(f"{a}\x00{b}", len(index))
                         for a, b in zip(w.track_id.tolist(), w.keypoint.tolist())), dtype=np.int64, count=len(w))
    keys = sorted(index)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[[index[k] for k in keys]] = np.arange(len(keys))
    group = rank[codes]
    by_group = np.lexsort((w.t, group))  # stable: within a group, by time, ties in the rows' order
    bounds = np.searchsorted(group[by_group], np.arange(len(keys) + 1))
    best: dict[str, tuple] = {}
    for g in range(len(keys)):
        sel = by_group[bounds[g]:bounds[g + 1]]
        t, dk, ek, xyz = w.t[sel], d[sel], eff[sel], w.xyz[sel]
        j = int(np.argmin(ek))
        d_eff = (_onset_distance(t, dk, starts, event.t_end, config) if onset
                 else _core_distance(t, dk, event.t_start, event.t_end, config))
        if d_eff is None:
            d_eff = float(ek[j])
        if d_eff > limit:
            continue
        before, after = dk[:j + 1], dk[j:]
        sides = []
        if j > 0:
            sides.append(float(before.max()))
        if j < dk.size - 1:
            sides.append(float(after.max()))
        motion = (min(sides) - float(dk[j])) if len(sides) == 2 else math.nan
        moved = 0.5 if math.isnan(motion) else _logistic((motion - config.motion_m0) / config.motion_scale_m)
        score = math.exp(-d_eff ** 2 / (2 * config.sigma_m ** 2)) * (
            config.motion_floor + (1 - config.motion_floor) * moved)
        track = str(w.track_id[sel[0]])
        row = (track, float(dk[j]), d_eff, float(t[j]), motion, score, tuple(float(v) for v in xyz[j]))
        if track not in best or score > best[track][5]:
            best[track] = row
    rows = sorted(best.values(), key=lambda r: -r[5])
    if not rows:
        return HandEvidence.empty()
    cols = list(zip(*rows))
    return HandEvidence(np.array(cols[0], dtype=object), *(np.asarray(c, dtype=np.float64) for c in cols[1:6]),
                        np.asarray(cols[6], dtype=np.float64).reshape(-1, 3))


def hidden_hands(ev: HandEvidence, event: _Event, hands: TrackObservations, bodies: TrackObservations,
                 bins: BinGeometry, config: FusionConfig = FusionConfig(), *,
                 eligible: Sequence[str] | None = None) -> HandEvidence:
    """``ev`` plus the shoppers who stood at the bin while the weight changed with both hands unseen (an
    occlusion in a crowd, a neighbour's body between the camera and the hand): an eligible track with no hand
    sighting (score ≥ ``min_hand_score``) in ``[t_start, t_end]`` whose body (``neck``, else ``head``) was seen
    within ``hidden_seen_s`` before and after (or on one side only, when the whole track was hidden on the other:
    a crowd hides a shopper for seconds), each time within ``hidden_standoff_m`` of the bin's footprint
    plus the fall-off below, scores ``hidden_prior · exp(−e² / 2σ²)``, ``e`` = metres beyond
    ``hidden_standoff_m`` (``sigma_m``). Without this row such a shopper only has a hand seen before or after
    the change, far weaker than a neighbour's hand passing the bin, and the take went to the neighbour with a high
    confidence. ``distance_m`` of the row is the body's distance; ``motion_m`` NaN; ``hand_xyz`` the body. Not read
    for a weak event (:func:`_decide_whole`): the reach look makes one only where a hand was seen reaching in."""
    t0, t1 = event.t_start, event.t_end
    w = bodies[(bodies.t >= t0 - config.hidden_seen_s) & (bodies.t <= t1 + config.hidden_seen_s)]
    if len(w) == 0:
        return ev
    seen = hands[(hands.t >= t0) & (hands.t <= t1) & (hands.score >= config.min_hand_score)]
    shown = {str(x) for x in seen.track_id[member(seen.keypoint, HAND_KEYPOINTS + RAY_KEYPOINTS)]}
    have = {str(x) for x in ev.track_id}
    cand = {str(x) for x in w.track_id} - shown
    if eligible is not None:
        cand &= {str(x) for x in eligible}
    rows = []
    at: dict[str, list[int]] = {}  # each candidate's rows of w, in order: one pass, not one scan per candidate
    for i, x in enumerate(w.track_id.tolist()):
        if str(x) in cand:
            at.setdefault(str(x), []).append(i)
    for track in sorted(cand):
        m = w[np.asarray(at[track], dtype=np.int64)]
        for name in ("neck", "head"):
            k = m[m.keypoint == name]
            if len(k):
                break
        before, after = k.t < t0, k.t > t1
        if not before.any() and not after.any():
            continue
        # a side with no sighting at all within hidden_seen_s: the whole track was hidden then (a crowd hides a
        # shopper for seconds); the side seen says where it stood
        ends = np.stack([k.xyz[before][np.argmax(k.t[before])] if before.any() else k.xyz[after][np.argmin(k.t[after])],
                         k.xyz[after][np.argmin(k.t[after])] if after.any() else k.xyz[before][np.argmax(k.t[before])]])
        d = np.min(np.stack([_floor_distance(bins, ends, code) for code in event.bin_codes]), axis=0)
        e = max(0.0, float(d.max()) - config.hidden_standoff_m)
        score = config.hidden_prior * math.exp(-e * e / (2 * config.sigma_m ** 2))
        if score < 1e-6:
            continue
        if track in have:  # its hand was seen before or after: keep whichever row says more
            j = [str(x) for x in ev.track_id].index(track)
            if ev.score[j] >= score:
                continue
        rows.append((track, float(d.max()), float(d.max()), 0.5 * (t0 + t1), math.nan, score,
                     tuple(float(v) for v in ends[0])))
    if not rows:
        return ev
    keep = [j for j in range(len(ev)) if str(ev.track_id[j]) not in {r[0] for r in rows}]
    old = [(str(ev.track_id[j]), float(ev.distance_m[j]), float(ev.effective_m[j]), float(ev.t_closest[j]),
            float(ev.motion_m[j]), float(ev.score[j]), tuple(ev.hand_xyz[j].tolist())) for j in keep]
    allrows = sorted(old + rows, key=lambda r: -r[5])
    cols = list(zip(*allrows))
    return HandEvidence(np.array(cols[0], dtype=object), *(np.asarray(c, dtype=np.float64) for c in cols[1:6]),
                        np.asarray(cols[6], dtype=np.float64).reshape(-1, 3))


def _floor_distance(bins: BinGeometry, points: np.ndarray, code: str) -> np.ndarray:
    """Horizontal distance (metres) from ``points`` (n, 3; z ignored) to the footprint of bin ``code``."""
    i = bins.index[code]
    d = points[:, :2] - bins.centre[i, :2]
    c, s = math.cos(bins.yaw[i]), math.sin(bins.yaw[i])
    along = np.maximum(np.abs(d[:, 0] * c + d[:, 1] * s) - bins.half_size[i, 0], 0.0)
    into = np.maximum(np.abs(-d[:, 0] * s + d[:, 1] * c) - bins.half_size[i, 1], 0.0)
    return np.hypot(along, into)


# ---------------------------------------------------------------------------------------------- legacy view
@dataclass(frozen=True)
class Candidate:
    """One shopper track's evidence for an event: closest hand distance (m), when (s UTC), its hand score, and
    (in a :class:`Decision`) its posterior share ``posterior`` of the event."""

    track_id: str
    distance_m: float
    t_closest: float
    score: float
    motion_m: float = math.nan
    posterior: float = math.nan
    hand_xyz: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Attribution:
    """Hand-only answer for one shelf event: the track (None: nobody), confidence in [0, 1], candidates best
    first, and a sentence for people."""

    track_id: str | None
    confidence: float
    candidates: tuple[Candidate, ...]
    reason: str


def attribute_event(event: _Event, hands: TrackObservations, bins: BinGeometry,
                    config: FusionConfig = FusionConfig(), *, eligible: Sequence[str] | None = None) -> Attribution:
    """Hand evidence alone (no product, no cart): the track whose hand score is highest, with confidence = its
    share of the summed scores (nobody included) × a plausibility factor falling from 1 to 0 as the closest
    distance goes from ``reach_m`` to ``2·reach_m``. :func:`decide_event` is what the pipelines use; this is the
    per-event "who was there" view. Raises KeyError for an unknown bin."""
    ev = hand_evidence(event, hands, bins, config, eligible=eligible)
    if len(ev) == 0 and eligible is not None and len(eligible) == 0:
        return Attribution(None, 0.0, (), "no shopper was in the store (no open visit) during the event")
    if len(ev) == 0:
        seen = hands.between(event.t_start - config.pad_s, event.t_end + config.pad_s)
        seen = seen[seen.score >= config.min_hand_score]
        if eligible is not None:
            seen = seen[member(seen.track_id, eligible)]
        return Attribution(None, 0.0, (), "no shopper's hand was seen during the event" if not seen else
                           f"no hand came within {2 * config.reach_m:.1f} m of the bin")
    total = float(ev.score.sum()) + 0.5 * math.exp(-config.nobody_m ** 2 / (2 * config.sigma_m ** 2))
    cands = tuple(Candidate(str(ev.track_id[i]), float(ev.distance_m[i]), float(ev.t_closest[i]),
                            float(ev.score[i]), float(ev.motion_m[i])) for i in range(len(ev)))
    plausible = float(np.clip((2 * config.reach_m - ev.effective_m[0]) / config.reach_m, 0.0, 1.0))
    conf = float(ev.score[0]) / total * plausible
    return Attribution(cands[0].track_id, conf, cands, _hand_reason(cands))


def _hand_reason(cands: Sequence[Candidate]) -> str:
    best = cands[0]
    return (f"hand of track {best.track_id} came within {best.distance_m:.2f} m"
            + (f"; next track at {cands[1].distance_m:.2f} m" if len(cands) > 1 else "; no other track near"))


# ---------------------------------------------------------------------------------------------- the decision
Holdings = Mapping[str, Mapping[str, int]]  # track id → {barcode: units held}


@dataclass(frozen=True)
class Option:
    """One scored (product × quantity) explanation in a :class:`Decision`: ``quantity`` signed (+ taken,
    − put back), ``likelihood`` the weight evidence (normalised), ``posterior`` its share of the joint."""

    barcode: str
    quantity: int
    likelihood: float
    posterior: float


@dataclass(frozen=True)
class Decision:
    """Fusion's answer for one shelf event.

    ``track_id``: the shopper whose hand did it (None: nobody found); ``charge_track``: the track whose cart gets
    the cart event (the actor, or for a put-back within a party the member who holds the item); ``barcode`` and
    ``quantity`` (signed units, + taken); ``confidence`` = posterior of that (track, product × quantity) pair, with
    ``attribution`` and ``product`` its two marginals; ``review``: the event must go to people (``reason`` says
    why); ``candidates`` (tracks, best first, with posteriors) and ``options`` (products) are the evidence;
    ``shares``: the cart changes to make, ``((track, signed units), …)`` — one, or two when two shoppers' takes of
    one product merged into one event (``charge_track``/``quantity`` then describe the whole).
    ``awaits_review``: a put-back of an item that the shopper's party does not hold yet but may, through a pick
    that is waiting in the review queue (``pending``): the change is sound but waits for that review; once it is
    resolved the change applies if the party then holds the item, and goes to people otherwise.
    ``noise``: a weak event (``sensors.weight.ShelfEvent.weak``) that no shopper's hand reached into: taken for
    load-cell noise; nothing to do and nothing to review.
    ``parts``: when the event's bins were told apart as two takes side by side (two shoppers at neighbouring
    plates, or one shopper taking two products at once), one decision per group of bins; ``barcode``,
    ``quantity`` and ``shares`` then describe the first part and :attr:`changes` lists them all.
    """

    track_id: str | None
    charge_track: str | None
    barcode: str | None
    quantity: int
    confidence: float
    attribution: float
    product: float
    review: bool
    reason: str
    candidates: tuple[Candidate, ...]
    options: tuple[Option, ...]
    shares: tuple[tuple[str, int], ...] = ()
    parts: tuple["Decision", ...] = ()
    awaits_review: bool = False
    noise: bool = False
    #: the recogniser's likelihood that re-weighted this decision (``carts.fusion_products.with_product_evidence``),
    #: its top products ``((barcode, probability), …)``; empty: no image evidence was used
    product_image: tuple[tuple[str, float], ...] = ()

    @property
    def changes(self) -> tuple[tuple[str, str, int], ...]:
        """The cart changes to make, ``((track, barcode, signed units), …)``: the shares, or every part's."""
        if self.parts:
            return tuple(c for p in self.parts for c in p.changes)
        return tuple((t, self.barcode, q) for t, q in self.shares) if self.barcode else ()

    def evidence(self) -> dict:
        """Plain-JSON evidence for a CartEvent or a ReviewItem (distances in m, scores and posteriors rounded)."""
        out = self._evidence()
        if self.parts:
            out["parts"] = [p._evidence() for p in self.parts]
        return out

    def _evidence(self) -> dict:
        return {
            "decision": {"track_id": self.track_id, "charge_track": self.charge_track, "barcode": self.barcode,
                         "quantity": self.quantity, "confidence": round(self.confidence, 4),
                         "attribution": round(self.attribution, 4), "product": round(self.product, 4),
                         "shares": [[t, q] for t, q in self.shares], "reason": self.reason},
            "candidates": [{"track_id": c.track_id, "distance_m": round(c.distance_m, 3),
                            "motion_m": None if math.isnan(c.motion_m) else round(c.motion_m, 3),
                            "score": round(c.score, 4), "posterior": round(c.posterior, 4),
                            "t_closest": round(c.t_closest, 3),
                            "hand_xyz": None if c.hand_xyz is None else [round(v, 3) for v in c.hand_xyz]}
                           for c in self.candidates],
            "options": [{"barcode": o.barcode, "quantity": o.quantity, "likelihood": round(o.likelihood, 4),
                         "posterior": round(o.posterior, 4)} for o in self.options[:8]],
            **({"product_image": [[b, round(p, 4)] for b, p in self.product_image]} if self.product_image else {}),
        }


def party_holdings(track: str, carts: Holdings, party_of: Mapping[str, str]) -> dict[str, int]:
    """Units held by ``track``'s party (itself when it has none): ``{barcode: units}`` summed over members."""
    key = party_of.get(track, track)
    out: dict[str, int] = {}
    for holder, cart in carts.items():
        if party_of.get(holder, holder) == key:
            for code, q in cart.items():
                if q:
                    out[code] = out.get(code, 0) + int(q)
    return out


def _putback_options(event: weight.ShelfEvent, planogram: weight.Planogram, held: set[str],
                     config: FusionConfig) -> list[tuple[str, int, float]]:
    """Re-explain a weight gain over the facing products and the held ones (non-facing × misplaced_prior)."""
    facing = {p for c in event.bin_codes for p in planogram.facings.get(c, ())}
    known = set(planogram.products.barcode.tolist())
    codes = sorted((facing | held) & known)
    if not codes:
        return [(weight.UNEXPLAINED, 0, 1.0)]
    hidden = weight.hidden_share_hypotheses(event.delta_g, event.noise_sd_g, event.bin_codes, planogram)  # facing
    hyps = weight.explain_change(event.delta_g, event.noise_sd_g, planogram.products.select(codes),
                                 max_quantity=config.max_quantity, extra=hidden)
    out = []
    for h in hyps:
        if h.unexplained:
            out.append((h.barcode, 0, h.likelihood))
        elif h.quantity < 0:
            out.append((h.barcode, h.quantity, h.likelihood * (1.0 if h.barcode in facing else config.misplaced_prior)))
    total = sum(o[2] for o in out)
    return [(b, q, p / total) for b, q, p in out] if total > 0 else [(weight.UNEXPLAINED, 0, 1.0)]


def _pick_options(event: weight.ShelfEvent, planogram: weight.Planogram, strays: Holdings,
                  config: FusionConfig) -> list[tuple[str, int, float]]:
    """(barcode, units taken, likelihood) of a pick: the sensors' hypotheses as they come, or, when ``strays``
    (bin → {barcode: units}) lists items lying on the event's bins that do not face them, the change explained
    again over the facing products and those (``sensors.weight.explain_change``, the facing items' hidden shares
    too), a stray product at most the units known to be there."""
    facing = {p for c in event.bin_codes for p in planogram.facings.get(c, ())}
    here: dict[str, int] = {}
    for c in event.bin_codes:
        for b, q in strays.get(c, {}).items():
            if q > 0 and b not in facing:
                here[b] = here.get(b, 0) + int(q)
    known = set(planogram.products.barcode.tolist())
    here = {b: q for b, q in here.items() if b in known}
    if not here or event.disturbance or event.delta_g >= 0:
        opts = [(h.barcode, int(h.quantity), float(h.likelihood)) for h in event.hypotheses
                if h.unexplained or h.quantity > 0]
        return opts or [(weight.UNEXPLAINED, 0, 1.0)]
    hidden = weight.hidden_share_hypotheses(event.delta_g, event.noise_sd_g, event.bin_codes, planogram)
    hyps = weight.explain_change(event.delta_g, event.noise_sd_g,
                                 planogram.products.select(sorted((facing & known) | set(here))),
                                 max_quantity=config.max_quantity, extra=hidden)
    opts = [(h.barcode, int(h.quantity), float(h.likelihood)) for h in hyps
            if h.unexplained or (h.quantity > 0 and (h.barcode not in here or h.quantity <= here[h.barcode]))]
    total = sum(o[2] for o in opts)
    return [(b, q, p / total) for b, q, p in opts] if total > 0 else [(weight.UNEXPLAINED, 0, 1.0)]


def _where_the_hand_was(event: weight.ShelfEvent, opts: list[tuple[str, int, float]], ev: HandEvidence,
                        bins: BinGeometry, planogram: weight.Planogram, config: FusionConfig) -> np.ndarray:
    """(K, H) factor: for an event over several bins facing different products, how near each track's hand came
    to a bin facing each product (Gaussian in metres, sd ``product_sigma_m``; relative to the nearest product,
    so 1 for it). Products facing none of the event's bins (misplaced put-backs) and single-product events: 1."""
    K, H = len(ev), len(opts)
    out = np.ones((K, H))
    faced = {c: set(planogram.facings.get(c, ())) for c in event.bin_codes}
    if K == 0 or len({frozenset(v) for v in faced.values()}) < 2:
        return out
    for j, (code, _, _) in enumerate(opts):
        where = [c for c, prods in faced.items() if code in prods]
        if not where:
            continue
        d = np.min(np.stack([bins.distance(ev.hand_xyz, c, config.clearance_m) for c in where]), axis=0)
        out[:, j] = np.exp(-d ** 2 / (2 * config.product_sigma_m ** 2))
    facing_cols = [j for j, o in enumerate(opts) if any(o[0] in p for p in faced.values())]
    if facing_cols:
        best = out[:, facing_cols].max(axis=1, keepdims=True)
        out[:, facing_cols] /= np.maximum(best, 1e-12)
    return out


def _others_took_nothing(ev: HandEvidence, opts: list[tuple[str, int, float]], config: FusionConfig) -> np.ndarray:
    """(K, H) factor for one shopper taking several units while other shoppers' hands were at the bin too: each
    other hand's reach must then have taken nothing, ``∏ (1 − s_m·(1 − touch_prior))`` over the other tracks' hand
    scores ``s_m`` (0: no hand there, 1: a clear reach), against the split between them that
    :func:`_splits` scores (each took one). Several units in one grab are rare (the labelled AutoCheckout
    events: 5 of 237), a reach that takes nothing (``touch_prior``) too, so two hands that reached over a
    two-unit change were two takes. Options of one unit or none: 1."""
    K, H = len(ev), len(opts)
    out = np.ones((K, H))
    several = np.array([abs(o[1]) >= config.touch_min_units for o in opts])
    if K < 2 or not several.any():
        return out
    s = np.clip(ev.score, 0.0, 1.0)
    miss = 1.0 - s * (1.0 - config.touch_prior)      # (K,) chance a track's hand took nothing here
    for k in range(K):
        out[k, several] = float(np.prod(np.delete(miss, k)))
    return out


def _off_its_facing(event: weight.ShelfEvent, opts: list[tuple[str, int, float]], planogram: weight.Planogram,
                    config: FusionConfig, strays: Holdings | None = None) -> np.ndarray:
    """(H,) factor for takes of a merged event: ``foreign_prior`` when more than ``foreign_share`` of the weight
    that left came off plates that do not face the product (``event.parts``). An item standing across plates
    rests on plates of its own facing; a take of q units of P whose weight largely left a plate facing only Q is
    one of each (a "mixed" take, which cutting the event finds), not q × P with a unit misplaced there (a plate
    where ``strays`` has units of P counts as facing it). Put-backs,
    the unexplained outcome and events without parts: 1."""
    out = np.ones(len(opts))
    if len(event.parts) < 2 or event.delta_g >= 0:
        return out
    lost = sum(-p.delta_g for p in event.parts if p.delta_g < 0)
    if lost <= 0:
        return out
    for j, (code, q, _) in enumerate(opts):
        if q <= 0 or code == weight.UNEXPLAINED:
            continue
        foreign = sum(-p.delta_g for p in event.parts
                      if p.delta_g < 0 and code not in planogram.facings.get(p.code, ())
                      and (strays or {}).get(p.code, {}).get(code, 0) <= 0)
        if foreign > config.foreign_share * lost:
            out[j] = config.foreign_prior
    return out


def evidence_window(event: _Event, config: FusionConfig = FusionConfig()
                    ) -> tuple[tuple[float, float], tuple[float, float]]:
    """The observation times :func:`decide_event` reads for ``event``: ((t0, t1) of hand keypoints, (t0, t1) of
    body keypoints), seconds UTC, inclusive. Hands: the event padded by ``pad_s``; bodies: from the id-switch
    repair's look-back (``vision.identity.REPAIR_LOOKBACK_S`` before the padded start) to the widest of ``pad_s``,
    ``hidden_seen_s`` and ``id_window_s`` after the end. A caller holding a long buffer (the store loop's window of
    a minute of every shopper) passes only these rows: the decision is the same, read in a fraction of the time."""
    lo, hi = event.t_start - config.pad_s, event.t_end + config.pad_s
    after = max(config.pad_s, config.hidden_seen_s, config.id_window_s)
    return (lo, hi), (lo - identity.REPAIR_LOOKBACK_S, event.t_end + after)


def decide_event(event: weight.ShelfEvent, hands: TrackObservations, bins: BinGeometry, planogram: weight.Planogram,
                 *, carts: Holdings, party_of: Mapping[str, str] | None = None,
                 eligible: Sequence[str] | None = None, review_confidence: float = 0.6,
                 config: FusionConfig = FusionConfig(), bodies: TrackObservations | None = None,
                 pending: Holdings | None = None, strays: Holdings | None = None) -> Decision:
    """Decide who caused ``event`` and which product × quantity, with a confidence (module docstring).

    ``hands``: hand keypoints of the session (other keypoints ignored); ``planogram``: facings and unit weights
    (``sensors.weight.Planogram``); ``carts``: what each eligible track holds now; ``party_of``: track → party key
    (members of one party share the key; absent: alone); ``eligible``: tracks bound to an open visit or one still
    settling after its exit (None: every track seen); ``review_confidence``: below it, ``review`` is True;
    ``bodies``: the tracks' body keypoints (neck, head, …); when given, id switches between neighbours around
    the event are undone first (``vision.identity.repair``, ``config.repair_id_switches``: during a switch the
    hand that reached carries the neighbour's id), and the decided track's identity is checked
    (:func:`identity_jumps`, off by default). ``pending``: what each track may hold through picks waiting in the
    review queue (track → {barcode: units}, every candidate of an open review × its pick options,
    ``carts.offline.evaluation.pending_picks``): a put-back of such an item is feasible with ``config.pending_prior`` and
    the decision ``awaits_review`` instead of going to people as a second review. ``strays``: units known to lie
    on bins that do not face them (bin code → {barcode: units}: misplaced put-backs applied earlier, not yet taken
    again): a pick from such a bin is explained over its facing products and these (at most the units there), so
    that a misplaced item picked up again is not read as a facing product of a similar weight.

    **Two takes side by side or one after the other** (``config.partition``). When the event merged several
    changes (``event.parts``) and, taken whole, it goes to review, its product fits poorly (weight likelihood
    below ``config.partition_below``) or it comes out as several units (two shoppers, or one taking two), every
    cut of its changes into two takes is tried (:func:`_cuts`: two runs of bins along the shelf, or the changes
    that settled before a moment and those that began ``config.partition_gap_s`` after it): each take becomes
    an event of its own (``sensors.weight.sub_event``: its changes' Δ, interval and facing products) with its
    own hand evidence over its own interval, and the two shoppers are chosen jointly (:func:`_joint_parts`). The
    best cut wins when its confidence beats the review threshold and the whole event's confidence; the decision
    then carries both parts in ``parts``. This tells apart two shoppers taking from neighbouring plates at the
    same moment (their changes merge into one event), two shoppers taking from one plate within a second of
    each other, and one shopper taking two different products at once.
    A ``disturbance`` (more plates than one item spans) is never explained whole, only cut this way or reviewed.
    Raises KeyError if the event names a bin not in ``bins``.
    """
    kw = dict(carts=carts, party_of=party_of, eligible=eligible, review_confidence=review_confidence, config=config,
              bodies=bodies, pending=pending or {}, strays=strays or {})
    if event.weak:
        ev = hand_evidence(event, hands, bins, config, eligible=eligible)
        if len(ev) == 0 or float(ev.score.max()) < config.weak_hand_min:
            return Decision(None, None, None, 0, 0.0, 0.0, 0.0, False,
                            f"a weak loss of {-event.delta_g:.1f} g that no shopper's hand reached into: load-cell "
                            f"noise", (), (), noise=True)
    if bodies is None or not config.repair_id_switches:
        return _decide(event, hands, bins, planogram, kw)
    raw = hands
    hands, swaps = identity.repair(raw, bodies, event.t_start - config.pad_s, event.t_end + config.pad_s,
                                   tracks=eligible, involving=_near_tracks(event, raw, bins, config, eligible))
    decision = _decide(event, hands, bins, planogram, kw)
    t0, t1 = event.t_start - config.pad_s, event.t_end + config.pad_s
    doubtful = [sw for sw in swaps if not sw.end_seen and sw.t_from <= t1 and sw.t_to > t0]
    if not doubtful or decision.review or not decision.changes:
        return decision
    # a switch whose end was not seen (still on, or ended after max_swap_s for want of a visible end): it may have
    # begun (the repair holds), or ended unseen before the event, or been the end of one whose start was missed
    # (the labels were right all along): when the readings without it give a different cart, people decide
    sure = [sw for sw in swaps if sw.end_seen]
    alt = _decide(event, identity.apply_swaps(raw.between(t0, t1), sure), bins, planogram, kw)
    if sorted(alt.changes) == sorted(decision.changes) or alt.review:
        return decision
    pair = doubtful[0]
    how = ("its end was not seen" if math.isfinite(pair.t_to) else "or switched back: the switch's start or end was "
           "not seen")
    return replace(decision, review=True,
                   reason=f"tracks {pair.a} and {pair.b} may have switched ids at {pair.t_from:.1f} s ({how}), and "
                          f"the two readings give different carts: " + decision.reason)


def _near_tracks(event: _Event, hands: TrackObservations, bins: BinGeometry, config: FusionConfig,
                 eligible: Sequence[str] | None) -> list[str]:
    """Tracks with a hand sighting that :func:`hand_evidence` can use for ``event``: within the padded window,
    scored at least ``min_hand_score`` and within :func:`candidate_reach_m` of a bin of the event (farther hands never count,
    whatever their label). Only swaps that can relabel these sightings matter to the decision."""
    w = wrist_ray_hands(hands.between(event.t_start - config.pad_s, event.t_end + config.pad_s), event.bin_codes,
                        bins, config)
    w = w[(w.score >= config.min_hand_score) & member(w.keypoint, HAND_KEYPOINTS)]
    if eligible is not None:
        w = w[member(w.track_id, eligible)]
    if len(w) == 0:
        return []
    d = np.min(np.stack([bins.distance(w.xyz, code, config.clearance_m, config.sigma_m / config.along_sigma_m)
                         for code in event.bin_codes]), axis=0)
    return sorted({str(x) for x in w.track_id[d <= candidate_reach_m(event, config) + 1e-9]})


def _decide(event: weight.ShelfEvent, hands: TrackObservations, bins: BinGeometry, planogram: weight.Planogram,
            kw: dict) -> Decision:
    """:func:`decide_event` once the hands' ids are settled: the event whole, or cut into two takes."""
    config, review_confidence = kw["config"], kw["review_confidence"]
    carts, party_of = kw["carts"], kw["party_of"]
    # one unit moves at one moment: read the hands at its start, also in the cuts of such an event; the cuts of an
    # event of several units keep the whole reading (two units straddling two plates, taken one after the other,
    # cut plate by plate read as one unit on each plate, both changing from the first take on)
    onset = _one_unit(event)
    whole = _decide_whole(event, hands, bins, planogram, onset=onset, **kw)
    several = abs(whole.quantity) >= 2 or len(whole.shares) > 1
    if (not config.partition or len(event.parts) < 2
            or not (whole.review or whole.product < config.partition_below or several)):
        return whole
    best: tuple[float, Decision, Decision, tuple, tuple] | None = None
    kw_part = {**kw, "review_confidence": 0.0}
    for a, b in _cuts(event, bins, config.partition_gap_s):
        da = _decide_whole(weight.sub_event(event, a, planogram, max_quantity=config.max_quantity), hands, bins,
                           planogram, onset=onset, **kw_part)
        if not da.changes or len(da.shares) != 1:
            continue
        db = _decide_whole(weight.sub_event(event, b, planogram, max_quantity=config.max_quantity), hands, bins,
                           planogram, onset=onset, **kw_part)
        if not db.changes or len(db.shares) != 1:
            continue
        joint = _joint_parts(da, db, carts, party_of or {}, config)
        if joint is not None and (best is None or joint[0] > best[0]):
            best = (*joint, a, b)
    if best is None or best[0] < review_confidence or (not whole.review and best[0] <= whole.confidence):
        return whole
    conf, da, db, a, b = best
    how = "one after the other" if max(p.t_end for p in a) < min(p.t_start for p in b) else "side by side"
    return replace(da, confidence=conf, attribution=min(da.attribution, db.attribution),
                   product=min(da.product, db.product), candidates=whole.candidates, options=whole.options,
                   reason=f"two takes {how}: {_where(a, event.t_start)} — {da.reason}; {_where(b, event.t_start)} — "
                          f"{db.reason}",
                   parts=(da, db))


def _where(parts: Sequence[weight.BinChange], t0: float) -> str:
    """Bins and interval of a take, in seconds from ``t0`` (the event's start), for a review reason."""
    codes = list(dict.fromkeys(p.code for p in parts))
    return ",".join(codes) + f" ({min(p.t_start for p in parts) - t0:.1f}–{max(p.t_end for p in parts) - t0:.1f} s)"


def _joint_parts(da: Decision, db: Decision, carts: Holdings, party_of: Mapping[str, str], config: FusionConfig
                 ) -> tuple[float, Decision, Decision] | None:
    """Who did each of two parts of a merged event, decided jointly: P(a by tₐ, b by t_b) ∝ Pₐ(tₐ) · P_b(t_b) ·
    (``same_track_prior`` when tₐ = t_b), over each part's candidate posteriors plus "nobody" (the rest of its
    mass). One shopper taking from two neighbouring groups of plates at the same moment is rarer than two
    shoppers side by side (the labelled AutoCheckout events: 3 of 237 hold two products). The confidence is the
    best pair's share times both parts' product posteriors; a put-back share must be held by its track's party.
    Returns (confidence, part a, part b), or None when no pair of real tracks is feasible or either part is
    an identity doubt."""
    if da.review or db.review or da.awaits_review or db.awaits_review:  # decided with threshold 0: only an
        return None                                                      # identity doubt or infeasibility is left
    pa = {c.track_id: c.posterior for c in da.candidates}
    pb = {c.track_id: c.posterior for c in db.candidates}
    na, nb = max(1.0 - sum(pa.values()), 0.0), max(1.0 - sum(pb.values()), 0.0)
    pairs = [(wa * wb * (config.same_track_prior if ta == tb else 1.0), ta, tb)
             for ta, wa in pa.items() for tb, wb in pb.items()]
    total = sum(w for w, _, _ in pairs) + na * (sum(pb.values()) + nb) + nb * sum(pa.values())
    if total <= 0:
        return None
    for w, ta, tb in sorted(pairs, key=lambda x: -x[0]):
        parts = []
        for d, t in ((da, ta), (db, tb)):
            q = d.quantity
            holder = _holder(t, d.barcode, q, carts, party_of)
            if q < 0 and party_holdings(t, carts, party_of).get(d.barcode, 0) < -q:
                break
            parts.append(replace(d, track_id=t, charge_track=holder, shares=((holder, q),)))
        if len(parts) == 2:
            return w / total * da.product * db.product, parts[0], parts[1]
    return None


def _cuts(event: weight.ShelfEvent, bins: BinGeometry, gap_s: float
          ) -> list[tuple[tuple[weight.BinChange, ...], tuple[weight.BinChange, ...]]]:
    """Every way to cut a merged event's changes (``event.parts``) into two takes: by place, into two runs of
    neighbouring bins along the shelf (bins ordered by their centre's coordinate along the shelf axis; all of a
    bin's changes on one side), and by time, into the changes that settled before a moment and those that began
    at least ``gap_s`` seconds after it (one shopper's take after another's on the same plates: a plate that
    settled between two changes was touched twice)."""
    idx = {p.code: bins.index[p.code] for p in event.parts}
    along = {c: float(bins.centre[i, 0] * math.cos(bins.yaw[i]) + bins.centre[i, 1] * math.sin(bins.yaw[i]))
             for c, i in idx.items()}
    codes = sorted(idx, key=lambda c: along[c])
    out = [(tuple(p for p in event.parts if p.code in codes[:k]), tuple(p for p in event.parts if p.code in codes[k:]))
           for k in range(1, len(codes))]
    by_time = sorted(event.parts, key=lambda p: (p.t_start, p.t_end))
    for k in range(1, len(by_time)):
        early, late = by_time[:k], by_time[k:]
        if max(p.t_end for p in early) + gap_s <= min(p.t_start for p in late):
            cut = (tuple(early), tuple(late))
            if not any(set(cut[0]) == set(a) for a, _ in out):
                out.append(cut)
    return out


def _one_unit(event: weight.ShelfEvent) -> bool:
    """Whether the sensors explain ``event`` best as one unit taken or put back (its first hypothesis that is not
    the unexplained outcome; a disturbance or an event with none: False). One unit moves at one moment; an event
    of several units may be several takes over its length (two shoppers one after the other on one plate)."""
    if event.disturbance:
        return False
    best = next((h for h in event.hypotheses if not h.unexplained), None)
    return best is not None and abs(int(best.quantity)) == 1


def _decide_whole(event: weight.ShelfEvent, hands: TrackObservations, bins: BinGeometry,
                  planogram: weight.Planogram, *, carts: Holdings, party_of: Mapping[str, str] | None,
                  eligible: Sequence[str] | None, review_confidence: float, config: FusionConfig,
                  bodies: TrackObservations | None, pending: Holdings, strays: Holdings,
                  onset: bool | None = None) -> Decision:
    """:func:`decide_event` for the event taken whole (one take, or one product split between two shoppers).
    ``onset``: read the hands at the change's start (:func:`hand_evidence`); None: when the event is one unit
    (:func:`_one_unit`)."""
    party_of = party_of or {}
    ev = hand_evidence(event, hands, bins, config, eligible=eligible,
                       onset=_one_unit(event) if onset is None else onset)
    if bodies is not None and config.hidden_prior > 0 and not getattr(event, "weak", False):
        # a weak event (the reach look's) exists because a hand was seen reaching in: its candidates are the hands
        # seen (the store loop bills a party without waiting for such an event where no hand of theirs came near)
        ev = hidden_hands(ev, event, hands, bodies, bins, config, eligible=eligible)
    if bodies is not None and config.walking_factor < 1:
        from .fusion_activity import walking_hands

        ev = walking_hands(ev, event, bodies, config)
    s0 = 0.5 * math.exp(-config.nobody_m ** 2 / (2 * config.sigma_m ** 2))
    tracks = [str(t) for t in ev.track_id]
    held = {t: party_holdings(t, carts, party_of) for t in tracks}
    maybe = {t: party_holdings(t, pending, party_of) for t in tracks}
    if event.delta_g > 0:
        opts = _putback_options(event, planogram, {b for h in (*held.values(), *maybe.values())
                                                   for b, q in h.items() if q > 0}, config)
    else:
        opts = _pick_options(event, planogram, strays, config)
    L = np.array([o[2] for o in opts], dtype=np.float64)
    unexplained = np.array([o[0] == weight.UNEXPLAINED for o in opts])
    K, H = len(tracks), len(opts)
    qprior = np.array([1.0 if o[1] == 0 else config.quantity_prior[min(abs(o[1]), len(config.quantity_prior)) - 1]
                       for o in opts])
    L = L * qprior
    feas = np.ones((K, H))
    infeasible_kj = np.zeros((K, H), dtype=bool)
    awaits_kj = np.zeros((K, H), dtype=bool)
    for k, t in enumerate(tracks):
        for j, (code, q, _) in enumerate(opts):
            if q < 0 and held[t].get(code, 0) < -q:
                if held[t].get(code, 0) + maybe[t].get(code, 0) >= -q:
                    feas[k, j] = config.pending_prior
                    awaits_kj[k, j] = True
                else:
                    feas[k, j] = config.infeasible_prior
                    infeasible_kj[k, j] = True
    feas *= _where_the_hand_was(event, opts, ev, bins, planogram, config)
    feas *= _others_took_nothing(ev, opts, config)
    off = _off_its_facing(event, opts, planogram, config, strays)
    # what the off-facing factor takes away goes to "something not listed" (one of each product: a cut of the
    # event explains it), so that a whole q × P no longer looks sure for want of a rival
    elsewhere = float((ev.score[:, None] * L[None, :] * feas * (1.0 - off)[None, :]).sum())
    feas *= off[None, :]
    joint = np.vstack([ev.score[:, None] * L[None, :] * feas, s0 * L[None, :]])  # (K + 1, H), last row: nobody
    splits = _splits(tracks, ev, opts, L / qprior * off, held, config)
    total = float(joint.sum()) + sum(w for w, *_ in splits) + elsewhere
    post_track = joint.sum(axis=1) / total
    post_opt = joint.sum(axis=0) / total
    cands = tuple(Candidate(tracks[k], float(ev.distance_m[k]), float(ev.t_closest[k]), float(ev.score[k]),
                            float(ev.motion_m[k]), float(post_track[k]), tuple(ev.hand_xyz[k].tolist()))
                  for k in range(K))
    options = tuple(sorted((Option(o[0], o[1], float(L[j]), float(post_opt[j])) for j, o in enumerate(opts)),
                           key=lambda o: -o.posterior))
    real = joint[:K].copy()
    real[:, unexplained] = 0.0
    if K == 0 or not real.any():
        why = ("no shopper was in the store (no open visit) during the event"
               if K == 0 and eligible is not None and len(eligible) == 0
               else "no eligible shopper's hand came near the bin" if K == 0
               else "the weight change matches no product facing these bins or held by the shoppers near")
        return Decision(tracks[0] if K else None, None, None, 0, 0.0, float(post_track[0]) if K else 0.0,
                        float(post_opt[unexplained].sum()), True, why, cands, options)
    k, j = np.unravel_index(int(np.argmax(real)), real.shape)
    track, (code, q, _) = tracks[k], opts[j]
    conf = float(real[k, j] / total)
    shares = ((track, int(q)),)
    infeasible, awaits = bool(infeasible_kj[k, j]), bool(awaits_kj[k, j])
    if splits and splits[0][0] > real[k, j]:
        w, code, shares = splits[0]
        q = sum(x for _, x in shares)
        track, conf, infeasible, awaits = shares[0][0], float(w / total), False, False
    shares = tuple((_holder(t, code, x, carts, party_of), x) for t, x in shares)
    charge = shares[0][0]
    like = float(L[[o[0] for o in opts].index(code)])
    reason = _hand_reason(cands) + f"; {code} × {q:+d} (weight likelihood {like:.2f})"
    if len(shares) > 1:
        reason += "; split between " + " and ".join(f"{t} ({x:+d})" for t, x in shares)
    elif charge != track:
        reason += f"; party member {charge} holds it"
    if awaits:
        reason += "; its pick awaits review: applied once that is resolved"
    doubt = bodies is not None and math.isfinite(config.id_jump_speed_m_s) and identity_jumps(
        bodies, [t for t, _ in shares], event.t_start - config.id_window_s, event.t_end + config.id_window_s, config)
    review = conf < review_confidence or infeasible or bool(doubt)
    if review:
        reason = (f"confidence {conf:.3f} below {review_confidence:.2f}: " if conf < review_confidence
                  else "put-back of an item the shopper's party does not hold: " if infeasible
                  else f"track {doubt[0]} jumped (a possible id switch with a neighbour): ") + reason
    return Decision(track, charge, code, int(q), conf, float(post_track[tracks.index(track)]),
                    float(post_opt[[o[0] for o in opts].index(code)]), review, reason, cands, options, shares,
                    awaits_review=awaits and not review)


def identity_jumps(bodies: TrackObservations, tracks: Sequence[str], t0: float, t1: float,
                   config: FusionConfig = FusionConfig()) -> list[str]:
    """Tracks among ``tracks`` whose floor position (``neck`` keypoints, else ``head``) moves faster than
    ``id_jump_speed_m_s`` between two sightings at most ``0.3`` s apart within ``[t0, t1]`` (s UTC) — more than a
    person walks or turns (≤ 2 m/s), what a tracker's id switch between neighbours looks like. Source of the
    speed: walking speed 1.2–1.5 m/s plus the body keypoint noise of the store's tracker (a few cm).

    Off by default (``FusionConfig.id_jump_speed_m_s = inf``): on the simulator an id switch between neighbours
    less than 0.6 m apart is a jump no larger than 0.3 s of walking plus 10 Hz keypoint noise, so a threshold that
    caught half the switches (2.5 m/s) sent a fifth of all events to review, and one that spared the reviewers
    (4 m/s) caught few. Kept as a knob for trackers with less noise or higher frame rates."""
    w = bodies[(bodies.t >= t0) & (bodies.t <= t1)]
    out = []
    for name in ("neck", "head"):
        k = w[w.keypoint == name]
        if len(k) == 0:
            continue
        for track in tracks:
            m = k[k.track_id == track]
            if len(m) < 2:
                continue
            order = np.argsort(m.t, kind="stable")
            t, xy = m.t[order], m.xyz[order, :2]
            dt = np.diff(t)
            v = np.hypot(*np.diff(xy, axis=0).T) / np.maximum(dt, 1e-3)
            if np.any((dt <= 0.3) & (v > config.id_jump_speed_m_s)):
                out.append(track)
        break
    return out


def _holder(track: str, code: str, q: int, carts: Holdings, party_of: Mapping[str, str]) -> str:
    """The track whose cart takes ``q`` of ``code``: ``track`` itself, or for a put-back of more than it holds, the
    member of its party who holds the most of it (when that is enough)."""
    if q >= 0 or carts.get(track, {}).get(code, 0) >= -q:
        return track
    key = party_of.get(track, track)
    holders = sorted(((carts[m].get(code, 0), m) for m in carts if party_of.get(m, m) == key), reverse=True)
    return holders[0][1] if holders and holders[0][0] >= -q else track


def _splits(tracks: list[str], ev: HandEvidence, opts: list[tuple[str, int, float]], L: np.ndarray,
            held: Mapping[str, Mapping[str, int]], config: FusionConfig) -> list[tuple[float, str, tuple]]:
    """Two shoppers at one shelf at once: an event of |q| ≥ 2 units of one product may be q₁ by one track and
    q₂ by another (their changes merged into one event). Scored ``s_a · s_b · L · prior(q₁) · prior(q₂) ·
    split_prior`` over the three best tracks; returns [(weight, barcode, ((track, q₁), (track, q₂)))], best
    first. Put-back shares must be held by the track's party."""
    out = []
    top = list(range(min(3, len(tracks))))
    qp = config.quantity_prior
    for j, (code, q, _) in enumerate(opts):
        if abs(q) < 2:
            continue
        sign = 1 if q > 0 else -1
        for a in top:
            for b in top:
                if b <= a:
                    continue
                for q1 in range(1, abs(q)):
                    q2 = abs(q) - q1
                    if sign < 0 and (held[tracks[a]].get(code, 0) < q1 or held[tracks[b]].get(code, 0) < q2):
                        continue
                    w = (ev.score[a] * ev.score[b] * L[j] * qp[min(q1, len(qp)) - 1] * qp[min(q2, len(qp)) - 1]
                         * config.split_prior)
                    out.append((float(w), code, ((tracks[a], sign * q1), (tracks[b], sign * q2))))
    out.sort(key=lambda x: -x[0])
    return out


def eligible_tracks(entries: Mapping[str, float], exits: Mapping[str, float], event: _Event, *, now: float,
                    settle_s: float) -> list[str]:
    """Tracks that may have caused ``event`` when it is decided at ``now`` (s UTC): entered (``entries``: track →
    entry time) by ``now`` and not gone, i.e. no exit (``exits``: track → exit time, those known by ``now``) or
    one at most ``settle_s`` seconds before the event began (a shopper leaving while the plate still settles)."""
    out = []
    for track, t_in in entries.items():
        if t_in > now:
            continue
        t_out = exits.get(track)
        if t_out is None or event.t_start <= t_out + settle_s:
            out.append(track)
    return out
