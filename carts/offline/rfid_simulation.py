"""Simulated RFID exit lanes with known truth (offline tooling, pure Python): shoppers leaving through one lane with
tagged items, reads drawn with published miss rates and assumed stray-read rates (:class:`RfidSimConfig`), and the
exit-lane rules of ``sensors.rfid`` scored against the truth (:func:`bench_exit_lanes`; ``bench/bench_rfid.py``,
``make bench-rfid``).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sensors.rfid import ExitLaneConfig, TagEvent, encode_sgtin96, exit_charges, exit_lane_tags


@dataclass(frozen=True)
class RfidSimConfig:
    """Read-rate figures of the simulated readers (probabilities per tag per pass or per inventory cycle).

    - ``exit_miss``: 0.02 — a tag that passes the exit portal is not read at all 2 % of the time. Published item-
      level figures: "98 percent or better" for consumer products in random orientation (M. Roberti, RFID Journal,
      "RFID Read Reliability Is Not an Issue"); 99.38 % for 97 tagged garments read together, falling to 89.89 %
      for 180 (University of Arkansas RFID Research Center, ITRI-WP112-0608, 2008).
    - ``exit_reads``: mean reads of a tag read while it passes (Poisson, at least one): a portal cycles its
      antennas several times a second over the ~1.5 s of a pass.
    - ``shelf_miss``: 0.10 — a shelf antenna misses a tag in one inventory cycle (1 s) 10 % of the time: dense
      shelves read like the Arkansas 180-item rounder (89.89 %).
    - ``ghost_per_exit``: 0.5 — stray reads at the exit antenna per shopper pass, of tags that are not leaving
      (on a shelf by the door, carried by a shopper walking past the lane). Integrators report stray reads as
      routine (Impinj support, "Strategies for handling unwanted tag reads"; RFID Journal, "Dealing with
      False-Positive Reads", 2006) without one figure; half a stray read per pass is our assumption. Strays are
      weak (``ghost_rssi_dbm``) and mostly single; ``ghost_on_shelf`` of them are of tags a shelf antenna is
      reading at the same time.
    - ``rssi_dbm``: mean RSSI of a leaving tag; ``rssi_sd_db`` its spread.
    """

    exit_miss: float = 0.02
    exit_reads: float = 4.0
    shelf_miss: float = 0.10
    ghost_per_exit: float = 0.5
    ghost_rssi_dbm: float = -68.0
    ghost_on_shelf: float = 0.5
    rssi_dbm: float = -52.0
    rssi_sd_db: float = 6.0


@dataclass
class SimSession:
    """A simulated day at the exit: ``exits`` track → exit time; ``truth`` track → (GTIN, serial) of the tagged
    items each shopper really carried out, unpaid; ``worn`` track → items paid on an earlier visit they carry out
    again (never to be charged); ``cart`` track → {barcode: units} weighed on shelves (the tagged goods that have a
    weight plate); ``reads`` the exit-lane :class:`TagEvent` s; ``barcode_of`` GTIN-14 → barcode; ``sold`` the
    (GTIN, serial) sold on earlier receipts."""

    exits: dict[str, float]
    truth: dict[str, list[tuple[str, str]]]
    worn: dict[str, list[tuple[str, str]]]
    cart: dict[str, dict[str, int]]
    reads: list[TagEvent]
    barcode_of: dict[str, str]
    sold: set[tuple[str, str]]


def simulate_exits(*, shoppers: int = 200, seed: int = 0, config: RfidSimConfig = RfidSimConfig(),
                   products: int = 40, mean_gap_s: float = 20.0, weighed_share: float = 0.5,
                   worn_share: float = 0.1) -> SimSession:
    """Shoppers leaving one exit lane (exponential gaps, mean ``mean_gap_s``), each with 0–5 tagged items of
    ``products`` GTINs (``weighed_share`` of the products also stand on weight plates, so the cart holds them by
    weight), ``worn_share`` of shoppers wearing a tagged item bought on an earlier visit, reads drawn with
    ``config``'s miss and ghost rates. Deterministic for a ``seed``."""
    rng = random.Random(seed)
    gtins = [f"0{5012345000000 + 17 * i:013d}"[:13] for i in range(products)]
    gtins = [g + str(_check_digit(g)) for g in gtins]
    barcode_of = {g: g[1:] for g in gtins}          # GTIN-13 barcodes in the catalogue
    weighed = {g for g in gtins if rng.random() < weighed_share}
    serial = iter(range(1, 10 ** 9))
    exits, truth = {}, {}
    worn: dict[str, list] = {}
    cart: dict[str, dict] = {}
    reads: list[TagEvent] = []
    sold: set[tuple[str, str]] = set()
    t = 1.7e9
    shelf_tags = [(g, str(next(serial))) for g in rng.choices(gtins, k=30)]   # stock on the shelf by the door
    for s in range(shoppers):
        t += rng.expovariate(1.0 / mean_gap_s)
        track = f"s{s}"
        exits[track] = t
        items = [(g, str(next(serial))) for g in rng.choices(gtins, k=rng.randint(0, 5))]
        truth[track] = items
        cart[track] = {}
        for g, _ in items:
            if g in weighed:
                cart[track][barcode_of[g]] = cart[track].get(barcode_of[g], 0) + 1
        worn[track] = []
        if rng.random() < worn_share:
            old = (rng.choice(gtins), str(next(serial)))
            sold.add(old)
            worn[track].append(old)
        for g, sn in items + worn[track]:
            if rng.random() < config.exit_miss:
                continue
            n = max(1, _poisson(rng, config.exit_reads))
            for _ in range(n):
                tr = t + rng.uniform(-0.8, 0.8)
                reads.append(TagEvent("exit", tr, _epc_of(g, sn), g, sn, "lane-1",
                                      min(0.0, rng.gauss(config.rssi_dbm, config.rssi_sd_db))))
        for _ in range(_poisson(rng, config.ghost_per_exit)):
            g, sn = rng.choice(shelf_tags)
            on_shelf = rng.random() < config.ghost_on_shelf and rng.random() > config.shelf_miss
            reads.append(TagEvent("exit", t + rng.uniform(-2.0, 1.5), _epc_of(g, sn), g, sn, "lane-1",
                                  min(0.0, rng.gauss(config.ghost_rssi_dbm, 4.0)), 1, on_shelf))
    reads.sort(key=lambda r: r.t)
    return SimSession(exits, truth, worn, cart, reads, barcode_of, sold)


def bench_exit_lanes(session: SimSession, config: ExitLaneConfig = ExitLaneConfig()) -> dict[str, float]:
    """Run the exit-lane rules on a simulated session: precision and recall of the tagged items charged or
    confirmed per shopper against the truth, items charged twice (worn items billed again: must be 0), and the
    counts behind them."""
    tp = fp = fn = twice = ambiguous = 0
    for track in session.exits:
        att = exit_lane_tags(track, session.reads, session.exits, config=config)
        ambiguous += len(att.ambiguous)
        charges = exit_charges(att.tags, cart=session.cart[track], sold=session.sold,
                               barcode_of=session.barcode_of)
        billed = {(c.tag.gtin, c.tag.serial) for c in charges if c.action in ("charge", "confirm")}
        truth = set(session.truth[track])
        tp += len(billed & truth)
        fp += len(billed - truth)
        fn += len(truth - billed)
        twice += len(billed & set(session.worn[track]))
    return {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0,
            "tp": tp, "fp": fp, "fn": fn, "charged_twice": twice, "ambiguous": ambiguous}


def _check_digit(digits: str) -> int:
    """GS1 mod-10 check digit of ``digits`` (simulated GTINs only; real tags carry theirs)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


_EPC_CACHE: dict[tuple[str, str], str] = {}


def _epc_of(gtin: str, serial: str) -> str:
    key = (gtin, serial)
    if key not in _EPC_CACHE:
        _EPC_CACHE[key] = encode_sgtin96(gtin, int(serial))
    return _EPC_CACHE[key]


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth; small means)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
