"""Receipt accuracy, the AutoCheckout way, and the offline pipeline the accuracy benchmark runs (pure Python).

Item-level scoring of the CPS-IoT Week 2020 AutoCheckout competition (AiFi; as used by the CMU and AIM3S entries):
each shopper's billed receipt is compared with their true receipt, per product; the true positives of a
(shopper, product) are ``min(billed quantity, true quantity)``, so a wrong shopper, a wrong product and a wrong
quantity all count against. Put-backs cancel picks before scoring (receipts are net quantities).
precision = TP / billed items, recall = TP / true items, F1 = harmonic mean. With nothing billed and nothing true,
precision, recall and F1 are 1 (a correct empty session). A party (visits entered together on one account) is
billed together, so its members' receipts are merged under the lead's track before scoring
(:func:`merge_parties`).

Beyond the receipts (:func:`evaluate_session`): the share of receipts exactly right, the **review rate** (shelf
events sent to people / shelf events detected), and a breakdown by scenario from a simulated recording's
``truth_events.json`` (``carts.offline.simulation``): for each label, how many true events, and how many fusion got right
by itself, sent to review, got wrong, or never saw (the detector missed them).

:func:`offline_replay` is the in-memory pipeline — ``sensors.weight`` detection → shelf events →
``carts.fusion.decide_event`` → carts → receipts — with the same decision function as the Django pipeline
(``carts.pipeline.StorePipeline``), for benchmarks that would be slow through the database. With ``oracle=True``
review items are resolved as a perfect reviewer would (from the truth events), as the manager's decisions in the
dashboard are in the store; the exact-receipt share then measures the machine's silent errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from sensors import weight
from store.checks import check_rows

from carts.fusion_config import BinGeometry, FusionConfig
from carts.loop import StoreLoop
from carts.loop_config import LoopConfig
from carts.offline.steps import recording_steps
from .simulation_truth import parties_from_gates

Receipts = Mapping[str, Mapping[str, int]]  # shopper track id → {barcode: quantity}

#: Scenario labels reported, in order (``carts.offline.simulation_truth.TruthEvents.scenarios``).
SCENARIOS = ("pick", "put-back", "misplaced", "multi-unit", "mixed", "crowded", "reach-across", "party", "handoff",
             "exit-settle")


@dataclass(frozen=True)
class ReceiptScore:
    """Item counts and scores over a session; ``exact`` receipts are those equal to the truth line for line."""

    true_positives: int
    billed_items: int
    true_items: int
    exact: int
    receipts: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.billed_items if self.billed_items else (1.0 if not self.true_items else 0.0)

    @property
    def recall(self) -> float:
        return self.true_positives / self.true_items if self.true_items else (1.0 if not self.billed_items else 0.0)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def exact_share(self) -> float:
        """Share of receipts exactly right (1.0 for a session without receipts)."""
        return self.exact / self.receipts if self.receipts else 1.0

    def __add__(self, other: "ReceiptScore") -> "ReceiptScore":
        return ReceiptScore(self.true_positives + other.true_positives, self.billed_items + other.billed_items,
                            self.true_items + other.true_items, self.exact + other.exact,
                            self.receipts + other.receipts)


def score_receipts(billed: Receipts, truth: Receipts) -> ReceiptScore:
    """Score ``billed`` receipts against ``truth`` (both keyed by shopper track id; quantities ≥ 0).

    Raises ValueError on a negative quantity (a receipt never holds one).
    """
    tp = billed_n = true_n = exact = 0
    shoppers = set(billed) | set(truth)
    for shopper in shoppers:
        b = {k: v for k, v in billed.get(shopper, {}).items() if v}
        t = {k: v for k, v in truth.get(shopper, {}).items() if v}
        for q in list(b.values()) + list(t.values()):
            if q < 0:
                raise ValueError(f"shopper {shopper}: negative quantity {q} on a receipt")
        billed_n += sum(b.values())
        true_n += sum(t.values())
        tp += sum(min(q, t.get(code, 0)) for code, q in b.items())
        exact += int(b == t)
    return ReceiptScore(tp, billed_n, true_n, exact, len(shoppers))


def merge_parties(receipts: Receipts, party_of: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Receipts of party members summed under their lead's track (``party_of``: track → lead; absent: alone)."""
    out: dict[str, dict[str, int]] = {}
    for track, lines in receipts.items():
        dest = out.setdefault(party_of.get(track, track), {})
        for code, q in lines.items():
            dest[code] = dest.get(code, 0) + int(q)
    return out


# --------------------------------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Decisions:
    """What the pipeline did with each detected shelf event, one row per event (the input of the breakdown).

    ``bins`` (n,) object tuples of bin codes; ``t_start``, ``t_end`` (n,) float64 s UTC (recording clock);
    ``outcome`` (n,) object str: ``cart`` (applied automatically; an event split between two shoppers gives one
    row per share), ``review`` (sent to people), ``follow`` (a put-back waiting for the review of its pick; once
    that is resolved it becomes ``cart`` or ``review``), ``none`` (ignored: nothing to do); ``track`` (n,) object str
    (the track charged, "" for none); ``lines`` (n,) object
    tuples of (barcode, signed quantity) applied; ``confidence`` (n,) float64. Raises ValueError on shapes.
    """

    bins: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    outcome: np.ndarray
    track: np.ndarray
    lines: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        check_rows(self, ("bins", "t_end", "outcome", "track", "lines", "confidence"), self.t_start.shape[0])

    def __len__(self) -> int:
        return int(self.t_start.shape[0])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple]) -> "Decisions":
        """From rows ``(bins, t_start, t_end, outcome, track, lines, confidence)``."""
        cols = list(zip(*rows)) if rows else [()] * 7

        def obj(values):
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
            return arr

        return cls(obj(cols[0]), np.asarray(cols[1], dtype=np.float64), np.asarray(cols[2], dtype=np.float64),
                   obj(cols[3]), obj(cols[4]), obj(cols[5]), np.asarray(cols[6], dtype=np.float64))

    def events(self) -> int:
        """Detected shelf events (split rows counted once), without those fusion took for noise (``none``: a weak
        change nobody reached for), so that they do not dilute the review rate."""
        return len({(tuple(b), float(t)) for b, t, o in zip(self.bins, self.t_start, self.outcome) if o != "none"})

    @property
    def review_rate(self) -> float:
        """Share of detected events sent to review (0 when there are none)."""
        return float(np.sum(self.outcome == "review")) / self.events() if len(self) else 0.0


def match_events(decisions: Decisions, truth, *, slack_s: float = 1.0) -> dict[int, int]:
    """Truth event index → decision index: the detected event sharing a bin with it whose interval (widened by
    ``slack_s``) holds the truth's weight-change time, nearest in time first; each detection matches once."""
    out: dict[int, int] = {}
    used: set[int] = set()
    pairs = []
    for i in range(len(truth)):
        tb = set(truth.bins[i])
        for j in range(len(decisions)):
            if (decisions.t_start[j] - slack_s <= truth.t[i] <= decisions.t_end[j] + slack_s
                    and tb & set(decisions.bins[j])):
                mid = 0.5 * (decisions.t_start[j] + decisions.t_end[j])
                pairs.append((abs(mid - truth.t[i]), i, j))
    for _, i, j in sorted(pairs):
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


@dataclass(frozen=True)
class ScenarioRow:
    """Events of one scenario: how many, and how many fusion got right alone, sent to review, got wrong, missed."""

    name: str
    events: int
    right: int
    reviewed: int
    wrong: int
    missed: int


@dataclass(frozen=True)
class SessionReport:
    """Everything :func:`evaluate_session` measures. ``score`` over party-merged receipts; ``detected`` shelf
    events; ``reviewed`` of them sent to people; ``scenarios`` one row per label present."""

    score: ReceiptScore
    detected: int
    reviewed: int
    scenarios: tuple[ScenarioRow, ...] = field(default_factory=tuple)

    @property
    def review_rate(self) -> float:
        return self.reviewed / self.detected if self.detected else 0.0


def _right(decisions: Decisions, j: int, truth, i: int, party_of: Mapping[str, str]) -> bool:
    """Whether the automatic decision on detected event ``j`` gave truth event ``i`` right: the lines that event's
    rows (one per cart change: an event cut into two takes, or split between two shoppers, has several) charged
    to the truth's party are exactly the truth's lines."""
    if decisions.outcome[j] != "cart":
        return False
    lead = party_of.get(str(truth.track[i]), str(truth.track[i]))
    same = np.flatnonzero((decisions.t_start == decisions.t_start[j]) & (decisions.outcome == "cart"))
    lines: dict[str, int] = {}
    for k in same:
        if tuple(decisions.bins[k]) == tuple(decisions.bins[j]) and \
                party_of.get(str(decisions.track[k]), str(decisions.track[k])) == lead:
            for code, q in decisions.lines[k]:
                lines[code] = lines.get(code, 0) + q
    return sorted((c, q) for c, q in lines.items() if q) == sorted(truth.lines[i])


def evaluate_session(billed: Receipts, truth: Receipts, *, party_of: Mapping[str, str],
                     decisions: Decisions, truth_events=None, scenarios: Sequence[str] = SCENARIOS) -> SessionReport:
    """Score a session: party-merged receipts (:func:`score_receipts`), the review rate, and (with
    ``truth_events``, a ``carts.offline.simulation_truth.TruthEvents``) the per-scenario breakdown over the labels
    ``scenarios``. Raises ValueError as :func:`score_receipts`."""
    score = score_receipts(merge_parties(billed, party_of), merge_parties(truth, party_of))
    reviewed = int(np.sum(decisions.outcome == "review"))
    rows: list[ScenarioRow] = []
    if truth_events is not None and len(truth_events):
        match = match_events(decisions, truth_events)
        for name in scenarios:
            idx = [i for i in range(len(truth_events)) if name in truth_events.scenarios[i]]
            if not idx:
                continue
            right = rev = wrong = missed = 0
            for i in idx:
                j = match.get(i)
                if j is None:
                    missed += 1
                elif decisions.outcome[j] == "review":
                    rev += 1
                elif _right(decisions, j, truth_events, i, party_of):
                    right += 1
                else:
                    wrong += 1
            rows.append(ScenarioRow(name, len(idx), right, rev, wrong, missed))
    return SessionReport(score=score, detected=decisions.events(), reviewed=reviewed, scenarios=tuple(rows))


def oracle_answers(decisions: Decisions, truth_events, *, slack_s: float = 1.0
                   ) -> dict[int, list[tuple[str, tuple[tuple[str, int], ...]]]]:
    """What a perfect reviewer decides for each decision sent to review: decision index → [(acting track, lines)]
    for every true event behind it (several when shoppers' changes merged into one event), each true event given
    to one review only (the one matched by :func:`match_events`, else the first that covers it); an empty list
    (a spurious weight change) means dismissed. True events already matched to an automatic decision are left
    out."""
    match = match_events(decisions, truth_events, slack_s=slack_s)
    taken = {i for i, j in match.items() if decisions.outcome[j] != "review"}
    out: dict[int, list] = {int(j): [] for j in np.flatnonzero(decisions.outcome == "review")}
    for i in range(len(truth_events)):
        if i in taken:
            continue
        j = match.get(i)
        if j is None or j not in out:
            tb = set(truth_events.bins[i])
            j = next((j for j in out if tb & set(decisions.bins[j]) and decisions.t_start[j] - slack_s
                      <= truth_events.t[i] <= decisions.t_end[j] + slack_s), None)
        if j is not None:
            out[j].append((str(truth_events.track[i]), tuple(truth_events.lines[i])))
    return out


# --------------------------------------------------------------------------------------------- offline pipeline
def planogram_from_store(store: Mapping) -> weight.Planogram:
    """A parsed ``store.json`` as ``sensors.weight.Planogram`` — the same as ``sensors.services.planogram_for``
    builds from the database: bins in code order, facings, unit weights (g), neighbours = bins numbered ±1 on the
    same shelf."""
    bins = sorted(((g["number"], s["number"], b) for g in store["gondolas"] for s in g["shelves"]
                   for b in s.get("bins", [])), key=lambda x: x[2]["code"])
    by_shelf: dict[tuple[int, int], dict[int, str]] = {}
    for gn, sn, b in bins:
        by_shelf.setdefault((gn, sn), {})[b["number"]] = b["code"]
    neighbours = {b["code"]: tuple(c for n in (b["number"] - 1, b["number"] + 1)
                                   if (c := by_shelf[(gn, sn)].get(n))) for gn, sn, b in bins}
    facings: dict[str, list[str]] = {}
    for f in store["facings"]:
        facings.setdefault(f["bin"], []).append(f["barcode"])
    products = sorted(store["products"], key=lambda p: p["barcode"])
    pw = weight.ProductWeights(np.array([p["barcode"] for p in products], dtype=object),
                               np.array([float(p["unit_weight_g"]) for p in products], dtype=np.float64),
                               np.array([float(p.get("unit_weight_sd_g", 0.0)) for p in products], dtype=np.float64))
    return weight.Planogram(bin_codes=tuple(b["code"] for _, _, b in bins),
                            facings={k: tuple(v) for k, v in facings.items()}, products=pw, neighbours=neighbours)


@dataclass(frozen=True)
class OfflineResult:
    """What :func:`offline_replay` did: ``decisions`` per detected event, the ``billed`` receipts per track
    (after oracle review when asked), ``party_of`` (track → lead), the ``events`` detected."""

    decisions: Decisions
    billed: dict[str, dict[str, int]]
    party_of: dict[str, str]
    events: tuple[weight.ShelfEvent, ...]


class MemorySink:
    """:class:`carts.loop_sink.LoopSink` in memory, for the offline pipeline: carts per track, one decision row per
    event (``(bins, t_start, t_end, outcome, track, lines, confidence)``, :class:`Decisions`); the key of a stored
    event is the event itself, that of a review item its row number. ``entries``: the tracks with a visit."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.carts: dict[str, dict[str, int]] = {t: {} for t in entries}
        self.rows: list[tuple] = []
        self.follow: list[int] = []  # rows of put-backs waiting for the review of their pick
        self.events: list[weight.ShelfEvent] = []
        self.checkouts: dict[str, float] = {}
        self.bound: dict[str, object] = {}  # live binding: track → visit key
        self.exited: dict[str, float] = {}  # live exits seen by the loop: track → t
        self.alerts: list[tuple[str, str]] = []  # (kind, message)

    def shelf_event(self, event):
        self.events.append(event)
        return len(self.events) - 1

    def decided(self, key):
        return False  # every event is decided once, in this process

    def holdings(self, tracks):
        return {t: self.carts.setdefault(t, {}) for t in tracks}

    def open_reviews(self, keys):
        return list(keys)  # the oracle decides at the end: every review stays open till then

    def noise(self, key, event, decision):
        self.rows.append((event.bin_codes, event.t_start, event.t_end, "none", "", (), decision.confidence))

    def apply(self, key, event, decision):
        for track, code, q in decision.changes:  # one row per cart change (two when two takes merged)
            cart = self.carts.setdefault(track, {})
            cart[code] = cart.get(code, 0) + q
            self.rows.append((event.bin_codes, event.t_start, event.t_end, "cart", track, ((code, q),),
                              decision.confidence))
        return None

    def review(self, key, event, decision, reason):
        self.rows.append((event.bin_codes, event.t_start, event.t_end, "review", "", (), decision.confidence))
        return len(self.rows) - 1

    def wait(self, key, event, decision, follows):
        self.follow.append(len(self.rows))
        self.rows.append((event.bin_codes, event.t_start, event.t_end, "follow", decision.track_id,
                          ((decision.barcode, decision.quantity),), decision.confidence))
        return True

    def checkout(self, track, t):
        self.checkouts[track] = t
        return True

    # live binding and exits (``carts.loop.StoreLoop.on_gate_entry``, ``infer_exits``): kept for inspection
    def bind(self, track, visit, t, *, continues=None):
        self.carts.setdefault(track, {})
        self.bound[track] = visit

    def unbound(self, visit, t, reason):
        self.alerts.append(("unbound", reason))

    def exit(self, track, visit, t, reason):
        self.exited[track] = t

    def alert(self, kind, message, *, key=None):
        self.alerts.append((kind, message))

    def forget(self, track):
        pass  # the offline run reads every cart at the end



def feed_step(loop: StoreLoop, step, party_of: dict[str, str], *, shelves: bool = True) -> None:
    """Give ``loop`` one ``recording_steps`` step, in the order the live store gets it: gate scans (an entry with
    its party lead from ``party_of``, track → lead), then camera observations, then (``shelves``) the shelf blocks.
    Does not advance the loop."""
    for scan in step.gates:
        if scan.kind == "entry":
            lead = party_of.get(scan.track, scan.track)
            loop.on_entry(track=scan.track, t=scan.t, party_lead=lead if lead != scan.track else None)
        else:
            loop.on_exit(track=scan.track, t=scan.t)
    loop.on_observations(step.tracks)
    if shelves:
        for bin_codes, t, grams, rate_hz in step.shelves:
            loop.on_samples(bin_codes=bin_codes, t=t, grams=grams, rate_hz=rate_hz)


def offline_replay(recording, *, review_confidence: float = 0.6, settle_s: float = 3.0,
                   fusion: FusionConfig = FusionConfig(), detector: weight.DetectorConfig | None = None,
                   truth_events=None, party_within_s: float = 10.0,
                   events: Sequence[weight.ShelfEvent] | None = None, step_s: float = 0.2,
                   loop_config: LoopConfig | None = None, product_evidence=None) -> OfflineResult:
    """Run ``recording`` (a ``store.recording.Recording`` or anything with ``store``, ``shelves``, ``tracks``,
    ``gates``, ``t_start``, ``t_end``) through the store loop (``carts.loop.StoreLoop``, the live store's own
    orchestrator) with its outputs kept in memory (:class:`MemorySink`), fed in steps of ``step_s`` seconds.
    Visits are the gate entries; a party is one account's entries within ``party_within_s``
    (``carts.offline.simulation_truth.parties_from_gates``, as the replay does); exits make a track ineligible
    ``settle_s`` after them. With ``truth_events``, open review items are resolved by the oracle reviewer at the end,
    then each waiting put-back applies if its party holds the item, else goes to the oracle as a review of its own (as
    ``carts.services.review.review_resolve`` settles them in the store). ``events``: shelf events already detected (e.g.
    ``OfflineResult.events`` of an earlier run: a threshold sweep need not detect again). ``loop_config``: the
    loop's knobs (its ``review_confidence`` and ``settle_s`` are replaced by the arguments above).
    ``product_evidence``: the recogniser, ``(shelf event, decision) → {barcode: probability} | None`` (e.g.
    ``carts.offline.simulation_products.ProductEvidence``): each decision is re-weighted by it
    (``carts.fusion_products.with_product_evidence``); None: weight and hands only.
    Raises ValueError from the detector on malformed samples."""
    from dataclasses import replace

    party_of = parties_from_gates(recording.gates, within_s=party_within_s)
    sink = MemorySink([g.track for g in recording.gates if g.kind == "entry"])
    if product_evidence is not None:
        sink.product_likelihood = product_evidence  # the loop asks its sink (carts.loop.StoreLoop._image_evidence)
    loop = StoreLoop(planogram=planogram_from_store(recording.store), bins=BinGeometry.from_store(recording.store),
                     sink=sink, fusion=fusion, detector=detector,
                     config=replace(loop_config or LoopConfig(), review_confidence=review_confidence,
                                    settle_s=settle_s))
    if events is not None:
        loop.on_events(sorted(events, key=lambda e: (e.t_end, e.bin_codes)))
    for step in recording_steps(recording, step_s=step_s):
        feed_step(loop, step, party_of, shelves=events is None)
        loop.advance(step.t_next)
    loop.finish()
    decisions, billed = sink_receipts(sink, party_of, truth_events)
    detected = tuple(sink.events) if events is None else tuple(events)
    return OfflineResult(decisions=decisions, billed=billed, party_of=party_of, events=detected)


def sink_receipts(sink: MemorySink, party_of: Mapping[str, str], truth_events=None
                  ) -> tuple[Decisions, dict[str, dict[str, int]]]:
    """The decisions and billed receipts (track → {barcode: quantity > 0}) of a finished loop's ``sink``. With
    ``truth_events``, open review items are resolved by the oracle reviewer first, then each waiting put-back applies
    if its party (``party_of``: track → lead) holds the item, else goes to the oracle as a review of its own (as
    ``carts.services.review.review_resolve`` settles them in the store). Updates the sink's carts and rows."""
    carts, rows = sink.carts, sink.rows
    if truth_events is not None:
        _oracle_apply(Decisions.from_rows(rows), truth_events, carts, party_of)
        # the reviews resolved, each waiting put-back applies if its party now holds the item, else goes to people
        unsettled = []
        for i in sink.follow:
            bins_, t0, t1, _, track, ((code, q),), conf = rows[i]
            dest = party_holder(track, code, q, carts, party_of)
            if dest is None:
                rows[i] = (bins_, t0, t1, "review", "", (), conf)
                unsettled.append(i)
            else:
                carts[dest][code] = carts[dest].get(code, 0) + q
                rows[i] = (bins_, t0, t1, "cart", dest, ((code, q),), conf)
        if unsettled:
            _oracle_apply(Decisions.from_rows(rows), truth_events, carts, party_of, only=set(unsettled))
    return Decisions.from_rows(rows), {t: {c: q for c, q in cart.items() if q > 0} for t, cart in carts.items()}


def party_holder(track: str, code: str, q: int, carts: Mapping[str, Mapping[str, int]],
                 party_of: Mapping[str, str]) -> str | None:
    """The member of ``track``'s party whose cart can take ``q`` units of ``code`` (``track`` itself first; any
    member for a take), or None when nobody in the party holds enough for a put-back."""
    if q >= 0 or carts.get(track, {}).get(code, 0) >= -q:
        return track if track in carts else None
    key = party_of.get(track, track)
    return next((m for m in carts if party_of.get(m, m) == key and carts[m].get(code, 0) >= -q), None)


def _oracle_apply(decisions: Decisions, truth_events, carts: dict[str, dict[str, int]],
                  party_of: Mapping[str, str], only: set[int] | None = None) -> None:
    """Apply the oracle reviewer's answers for the review rows (``only`` these) to ``carts``: a put-back goes to
    the party member holding the item, and one that nobody in the party holds is left out (the live store's review
    service refuses it; ``carts.offline.replay.reviews_resolve_by_truth`` leaves it out too)."""
    for j, found in oracle_answers(decisions, truth_events).items():
        if only is not None and j not in only:
            continue
        for track, lines in found:
            for code, q in lines:
                dest = party_holder(track, code, q, carts, party_of)
                if dest is None and q < 0:
                    continue  # a put-back of an item nobody in the party was charged for: nothing to take back
                dest = dest or track
                if dest in carts:
                    carts[dest][code] = carts[dest].get(code, 0) + q


def confidence_outcomes(decisions: Decisions, truth_events, party_of: Mapping[str, str]
                        ) -> list[tuple[float, bool]]:
    """Every automatic decision (``cart`` rows; an event whose changes went to several carts counted once) as
    (its confidence, whether it gave the true events matched to it exactly right, every one of them); an
    automatic change that matches no true event is wrong (a phantom charge)."""
    match = {j: i for i, j in match_events(decisions, truth_events).items()}
    out = []
    seen: set[tuple] = set()
    for j in np.flatnonzero(decisions.outcome == "cart"):
        key = (tuple(decisions.bins[j]), float(decisions.t_start[j]))
        if key in seen:
            continue
        seen.add(key)
        same = [k for k in np.flatnonzero((decisions.t_start == decisions.t_start[j]) & (decisions.outcome == "cart"))
                if tuple(decisions.bins[k]) == key[0]]
        matched = [k for k in same if k in match]
        ok = bool(matched) and all(_right(decisions, k, truth_events, match[k], party_of) for k in matched)
        out.append((float(decisions.confidence[j]), ok))
    return out


def reliability(decisions: Decisions, truth_events, party_of: Mapping[str, str],
                edges: Sequence[float] = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99, 1.0001)
                ) -> list[tuple[float, float, int, float]]:
    """Calibration check of the automatic decisions: per confidence bin ``[lo, hi)``, (lo, hi, count, share
    right) against the truth events (unmatched detections count as wrong). Share is NaN for an empty bin."""
    match = {j: i for i, j in match_events(decisions, truth_events).items()}
    out = []
    auto = np.flatnonzero(decisions.outcome == "cart")
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [j for j in auto if lo <= decisions.confidence[j] < hi]
        ok = sum(1 for j in sel if j in match and _right(decisions, j, truth_events, match[j], party_of))
        out.append((lo, hi, len(sel), ok / len(sel) if sel else math.nan))
    return out
