"""Knobs of the store-session simulator (``carts.offline.simulation``): :class:`SimConfig`, the difficulty levels
(:data:`DIFFICULTIES`) and the measured constants behind their defaults and the simulated store's geometry."""
from __future__ import annotations

from dataclasses import dataclass, replace

from store.checks import check_numbers

#: Quantiles (0, 5, 25, 50, 75, 95, 100 %) of per-plate noise sd, grams, measured on the 240 BENCHMARK-1 plates
#: (sd of the residual after a 1 s rolling mean; carts.offline.simulation docs; the datasets README quotes 0.3–5 g for
#: quiet plates). The simulator draws each plate's sd from this distribution, split (in variance) between white
#: noise and a slow wander by :data:`WANDER_SHARE`.
PLATE_SD_QUANTILES_G = (0.5, 0.66, 0.97, 1.4, 3.44, 9.69, 14.65)
#: Share (0–1) of a plate's noise variance in a slow wander (an AR(1) with a 0.5 s time constant), the rest white
#: noise. Measured on the real plates (issue #18; docs/accuracy.md, change 9): the sd of the difference of two 1.5 s
#: medians 2.1 s apart (what a level change is measured against) is 0.17 g median / 0.84 g 95th percentile / 2.8 g
#: at most over cps-test-01's 333 quiet plates and 0.23 / 1.28 / 3.4 g over BENCHMARK-1's 238, and the rms change
#: of 0.5 s medians does not grow from 1 s to 16 s apart (cps-test-01: 0.26 → 0.29 g median; BENCHMARK-1: 0.48 →
#: 0.48 g at 8 s): no wander shows. With share 0 the simulator's plates give 0.29 / 1.9 / 3.1 g (the per-sample sd
#: is drawn from BENCHMARK-1's, the noisier of the two); the half share it had gave 0.96 / 6.6 / 10.3 g, 4–5 times
#: the real plates'. Slower drift is the linear ``drift_g_per_min``.
WANDER_SHARE = 0.0
#: Load-cell quantisation step, grams (BENCHMARK-1: the smallest steps between distinct readings are 0.24–0.25 g).
QUANTUM_G = 0.24
#: Crosstalk measured on BENCHMARK-1's real 623 g pick: the adjacent plate settled 4 g lower (0.6 %), the plate two
#: away 9–15 g lower (1.5–2.4 %).
CROSSTALK_NEAR = 0.006
CROSSTALK_TWO = 0.02
#: Event mix of the 237 hand-labelled AutoCheckout events (labels/events_v14.json): 56 put-backs; 5 picks of 2–3
#: units of one product; 3 events with two products; 119 on one plate, 105 on two, 13 on three or four.
LABEL_PUTBACK_SHARE = 56 / 237
LABEL_MULTI_UNIT_SHARE = 5 / 237
LABEL_MIXED_SHARE = 3 / 237
LABEL_TWO_PLATE_SHARE = 118 / 237
#: Events per shopper in the labels: median 4 (56 shoppers, 237 events).
LABEL_EVENTS_PER_SHOPPER = 237 / 56
#: Lightest product shoppers take: a weight-only store cannot see lighter ones (the detector's 10 g floor plus
#: noise; AIM3S and CMU used the same 10 g floor).
MIN_PICK_WEIGHT_G = 20.0
#: Entry and exit points of the simulated store front (metres, store frame of the AutoCheckout store: the
#: gondolas stand along y ≈ 0.3 and x ≈ 4.7; the aisle is y ∈ [−2.4, −0.3]).
ENTRY_XY = (0.6, -2.4)
EXIT_XY = (4.4, -2.4)
#: Tiled store (``SimConfig.rooms`` > 1): room k is the NanoStore shifted ``k · ROOM_PITCH_M`` along x, so rooms
#: stand side by side as parallel aisles opening onto one shared front (the NanoStore's floor is 0–4.95 m in x:
#: 6 m leaves a 1.05 m passage behind gondola 5, and a room is ~6 m × 3.4 m ≈ 20 m² with its share of the front).
ROOM_PITCH_M = 6.0
#: y of the front corridor along which shoppers walk from one room to another (between the gate zones at
#: y ≈ −2.4 and gondola 5's lowest bin at y ≈ −1.2; 0.4 m clear of it).
CORRIDOR_Y = -1.8
#: Share of a shopper's actions in a tiled store taken in a neighbouring room (the rest stay in the room they are
#: in): our guess, so that shoppers visit a few aisles, not the whole store.
ROOM_CHANGE_SHARE = 0.3
#: Seconds between two shoppers admitted by one entry gate: a gate is a turnstile that lets one person through a
#: cycle. Waist-high turnstiles with a credential reader are rated 20–40 passages a minute (Custom Technology's and
#: Hayward Turnstiles' throughput notes; ~20 a minute in ordinary use): 40 a minute is 1.5 s, the shortest real
#: spacing, and the 1.5 s the simulator already keeps between a party's members, who pass one after the other.
GATE_CYCLE_S = 1.5
#: Floor of a product's relative unit-weight sd in the simulated catalogue (a donor with two equal weighings
#: does not make a product exact).
MIN_REL_SD = 0.005
T0 = 1767225600.0  # 2026-01-01T00:00:00Z: simulated sessions start here (+ one day per seed)


@dataclass(frozen=True)
class SimConfig:
    """Knobs of :func:`simulate`. Times in seconds, lengths in metres, weights in grams, shares in [0, 1].

    Session: ``shoppers`` (parties count their members), ``minutes`` of store time, ``seed``, ``difficulty``
    (a label). Sampling: ``rate_hz`` 60 (AutoCheckout plates), ``track_hz`` 10 (the store's own tracker gave
    ~11 Hz).

    Event mix (defaults from the labelled AutoCheckout events, constants above): ``events_per_shopper``,
    ``putback_share``, ``misplaced_share`` (share of put-backs into a bin that does not face the item; the labels
    do not say, 0.25 is our guess), ``multi_unit_share``, ``mixed_share``, ``two_plate_share`` (an item straddles
    two plates), ``touch_share`` (a reach that takes nothing), ``party_share`` (share of shoppers that enter as a
    party of 2–3 on one account), ``handoff_share`` (share of a party member's put-backs that return an item
    another member picked), ``crowd_share`` (share of picks at the one busy gondola), ``reach_across_share``
    (share of picks made reaching past a shopper who stands at the shelf), ``exit_settle_share`` (share of
    shoppers whose last pick still swings when they leave).

    Weight errors: ``noise_scale`` (× the BENCHMARK-1 plate sd), ``drift_g_per_min`` (sd of each plate's linear
    drift), ``spikes_per_plate_hour`` and ``spike_g`` (single-sample outliers up to that size), ``drop_share``
    (share of 12-sample messages lost), ``crosstalk_scale`` (× the measured crosstalk), ``jostle`` (hand jostle
    amplitude as a share of the item weight), ``swing_s`` (time constant of the swing after the hand leaves),
    ``plate_gain_sd`` (sd of each plate's calibration gain error: every change on it reads ``1 + N(0, sd)`` times
    its true weight; :data:`sensors.weight.PLATE_GAIN_SD_REL` gives the source of the default), ``wander_share``
    (share of each plate's noise variance in the slow AR(1) wander, the rest white; :data:`WANDER_SHARE` gives
    the source of the default).

    Vision errors: ``position_noise_m`` (body keypoints, per frame) and ``position_bias_m`` (per track),
    ``hand_noise_m`` (wrists, per frame and axis), ``missed_frame_share``, ``missed_hand_share`` (a wrist not
    detected, e.g. hidden inside the shelf), ``occlusions_per_min`` and ``occlusion_s`` (mean gap of a whole
    track), ``id_switch_share`` (chance that two shoppers who come within 0.6 m swap track ids for 1–4 s).

    Store size: ``rooms`` (default 1, the NanoStore as it is): the store is the NanoStore's gondolas, bins,
    planogram and zones tiled ``rooms`` times side by side along x (:func:`tile_store`, :data:`ROOM_PITCH_M`),
    one catalogue, one entry and one exit gate per room along the shared front. A party enters at a uniformly
    drawn room's gate, each action stays in the room the shopper is in or (:data:`ROOM_CHANGE_SHARE`) moves to a
    neighbouring one through the front corridor, and the shopper leaves through the exit gate of the room of their
    last action. ~20 m² per room: size it for about 0.3–0.5 shoppers per m² at the busiest moment.

    Gates: ``gate_cycle_s`` (seconds; :data:`GATE_CYCLE_S` gives the source of the default): an entry gate admits
    one shopper per cycle, so a shopper arriving at a gate that let someone in less than this long ago enters
    once the cycle is over (queues behind them); 0: shoppers enter the moment they arrive, however close.

    Raises ValueError for a non-positive count or duration or a share outside [0, 1].
    """

    shoppers: int = 20
    minutes: float = 5.0
    seed: int = 0
    difficulty: str = "default"
    rate_hz: float = 60.0
    track_hz: float = 10.0
    events_per_shopper: float = LABEL_EVENTS_PER_SHOPPER
    putback_share: float = LABEL_PUTBACK_SHARE
    misplaced_share: float = 0.25
    multi_unit_share: float = LABEL_MULTI_UNIT_SHARE
    mixed_share: float = LABEL_MIXED_SHARE
    two_plate_share: float = LABEL_TWO_PLATE_SHARE
    touch_share: float = 0.1
    party_share: float = 0.15
    handoff_share: float = 0.5
    crowd_share: float = 0.25
    reach_across_share: float = 0.08
    exit_settle_share: float = 0.05
    noise_scale: float = 1.0
    drift_g_per_min: float = 1.0
    spikes_per_plate_hour: float = 2.0
    spike_g: float = 300.0
    drop_share: float = 0.002
    crosstalk_scale: float = 1.0
    jostle: float = 0.15
    swing_s: float = 0.2
    plate_gain_sd: float = 0.025
    wander_share: float = WANDER_SHARE
    position_noise_m: float = 0.05
    position_bias_m: float = 0.03
    hand_noise_m: float = 0.03
    missed_frame_share: float = 0.05
    missed_hand_share: float = 0.1
    occlusions_per_min: float = 0.5
    occlusion_s: float = 1.0
    id_switch_share: float = 0.02
    rooms: int = 1
    gate_cycle_s: float = GATE_CYCLE_S

    def __post_init__(self) -> None:
        check_numbers(self, ("rooms", "shoppers"), low=1, integer=True)
        check_numbers(self, ("minutes", "rate_hz", "track_hz", "swing_s", "occlusion_s", "events_per_shopper"),
                      low=0, low_open=True)
        check_numbers(self, ("putback_share", "misplaced_share", "multi_unit_share", "mixed_share", "two_plate_share",
                             "touch_share", "party_share", "handoff_share", "crowd_share", "reach_across_share",
                             "exit_settle_share", "drop_share", "missed_frame_share", "missed_hand_share",
                             "id_switch_share", "wander_share"), low=0, high=1)
        check_numbers(self, ("noise_scale", "drift_g_per_min", "spikes_per_plate_hour", "spike_g", "crosstalk_scale",
                             "jostle", "plate_gain_sd", "position_noise_m", "position_bias_m", "hand_noise_m",
                             "occlusions_per_min", "gate_cycle_s"), low=0)
        check_numbers(self, tuple(name for name in self.__dataclass_fields__ if isinstance(getattr(self, name), float)))

    @classmethod
    def at(cls, difficulty: str, **overrides) -> "SimConfig":
        """The config of a difficulty level (:data:`DIFFICULTIES`) with ``overrides``. Raises KeyError for an
        unknown level."""
        return replace(cls(difficulty=difficulty, **DIFFICULTIES[difficulty]), **overrides)


#: Difficulty levels. ``default`` is the measured store (BENCHMARK-1 noise, label-shaped event mix, a tracker of
#: the quality the AutoCheckout store's own gave); ``easy`` halves the errors; ``hard`` doubles the vision errors,
#: raises weight noise by half and makes crowds, parties, misplaced put-backs and reach-across far more common.
DIFFICULTIES: dict[str, dict] = {
    "easy": {"noise_scale": 0.5, "hand_noise_m": 0.015, "position_noise_m": 0.025, "missed_frame_share": 0.02,
             "missed_hand_share": 0.05, "occlusions_per_min": 0.2, "id_switch_share": 0.0, "crowd_share": 0.1,
             "reach_across_share": 0.02, "spikes_per_plate_hour": 1.0},
    "default": {},
    "hard": {"noise_scale": 1.5, "hand_noise_m": 0.06, "position_noise_m": 0.1, "missed_frame_share": 0.1,
             "missed_hand_share": 0.2, "occlusions_per_min": 1.0, "occlusion_s": 1.5, "id_switch_share": 0.05,
             "crowd_share": 0.5, "reach_across_share": 0.2, "party_share": 0.3, "misplaced_share": 0.4,
             "multi_unit_share": 0.06, "exit_settle_share": 0.1, "spikes_per_plate_hour": 6.0, "jostle": 0.3,
             "drift_g_per_min": 3.0},
}
