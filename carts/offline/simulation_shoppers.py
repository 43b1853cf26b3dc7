"""Shoppers of the simulated store (``carts.offline.simulation``): the world they act in (bins, stock, the plates'
true changes), and each shopper's plan — walks between shelves and rooms, picks, put-backs (right or wrong bin),
multi-unit and mixed takes, hand-offs within a party, crowding and reaches across another shopper."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .simulation_config import (
    CORRIDOR_Y,
    ENTRY_XY,
    EXIT_XY,
    MIN_PICK_WEIGHT_G,
    ROOM_CHANGE_SHARE,
    ROOM_PITCH_M,
    SimConfig,
)
from .simulation_store import SimStore


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
