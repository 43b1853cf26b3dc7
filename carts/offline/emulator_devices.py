"""The emulator's own devices in a store: its gate, tracker and shelf controllers (named :data:`EMULATOR`, marked
``emulated``, re-keyed each run; a manager's device is never used or changed), the recording's shelf blocks split
into controllers of at most ``MAX_BINS`` plates, idle samples for plates whose recording ended, and the recovery
of visits an earlier, stopped emulation left open.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

import numpy as np

from sensors.ingest import MAX_BINS
from store.billing.money import money_display
from store.gates.models import Gate, Visit
from store.recording import Recording, ShelfSamples

from .emulator_transport import EmulatorError
from store.inventory.services import catalogue_load
from store.layout.services import layout_load
from store.gates.services import gate_create, gate_key_rotate, visit_abandon, visit_last_activity
from vision.models import TrackerSource
from vision.services import tracker_create, tracker_key_hash
from vision.zones import Zone
from carts.services.checkout import visit_checkout
from sensors.models import ShelfController
from sensors.services import controller_create, controller_key_rotate

log = logging.getLogger(__name__)

#: Name of the emulator's own devices (gate, tracker; controllers ``EMULATOR-c<k>``), all marked ``emulated``: the
#: command that made them, so that nobody takes them for the store's. Also the prefix of the track keys it sends.
EMULATOR = "emulate_store"
#: Visit states the emulator waits for: the store has done what it can without people (billed, or waiting for a
#: review or a payment retry).
SETTLED = (Visit.State.BILLED, Visit.State.UNDER_REVIEW, Visit.State.PAYMENT_FAILED, Visit.State.CLOSED,
           Visit.State.REFUSED)


@dataclass
class _Controller:
    """One emulated shelf controller: ``t_last`` is the recording time of its last recorded sample; after it the
    controller goes on sampling its idle plates (:func:`idle_samples`) until the emulation ends, as a real one does."""

    name: str
    key: str
    bin_codes: tuple[str, ...]
    rate_hz: float
    t_last: float = -math.inf
    seq: int = 0
    tail: np.ndarray | None = None  # (k, B) the last second of recorded samples sent: what idle plates look like
    idle: int = 0  # idle samples sent so far
    t_next: float = -math.inf  # recording time of the next sample (−inf before the first block)

    @property
    def recorded_done(self) -> bool:
        """Every recorded sample has been sent: from now on the plates idle."""
        return self.tail is not None and self.t_next > self.t_last


def idle_samples(tail: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples (n, B) of idle plates, numbered from ``start``, made of ``tail`` (k, B: the last second a
    controller recorded) played forwards and backwards in turn: its own levels and noise, with no jump where it turns
    (a looped tail would jump from its last sample to its first; a held last sample is noise frozen into a step,
    both of which the detector can see). ``tail`` holding a change (the recording stopped mid-pick) would replay
    it: recordings end on settled shelves. Raises ValueError for an empty ``tail``."""
    k = len(tail)
    if k == 0:
        raise ValueError("tail must hold at least one sample")
    if k == 1:
        return np.repeat(tail, n, axis=0)
    i = (start + np.arange(n)) % (2 * k)
    return tail[np.where(i < k, i, 2 * k - 1 - i)]


@dataclass(frozen=True)
class Devices:
    """The emulator's own devices in a store (:func:`register`): its gate and its tracker (rows marked ``emulated``)
    with the keys they were given for this run."""

    gate: Gate
    gate_key: str
    tracker: Any
    tracker_key: str


def emulated_store(recording: Recording):
    """The store ``recording`` plays in, its layout and catalogue loaded (``store.layout.services.layout_load``,
    ``store.inventory.services.catalogue_load``). A store this creates is unlisted (``Store.listed`` off: a test
    run's throwaway store, such as a simulation's ``walkout-sim``, is never offered on the shopper's pass page); an
    existing store keeps its listing (a manager's store, the demo's: ``manage.py demo`` lists its own)."""
    store = layout_load(data=recording.store, listed=False)
    catalogue_load(store=store, products=recording.store["products"], facings=recording.store["facings"])
    return store


def _own_name(model, store, base: str) -> tuple[str, Any]:
    """The first of ``base``, ``base-2``, ``base-3``… in ``store`` that is free or already the emulator's own
    (``emulated``), and its row (None when free): a manager's device of that name is never touched."""
    for k in range(1, 100):
        name = base if k == 1 else f"{base}-{k}"
        row = model.objects.filter(store=store, name=name).first()
        if row is None or row.emulated:
            return name, row
    raise EmulatorError(f"store {store.code}: 99 devices named {base}… that are not the emulator's")


def _own_gate(store, name: str, gate: Gate | None) -> tuple[Gate, str]:
    """The emulator's gate ``name`` in ``store`` with a key for this run: created ``emulated`` where ``gate`` is None,
    else (the emulator's own from an earlier run) re-keyed and re-activated. The row is read back."""
    if gate is None:
        gate, key = gate_create(store=store, name=name)
        Gate.objects.filter(pk=gate.pk).update(emulated=True)
    else:
        key = gate_key_rotate(gate=gate)
        Gate.objects.filter(pk=gate.pk).update(active=True)
    gate.refresh_from_db()
    return gate, key


def register(store) -> Devices:
    """The emulator's gate and tracker in ``store`` (both named :data:`EMULATOR`, or ``EMULATOR-2``… where a
    manager already named a device so), created on the first run, re-keyed and re-activated on every later one
    (only their hashes are stored). Idempotent; never uses or changes a device it did not create."""
    gate, gate_key = _own_gate(store, *_own_name(Gate, store, EMULATOR))
    name, tracker = _own_name(TrackerSource, store, EMULATOR)
    if tracker is None:
        tracker, tracker_key = tracker_create(store=store, name=name)
        TrackerSource.objects.filter(pk=tracker.pk).update(emulated=True)
    else:
        tracker_key = secrets.token_urlsafe(32)
        TrackerSource.objects.filter(pk=tracker.pk).update(api_key_hash=tracker_key_hash(tracker_key), active=True)
    tracker.refresh_from_db()
    return Devices(gate, gate_key, tracker, tracker_key)


def door_gates(store, recording: Recording) -> dict[str, tuple[Gate, str]]:
    """One gate per entry door of ``store``, for a store with several entry zones (a simulation's tiled rooms,
    ``carts.offline.simulation_store.tile_store``): entry zone name → (its gate, the key it was given for this run).
    A gate named like an entry zone is that door's own (``store.layout.models.Zone``): the store loop binds its
    scans only to tracks first seen in that zone, as at a real bank of turnstiles, where one gate device for every
    door would leave scans at different doors a moment apart for the loop to tell apart by time alone. Created
    ``emulated`` on the first run and re-keyed on later ones; a door whose zone name a manager's gate already has
    gets none (its scans go through the emulator's own gate). Empty for a store with fewer than two entry zones.
    ``recording``: only its ``store`` zones are read."""
    entries = [z["name"] for z in recording.store.get("zones", []) if z.get("kind") == "entry"]
    if len(entries) < 2:
        return {}
    out: dict[str, tuple[Gate, str]] = {}
    for name in entries:
        gate = Gate.objects.filter(store=store, name=name).first()
        if gate is not None and not gate.emulated:
            continue  # a manager's device: never used or re-keyed
        out[name] = _own_gate(store, name, gate)
    return out


def entry_doors(recording: Recording) -> dict[str, str]:
    """Recorded shopper track → the entry zone (name) its first floor position lies in, for every entry scan whose
    track starts inside one (the door the shopper scanned at; :func:`door_gates`). Floor position: the track's
    ``floor`` keypoint, else its ``neck``/``head``, at its first sighting."""
    zones = [Zone(z["name"], "entry", np.asarray(z["polygon"], dtype=np.float64))
             for z in recording.store.get("zones", []) if z.get("kind") == "entry"]
    scanned = {g.track for g in recording.gates if g.kind == "entry"}
    obs = recording.tracks
    if len(zones) < 2 or not scanned or not len(obs):
        return {}
    rows = obs[obs.track_in(scanned) & obs.keypoint_in(("floor", "neck", "head"))]
    order = np.lexsort((rows.t, rows.track_id.astype(str)))
    first: dict[str, np.ndarray] = {}
    for i in order.tolist():
        first.setdefault(str(rows.track_id[i]), rows.xyz[i, :2])
    out = {}
    for track, xy in first.items():
        inside = [z.name for z in zones if bool(z.contains(xy)[0])]
        if len(inside) == 1:
            out[track] = inside[0]
    return out


#: With ``--url`` (another process runs the store loop), an open visit of the emulator's own is taken for one an
#: earlier, stopped run left only after this many wall seconds without activity (another emulation may be running).
REMOTE_STALE_S = 60.0
#: What ``demo`` and ``emulate_store`` say when Ctrl-C stops an emulation (exit status 130): the visits it left inside
#: are not lost, :func:`recover_stale_visits` of the next run exits and bills them.
INTERRUPTED = ("interrupted (Ctrl-C): the recording stopped part-way; a later demo or emulate_store run exits and "
               "bills any visit this one left inside the store")


def recover_stale_visits(store, *, remote: bool = False) -> list[str]:
    """Deal honestly with the visits an earlier emulation of ``store`` left unfinished (it was killed before its
    shoppers left): every ``admitted``/``shopping`` visit admitted at one of the emulator's own gates (``emulated``;
    a guest of such a visit too) is exited and checked out now (``store.gates.services.visit_abandon``: billed for
    what its cart holds, or under review, or payment failed), so that its shopper is not refused at the gate
    (``already_inside``) by every later run; an ``exited`` one whose checkout never ran is checked out. Visits of
    real gates, and people bound with ``bind_visits``, are never touched. ``remote``: the store loop runs in another
    process (``--url``): only visits idle for :data:`REMOTE_STALE_S` are taken (another emulation may be running).
    Returns one sentence per visit, for the operator."""
    from django.db.models import Q

    own = Q(entry_pass__used_gate__emulated=True) | Q(party_lead__entry_pass__used_gate__emulated=True)
    found = list(Visit.objects.filter(own, store=store, state__in=[Visit.State.ADMITTED, Visit.State.SHOPPING,
                                                                   Visit.State.EXITED])
                 .select_related("store", "shopper").order_by("pk"))
    now = datetime.now(dt_timezone.utc)
    notes = []
    for visit in found:
        if remote and (now - visit_last_activity(visit=visit)).total_seconds() < REMOTE_STALE_S:
            continue
        who = visit.shopper.get_username()
        if visit.state == Visit.State.EXITED:
            receipt = visit_checkout(visit=visit)
            visit.refresh_from_db()
            what = f"left exited and unbilled by an earlier {EMULATOR} run that was stopped; checked it out now"
        else:
            visit, receipt = visit_abandon(visit=visit, reason=(
                f"{EMULATOR}: left inside by an earlier run that was stopped before the shopper left"))
            what = (f"left inside by an earlier {EMULATOR} run that was stopped before the shopper left; exited it "
                    "now")
        if receipt is not None and receipt.total_minor == 0:
            outcome = f"its cart was empty: nothing charged, the card's hold released (receipt {receipt.pk})"
        elif receipt is not None:
            outcome = (f"billed for what its cart held: receipt {receipt.pk}, {receipt.lines.count()} line(s), "
                       f"total {money_display(receipt.total_minor, receipt.currency)}")
        elif visit.state == Visit.State.UNDER_REVIEW:
            outcome = "it waits for the review of its open shelf events"
        else:
            outcome = f"it is {visit.state}"
        notes.append(f"visit {visit.pk} of {who} was {what}: {outcome}")
    return notes


def _count(n: int, one: str, many: str) -> str:
    """``n`` and the noun for it: ``_count(1, "entry", "entries") == "1 entry"``."""
    return f"{n} {one if n == 1 else many}"


def controller_blocks(recording: Recording, max_bins: int = MAX_BINS) -> Recording:
    """``recording`` with every shelf block of more than ``max_bins`` bins (the most one controller may report,
    ``sensors.ingest.MAX_BINS``) split into blocks of whole gondolas (bins coded ``"<gondola>-…"``, consecutive
    gondolas packed up to ``max_bins``; other codes in equal runs): a store that large has a controller per
    gondola or so, and a recording groups bins only by their common clock. Other blocks and the rest of the
    recording are unchanged (the same object when nothing is split). A split block's grams are column slices of
    the recording's (views, so a memory-mapped recording is still read only as it is played)."""
    if all(len(b.bin_codes) <= max_bins for b in recording.shelves):
        return recording
    shelves: list[ShelfSamples] = []
    for block in recording.shelves:
        codes = list(block.bin_codes)
        if len(codes) <= max_bins:
            shelves.append(block)
            continue
        runs: list[list[int]] = []  # column indices per gondola, in the block's order
        for j, code in enumerate(codes):
            g = code.split("-", 1)[0] if "-" in code else None
            if g is not None and runs and codes[runs[-1][0]].split("-", 1)[0] == g:
                runs[-1].append(j)
            else:
                runs.append([j])
        if any(len(r) > max_bins for r in runs):
            runs = [list(range(i, min(i + max_bins, len(codes)))) for i in range(0, len(codes), max_bins)]
        packs: list[list[int]] = []
        for r in runs:
            if packs and len(packs[-1]) + len(r) <= max_bins:
                packs[-1].extend(r)
            else:
                packs.append(list(r))
        for cols in packs:  # consecutive columns: a view (of a memory-mapped recording: nothing read yet)
            take: Any = slice(cols[0], cols[-1] + 1) if cols == list(range(cols[0], cols[-1] + 1)) else cols
            shelves.append(ShelfSamples(t=block.t, bin_codes=tuple(codes[j] for j in cols),
                                        grams=block.grams[:, take]))
    return dataclasses.replace(recording, shelves=shelves)


def _controllers(store, recording: Recording) -> list[_Controller]:
    """One controller of the emulator's own per recorded shelf block (``EMULATOR-c<k>``, marked ``emulated``; its
    bins and rate set to the block's, its key new for this run). A manager's controller is never touched."""
    out = []
    for k, block in enumerate(recording.shelves):
        name, row = _own_name(ShelfController, store, f"{EMULATOR}-c{k}")
        if row is None:
            row, key = controller_create(store=store, name=name, bin_codes=list(block.bin_codes),
                                         rate_hz=block.rate_hz)
            ShelfController.objects.filter(pk=row.pk).update(emulated=True)
        else:
            key = controller_key_rotate(controller=row)
            ShelfController.objects.filter(pk=row.pk).update(active=True, clock_offset_s=0.0,
                                                             bin_codes=list(block.bin_codes), rate_hz=block.rate_hz)
        t_last = float(block.t[-1]) if len(block.t) else -math.inf
        out.append(_Controller(name, key, tuple(block.bin_codes), float(block.rate_hz), t_last=t_last))
    return out


#: Source name of the emulator's cameras on the store's observation stream (one source: the cameras' shoppers are
#: joined across cameras before the store loop sees them).
