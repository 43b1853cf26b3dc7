"""The store loop: the one orchestrator of a store's live decisions (pure Python and NumPy, no Django).

One :class:`StoreLoop` per store takes time-stamped records from four sources — shelf sample blocks, shopper-track
observations (keypoints in store metres), entries (a visit bound to a track) and exits, plus RFID tag events (shelf
takes and returns as evidence, exit-lane reads as the tags a leaving shopper carries) — and turns them into
shelf events, cart changes, review items, waiting put-backs and checkouts, which it hands to a :class:`LoopSink`.
The live store (``carts.runtime``: ``run_store``, the embedded ingestion path), ``replay`` and the offline accuracy
benchmark (``carts.offline.evaluation.offline_replay``) all run this object; only their sinks differ (the database, or
memory). DESIGN.md "Running a store live".

Time: the loop works on the sources' own clocks, never on arrival order. ``advance(now)`` says every source has
been fed up to ``now`` (a record at ``now`` itself may still come: a step's rows are those before its end); a shelf
event is decided at its horizon ``t_end + fusion.pad_s`` once ``now`` is past it, reading no record after it, always
with the visits known by then (a gate-bound track from its binding's moment on, ``bind_after_s`` after the scan), so
a decision does not depend on how the input was batched nor on how far each step advanced
(tests/test_store_loop.py drives one session in steps of two sizes).

Memory is bounded by the fusion window and the settle time: observations are kept only as far back as the
oldest undecided event needs (``LoopConfig.lookback_s``), and visits long gone are forgotten
(``LoopConfig.forget_after_s``), so a day of trading holds no more than a busy minute. The whole state pickles
(:meth:`StoreLoop.snapshot`, :meth:`StoreLoop.restore`): the store worker checkpoints it with its stream offsets.
"""
from __future__ import annotations

import io
import logging
import math
import pickle
from collections import deque
from typing import Hashable, Iterable, Mapping, Sequence, cast

import numpy as np

from sensors import weight
from sensors.rfid import TagEvent
from store.recording import TrackObservations
from vision.identity import REPAIR_LOOKBACK_S
from vision.identity_frames import BodyFrames, FramedBodies

from .chunks import ChunkStore, ChunkPickler, ChunkUnpickler
from .fusion import Decision, body_rows_from, decide_event, eligible_tracks, evidence_window
from .fusion_config import BinGeometry, FusionConfig
from .loop_billing import CheckoutGate
from .loop_binding import TrackBinding
from .loop_config import LoopConfig
from .loop_shelves import ShelfIntake
from .loop_sink import LoopSink, ProductEvidenceSink
from .loop_state import BillWait as BillWait, LoopStats  # BillWait: checkpoints name it here (below)
from .loop_window import ObservationWindow
from .reach_look import ReachLook, ReachLookConfig
from .fusion_products import with_product_evidence

# Checkpoints (:meth:`StoreLoop.snapshot`) pickle the loop's state, whose objects name their classes by module:
# those written before these classes moved to modules of their own name ``carts.loop.LoopConfig``,
# ``carts.loop.BillWait``, ``carts.loop.LoopStats`` and ``carts.loop.ObservationWindow`` (and
# ``carts.fusion.FusionConfig``), so these names stay importable here, as ``carts.loop_billing.BillWait`` does
# there for later ones (tests/test_store_loop.py checks it).

log = logging.getLogger(__name__)

#: The keypoints kept for the identity check of fusion (``vision.identity``: where a track's body is).
BODY_KEYPOINTS = ("neck", "head")


def pending_picks(decision: Decision, event: weight.ShelfEvent | None = None,
                  planogram: weight.Planogram | None = None) -> list[tuple[str, str, int]]:
    """What a decision sent to review may have put in carts: (track, barcode, units) for every candidate track
    with a posterior of at least 5 % and every pick option with a posterior of at least 5 % — what fusion's
    ``pending`` holdings are made of (a later put-back of such an item waits for this review instead of becoming a
    second one). With ``event`` (a loss, Δ < 0) and ``planogram``: also one unit of every product facing the
    event's bins that the options do not list. A pick goes to review mostly because its weight fits no option
    well (part of the item resting on a plate outside the event, two changes merged): the person who decides it
    may well find a facing product there, and the shopper who then puts that product back holds it through this
    review (tuning seeds: such put-backs read as another held item of a poor fit, docs/accuracy.md change 8)."""
    tracks = [c.track_id for c in decision.candidates if c.posterior >= 0.05]
    opts = [(o.barcode, o.quantity) for o in decision.options if o.quantity > 0 and o.barcode and o.posterior >= 0.05]
    if event is not None and planogram is not None and event.delta_g < 0 and not event.weak:
        listed = {b for b, _ in opts}
        opts += [(b, 1) for b in sorted({p for c in event.bin_codes for p in planogram.facings.get(c, ())} - listed)]
    return [(t, b, q) for t in tracks for b, q in opts]


def pending_holdings(review_picks: Mapping[Hashable, Sequence[tuple[str, str, int]]], tracks: Sequence[str]
                     ) -> dict[str, dict[str, int]]:
    """What each of ``tracks`` may hold through the picks of open reviews (``review_picks``: review → its
    :func:`pending_picks`, in the order the reviews were opened): fusion's ``pending``."""
    out: dict[str, dict[str, int]] = {}
    wanted = set(tracks)
    for key in review_picks:
        for track, code, q in review_picks[key]:
            if track in wanted:
                out.setdefault(track, {})[code] = out.get(track, {}).get(code, 0) + q
    return out


def spend_picks(picks: Sequence[tuple[str, str, int]], code: str, units: int) -> list[tuple[str, str, int]]:
    """``picks`` with ``units`` of ``code`` taken off each candidate's entry (a waiting put-back used them)."""
    return [(t, c, q - units if c == code else q) for t, c, q in picks if c != code or q - units > 0]


class StoreLoop(ShelfIntake, TrackBinding, CheckoutGate):
    """One store's live state and decisions (module docstring). Not thread-safe: feed it from one thread, in time
    order per source.

    ``planogram``: facings and unit weights of the whole store (``sensors.weight.Planogram``); ``bins``: bin
    geometry (metres, store coordinates); ``sink``: where outputs go (:class:`LoopSink`); ``fusion``/``detector``/
    ``config``: knobs. Raises KeyError from fusion when an event names a bin missing from ``bins``; ValueError when
    ``config.lookback_s`` keeps no more than the id-switch repair reads before an event (``fusion.pad_s`` +
    ``vision.identity.REPAIR_LOOKBACK_S``, with ``fusion.repair_id_switches``): its frames would be pruned first.
    """

    def __init__(self, *, planogram: weight.Planogram, bins: BinGeometry, sink: LoopSink,
                 fusion: FusionConfig = FusionConfig(), detector: weight.DetectorConfig | None = None,
                 config: LoopConfig = LoopConfig()) -> None:
        # the state's types and meanings: carts.loop_state.LoopState
        if fusion.repair_id_switches and config.lookback_s <= fusion.pad_s + REPAIR_LOOKBACK_S:
            raise ValueError(f"LoopConfig.lookback_s {config.lookback_s:g} s must exceed fusion's pad_s "
                             f"{fusion.pad_s:g} s + the id-switch repair's {REPAIR_LOOKBACK_S:g} s of frames "
                             "(it reads them before each event; the billing grid needs the margin)")
        self.planogram = planogram
        self.bins = bins
        self.sink = sink
        self.fusion = fusion
        self.detector_config = detector or weight.DetectorConfig()
        self.config = config
        self.now = -math.inf
        self.stats = LoopStats()
        self.entries = {}
        self.exits = {}
        self.party_of = {}
        self._to_bill = {}
        self._billed = {}
        self._bill_waits = {}
        self.bill_timings = deque(maxlen=1000)
        self.visit_of = {}
        self._bound_at = {}
        self._binds = []
        self._exit_scans = []
        self._recent_binds = []
        self._ambiguous = {}
        self._seen = {}
        self._lost = {}
        self.entry_zones = []
        self.gate_zones = {}
        self.exit_zones = []
        self._detectors = {}
        self._gondolas = {}
        self._planograms = {}
        self._held = {}
        self._pending = []
        self._involved = {}
        self._review_picks = {}
        self._open = None
        self._strays = {}
        self.hands = ObservationWindow()
        self.bodies = ObservationWindow()
        self.body_frames = BodyFrames()
        self._tag_events = []
        self._exit_reads = []
        self.shelf_horizon = math.inf
        self._look = ReachLook(planogram, bins, getattr(config, "reach_look", ReachLookConfig()))

    # ------------------------------------------------------------------------------------------- checkpoints
    def snapshot(self, chunks: tuple[ChunkStore, str, set[str]] | None = None) -> bytes:
        """The loop's whole state (detectors, held changes, undecided events, windows, visits) as bytes for a
        checkpoint, without the sink and the store's configuration (planogram, bin geometry: the restorer reads
        them afresh). Pickle: only ever read back by :meth:`restore` of the same code.

        ``chunks`` = (chunk store, store code, keys it holds already): the observation windows' parts go there
        by reference, each written once (:class:`PackedChunk`); the set is updated to the keys this snapshot
        refers to, and chunks no longer referred to are dropped from the store. Without it, one self-contained
        pickle."""
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("sink", "_planograms", "planogram", "bins", "body_frames",  # frames: from bodies
                              "_open", "_involved", "_gondolas", "_gone_chunks", "restored_chunks",
                              "bill_timings")}
        if chunks is None:
            return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        store_chunks, store, saved = chunks
        buf = io.BytesIO()
        pickler = ChunkPickler(buf, saved)
        pickler.dump(state)
        if pickler.new:
            store_chunks.save_chunks(store, pickler.new)
        gone = saved - pickler.used
        saved.clear()
        saved.update(pickler.used)
        self._gone_chunks = gone  # dropped by the caller once the checkpoint that no longer needs them is saved
        return buf.getvalue()

    def drop_gone_chunks(self, chunks: ChunkStore, store: str) -> None:
        """Drop the chunks the last :meth:`snapshot` stopped referring to (call after saving that snapshot)."""
        gone = self.__dict__.pop("_gone_chunks", set())
        if gone:
            chunks.drop_chunks(store, gone)

    @classmethod
    def restore(cls, data: bytes, *, sink: LoopSink, planogram: weight.Planogram, bins: BinGeometry,
                chunks: tuple[ChunkStore, str] | None = None) -> "StoreLoop":
        """A loop from :meth:`snapshot`'s bytes, writing to ``sink``, with the store's current ``planogram`` and
        ``bins``; ``chunks`` = (chunk store, store code) where the snapshot was taken with one. Raises
        ``pickle.UnpicklingError`` (or another unpickling error) for bytes that are not a snapshot, or whose
        chunks are missing."""
        loop = cls.__new__(cls)
        if chunks is None:
            state = pickle.loads(data)  # noqa: S301 — our own checkpoint, never input from outside
        else:
            store_chunks, store = chunks
            unpickler = ChunkUnpickler(io.BytesIO(data), lambda key: store_chunks.load_chunk(store, key))
            state = unpickler.load()
            #: the chunk keys the checkpoint referred to (the store's saved set for the next snapshot)
            state["restored_chunks"] = unpickler.keys
        loop.__dict__.update(state)
        loop.__dict__.setdefault("_tag_events", [])  # a checkpoint of the code before RFID
        loop.__dict__.setdefault("_exit_reads", [])
        loop.__dict__.setdefault("_bill_waits", {})  # a checkpoint of the code before billing's timings
        loop.__dict__.setdefault("_billed", {})  # … before the checked-out marks
        loop.bill_timings = deque(maxlen=1000)
        loop.sink, loop.planogram, loop.bins, loop._planograms, loop._open = sink, planogram, bins, {}, None
        loop._involved = {}
        loop._gondolas = {}
        loop.body_frames = BodyFrames()
        loop.body_frames.add(loop.bodies.between(-math.inf, math.inf))  # the window's rows, in the order they came
        if "_look" in loop.__dict__:
            loop._look.attach(planogram, bins)
        else:  # a checkpoint of the code before the reach look starts one afresh
            loop._look = ReachLook(planogram, bins, getattr(loop.config, "reach_look", ReachLookConfig()))
        # a checkpoint of the code before entry-zone binding: scans without a gate, tracks without a first place
        loop.__dict__.setdefault("gate_zones", {})
        # (an old scan's tuple is short: padded to (t, visit, party lead visit, gate))
        loop._binds = [cast(tuple[float, Hashable, Hashable | None, str], tuple(b) + ("",) * (4 - len(b)))
                       for b in loop._binds]
        loop.__dict__.setdefault("_recent_binds", [])  # a checkpoint of the code before ambiguous bindings
        loop.__dict__.setdefault("_ambiguous", {})
        loop.__dict__.setdefault("_bound_at", {})  # a checkpoint of the code before: eligible from their entry
        loop.__dict__.setdefault("_exit_scans", [])  # a checkpoint of the code before: a party's scan exited all
        for seen in loop._seen.values():
            if len(seen) == 4:
                seen += seen[2:4]
        return loop

    # ------------------------------------------------------------------------------------------------ inputs

    def on_events(self, events: Iterable[weight.ShelfEvent]) -> None:
        """Feed shelf events detected elsewhere (a benchmark's threshold sweep reuses one detection): stored and
        decided as if the loop had detected them."""
        for event in events:
            self._store_event(event)

    def on_observations(self, obs: TrackObservations) -> None:
        """Feed shopper-track keypoints (metres, store coordinates); only hands and bodies are kept."""
        if len(obs) == 0:
            return
        hands = obs.hands()
        self.hands.add(hands)
        self._look.on_hands(hands)
        body = obs[np.isin(obs.keypoint, BODY_KEYPOINTS)]
        self.bodies.add(body)
        self.body_frames.add(body)
        ids, inverse = np.unique(obs.track_id.astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")  # each track's rows together, in their own order
        bounds = np.searchsorted(inverse[order], np.arange(len(ids) + 1))
        for i, track in enumerate(ids.tolist()):
            sel = order[bounds[i]:bounds[i + 1]]
            first, last = sel[np.argmin(obs.t[sel])], sel[np.argmax(obs.t[sel])]
            t0, t1 = float(obs.t[first]), float(obs.t[last])
            x0, y0 = float(obs.xyz[first, 0]), float(obs.xyz[first, 1])
            seen = self._seen.get(track)
            if seen is None:
                self._seen[track] = [t0, t1, float(obs.xyz[last, 0]), float(obs.xyz[last, 1]), x0, y0]
                continue
            if t0 < seen[0]:  # an older record of the track came late (another batch, a slower camera)
                seen[0], seen[4], seen[5] = t0, x0, y0
            if t1 >= seen[1]:
                seen[1:4] = [t1, float(obs.xyz[last, 0]), float(obs.xyz[last, 1])]

    def on_tags(self, events: Iterable[TagEvent]) -> None:
        """Feed RFID tag events (``sensors.rfid.TagEvent``, s UTC on the store clock): shelf ``take``/``return``
        events back the shelf events of their bin (:meth:`_decide`); ``exit`` reads are the tags that leave with
        the shopper exiting then (:meth:`_bill`)."""
        for e in events:
            self.stats.tag_events += 1
            (self._exit_reads if e.kind == "exit" else self._tag_events).append(e)
        self._exit_reads.sort(key=lambda e: e.t)
        self._tag_events.sort(key=lambda e: e.t)

    def on_entry(self, *, track: str, t: float, party_lead: str | None = None) -> None:
        """``track``'s shopper entered at ``t`` (s) with a visit (the gate bound them); ``party_lead``: the track
        of the party's first member when this visit joined a party (their carts are one for put-backs)."""
        self.entries[track] = float(t)
        self.exits.pop(track, None)
        self._billed.pop(track, None)  # a new visit on a track checked out before: its events are its cart's
        if party_lead is not None and party_lead != track:
            self.party_of[track] = self.party_of.get(party_lead, party_lead)
        self.stats.visits += 1

    def on_gate_entry(self, *, visit: Hashable, t: float, party_lead: Hashable | None = None, gate: str = "") -> None:
        """A gate admitted ``visit`` at ``t`` (s): the track that appeared at the gate then is bound to it once
        ``bind_after_s`` more is fed (:meth:`advance`); ``party_lead``: the visit whose party this one joined;
        ``gate``: the scanning gate's name (its entry zone, :attr:`gate_zones`, is where the track must appear)."""
        if visit in self.visit_of.values() or any(b[1] == visit for b in self._binds):
            return  # a redelivered scan
        self._binds.append((float(t), visit, party_lead, str(gate or "")))
        self._binds.sort(key=lambda b: b[0])

    def on_visit_exit(self, *, visit: Hashable, t: float) -> bool:
        """The visit left at ``t`` (an exit scan at the gate): its track exits. False when no track is bound.

        Live (``infer_exits``), a visit whose party has other members still inside is not taken to have left yet:
        the gate exits every open visit of the pass's holder at one member's scan, so the scan is this member's
        only if its track ends there (:meth:`_settle_exit_scans`, a few seconds later); a member still shopping is
        watched on and exits when its own track leaves."""
        track = next((k for k, v in self.visit_of.items() if v == visit and k not in self.exits), None)
        if track is None:
            self._binds = [b for b in self._binds if b[1] != visit]
            return False
        if self.config.infer_exits and self._others_inside(track):
            if all(tr != track for _, tr in self._exit_scans):
                self._exit_scans.append((float(t), track))
            return True
        return self.on_exit(track=track, t=t)

    def on_exit(self, *, track: str, t: float) -> bool:
        """``track``'s shopper left at ``t`` (s): billed once every event that could be theirs is decided.
        Returns False (and counts a problem) for a track with no visit."""
        if track not in self.entries:
            self.stats.problem(f"exit of track {track} at {t:.1f} s: no visit bound to it; ignored")
            return False
        if track in self.exits:
            return True
        self.exits[track] = float(t)
        self._to_bill[track] = float(t)
        return True

    # -------------------------------------------------------------------------------------------------- time
    def advance(self, now: float) -> None:
        """Every source has been fed up to ``now`` (s): decide the events whose evidence is complete, bill the
        visits whose settle time has passed, forget what no decision can need any more."""
        self.now = max(self.now, float(now))
        if self._binds:
            self._bind()
        if self._exit_scans:
            self._settle_exit_scans()
        if self.config.infer_exits and self.visit_of:
            self._watch_exits()
        self._release(force=False)
        self._reach_events()
        pad = self.fusion.pad_s
        # past the horizon, not at it: a record at ``now`` may still come (the rows at the horizon are read)
        ready = sorted((p for p in self._pending if p[1].t_end + pad < self.now),
                       key=lambda p: (p[1].t_end, p[1].bin_codes))
        if ready:
            done = {id(p) for p in ready}
            self._pending = [p for p in self._pending if id(p) not in done]
            # the open reviews, read once per step (one query of the sink, not one per event); the reviews this
            # step opens join them as it goes (_review)
            self._open = self._open_reviews()
            try:
                for key, event in ready:
                    self._decide(key, event)
            finally:
                self._open = None
        self._bill()
        self._forget()

    def finish(self) -> None:
        """End of the stream (a bounded run: a replay, a benchmark): flush the detectors, decide everything left,
        bill every exit. Never for a worker restart, which must not bill open visits early."""
        for codes, det in self._detectors.items():
            changes = det.flush()
            if len(changes):
                self._held.setdefault(codes, []).append(changes)
        self._release(force=True)
        self.advance(math.inf)


    def _open_reviews(self) -> list[Hashable]:
        if not self._review_picks:
            return []
        open_ = self.sink.open_reviews(list(self._review_picks))
        for key in set(self._review_picks) - set(open_):  # decided by people: their picks are in the carts now
            del self._review_picks[key]
        return open_

    def _decide(self, key: Hashable, event: weight.ShelfEvent) -> None:
        if self.sink.decided(key):
            log.info("shelf event %s was decided before; not again", key)
            return
        cfg, pad = self.fusion, self.fusion.pad_s
        now = event.t_end + pad
        if event.t_start - pad < self.hands.t_min - 1e-9 and math.isfinite(self.hands.t_min) and len(self.hands):
            self.stats.late_evidence += 1
        entries = self.entries if not self._bound_at else {
            k: v for k, v in self.entries.items() if self._bound_at.get(k, v) <= now}
        eligible = eligible_tracks(entries, {k: v for k, v in self.exits.items() if v <= now}, event, now=now,
                                   settle_s=self.config.settle_s)
        open_reviews = self._open if self._open is not None else self._open_reviews()
        (h0, h1), (b0, b1) = evidence_window(event, cfg)
        # no body after the horizon (the hidden hands read hidden_seen_s past the event's end): the rows that had
        # come by the step that decides would be read, more in a longer step
        b1 = min(b1, now)
        d = decide_event(event, self.hands.between(h0, h1), self.bins, self.planogram, carts=self.sink.holdings(eligible),
                         party_of=self.party_of, eligible=eligible, review_confidence=self.config.review_confidence,
                         config=cfg, bodies=self._bodies(b0, b1, rows_from=body_rows_from(event, cfg)),
                         pending=pending_holdings({k: self._review_picks[k] for k in open_reviews}, eligible),
                         strays={c: self._strays[c] for c in event.bin_codes if c in self._strays})
        if not d.noise and self._tag_events and hasattr(self.sink, "tag_evidence"):
            tags = self._shelf_tags(event)
            if tags:
                self.sink.tag_evidence(key, tags)
        if d.noise:
            self.stats.noise += 1
            self.sink.noise(key, event, d)
            return
        if hasattr(self.sink, "product_likelihood"):
            d = self._image_evidence(event, d)
        flag = self._binding_flag(d) if self._ambiguous else None
        if d.review or not d.changes:
            return self._review(key, event, d, d.reason if flag is None else f"{flag}; {d.reason}")
        if flag is not None:  # the cart it names may be another shopper's: people decide
            return self._review(key, event, d, f"{flag}; {d.reason}")
        if d.awaits_review:
            # fusion sets awaits_review only on a put-back it attributed: a shopper and a product
            assert d.track_id is not None and d.barcode is not None
            lead = self.party_of.get(d.track_id, d.track_id)
            follows = next((k for k in open_reviews for track, code, _ in self._review_picks[k]
                            if code == d.barcode and self.party_of.get(track, track) == lead), None)
            if follows is None or not self.sink.wait(key, event, d, follows):
                return self._review(key, event, d, d.reason)
            self._review_picks[follows] = spend_picks(self._review_picks[follows], d.barcode, -d.quantity)
            self.stats.waiting += 1
            return None
        late = sorted({t for t, _, _ in d.changes if t in self._billed})
        if late:  # their receipt is out: people decide (a correction), never a line on a closed cart
            self.stats.after_bill += 1
            self.stats.problem(f"the shelf event on {','.join(event.bin_codes)} at {event.t_start:.1f} names "
                               f"{', '.join(late)}, checked out before it was decided: to review")
            return self._review(key, event, d, f"names {', '.join(late)}, already checked out")
        reason = self.sink.apply(key, event, d)
        if reason is not None:
            return self._review(key, event, d, reason)
        self.stats.cart_events += len(d.changes)
        self._track_strays(event, d)
        return None

    def _binding_flag(self, d: Decision) -> str | None:
        """Why ``d``'s shopper (its changes' tracks, else its track) may be bound to the wrong visit (a flagged
        binding, :meth:`_flag_ambiguous`), or None."""
        tracks = [t for t, _, _ in d.changes] or ([d.track_id] if d.track_id is not None else [])
        return next((self._ambiguous[t] for t in tracks if t in self._ambiguous), None)

    def _track_strays(self, event: weight.ShelfEvent, d: Decision) -> None:
        """Keep :attr:`_strays` (items lying on bins that do not face them) after an applied decision: a put-back
        of a product facing none of the event's bins adds its units on each of them (it lies on one); a pick of a
        stray product takes them away."""
        facings = self.planogram.facings
        for _, code, q in d.changes:
            faced = any(code in facings.get(c, ()) for c in event.bin_codes)
            if q < 0 and not faced:
                for c in event.bin_codes:
                    here = self._strays.setdefault(c, {})
                    here[code] = here.get(code, 0) - q
            elif q > 0 and not faced:
                for c in event.bin_codes:
                    here = self._strays.get(c, {})
                    if code in here:
                        here[code] = max(0, here[code] - q)
                        if not here[code]:
                            del here[code]

    def _image_evidence(self, event: weight.ShelfEvent, decision: Decision) -> Decision:
        """``decision`` re-weighted by what the camera saw in the taking hand: the sink's ``product_likelihood(event,
        decision)`` (``{barcode: probability}`` or None) through ``carts.fusion_products.with_product_evidence``. A
        likelihood that is refused (negative, not finite, not a mapping) is a counted problem; the decision stands."""
        try:
            # _decide asks only a sink that has it (hasattr): the optional ProductEvidenceSink method
            likelihood = cast(ProductEvidenceSink, self.sink).product_likelihood(event, decision)
            if not likelihood:
                return decision
            return with_product_evidence(decision, likelihood, review_confidence=self.config.review_confidence,
                                         mix=getattr(self.config, "image_mix", LoopConfig.image_mix))
        except (TypeError, ValueError, AttributeError) as exc:
            self.stats.problem(f"product image evidence for the event on {','.join(event.bin_codes)} at "
                               f"{event.t_start:.1f} refused: {exc}")
            return decision

    def _bodies(self, t0: float, t1: float, *, rows_from: float = -math.inf) -> FramedBodies:
        """The body rows of ``[max(t0, rows_from), t1]`` with the per-track frames of ``[t0, t1]`` they came with
        (``vision.identity.find_swaps`` reads those, not the rows; ``carts.fusion.body_rows_from``)."""
        rows = self.bodies.between(max(t0, rows_from), t1)
        return FramedBodies(rows.track_id, rows.t, rows.keypoint, rows.xyz, rows.score, frames=self.body_frames,
                            t0=t0, t1=t1, rows_t0=rows_from, codes=rows.codes)

    def _shelf_tags(self, event: weight.ShelfEvent) -> list[dict]:
        """The shelf tag events on the event's bins within ``pad_s`` of it, each with ``hand``: a hand came within
        ``tag_hand_m`` of the bin then (a tag that stops being read with a hand there is a take)."""
        pad = self.fusion.pad_s
        out = []
        hands = self.hands.between(event.t_start - 2 * pad, event.t_end + 2 * pad)  # within pad of a tag event
        for e in self._tag_events:
            if e.where not in event.bin_codes or not event.t_start - pad <= e.t <= event.t_end + pad:
                continue
            d = e.as_dict()
            d["hand"] = False
            if e.where in self.bins.codes and len(hands):
                centre = self.bins.centre[self.bins.codes.index(e.where)]
                near = np.abs(hands.t - e.t) <= pad
                if near.any():
                    dist = np.hypot(hands.xyz[near, 0] - centre[0], hands.xyz[near, 1] - centre[1])
                    d["hand"] = bool(dist.min() <= self.config.tag_hand_m)
            out.append(d)
        return out

    def _review(self, key: Hashable, event: weight.ShelfEvent, decision: Decision, reason: str) -> None:
        review_key = self.sink.review(key, event, decision, reason)
        if self._open is not None and review_key not in self._review_picks:
            self._open.append(review_key)  # open, and the newest: last, as the sink lists them
        self._review_picks[review_key] = pending_picks(decision, event, self.planogram)
        self.stats.reviews += 1


    def _forget(self) -> None:
        """Drop observations older than any undecided event needs, and visits gone long ago."""
        oldest = min([ev.t_start for _, ev in self._pending]
                     + [float(c.t_start.min()) for cs in self._held.values() for c in cs] + [self.now])
        if math.isfinite(oldest):
            before = oldest - max(self.config.lookback_s, self.fusion.pad_s, self.fusion.id_window_s)
            self.hands.prune(before)
            self.bodies.prune(before)
            self.body_frames.prune(before)
        if self._involved:
            pending = {(ev.t_start, ev.t_end, ev.bin_codes) for _, ev in self._pending}
            self._involved = {k: v for k, v in self._involved.items() if k[:3] in pending}
        if math.isfinite(oldest):
            keep = oldest - max(self.config.lookback_s, self.fusion.pad_s)
            if self._tag_events and self._tag_events[0].t < keep:
                self._tag_events = [e for e in self._tag_events if e.t >= keep]
        if self._exit_reads and math.isfinite(self.now):
            lane = self.config.exit_lane
            keep = min([t for t in self._to_bill.values()] + [self.now]) - lane.before_s - lane.after_s - 1.0
            if self._exit_reads[0].t < keep:
                self._exit_reads = [e for e in self._exit_reads if e.t >= keep]
        horizon = self.now - self.config.forget_after_s
        if not math.isfinite(horizon):
            return
        for t in [t for t, seen in self._seen.items() if seen[1] < horizon and t not in self.entries]:
            del self._seen[t]  # never bound (a passer-by seen through the glass, a track split off a shopper)
        gone = [t for t, t_out in self.exits.items() if t_out < horizon and t not in self._to_bill]
        if not gone:
            return
        leads_in_use = {self.party_of.get(t, t) for t in self.entries if t not in gone}
        for t in gone:
            self.sink.forget(t)
            self.entries.pop(t, None)
            self.exits.pop(t, None)
            self.visit_of.pop(t, None)
            self._ambiguous.pop(t, None)
            self._bound_at.pop(t, None)
            self._seen.pop(t, None)
            self._billed.pop(t, None)
            if self.party_of.get(t, t) not in leads_in_use:
                self.party_of.pop(t, None)
        for key, picks in list(self._review_picks.items()):
            kept = [p for p in picks if p[0] in self.entries]
            if kept:
                self._review_picks[key] = kept
            else:
                del self._review_picks[key]

