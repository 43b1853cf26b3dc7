"""Store-session simulator with known truth (``manage.py simulate``; pure NumPy, no Django).

It writes a recording (docs/recording-format.md) of a real store layout — the AiFi NanoStore of the AutoCheckout
data (``store_meta``, converted by ``carts.offline.autocheckout.convert_layout``) with its real catalogue and planogram
(BENCHMARK-1 ``products.json``/``planogram.json``) — in which simulated shoppers walk between shelves, pick, put
back (into the right bin or a wrong one), take several units at once, come in parties and hand items to each
other, crowd at one shelf, reach across one another and leave while a plate still swings. Beside the recording's
``truth.json`` it writes ``truth_events.json``: every true shelf interaction with its scenario labels.

Every error source has a knob in :class:`SimConfig` (documented there, with the measurement behind each default),
and three difficulty levels set them together (:data:`DIFFICULTIES`).

Weight model per plate (60 Hz, as the AutoCheckout controllers): raw level = tare + the units on it (not zeroed);
noise with the plate's sd drawn from the distribution of quiet-plate noise measured on BENCHMARK-1 (white; a
slow AR(1) wander takes ``wander_share`` of its variance, none on the real plates); a linear drift; 0.24 g quantisation; single-sample spikes; lost 12-sample messages (NaN);
crosstalk to plates one and two positions away (measured on BENCHMARK-1's real pick); and, around each
interaction, the hand's jostle while it touches the shelf and a damped swing after it leaves. Each unit of a
product weighs the catalogue mean times a real relative deviation resampled from the AIM3S repeated weighings
(``aim3s/product_info.json``), so a product's units spread as real ones do. Items straddle two plates as often as
the labelled AutoCheckout events show.

Vision model (10 Hz keypoints: head, neck, both wrists): body position noise plus a per-track bias, hand keypoint
noise, missed frames and missed hands, occlusion gaps, and id switches between shoppers who come close.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from scipy.signal import lfilter

from store.checks import check_numbers, check_rows
from store.recording import GateScan, ShelfSamples, TrackObservations, TruthLine, TruthReceipt, write_recording

TRUTH_EVENTS = "truth_events.json"

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
                             "occlusions_per_min"), low=0)
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


# --------------------------------------------------------------------------------------------- truth events
@dataclass(frozen=True)
class TruthEvents:
    """True shelf interactions of a simulated session (``truth_events.json``), one row per interaction.

    ``t`` (n,) float64 s UTC, when the weight moved; ``t_start``, ``t_end`` (n,) float64 s UTC, the hand at the
    shelf; ``track`` (n,) object str, the shopper who did it; ``party`` (n,) object str, the track of the party's
    lead (the track itself when alone); ``bins`` (n,) object tuples of bin codes whose weight changed;
    ``lines`` (n,) object tuples of (barcode, signed quantity: + taken, − put back); ``scenarios`` (n,) object
    tuples of labels (``pick``, ``put-back``, ``misplaced``, ``multi-unit``, ``mixed``, ``party``, ``handoff``,
    ``crowded``, ``reach-across``, ``exit-settle``). Raises ValueError on mismatched shapes.
    """

    t: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    track: np.ndarray
    party: np.ndarray
    bins: np.ndarray
    lines: np.ndarray
    scenarios: np.ndarray

    def __post_init__(self) -> None:
        check_rows(self, ("t_start", "t_end", "track", "party", "bins", "lines", "scenarios"), self.t.shape[0])

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def to_json(self) -> dict:
        """Plain JSON (the ``truth_events.json`` document)."""
        return {"events": [
            {"t": round(float(self.t[i]), 6), "t_start": round(float(self.t_start[i]), 6),
             "t_end": round(float(self.t_end[i]), 6), "track": str(self.track[i]), "party": str(self.party[i]),
             "bins": list(self.bins[i]), "lines": [{"barcode": b, "quantity": int(q)} for b, q in self.lines[i]],
             "scenarios": list(self.scenarios[i])} for i in range(len(self))]}

    @classmethod
    def from_json(cls, data: Mapping, source: str = TRUTH_EVENTS) -> "TruthEvents":
        """Parse a ``truth_events.json`` document. Raises ValueError naming ``source`` and the event (index from 0)
        when malformed: not an object with an ``events`` list, a missing or mistyped field, a quantity that is not
        an integer, bins or scenarios that are not lists of strings."""
        if not isinstance(data, Mapping) or not isinstance(data.get("events", []), list):
            raise ValueError(f"{source}: expected an object with an 'events' list")
        rows = data.get("events", [])
        cols: dict[str, list] = {k: [] for k in ("t", "t_start", "t_end", "track", "party", "bins", "lines",
                                                 "scenarios")}
        for i, r in enumerate(rows):
            try:
                if not isinstance(r, Mapping):
                    raise TypeError("not an object")
                bins, scen = r["bins"], r.get("scenarios", [])
                if not (isinstance(bins, list) and all(isinstance(b, str) for b in bins)):
                    raise TypeError("'bins' must be a list of bin codes")
                if not (isinstance(scen, list) and all(isinstance(x, str) for x in scen)):
                    raise TypeError("'scenarios' must be a list of labels")
                if not isinstance(r["lines"], list):
                    raise TypeError("'lines' must be a list")
                lines = []
                for x in r["lines"]:
                    q = x["quantity"]
                    if isinstance(q, bool) or not isinstance(q, int):
                        raise TypeError(f"quantity {q!r} is not an integer")
                    lines.append((str(x["barcode"]), int(q)))
                times = [float(r[k]) for k in ("t", "t_start", "t_end")]
                if not all(math.isfinite(v) for v in times):
                    raise ValueError("times must be finite")
            except KeyError as exc:
                raise ValueError(f"{source}: event {i} has no {exc.args[0]!r}") from None
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{source}: event {i} is malformed ({exc})") from None
            for k, v in zip(("t", "t_start", "t_end"), times):
                cols[k].append(v)
            cols["track"].append(str(r["track"]))
            cols["party"].append(str(r.get("party") or r["track"]))
            cols["bins"].append(tuple(bins))
            cols["lines"].append(tuple(lines))
            cols["scenarios"].append(tuple(scen))

        def obj(values):
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            return arr

        return cls(np.array(cols["t"], dtype=np.float64), np.array(cols["t_start"], dtype=np.float64),
                   np.array(cols["t_end"], dtype=np.float64), obj(cols["track"]), obj(cols["party"]),
                   obj(cols["bins"]), obj(cols["lines"]), obj(cols["scenarios"]))


def read_truth_events(path: str | Path) -> TruthEvents | None:
    """``<recording>/truth_events.json`` (or the file itself) → :class:`TruthEvents`; None when absent.
    Raises ValueError when malformed."""
    p = Path(path)
    if p.is_dir():
        p = p / TRUTH_EVENTS
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    return TruthEvents.from_json(data, source=str(p))


# --------------------------------------------------------------------------------------------- the store
@dataclass(frozen=True)
class SimStore:
    """What the simulator needs of a store: ``store`` (a ``store.json`` dict: layout, products, facings, zones);
    ``spread_groups``, one (m,) float64 array per AIM3S product weighed at least twice, of real relative unit-weight
    deviations (weighing / that product's mean − 1); ``donors``: barcode → the group whose spread its units get."""

    store: dict
    spread_groups: tuple[np.ndarray, ...]
    donors: Mapping[str, int]


def load_store(autocheckout: str | Path) -> SimStore:
    """The AiFi NanoStore from the AutoCheckout data folder (``store_meta/``, ``BENCHMARK-1/products.json`` and
    ``planogram.json``, ``aim3s/product_info.json``), with entry and exit zones at the store front.

    Raises FileNotFoundError naming a missing file (``carts.offline.autocheckout.AutoCheckoutError`` for a malformed one).
    """
    from carts.offline.autocheckout import convert_catalogue, convert_layout

    root = Path(autocheckout)
    for rel in ("store_meta/Plates.json", "BENCHMARK-1/products.json", "BENCHMARK-1/planogram.json",
                "aim3s/product_info.json"):
        if not (root / rel).exists():
            raise FileNotFoundError(f"{root / rel}: missing (the simulator reuses the real AutoCheckout store)")
    gondolas = convert_layout(root / "store_meta")
    info = root / "aim3s" / "product_info.json"
    products, facings = convert_catalogue(root / "BENCHMARK-1", info)
    groups = []
    for p in json.loads(info.read_text(encoding="utf-8"))["products"]:
        w = np.asarray(p.get("weights", []), dtype=np.float64)
        if w.size >= 2 and w.mean() > 0:
            groups.append(w / w.mean() - 1.0)

    def square(x, y, r=0.5):
        return [[x - r, y - r], [x + r, y - r], [x + r, y + r], [x - r, y + r]]

    # the store weighed its products: each gets a real spread donor, and its catalogue sd is the donor's
    rng = np.random.default_rng(20200422)
    donors = rng.integers(0, len(groups), size=len(products))
    products = [dict(p, unit_weight_sd_g=round(max(float(np.std(groups[d], ddof=1)), MIN_REL_SD)
                                               * p["unit_weight_g"], 2)) for p, d in zip(products, donors)]
    store = {"store": {"code": "walkout-sim", "name": "Simulated AiFi NanoStore", "currency": "usd"},
             "zones": [{"name": "entry", "kind": "entry", "polygon": square(*ENTRY_XY)},
                       {"name": "exit", "kind": "exit", "polygon": square(*EXIT_XY)}],
             "gondolas": gondolas, "products": products, "facings": facings}
    return SimStore(store=store, spread_groups=tuple(groups),
                    donors={p["barcode"]: int(d) for p, d in zip(products, donors)})


def tile_store(sim_store: SimStore, rooms: int) -> SimStore:
    """``sim_store`` with its floor tiled ``rooms`` times along x (:data:`ROOM_PITCH_M` apart): room k (from 0) has
    a copy of every gondola numbered ``g + k · G`` (G the number of gondolas of ``sim_store``) at x + k · pitch,
    its bins coded ``"<gondola>-<shelf>-<bin>"`` as the real ones, the same products in the same facings, and its
    own entry and exit zone at the same place in the room (named ``entry``/``exit`` in room 0, ``entry-<k+1>``/
    ``exit-<k+1>`` after). The catalogue is one. A real store that holds hundreds of shoppers has a bank of gates
    along its front, not one door: one gate pair per room keeps each gate's traffic what the NanoStore's is.
    ``rooms`` = 1 returns ``sim_store`` itself. Raises ValueError for ``rooms`` < 1 or gondola numbers that are
    not 1..G."""
    if rooms < 1:
        raise ValueError(f"tile_store: rooms must be ≥ 1, got {rooms}")
    if rooms == 1:
        return sim_store
    base = sim_store.store
    n_g = len(base["gondolas"])
    if sorted(g["number"] for g in base["gondolas"]) != list(range(1, n_g + 1)):
        raise ValueError("tile_store: the store's gondolas must be numbered 1..G")
    gondolas, facings, zones = [], [], []
    for k in range(rooms):
        dx = k * ROOM_PITCH_M
        code_of = {}
        for g in base["gondolas"]:
            number = g["number"] + k * n_g
            shelves = []
            for sh in g["shelves"]:
                bins = []
                for b in sh["bins"]:
                    code = f"{number}-{sh['number']}-{b['number']}"
                    code_of[b["code"]] = code
                    bins.append(dict(b, code=code, x=round(b["x"] + dx, 4)))
                shelves.append(dict(sh, bins=bins))
            gondolas.append(dict(g, number=number, x=round(g["x"] + dx, 4), shelves=shelves))
        facings += [dict(f, bin=code_of[f["bin"]]) for f in base["facings"]]
        for z in base["zones"]:
            zones.append(dict(z, name=z["name"] if k == 0 else f"{z['name']}-{k + 1}",
                              polygon=[[round(x + dx, 4), y] for x, y in z["polygon"]]))
    info = dict(base["store"], name=f"{base['store']['name']} × {rooms} rooms")
    store = dict(base, store=info, zones=zones, gondolas=gondolas, facings=facings)
    return replace(sim_store, store=store)


# --------------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class Simulation:
    """A simulated session: the recording's parts (``write_recording`` arguments) and the truth."""

    manifest: dict
    store: dict
    shelves: list[ShelfSamples]
    tracks: TrackObservations
    gates: list[GateScan]
    truth: list[TruthReceipt]
    events: TruthEvents
    config: SimConfig
    #: per truth event, the recogniser's likelihood of the taken product (``carts.offline.simulation_products``), None for
    #: events without one; None: recognition not simulated (the default)
    product_evidence: tuple | None = None


@dataclass
class _Bin:
    code: str
    gondola: int
    shelf: int
    number: int
    centre: np.ndarray   # (3,)
    along: np.ndarray    # (2,) unit vector along the shelf
    into: np.ndarray     # (2,) unit vector into the shelf
    depth: float
    products: tuple[str, ...]


@dataclass
class _Unit:
    barcode: str
    grams: float
    t_taken: float = -math.inf  # when a shopper last took it off a shelf (s UTC)


@dataclass
class _Plate:
    """One interaction's effect on one plate: a step of ``delta`` g at ``t`` with the hand there t0–t1."""

    code: str
    t: float
    delta: float
    t0: float
    t1: float
    swing_s: float


@dataclass
class _Shopper:
    track: str
    account: str
    lead: str
    waypoints: list = field(default_factory=list)   # (t, x, y, lateral_x, lateral_y)
    reaches: list = field(default_factory=list)     # (t0, t1, grasp xyz (3,), hand 0/1)
    stops: list = field(default_factory=list)       # (t0, t1, standing xy, bin code)
    held: list = field(default_factory=list)        # _Unit with the time it was picked
    t_enter: float = 0.0
    t_exit: float = 0.0
    room: int = 0          # the room (SimConfig.rooms) the shopper is in


class _World:
    def __init__(self, sim: SimStore, cfg: SimConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        st = sim.store
        self.products = {p["barcode"]: p for p in st["products"]}
        faced: dict[str, list[str]] = {}
        for f in st["facings"]:
            faced.setdefault(f["bin"], []).append(f["barcode"])
        self.bins: dict[str, _Bin] = {}
        for g in st["gondolas"]:
            for s in g["shelves"]:
                for b in s["bins"]:
                    yaw = b["yaw_rad"]
                    self.bins[b["code"]] = _Bin(b["code"], g["number"], s["number"], b["number"],
                                                np.array([b["x"], b["y"], b["z"]]),
                                                np.array([math.cos(yaw), math.sin(yaw)]),
                                                np.array([-math.sin(yaw), math.cos(yaw)]), b["depth_m"],
                                                tuple(faced.get(b["code"], ())))
        self.shelf_bins: dict[tuple[int, int], dict[int, str]] = {}
        for b in self.bins.values():
            self.shelf_bins.setdefault((b.gondola, b.shelf), {})[b.number] = b.code
        # each product gets a real spread donor; each bin starts with 4–10 units of its product
        self.donor = {code: sim.spread_groups[sim.donors[code]] for code in self.products}
        self.stock: dict[str, list[_Unit]] = {}
        for code, b in self.bins.items():
            self.stock[code] = [self.unit(p) for p in b.products for _ in range(int(rng.integers(4, 11)))]
        self.pickable = [c for c, b in self.bins.items()
                         if b.products and all(self.products[p]["unit_weight_g"] >= MIN_PICK_WEIGHT_G
                                               for p in b.products)]
        self.busy_gondola = 3
        # rooms of a tiled store (tile_store): gondolas g + k·G of room k
        self.per_room = max(1, len({b.gondola for b in self.bins.values()}) // cfg.rooms)
        self.room_of = {c: (b.gondola - 1) // self.per_room for c, b in self.bins.items()}
        self.stock_initial = {c: float(sum(u.grams for u in units)) for c, units in self.stock.items()}
        self.plates: list[_Plate] = []
        self.touches: list[_Plate] = []
        self.switches: list[tuple[str, str, float, float]] = []  # injected id switches (a, b, t_from, t_to)

    def gate_xy(self, xy: tuple[float, float], room: int) -> np.ndarray:
        """``ENTRY_XY`` or ``EXIT_XY`` in ``room``."""
        return np.array([xy[0] + room * ROOM_PITCH_M, xy[1]])

    def unit(self, barcode: str) -> _Unit:
        dev = float(self.rng.choice(self.donor[barcode]))
        return _Unit(barcode, float(self.products[barcode]["unit_weight_g"]) * (1.0 + dev))

    def standing(self, code: str) -> np.ndarray:
        b = self.bins[code]
        front = b.centre[:2] - (b.depth / 2) * b.into
        return front - 0.45 * b.into + self.rng.uniform(-0.08, 0.08) * b.along

    def grasp(self, code: str) -> np.ndarray:
        b = self.bins[code]
        front = b.centre[:2] - (b.depth / 2) * b.into
        xy = front - self.rng.uniform(0.04, 0.18) * b.into + self.rng.uniform(-0.03, 0.03) * b.along
        return np.array([xy[0], xy[1], b.centre[2] + self.rng.uniform(0.05, 0.2)])

    def neighbour(self, code: str, step: int) -> str | None:
        b = self.bins[code]
        return self.shelf_bins[(b.gondola, b.shelf)].get(b.number + step)

    def split(self, code: str, barcode: str) -> list[tuple[str, float]]:
        """Plates a unit of ``barcode`` taken from ``code`` rests on, with shares: an item may straddle two
        neighbouring plates of its own facing (the planogram gives most products 2–9 plates)."""
        if self.rng.random() < self.cfg.two_plate_share:
            for step in (1, -1) if self.rng.random() < 0.5 else (-1, 1):
                nb = self.neighbour(code, step)
                if nb is not None and barcode in self.bins[nb].products:
                    f = float(self.rng.uniform(0.25, 0.75))
                    return [(code, f), (nb, 1.0 - f)]
        return [(code, 1.0)]


def _walk(sh: _Shopper, t: float, xy: np.ndarray, lateral: np.ndarray, rng) -> float:
    last = sh.waypoints[-1]
    dist = float(np.hypot(xy[0] - last[1], xy[1] - last[2]))
    t_arr = t + dist / rng.uniform(0.8, 1.3)
    sh.waypoints.append((t_arr, float(xy[0]), float(xy[1]), float(lateral[0]), float(lateral[1])))
    return t_arr


def _go(world: _World, sh: _Shopper, t: float, xy: np.ndarray, lateral: np.ndarray, rng) -> float:
    """:func:`_walk` to ``xy``; in a tiled store, from one room to another along the front corridor
    (:data:`CORRIDOR_Y`), not through the gondolas between."""
    if world.cfg.rooms > 1:
        last = sh.waypoints[-1]
        here = min(max(int(last[1] // ROOM_PITCH_M), 0), world.cfg.rooms - 1)
        there = min(max(int(xy[0] // ROOM_PITCH_M), 0), world.cfg.rooms - 1)
        if here != there:
            along = np.array([1.0, 0.0])
            t = _walk(sh, t, np.array([last[1], min(last[2], CORRIDOR_Y)]), along, rng)
            t = _walk(sh, t, np.array([xy[0], min(xy[1], CORRIDOR_Y)]), along, rng)
    return _walk(sh, t, xy, lateral, rng)


def _stay(sh: _Shopper, t: float) -> None:
    w = sh.waypoints[-1]
    sh.waypoints.append((t, w[1], w[2], w[3], w[4]))


def _plan(world: _World, sh: _Shopper, t_enter: float, t_limit: float, others: list[_Shopper],
          party: list[_Shopper], truth: list[dict]) -> None:
    cfg, rng = world.cfg, world.rng
    sh.t_enter = t_enter
    entry = world.gate_xy(ENTRY_XY, sh.room)
    sh.waypoints.append((t_enter, float(entry[0]), float(entry[1]), 1.0, 0.0))
    t = t_enter
    n_actions = 1 + int(rng.poisson(max(cfg.events_per_shopper - 1.0, 0.0)))
    settle_exit = rng.random() < cfg.exit_settle_share
    for k in range(n_actions):
        if t > t_limit - 25.0:
            break
        last = k == n_actions - 1
        scen: list[str] = []
        if cfg.rooms > 1 and rng.random() < ROOM_CHANGE_SHARE:  # on to a neighbouring room
            step = 1 if rng.random() < 0.5 else -1
            sh.room = sh.room + step if 0 <= sh.room + step < cfg.rooms else sh.room - step
            sh.room = min(max(sh.room, 0), cfg.rooms - 1)
        # a party member's unit can be handed over only once they have taken it (members are planned one after
        # the other, so a member planned earlier already holds units they take later in time)
        pool = [(u, sh) for u in sh.held] + [(u, m) for m in party if m is not sh for u in m.held
                                             if u.t_taken < t and rng.random() < cfg.handoff_share]
        # about a quarter of actions find nothing held yet, so the conditional rate is the share / 0.75
        putback = bool(pool) and rng.random() < min(1.0, cfg.putback_share / 0.75) and not (last and settle_exit)
        stand = grasp = None
        across_from = across_to = None
        lines: list[tuple[str, int]] = []
        moves: list[tuple[str, float]] = []  # (bin, grams: + onto the shelf)
        if putback:
            unit, holder = pool[int(rng.integers(len(pool)))]
            home = [c for c, b in world.bins.items() if unit.barcode in b.products]
            home = [c for c in home if world.room_of[c] == sh.room] or home
            if rng.random() < cfg.misplaced_share or not home:
                near = [c for c in world.pickable if unit.barcode not in world.bins[c].products
                        and world.room_of[c] == sh.room]
                target = near[int(rng.integers(len(near)))]
                scen.append("misplaced")
            else:
                target = home[int(rng.integers(len(home)))]
                scen.append("put-back")
            if holder is not sh:
                scen.append("handoff")
            holder.held.remove(unit)
            world.stock[target].append(unit)
            moves = [(c, f * unit.grams) for c, f in world.split(target, unit.barcode)]
            lines = [(unit.barcode, -1)]
        else:
            target, across = _pick_target(world, sh, t, others, settle_exit and last)
            if target is None:
                continue
            if across is not None:
                stand, across_from, across_to = across
            b = world.bins[target]
            q = 1
            r = rng.random()
            mixed_nb = world.neighbour(target, 1 if rng.random() < 0.5 else -1)
            if r < cfg.multi_unit_share and len(world.stock[target]) >= 3:
                q = int(rng.integers(2, 4))
                scen.append("multi-unit")
            units = [world.stock[target].pop(int(rng.integers(len(world.stock[target])))) for _ in range(q)]
            for u in units:
                moves += [(c, -f * u.grams) for c, f in world.split(target, u.barcode)]
            if (cfg.multi_unit_share <= r < cfg.multi_unit_share + cfg.mixed_share and mixed_nb in world.pickable
                    and world.stock[mixed_nb]):
                u2 = world.stock[mixed_nb].pop(int(rng.integers(len(world.stock[mixed_nb]))))
                units.append(u2)
                moves.append((mixed_nb, -u2.grams))
                scen.append("mixed")
            counts: dict[str, int] = {}
            for u in units:
                counts[u.barcode] = counts.get(u.barcode, 0) + 1
            lines = sorted(counts.items())
            scen.append("pick")
            sh.held.extend(units)
        b = world.bins[target]
        sh.room = world.room_of[target]
        stand = world.standing(target) if stand is None else stand
        lateral = np.array([b.into[1], -b.into[0]])
        t = _go(world, sh, t + rng.uniform(0.2, 1.0), stand, lateral, rng)
        t_reach = t + rng.uniform(0.8, 3.5)
        if across_from is not None:  # reach while the other shopper still stands there
            t_reach = max(t + 0.3, across_from + 0.5)
            if t_reach + 1.0 <= across_to:
                scen.append("reach-across")
        if rng.random() < cfg.touch_share:  # a reach that takes nothing, before the real one
            tt = t + rng.uniform(0.2, 0.6)
            g = world.grasp(world.neighbour(target, 1) or target)
            sh.reaches.append((tt, tt + rng.uniform(0.4, 0.9), g, 0))
            world.touches.append(_Plate(target, tt + 0.3, 0.0, tt, tt + 0.6, cfg.swing_s))
            t_reach = max(t_reach, tt + 1.8)
        hold = rng.uniform(0.4, 1.2) * (1 + 0.3 * (len(lines) - 1))
        t_lift = t_reach + 0.5 + rng.uniform(0.1, hold - 0.1)   # the hand arrives 0.5 s after it starts out
        t_leave = t_reach + 0.5 + hold
        grasp = world.grasp(target)
        hand = int(rng.random() < 0.7)
        sh.reaches.append((t_reach, t_leave + 0.5, grasp, hand))
        swing = cfg.swing_s * (6.0 if (settle_exit and last) else 1.0)
        for code, g in moves:
            world.plates.append(_Plate(code, t_lift, g, t_reach + 0.5, t_leave, swing))
        if not putback:
            for u in units:
                u.t_taken = t_lift
        t = t_leave + 0.5
        _stay(sh, t)
        sh.stops.append((t_reach - 1.0, t, stand, target))
        truth.append({"t": t_lift, "t_start": t_reach + 0.5, "t_end": t_leave, "track": sh.track, "party": sh.lead,
                      "bins": tuple(sorted({c for c, _ in moves})), "lines": tuple(lines), "scenarios": scen,
                      "swing": swing, "stand": stand})
        if settle_exit and last:
            scen.append("exit-settle")
    t = _go(world, sh, t + rng.uniform(0.1, 0.3) if settle_exit else t + rng.uniform(0.5, 2.0),
            world.gate_xy(EXIT_XY, sh.room), np.array([1.0, 0.0]), rng)
    sh.t_exit = t


def _pick_target(world: _World, sh: _Shopper, t: float, others: list[_Shopper], near_exit: bool
                 ) -> tuple[str | None, tuple | None]:
    """A bin to take from in the shopper's room, and for a reach across another shopper (standing point, their
    stop's start, end)."""
    cfg, rng = world.cfg, world.rng
    first = sh.room * world.per_room  # gondola numbers of the room: first + 1 … first + per_room
    ok = [c for c in world.pickable if world.stock[c] and world.room_of[c] == sh.room]
    if not ok:
        return None, None
    if rng.random() < cfg.reach_across_share:
        for o in others:
            for (s0, s1, stand, code) in o.stops:
                if s0 <= t + 6.0 and s1 >= t + 4.5:
                    step = 1 if rng.random() < 0.5 else -1
                    nb = world.neighbour(code, step)
                    if nb in ok:
                        b = world.bins[code]
                        return nb, (stand - step * 0.5 * b.along - 0.25 * b.into, s0, s1)
    if near_exit:
        near = [c for c in ok if world.bins[c].gondola - first in (4, 5)]
        ok = near or ok
    elif rng.random() < cfg.crowd_share:
        busy = [c for c in ok if world.bins[c].gondola - first == world.busy_gondola]
        ok = busy or ok
    return ok[int(rng.integers(len(ok)))], None


# --------------------------------------------------------------------------------------------- rendering
def _body_path(sh: _Shopper, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.array(sh.waypoints)
    order = np.argsort(w[:, 0], kind="stable")
    w = w[order]
    xy = np.c_[np.interp(t, w[:, 0], w[:, 1]), np.interp(t, w[:, 0], w[:, 2])]
    idx = np.clip(np.searchsorted(w[:, 0], t, side="right") - 1, 0, len(w) - 1)
    lateral = w[idx, 3:5]
    return xy, lateral


def _hands(sh: _Shopper, t: np.ndarray, xy: np.ndarray, lateral: np.ndarray, rng) -> np.ndarray:
    """(2, n, 3) true wrist positions (left, right)."""
    out = np.empty((2, t.size, 3))
    for h, side in ((0, -1.0), (1, 1.0)):
        out[h, :, :2] = xy + side * 0.22 * lateral
        out[h, :, 2] = 0.85 + 0.03 * np.sin(2 * math.pi * 0.7 * t + h)
    for (r0, r1, g, hand) in sh.reaches:
        m = (t >= r0) & (t <= r1)
        if not m.any():
            continue
        tt = t[m]
        up = np.clip((tt - r0) / 0.5, 0, 1)
        down = np.clip((r1 - tt) / 0.5, 0, 1)
        a = np.minimum(up, down)[:, None]
        jitter = rng.normal(0, 0.01, (tt.size, 3))
        out[hand, m] = (1 - a) * out[hand, m] + a * (g[None, :] + jitter)
    return out


def _tracks(world: _World, shoppers: list[_Shopper], t0: float, t1: float) -> TrackObservations:
    cfg, rng = world.cfg, world.rng
    grid = t0 + np.arange(int((t1 - t0) * cfg.track_hz) + 1) / cfg.track_hz
    per: dict[str, tuple] = {}
    for sh in shoppers:
        m = (grid >= sh.t_enter) & (grid <= sh.t_exit)
        t = grid[m]
        xy, lateral = _body_path(sh, t)
        per[sh.track] = (t, xy, _hands(sh, t, xy, lateral, rng))
    # id switches between shoppers who come within 0.6 m: observed ids swap for 1–4 s
    observed = {tr: np.array([tr] * v[0].size, dtype=object) for tr, v in per.items()}
    if cfg.id_switch_share > 0:
        tracks = list(per)
        for i, a in enumerate(tracks):
            ta, xa, _ = per[a]
            for b in tracks[i + 1:]:
                tb, xb, _ = per[b]
                if ta.size == 0 or tb.size == 0 or ta[-1] < tb[0] or tb[-1] < ta[0]:
                    continue
                common, ia, ib = np.intersect1d(np.round(ta * cfg.track_hz), np.round(tb * cfg.track_hz),
                                                return_indices=True)
                close = np.hypot(*(xa[ia] - xb[ib]).T) < 0.6
                starts = np.flatnonzero(close & ~np.concatenate([[False], close[:-1]]))
                for s in starts:
                    if rng.random() < cfg.id_switch_share:
                        n = int(rng.uniform(1, 4) * cfg.track_hz)
                        sa, sb = ia[s:s + n], ib[s:s + n]
                        k = min(sa.size, sb.size)
                        observed[a][sa[:k]], observed[b][sb[:k]] = b, a
                        if k:
                            world.switches.append((a, b, float(ta[sa[0]]), float(ta[sa[k - 1]]) + 1 / cfg.track_hz))
    tid, ts, kp, xyz, sc = [], [], [], [], []
    for sh in shoppers:
        t, xy, hands = per[sh.track]
        n = t.size
        keep = rng.random(n) >= cfg.missed_frame_share
        occl = int(rng.poisson(cfg.occlusions_per_min * (sh.t_exit - sh.t_enter) / 60.0))
        for _ in range(occl):
            c = rng.uniform(sh.t_enter, sh.t_exit)
            keep &= ~((t >= c) & (t <= c + rng.exponential(cfg.occlusion_s)))
        bias = rng.normal(0, cfg.position_bias_m, 2)
        body = xy + bias + rng.normal(0, cfg.position_noise_m, (n, 2))
        ids = observed[sh.track]
        for name, z in (("head", 1.65), ("neck", 1.45)):
            tid.append(ids[keep])
            ts.append(t[keep])
            kp.append(np.full(int(keep.sum()), name, dtype=object))
            xyz.append(np.c_[body[keep], np.full(int(keep.sum()), z) + rng.normal(0, 0.03, int(keep.sum()))])
            sc.append(rng.uniform(0.7, 1.0, int(keep.sum())))
        for h, name in ((0, "l_wrist"), (1, "r_wrist")):
            k2 = keep & (rng.random(n) >= cfg.missed_hand_share)
            p = hands[h] + np.r_[bias, 0.0] + rng.normal(0, cfg.hand_noise_m, (n, 3))
            tid.append(ids[k2])
            ts.append(t[k2])
            kp.append(np.full(int(k2.sum()), name, dtype=object))
            xyz.append(p[k2])
            sc.append(rng.uniform(0.4, 1.0, int(k2.sum())))
    if not ts:
        return TrackObservations.empty()
    obs = TrackObservations(np.concatenate(tid).astype(object), np.concatenate(ts), np.concatenate(kp).astype(object),
                            np.concatenate(xyz), np.concatenate(sc))
    return obs[np.argsort(obs.t, kind="stable")]


def _shelves(world: _World, t0: float, t1: float) -> list[ShelfSamples]:
    cfg, rng = world.cfg, world.rng
    n = int((t1 - t0) * cfg.rate_hz)
    t = t0 + np.arange(n) / cfg.rate_hz
    by_g: dict[int, list[str]] = {}
    for code, b in world.bins.items():
        by_g.setdefault(b.gondola, []).append(code)
    plates_by_bin: dict[str, list[_Plate]] = {}
    for p in world.plates:
        plates_by_bin.setdefault(p.code, []).append(p)
        b = world.bins[p.code]
        for step, ratio in ((1, CROSSTALK_NEAR), (-1, CROSSTALK_NEAR), (2, CROSSTALK_TWO), (-2, CROSSTALK_TWO)):
            nb = world.neighbour(p.code, step)
            if nb is not None and cfg.crosstalk_scale > 0:
                r = ratio * cfg.crosstalk_scale * rng.uniform(0.5, 1.3)
                plates_by_bin.setdefault(nb, []).append(_Plate(nb, p.t, p.delta * r, p.t0, p.t1, -1.0))
    for p in world.touches:
        plates_by_bin.setdefault(p.code, []).append(p)
    q_sd = np.asarray(PLATE_SD_QUANTILES_G)
    # each plate's calibration gain, from its own generator so that every other draw of the session stays the same
    gain_rng = np.random.default_rng([cfg.seed, 7919, 11])
    gain = dict(zip(sorted(world.bins), 1.0 + gain_rng.normal(0.0, cfg.plate_gain_sd, len(world.bins))))
    out = []
    for g in sorted(by_g):
        codes = sorted(by_g[g])
        B = len(codes)
        sd = np.interp(rng.random(B), [0, .05, .25, .5, .75, .95, 1.0], q_sd) * cfg.noise_scale
        white = rng.normal(size=(n, B)) * (sd * math.sqrt(1.0 - cfg.wander_share))
        # AR(1) wander with a 0.5 s time constant, stationary sd = sd·√wander_share
        a = math.exp(-1.0 / (0.5 * cfg.rate_hz))
        wander = lfilter([math.sqrt(1 - a * a)], [1, -a], rng.normal(size=(n, B)), axis=0) * (
            sd * math.sqrt(cfg.wander_share))
        x = white + wander
        x += np.outer(t - t0, rng.normal(0, cfg.drift_g_per_min / 60.0, B))
        for j, code in enumerate(codes):
            units = world.stock_initial.get(code, 0.0)
            x[:, j] += rng.uniform(300, 3000) + units
            for p in plates_by_bin.get(code, ()):
                _plate_trace(x[:, j], t, replace(p, delta=p.delta * gain[code]), cfg, rng)
        n_spikes = rng.poisson(cfg.spikes_per_plate_hour * B * (t1 - t0) / 3600.0)
        if n_spikes:
            rows, cols = rng.integers(0, n, n_spikes), rng.integers(0, B, n_spikes)
            x[rows, cols] += rng.choice([-1, 1], n_spikes) * rng.uniform(50, max(cfg.spike_g, 51), n_spikes)
        x = np.round(x / QUANTUM_G) * QUANTUM_G
        msgs = n // 12
        lost = np.flatnonzero(rng.random(msgs) < cfg.drop_share)
        for m in lost:
            x[m * 12:(m + 1) * 12] = np.nan
        out.append(ShelfSamples(t=t, bin_codes=tuple(codes), grams=x))
    return out


def _plate_trace(x: np.ndarray, t: np.ndarray, p: _Plate, cfg: SimConfig, rng) -> None:
    """Add one interaction to a plate's series ``x`` (n,) in place: the step (a 0.12 s ramp), the hand's jostle
    while it touches the shelf, the damped swing after it leaves."""
    i = int(np.searchsorted(t, p.t))
    x[i:] += p.delta
    j = int(np.searchsorted(t, p.t + 0.12))
    if j > i:
        x[i:j] -= p.delta * (1 - (t[i:j] - p.t) / 0.12)
    if p.swing_s < 0:  # crosstalk: the step only
        return
    size = max(abs(p.delta), 30.0)
    a, b = int(np.searchsorted(t, p.t0)), int(np.searchsorted(t, p.t1, side="right"))
    if b > a:
        amp = cfg.jostle * size * rng.uniform(0.3, 1.0)
        x[a:b] += amp * np.sin(2 * math.pi * rng.uniform(2.0, 6.0) * (t[a:b] - p.t0) + rng.uniform(0, 6.3))
    c = int(np.searchsorted(t, p.t1 + 5 * p.swing_s, side="right"))
    if c > b:
        dt = t[b:c] - p.t1
        amp = (0.3 if p.swing_s > cfg.swing_s else 0.05) * size
        x[b:c] += amp * np.exp(-dt / p.swing_s) * np.sin(2 * math.pi * rng.uniform(2.0, 5.0) * dt)


def simulate(sim_store: SimStore, config: SimConfig) -> Simulation:
    """Simulate one session of ``config.shoppers`` shoppers over ``config.minutes`` in ``sim_store``.

    Shoppers (and parties of 2–3 on one account) arrive uniformly over the session and leave before its end.
    Returns a :class:`Simulation`; deterministic for a given config (seed). Raises ValueError from
    :class:`SimConfig`.
    """
    cfg = config
    rng = np.random.default_rng([cfg.seed, 7919])
    sim_store = tile_store(sim_store, cfg.rooms)
    world = _World(sim_store, cfg, rng)
    t0 = T0 + 86400.0 * cfg.seed
    t1 = t0 + cfg.minutes * 60.0
    # parties: groups of 2–3 sharing an account; everyone else alone
    groups: list[int] = []
    left = cfg.shoppers
    while left > 0:
        # P(a group is a party) so that ≈ party_share of shoppers are in one (mean party size 2.5)
        p_party = cfg.party_share / (2.5 - 1.5 * cfg.party_share)
        size = int(rng.integers(2, 4)) if (left >= 2 and rng.random() < p_party) else 1
        size = min(size, left)
        groups.append(size)
        left -= size
    span = max(1.0, cfg.minutes * 60.0 - 80.0)
    arrivals = np.sort(rng.uniform(2.0, 2.0 + span, len(groups)))
    shoppers: list[_Shopper] = []
    truth_rows: list[dict] = []
    gates: list[GateScan] = []
    for size, a in zip(groups, arrivals):
        lead = f"{1000 + len(shoppers)}"
        account = f"sim{cfg.seed}+{lead}@walkout.test"
        party: list[_Shopper] = []
        room = int(rng.integers(cfg.rooms)) if cfg.rooms > 1 else 0  # the party's entry gate
        for _ in range(size):
            sh = _Shopper(track=f"{1000 + len(shoppers)}", account=account, lead=lead, room=room)
            party.append(sh)
            shoppers.append(sh)
        for m, sh in enumerate(party):
            others = [o for o in shoppers if o.lead != lead]
            _plan(world, sh, t0 + a + 1.5 * m, t1 - 5.0, others, party, truth_rows)
            gates.append(GateScan(t=sh.t_enter, track=sh.track, kind="entry", account=account, source="scanned"))
            gates.append(GateScan(t=sh.t_exit, track=sh.track, kind="exit", account=account, source="scanned"))
    t_end = max([t1] + [sh.t_exit + 6.0 for sh in shoppers])
    shelves = _shelves(world, t0, t_end)
    tracks = _tracks(world, shoppers, t0, t_end)
    events = _truth_events(truth_rows, shoppers, world)
    receipts: dict[str, dict[str, int]] = {sh.lead: {} for sh in shoppers}
    for sh in shoppers:
        receipts.setdefault(sh.track, {})
    for r in truth_rows:
        for code, q in r["lines"]:
            receipts[r["party"]][code] = receipts[r["party"]].get(code, 0) + q
    truth = [TruthReceipt(track=tr, lines=tuple(TruthLine(c, q) for c, q in sorted(lines.items()) if q > 0))
             for tr, lines in sorted(receipts.items())]
    manifest = {"name": f"sim-{cfg.difficulty}-s{cfg.seed}-n{cfg.shoppers}",
                "source": f"carts.offline.simulation ({json.dumps(asdict(cfg), sort_keys=True)})",
                "t_start": t0, "t_end": t_end, "time": "seconds since 1970-01-01 UTC",
                "units": {"length": "m", "weight": "g"}, "problems": [],
                "id_switches": [{"a": a, "b": b, "t_from": f, "t_to": e} for a, b, f, e in world.switches]}
    return Simulation(manifest=manifest, store=sim_store.store, shelves=shelves, tracks=tracks,
                      gates=sorted(gates, key=lambda g: g.t), truth=truth, events=events, config=cfg)


def _truth_events(rows: list[dict], shoppers: list[_Shopper], world: _World) -> TruthEvents:
    rows = sorted(rows, key=lambda r: r["t"])
    sizes: dict[str, int] = {}
    for sh in shoppers:
        sizes[sh.lead] = sizes.get(sh.lead, 0) + 1
    for r in rows:
        if sizes[r["party"]] > 1:
            r["scenarios"].append("party")
        # crowded: another shopper stands within 1 m of the actor when the weight moves
        for sh in shoppers:
            if sh.track == r["track"] or not (sh.t_enter <= r["t"] <= sh.t_exit):
                continue
            xy, _ = _body_path(sh, np.array([r["t"]]))
            if float(np.hypot(*(xy[0] - r["stand"]))) < 1.0:
                r["scenarios"].append("crowded")
                break

    def obj(values):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr

    return TruthEvents(np.array([r["t"] for r in rows]), np.array([r["t_start"] for r in rows]),
                       np.array([r["t_end"] for r in rows]), obj([r["track"] for r in rows]),
                       obj([r["party"] for r in rows]), obj([r["bins"] for r in rows]),
                       obj([r["lines"] for r in rows]),
                       obj([tuple(dict.fromkeys(r["scenarios"])) for r in rows]))


def write_simulation(sim: Simulation, path: str | Path, *, shelves_form: str = "npy") -> Path:
    """Write ``sim`` as a recording folder (``store.recording.write_recording``) plus ``truth_events.json``.
    ``shelves_form``: the shelf samples as ``npy`` (the binary folder ``shelves/``, default: a simulated store of
    thousands of plates is gigabytes of CSV) or ``csv`` (``shelves.csv``, the interchange form). Returns the
    folder."""
    root = write_recording(path, manifest=sim.manifest, store=sim.store, shelves=sim.shelves, tracks=sim.tracks,
                           gates=sim.gates, truth=sim.truth, shelves_form=shelves_form)
    (root / TRUTH_EVENTS).write_text(json.dumps(sim.events.to_json(), indent=1) + "\n", encoding="utf-8")
    return root


def parties_from_gates(gates: Iterable[GateScan], *, within_s: float = 10.0) -> dict[str, str]:
    """Track → party lead track, from entry scans: entries on one (non-empty) account within ``within_s`` seconds
    of the first are one party, led by the first (DESIGN: a party is billed together). Tracks alone map to
    themselves."""
    out: dict[str, str] = {}
    open_party: dict[str, tuple[float, str]] = {}
    for g in sorted((g for g in gates if g.kind == "entry"), key=lambda g: g.t):
        lead = g.track
        if g.account and g.account in open_party and g.t - open_party[g.account][0] <= within_s:
            lead = open_party[g.account][1]
        elif g.account:
            open_party[g.account] = (g.t, g.track)
        out[g.track] = lead
    return out
