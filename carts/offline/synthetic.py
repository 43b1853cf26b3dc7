"""Generated shelf streams with known truth, shaped by real data (pure Python + NumPy; tests and the benchmark).

Where each ingredient comes from:

- **Events** (:class:`EventDistribution`): the 237 hand-labelled pick/put-back events of the AutoCheckout
  competition (``labels/events_v14.json``, 46 test cases of the AiFi NanoStore): the share of events spanning
  1, 2, 3, 4 plates (119, 105, 11, 2), the put-back share (56 / 237 = 23.6 %), and the units per event (the
  products list of an event names one unit per entry: 1 unit in 226, 2 in 7, 3 in 1; the 3 events with no
  product are left out). :meth:`EventDistribution.from_labels` reads the file; :data:`EVENTS_V14` holds the same
  numbers for machines without it.
- **Products** (:class:`Catalogue`): unit weights as mean ± sd of the repeated real weighings of the AIM3S products
  (``aim3s/product_info.json``: 81 products, median relative sd 1.3 %; barcodes that are not digits are named
  ``aim3s-<id>``). Each placed product faces 1–4 adjacent plates drawn from the events' plates-per-event mix
  (so the events, which involve the plates of one product, span plates as the real ones do).
- **Noise**: per plate, the real residual of one quiet BENCHMARK-1 plate (a "noise bank" of (n, K) residuals,
  mirror-tiled so it has no seams), or white noise with a per-plate sd drawn from 0.3–5 g when no bank is given;
  plus drift of ~2 g per 15 min (HX711-type creep).
- **Shape** of a change: the real 1-5-11 pick of BENCHMARK-1 normalised (0 → 1 over 26 samples, with its
  hand-press bump), or a 0.25 s ramp with a press bump when not given.
"""
from __future__ import annotations

import json

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensors import weight


@dataclass(frozen=True)
class EventDistribution:
    """Real event statistics. ``plates_p`` (4,) probabilities of an event spanning 1…4 plates; ``putback_p``
    probability that an event is a put-back; ``units_p`` (3,) probabilities of 1…3 units per event."""

    plates_p: np.ndarray
    putback_p: float
    units_p: np.ndarray

    @classmethod
    def from_labels(cls, path: str | Path) -> "EventDistribution":
        """Read ``events_v14.json`` ({"lists": [{"events": [{"observation": {"position": {"plates"}, "products"},
        "putback"}]}]}). Raises ``OSError``/``KeyError``/``ValueError`` for a missing or malformed file."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        events = [e for case in doc["lists"] for e in case["events"]]
        if not events:
            raise ValueError(f"{path}: no events")
        plates = Counter(min(4, len(e["observation"]["position"]["plates"])) for e in events)
        units = Counter(min(3, len(e["observation"]["products"])) for e in events
                        if e["observation"]["products"])
        put = sum(1 for e in events if e.get("putback")) / len(events)
        p = np.array([plates.get(k, 0) for k in (1, 2, 3, 4)], dtype=np.float64)
        u = np.array([units.get(k, 0) for k in (1, 2, 3)], dtype=np.float64)
        return cls(p / p.sum(), float(put), u / u.sum())


#: The numbers of ``labels/events_v14.json`` (see the module docstring).
EVENTS_V14 = EventDistribution(np.array([119, 105, 11, 2]) / 237.0, 56 / 237.0, np.array([226, 7, 1]) / 234.0)


@dataclass(frozen=True)
class Catalogue:
    """Products with real unit-weight spreads: ``barcode`` (P,) object str, ``mean_g``/``sd_g`` (P,) grams,
    ``span`` (P,) int64 plates each product faces side by side."""

    barcode: np.ndarray
    mean_g: np.ndarray
    sd_g: np.ndarray
    span: np.ndarray

    @classmethod
    def from_aim3s(cls, path: str | Path, *, min_weight_g: float = 20.0) -> "Catalogue":
        """Read ``aim3s/product_info.json``; products lighter than ``min_weight_g`` (a 0 g entry exists) are left
        out; the sd of a product weighed once is 1.3 % of its weight (the median relative sd of the others)."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = []
        seen: set[str] = set()
        for p in doc["products"]:
            w = np.asarray(p["weights"], dtype=np.float64)
            code = str(p["barcode"]) if str(p["barcode"]).isdigit() else f"aim3s-{p['id']}"
            if w.size == 0 or w.mean() < min_weight_g or code in seen:
                continue
            seen.add(code)
            sd = float(w.std(ddof=1)) if w.size > 1 else 0.013 * float(w.mean())
            span = max((len(a["plate_ids"]) for a in p["arrangement"]), default=1)
            rows.append((code, float(w.mean()), max(sd, 0.5), int(min(span, 4))))
        rows.sort()
        return cls(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows]),
                   np.array([r[2] for r in rows]), np.array([r[3] for r in rows], dtype=np.int64))

    def weights(self) -> weight.ProductWeights:
        """As :class:`sensors.weight.ProductWeights`."""
        return weight.ProductWeights(self.barcode.copy(), self.mean_g.copy(), self.sd_g.copy())


@dataclass(frozen=True)
class TrueEvent:
    """One generated change: ``bins`` column indices, ``at_s`` seconds from the stream start, ``barcode``,
    ``quantity`` (+ taken, − put back), ``delta_g`` grams (what the plates really changed by, summed)."""

    bins: tuple[int, ...]
    at_s: float
    barcode: str
    quantity: int
    delta_g: float


@dataclass(frozen=True)
class GeneratedShelf:
    """A generated controller: ``t`` (n,) s UTC, ``grams`` (n, B) raw grams, ``planogram`` over ``bin_codes``
    ``"<g>-<shelf>-<plate>"``, the ``events`` injected (in time order), ``rate_hz``."""

    t: np.ndarray
    grams: np.ndarray
    planogram: weight.Planogram
    events: tuple[TrueEvent, ...]
    rate_hz: float


def default_shape(n: int = 26) -> np.ndarray:
    """(n,) a pick's normalised shape: 0 → 1 with a 30 % hand-press bump in the middle (when no real one)."""
    x = np.linspace(0.0, 1.0, n)
    return np.clip(x * 1.2, 0, 1) + 0.3 * np.sin(np.pi * x) ** 2


def layout(catalogue: Catalogue, *, shelves: int, plates: int, gondola: int = 1,
           dist: EventDistribution = EVENTS_V14, rng: np.random.Generator) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]],
                                              list[tuple[int, tuple[int, ...]]]]:
    """A planogram: products placed left to right on each shelf, each over 1–4 plates drawn from
    ``dist.plates_p`` (clipped at the shelf's end). Returns (bin codes, facings, neighbours, [(product index, column indices)])."""
    codes = tuple(f"{gondola}-{s}-{p}" for s in range(1, shelves + 1) for p in range(1, plates + 1))
    facings: dict[str, tuple[str, ...]] = {}
    placed: list[tuple[int, tuple[int, ...]]] = []
    order = rng.permutation(len(catalogue.barcode))
    k = 0
    for s in range(shelves):
        p = 0
        while p < plates:
            prod = int(order[k % order.size])
            k += 1
            span = int(min(rng.choice([1, 2, 3, 4], p=dist.plates_p), plates - p))
            cols = tuple(s * plates + p + j for j in range(span))
            for c in cols:
                facings[codes[c]] = (str(catalogue.barcode[prod]),)
            placed.append((prod, cols))
            p += span
    neighbours = {codes[s * plates + p]: tuple(codes[s * plates + q] for q in (p - 1, p + 1) if 0 <= q < plates)
                  for s in range(shelves) for p in range(plates)}
    return codes, facings, neighbours, placed


def quiet_noise_bank(grams_by_gondola, *, gondolas=(2, 3, 4), samples: int = 540,
                     max_sd_g: float = 5.0) -> np.ndarray:
    """(samples, K) float64 grams: real residuals (raw − median) of quiet plates, for :func:`noise`.

    ``grams_by_gondola`` maps a gondola to its (T, bins) raw samples (e.g. ``PlateBlock.flat_grams()`` of
    ``carts.offline.autocheckout_plates.blocks_by_gondola``). A plate is kept when it has ``samples`` finite, not constant
    readings and a robust sd (1.4826 × MAD, Rousseeuw & Croux 1993) in (0, ``max_sd_g``]. Defaults: the first 9 s
    of BENCHMARK-1's gondolas 2–4, where nobody stood. Raises KeyError for a missing gondola.
    """
    cols = []
    for g in gondolas:
        x = np.asarray(grams_by_gondola[g], dtype=np.float64)[:samples]
        ok = np.isfinite(x).all(axis=0) & (np.ptp(x, axis=0) > 0)
        r = x[:, ok] - np.median(x[:, ok], axis=0)
        sd = 1.4826 * np.median(np.abs(r), axis=0)
        cols.append(r[:, (sd > 0) & (sd <= max_sd_g)])
    return np.hstack(cols)


def noise(n: int, n_bins: int, *, bank: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """(n, n_bins) plate noise: columns of the real ``bank`` (mirror-tiled, random start), or white noise with a
    per-plate sd uniform in 0.3–5 g when ``bank`` is None."""
    if bank is None:
        return rng.normal(size=(n, n_bins)) * rng.uniform(0.3, 5.0, n_bins)
    out = np.empty((n, n_bins))
    for b in range(n_bins):
        r = bank[:, rng.integers(bank.shape[1])]
        tile = np.concatenate([r, r[::-1]])
        reps = np.tile(tile, n // tile.shape[0] + 2)
        start = int(rng.integers(tile.shape[0]))
        out[:, b] = reps[start:start + n]
    return out


def generate_shelf(catalogue: Catalogue, *, seconds: float, shelves: int = 2, plates: int = 12,
                   n_events: int = 20, dist: EventDistribution = EVENTS_V14, bank: np.ndarray | None = None,
                   shape: np.ndarray | None = None, rate_hz: float = 60.0, t0: float = 1.6e9,
                   min_gap_s: float = 2.0, seed: int = 0) -> GeneratedShelf:
    """A controller of ``shelves`` × ``plates`` bins with ``n_events`` picks and put-backs drawn from ``dist``.

    Each event: a random placed product (so an event spans the plates that product faces, 1–4 as in ``dist``), put back with ``dist.putback_p``, ``q`` units drawn from
    ``dist.units_p``, the total weight = the sum of ``q`` draws of N(mean, sd); the change is split among the
    product's plates by Dirichlet(2) fractions (where the item stands) and follows ``shape``. Events are at
    least ``min_gap_s`` apart. Plates start at 1–6 kg, plus :func:`noise` and ±2 g / 15 min drift. Raises
    ``ValueError`` when the events do not fit in ``seconds``."""
    rng = np.random.default_rng(seed)
    shape = default_shape() if shape is None else np.asarray(shape, dtype=np.float64)
    n = int(seconds * rate_hz)
    if (n_events + 1) * min_gap_s + 2.0 > seconds:
        raise ValueError(f"{n_events} events {min_gap_s} s apart do not fit in {seconds} s")
    codes, facings, neighbours, placed = layout(catalogue, shelves=shelves, plates=plates, dist=dist, rng=rng)
    b = len(codes)
    t = t0 + np.arange(n) / rate_hz
    x = rng.uniform(1000.0, 6000.0, b) + noise(n, b, bank=bank, rng=rng)
    x += np.outer(t - t0, rng.choice([-1.0, 1.0], b) * 2.0 / 900.0)
    times = np.sort(rng.choice(np.arange(2.0, seconds - min_gap_s, min_gap_s), size=n_events, replace=False))
    events = []
    for at in times:
        prod, cols = placed[int(rng.integers(len(placed)))]
        q = int(rng.choice([1, 2, 3], p=dist.units_p))
        units = rng.normal(catalogue.mean_g[prod], catalogue.sd_g[prod], q).sum()
        sign = 1.0 if rng.random() < dist.putback_p else -1.0
        frac = rng.dirichlet(np.full(len(cols), 2.0)) if len(cols) > 1 else np.ones(1)
        i = int(at * rate_hz)
        for c, f in zip(cols, frac):
            d = sign * units * f
            x[i:i + shape.shape[0], c] += d * shape
            x[i + shape.shape[0]:, c] += d
        events.append(TrueEvent(tuple(cols), float(at), str(catalogue.barcode[prod]), int(-sign * q),
                                float(sign * units)))
    plan = weight.Planogram(codes, facings, catalogue.weights(), neighbours)
    return GeneratedShelf(t, x, plan, tuple(events), rate_hz)


@dataclass(frozen=True)
class Score:
    """Detected vs true events: ``found`` true events matched by a detected one (overlapping bins, start within
    ``tol_s``), ``missed``, ``false`` detected events matching no true one, ``correct`` matched events whose best
    hypothesis is the true product × quantity."""

    found: int
    missed: int
    false: int
    correct: int


def score(events: list[weight.ShelfEvent], truth: tuple[TrueEvent, ...], codes: tuple[str, ...], t0: float, *,
          tol_s: float = 1.0) -> Score:
    """Match detected ``events`` to ``truth`` one to one, greedily in time order (see :class:`Score`)."""
    used: set[int] = set()
    found = correct = 0
    for te in truth:
        want = {codes[c] for c in te.bins}
        for k, ev in enumerate(events):
            if k in used or not (want & set(ev.bin_codes)) or abs(ev.t_start - t0 - te.at_s) > tol_s:
                continue
            used.add(k)
            found += 1
            best = ev.best
            if best is not None and (best.barcode, best.quantity) == (te.barcode, te.quantity):
                correct += 1
            break
    return Score(found, len(truth) - found, len(events) - len(used), correct)


def detect(shelf: GeneratedShelf, *, block: int = 12) -> list[weight.ShelfEvent]:
    """Stream ``shelf`` through the detector in blocks of ``block`` and explain the changes (as live)."""
    det = weight.WeightEventDetector(shelf.grams.shape[1], shelf.rate_hz)
    out: list[weight.ShelfEvent] = []
    for i in range(0, shelf.t.shape[0], block):
        ch = det.push(shelf.t[i:i + block], shelf.grams[i:i + block])
        if len(ch):
            out.extend(weight.shelf_events_from_changes(ch, shelf.planogram))
    ch = det.flush()
    if len(ch):
        out.extend(weight.shelf_events_from_changes(ch, shelf.planogram))
    return sorted(out, key=lambda e: e.t_start)


__all__ = ["EventDistribution", "EVENTS_V14", "Catalogue", "TrueEvent", "GeneratedShelf", "generate_shelf",
           "layout", "noise", "default_shape", "score", "Score", "detect"]

