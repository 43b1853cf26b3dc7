"""Store-session simulator with known truth (``manage.py simulate``; pure NumPy, no Django).

It writes a recording (docs/recording-format.md) of a real store layout — the AiFi NanoStore of the AutoCheckout
data (``store_meta``, converted by ``carts.offline.autocheckout_store.convert_layout``) with its real catalogue and
planogram (BENCHMARK-1 ``products.json``/``planogram.json``) — in which simulated shoppers walk between shelves, pick,
put back (into the right bin or a wrong one), take several units at once, come in parties and hand items to each
other, crowd at one shelf, reach across one another and leave while a plate still swings. Beside the recording's
``truth.json`` it writes ``truth_events.json``: every true shelf interaction with its scenario labels.

Every error source has a knob in :class:`~carts.offline.simulation_config.SimConfig` (documented there, with the
measurement behind each default), and three difficulty levels set them together
(:data:`~carts.offline.simulation_config.DIFFICULTIES`).

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

The simulator's parts: :mod:`carts.offline.simulation_config` (the knobs and their measured defaults),
:mod:`~carts.offline.simulation_store` (the store), :mod:`~carts.offline.simulation_shoppers` (the shoppers'
plans), :mod:`~carts.offline.simulation_tracks` and :mod:`~carts.offline.simulation_shelves` (what the cameras and
the plates record of them), :mod:`~carts.offline.simulation_truth` (the truth events and the parties); this module
runs them (:func:`simulate`, :func:`write_simulation`, the result :class:`Simulation`). Callers import each name from
the module that defines it: the knobs (``SimConfig``, ``DIFFICULTIES``, the measured constants) from
``simulation_config``, the store (``load_store``, ``tile_store``) from ``simulation_store``, the truth events and
``parties_from_gates`` from ``simulation_truth``.
"""
from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from store.recording import GateScan, ShelfSamples, TrackObservations, TruthLine, TruthReceipt, write_recording

from .simulation_config import T0, SimConfig
from .simulation_shelves import _shelves
from .simulation_shoppers import _plan, _Shopper, _World
from .simulation_store import SimStore, tile_store
from .simulation_tracks import _body_path, _tracks
from .simulation_truth import TRUTH_EVENTS, TruthEvents

__all__ = ["Simulation", "simulate", "write_simulation"]


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


def simulate(sim_store: SimStore, config: SimConfig) -> Simulation:
    """Simulate one session of ``config.shoppers`` shoppers over ``config.minutes`` in ``sim_store``.

    Shoppers (and parties of 2–3 on one account) arrive uniformly over the session and leave before its end; an
    entry gate admits one of them per ``config.gate_cycle_s`` (one arriving sooner enters when the cycle is over).
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
    admitted: dict[int, list[float]] = {}  # entry gate (room) → when it let each shopper in, in time order
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
            t_in = _gate_slot(admitted.setdefault(room, []), t0 + a + 1.5 * m, cfg.gate_cycle_s)
            _plan(world, sh, t_in, t1 - 5.0, others, party, truth_rows)
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


def _gate_slot(admitted: list[float], t: float, cycle_s: float) -> float:
    """When a shopper arriving at ``t`` (s) passes a gate that admitted others at ``admitted`` (s, ascending; the
    new time is inserted): ``t``, or the first moment after it at least ``cycle_s`` from every admission (they
    queue behind the shoppers already let in, a party's members included)."""
    for s in admitted:
        if abs(t - s) < cycle_s - 1e-6:  # the turnstile is busy with someone else: the next cycle
            t = s + cycle_s
    bisect.insort(admitted, t)
    return t


def write_simulation(sim: Simulation, path: str | Path, *, shelves_form: str = "npy") -> Path:
    """Write ``sim`` as a recording folder (``store.recording.write_recording``) plus ``truth_events.json``.
    ``shelves_form``: the shelf samples as ``npy`` (the binary folder ``shelves/``, default: a simulated store of
    thousands of plates is gigabytes of CSV) or ``csv`` (``shelves.csv``, the interchange form). Returns the
    folder."""
    root = write_recording(path, manifest=sim.manifest, store=sim.store, shelves=sim.shelves, tracks=sim.tracks,
                           gates=sim.gates, truth=sim.truth, shelves_form=shelves_form)
    (root / TRUTH_EVENTS).write_text(json.dumps(sim.events.to_json(), indent=1) + "\n", encoding="utf-8")
    return root
