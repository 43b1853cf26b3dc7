"""Layout services: load a store's geometry (``store.json`` of a recording) into the database."""
from __future__ import annotations

from django.db import transaction

from .models import Bin, Gondola, Shelf, Store, Zone


@transaction.atomic
def layout_load(*, data: dict, listed: bool = True) -> Store:
    """Create or update the store, zones, gondolas, shelves and bins described by ``data`` (``store.json``).

    Geometry in metres, store coordinates. Existing rows are updated in place (matched by store code, gondola
    number, shelf number, bin code), so a replay of the same recording twice leaves one copy. Bins absent from
    ``data`` are kept (they may carry history). ``listed``: whether a store this creates is offered to shoppers
    (``Store.listed``; False for the offline tooling's throwaway stores); an existing store keeps its own. Returns
    the Store.
    """
    s = data["store"]
    store, _ = Store.objects.update_or_create(
        code=s["code"], defaults={"name": s["name"], "currency": s["currency"].lower(),
                                  **{k: s[k] for k in ("timezone", "address") if s.get(k)}},
        create_defaults={"name": s["name"], "currency": s["currency"].lower(), "listed": listed,
                         **{k: s[k] for k in ("timezone", "address") if s.get(k)}},
    )
    for z in data.get("zones", []):
        Zone.objects.update_or_create(store=store, name=z["name"], defaults={"kind": z["kind"], "polygon": z["polygon"]})
    for g in data["gondolas"]:
        gondola, _ = Gondola.objects.update_or_create(
            store=store, number=g["number"],
            defaults={k: g[k] for k in ("x", "y", "yaw_rad", "width_m", "depth_m", "height_m")},
        )
        for sh in g["shelves"]:
            shelf, _ = Shelf.objects.update_or_create(gondola=gondola, number=sh["number"], defaults={"z": sh["z"]})
            for b in sh.get("bins", []):
                Bin.objects.update_or_create(
                    store=store, code=b["code"],
                    defaults={"shelf": shelf, "number": b["number"],
                              **{k: b[k] for k in ("x", "y", "z", "width_m", "depth_m", "yaw_rad")},
                              "capacity_g": b.get("capacity_g", 20000.0)},
                )
    return store
