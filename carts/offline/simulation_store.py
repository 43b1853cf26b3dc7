"""The simulated store (``carts.offline.simulation``): the AiFi NanoStore of the AutoCheckout data with its real
catalogue, planogram and unit-weight spreads (:func:`load_store`), tiled into rooms for a larger store
(:func:`tile_store`)."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np

from .autocheckout import convert_catalogue
from .autocheckout_store import convert_layout
from .simulation_config import ENTRY_XY, EXIT_XY, MIN_REL_SD, ROOM_PITCH_M


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

    Raises FileNotFoundError naming a missing file (``carts.offline.autocheckout_store.AutoCheckoutError`` for a
    malformed one).
    """
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
