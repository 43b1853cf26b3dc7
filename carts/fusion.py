"""Fusion: who caused a shelf event, and what they took or put back (pure NumPy, no Django).

One decision function, :func:`decide_event`, called by the Django pipeline and the offline pipeline alike, joins
the hand evidence (``carts.fusion_hands``), the weight options and the carts (``carts.fusion_options``) into one
posterior over (shopper track, product × quantity); below the review threshold the event goes to people. The
model is described in docs/fusion.md; every knob is a field of ``carts.fusion_config.FusionConfig``, documented
where it is declared; how the tuned defaults were chosen is in docs/accuracy.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from sensors import weight
from store.recording import HAND_KEYPOINTS, TrackObservations
from vision import identity

from .fusion_activity import walking_hands
from .fusion_config import BinGeometry, FusionConfig, _Event
from .fusion_hands import (
    Candidate, HandEvidence, _hand_reason, _track_names, candidate_reach_m, hand_evidence, hidden_hands, wrist_ray_hands,
)
from .fusion_options import (
    Holdings, _off_its_facing, _others_took_nothing, _pick_options, _putback_options, _where_the_hand_was,
    party_holdings,
)


# ---------------------------------------------------------------------------------------------- the decision
@dataclass(frozen=True)
class Option:
    """One scored (product × quantity) explanation in a :class:`Decision`: ``quantity`` signed (+ taken,
    − put back), ``likelihood`` the weight evidence (normalised), ``posterior`` its share of the joint."""

    barcode: str
    quantity: int
    likelihood: float
    posterior: float


@dataclass(frozen=True)
class Decision:
    """Fusion's answer for one shelf event.

    ``track_id``: the shopper whose hand did it (None: nobody found); ``charge_track``: the track whose cart gets
    the cart event (the actor, or for a put-back within a party the member who holds the item); ``barcode`` and
    ``quantity`` (signed units, + taken); ``confidence`` = posterior of that (track, product × quantity) pair, with
    ``attribution`` and ``product`` its two marginals; ``review``: the event must go to people (``reason`` says
    why); ``candidates`` (tracks, best first, with posteriors) and ``options`` (products) are the evidence;
    ``shares``: the cart changes to make, ``((track, signed units), …)`` — one, or two when two shoppers' takes of
    one product merged into one event (``charge_track``/``quantity`` then describe the whole).
    ``awaits_review``: a put-back of an item that the shopper's party does not hold yet but may, through a pick
    that is waiting in the review queue (``pending``): the change is sound but waits for that review; once it is
    resolved the change applies if the party then holds the item, and goes to people otherwise.
    ``noise``: a weak event (``sensors.weight.ShelfEvent.weak``) that no shopper's hand reached into: taken for
    load-cell noise; nothing to do and nothing to review.
    ``parts``: when the event's bins were told apart as two takes side by side (two shoppers at neighbouring
    plates, or one shopper taking two products at once), one decision per group of bins; ``barcode``,
    ``quantity`` and ``shares`` then describe the first part and :attr:`changes` lists them all.
    """

    track_id: str | None
    charge_track: str | None
    barcode: str | None
    quantity: int
    confidence: float
    attribution: float
    product: float
    review: bool
    reason: str
    candidates: tuple[Candidate, ...]
    options: tuple[Option, ...]
    shares: tuple[tuple[str, int], ...] = ()
    parts: tuple["Decision", ...] = ()
    awaits_review: bool = False
    noise: bool = False
    #: the recogniser's likelihood that re-weighted this decision (``carts.fusion_products.with_product_evidence``),
    #: its top products ``((barcode, probability), …)``; empty: no image evidence was used
    product_image: tuple[tuple[str, float], ...] = ()

    @property
    def changes(self) -> tuple[tuple[str, str, int], ...]:
        """The cart changes to make, ``((track, barcode, signed units), …)``: the shares, or every part's."""
        if self.parts:
            return tuple(c for p in self.parts for c in p.changes)
        return tuple((t, self.barcode, q) for t, q in self.shares) if self.barcode else ()

    def evidence(self) -> dict:
        """Plain-JSON evidence for a CartEvent or a ReviewItem (distances in m, scores and posteriors rounded)."""
        out = self._evidence()
        if self.parts:
            out["parts"] = [p._evidence() for p in self.parts]
        return out

    def _evidence(self) -> dict:
        return {
            "decision": {"track_id": self.track_id, "charge_track": self.charge_track, "barcode": self.barcode,
                         "quantity": self.quantity, "confidence": round(self.confidence, 4),
                         "attribution": round(self.attribution, 4), "product": round(self.product, 4),
                         "shares": [[t, q] for t, q in self.shares], "reason": self.reason},
            "candidates": [{"track_id": c.track_id, "distance_m": round(c.distance_m, 3),
                            "motion_m": None if math.isnan(c.motion_m) else round(c.motion_m, 3),
                            "score": round(c.score, 4), "posterior": round(c.posterior, 4),
                            "t_closest": round(c.t_closest, 3),
                            "hand_xyz": None if c.hand_xyz is None else [round(v, 3) for v in c.hand_xyz]}
                           for c in self.candidates],
            "options": [{"barcode": o.barcode, "quantity": o.quantity, "likelihood": round(o.likelihood, 4),
                         "posterior": round(o.posterior, 4)} for o in self.options[:8]],
            **({"product_image": [[b, round(p, 4)] for b, p in self.product_image]} if self.product_image else {}),
        }



def evidence_window(event: _Event, config: FusionConfig = FusionConfig()
                    ) -> tuple[tuple[float, float], tuple[float, float]]:
    """The observation times :func:`decide_event` reads for ``event``: ((t0, t1) of hand keypoints, (t0, t1) of
    body keypoints), seconds UTC, inclusive. Hands: the event padded by ``pad_s``; bodies: from the id-switch
    repair's look-back (``vision.identity.REPAIR_LOOKBACK_S`` before the padded start) to the widest of ``pad_s``,
    ``hidden_seen_s`` and ``id_window_s`` after the end. A caller holding a long buffer (the store loop's window of
    tens of seconds of every shopper) passes only these rows: the decision is the same, read in a fraction of the time."""
    lo, hi = event.t_start - config.pad_s, event.t_end + config.pad_s
    after = max(config.pad_s, config.hidden_seen_s, config.id_window_s)
    return (lo, hi), (lo - identity.REPAIR_LOOKBACK_S, event.t_end + after)


def body_rows_from(event: _Event, config: FusionConfig = FusionConfig()) -> float:
    """The earliest body keypoint (s UTC) :func:`decide_event` reads row by row for ``event``: the hidden hands
    (``hidden_seen_s`` before it), the walking test (``pad_s`` and half of ``track_speeds``' 1 s window before)
    and the identity jumps (``id_window_s``). The rest of :func:`evidence_window`'s bodies, back to the repair's
    look-back, is read only as per-frame positions (``vision.identity_frames.FramedBodies``)."""
    return event.t_start - max(config.pad_s + 0.5, config.hidden_seen_s, config.id_window_s)


def decide_event(event: weight.ShelfEvent, hands: TrackObservations, bins: BinGeometry, planogram: weight.Planogram,
                 *, carts: Holdings, party_of: Mapping[str, str] | None = None,
                 eligible: Sequence[str] | None = None, review_confidence: float = 0.6,
                 config: FusionConfig = FusionConfig(), bodies: TrackObservations | None = None,
                 pending: Holdings | None = None, strays: Holdings | None = None) -> Decision:
    """Decide who caused ``event`` and which product × quantity, with a confidence (docs/fusion.md).

    ``hands``: hand keypoints of the session (other keypoints ignored); ``planogram``: facings and unit weights
    (``sensors.weight.Planogram``); ``carts``: what each eligible track holds now; ``party_of``: track → party key
    (members of one party share the key; absent: alone); ``eligible``: tracks bound to an open visit or one still
    settling after its exit (None: every track seen); ``review_confidence``: below it, ``review`` is True;
    ``bodies``: the tracks' body keypoints (neck, head, …); when given, id switches between neighbours around
    the event are undone first (``vision.identity.repair``, ``config.repair_id_switches``: during a switch the
    hand that reached carries the neighbour's id), and the decided track's identity is checked
    (:func:`identity_jumps`, off by default). ``pending``: what each track may hold through picks waiting in the
    review queue (track → {barcode: units}, every candidate of an open review × its pick options,
    ``carts.loop.pending_picks``): a put-back of such an item is feasible with ``config.pending_prior`` and
    the decision ``awaits_review`` instead of going to people as a second review. ``strays``: units known to lie
    on bins that do not face them (bin code → {barcode: units}: misplaced put-backs applied earlier, not yet taken
    again): a pick from such a bin is explained over its facing products and these (at most the units there), so
    that a misplaced item picked up again is not read as a facing product of a similar weight.

    **Two takes side by side or one after the other** (``config.partition``). When the event merged several
    changes (``event.parts``) and, taken whole, it goes to review, its product fits poorly (weight likelihood
    below ``config.partition_below``) or it comes out as several units (two shoppers, or one taking two), every
    cut of its changes into two takes is tried (:func:`_cuts`: two runs of bins along the shelf, or the changes
    that settled before a moment and those that began ``config.partition_gap_s`` after it): each take becomes
    an event of its own (``sensors.weight.sub_event``: its changes' Δ, interval and facing products) with its
    own hand evidence over its own interval, and the two shoppers are chosen jointly (:func:`_joint_parts`). The
    best cut wins when its confidence beats the review threshold and the whole event's confidence; the decision
    then carries both parts in ``parts``. This tells apart two shoppers taking from neighbouring plates at the
    same moment (their changes merge into one event), two shoppers taking from one plate within a second of
    each other, and one shopper taking two different products at once.
    A ``disturbance`` (more plates than one item spans) is never explained whole, only cut this way or reviewed.
    Raises KeyError if the event names a bin not in ``bins``.
    """
    kw = dict(carts=carts, party_of=party_of, eligible=eligible, review_confidence=review_confidence, config=config,
              bodies=bodies, pending=pending or {}, strays=strays or {})
    if event.weak:
        ev = hand_evidence(event, hands, bins, config, eligible=eligible)
        if len(ev) == 0 or float(ev.score.max()) < config.weak_hand_min:
            return Decision(None, None, None, 0, 0.0, 0.0, 0.0, False,
                            f"a weak loss of {-event.delta_g:.1f} g that no shopper's hand reached into: load-cell "
                            f"noise", (), (), noise=True)
    if bodies is None or not config.repair_id_switches:
        return _decide(event, hands, bins, planogram, kw)
    raw = hands
    hands, swaps = identity.repair(raw, bodies, event.t_start - config.pad_s, event.t_end + config.pad_s,
                                   tracks=eligible, involving=_near_tracks(event, raw, bins, config, eligible))
    decision = _decide(event, hands, bins, planogram, kw)
    t0, t1 = event.t_start - config.pad_s, event.t_end + config.pad_s
    doubtful = [sw for sw in swaps if not sw.end_seen and sw.t_from <= t1 and sw.t_to > t0]
    if not doubtful or decision.review or not decision.changes:
        return decision
    # a switch whose end was not seen (still on, or ended after max_swap_s for want of a visible end): it may have
    # begun (the repair holds), or ended unseen before the event, or been the end of one whose start was missed
    # (the labels were right all along): when the readings without it give a different cart, people decide
    sure = [sw for sw in swaps if sw.end_seen]
    alt = _decide(event, identity.apply_swaps(raw.between(t0, t1), sure), bins, planogram, kw)
    if sorted(alt.changes) == sorted(decision.changes) or alt.review:
        return decision
    pair = doubtful[0]
    how = ("its end was not seen" if math.isfinite(pair.t_to) else "or switched back: the switch's start or end was "
           "not seen")
    return replace(decision, review=True,
                   reason=f"tracks {pair.a} and {pair.b} may have switched ids at {pair.t_from:.1f} s ({how}), and "
                          f"the two readings give different carts: " + decision.reason)


def _near_tracks(event: _Event, hands: TrackObservations, bins: BinGeometry, config: FusionConfig,
                 eligible: Sequence[str] | None) -> list[str]:
    """Tracks with a hand sighting that :func:`hand_evidence` can use for ``event``: within the padded window,
    scored at least ``min_hand_score`` and within :func:`candidate_reach_m` of a bin of the event (farther hands never count,
    whatever their label). Only swaps that can relabel these sightings matter to the decision."""
    w = wrist_ray_hands(hands.between(event.t_start - config.pad_s, event.t_end + config.pad_s), event.bin_codes,
                        bins, config)
    reach, along = candidate_reach_m(event, config) + 1e-9, config.sigma_m / config.along_sigma_m
    rows = np.flatnonzero(bins.may_reach(w.xyz, event.bin_codes, reach, along))  # a superset of the near ones
    rows = rows[(w.score[rows] >= config.min_hand_score) & w.keypoint_in(HAND_KEYPOINTS, rows)]
    if eligible is not None:
        rows = rows[w.track_in(eligible, rows)]
    d = bins.nearest_distance(w.xyz[rows], event.bin_codes, config.clearance_m, along)
    return sorted(_track_names(w, rows[d <= reach]))


def _decide(event: weight.ShelfEvent, hands: TrackObservations, bins: BinGeometry, planogram: weight.Planogram,
            kw: dict) -> Decision:
    """:func:`decide_event` once the hands' ids are settled: the event whole, or cut into two takes."""
    config, review_confidence = kw["config"], kw["review_confidence"]
    carts, party_of = kw["carts"], kw["party_of"]
    # one unit moves at one moment: read the hands at its start, also in the cuts of such an event; the cuts of an
    # event of several units keep the whole reading (two units straddling two plates, taken one after the other,
    # cut plate by plate read as one unit on each plate, both changing from the first take on)
    onset = _one_unit(event)
    whole = _decide_whole(event, hands, bins, planogram, onset=onset, **kw)
    several = abs(whole.quantity) >= 2 or len(whole.shares) > 1
    if (not config.partition or len(event.parts) < 2
            or not (whole.review or whole.product < config.partition_below or several)):
        return whole
    best: tuple[float, Decision, Decision, tuple, tuple] | None = None
    kw_part = {**kw, "review_confidence": 0.0}
    for a, b in _cuts(event, bins, config.partition_gap_s):
        da = _decide_whole(weight.sub_event(event, a, planogram, max_quantity=config.max_quantity), hands, bins,
                           planogram, onset=onset, **kw_part)
        if not da.changes or len(da.shares) != 1:
            continue
        db = _decide_whole(weight.sub_event(event, b, planogram, max_quantity=config.max_quantity), hands, bins,
                           planogram, onset=onset, **kw_part)
        if not db.changes or len(db.shares) != 1:
            continue
        joint = _joint_parts(da, db, carts, party_of or {}, config)
        if joint is not None and (best is None or joint[0] > best[0]):
            best = (*joint, a, b)
    if best is None or best[0] < review_confidence or (not whole.review and best[0] <= whole.confidence):
        return whole
    conf, da, db, a, b = best
    how = "one after the other" if max(p.t_end for p in a) < min(p.t_start for p in b) else "side by side"
    return replace(da, confidence=conf, attribution=min(da.attribution, db.attribution),
                   product=min(da.product, db.product), candidates=whole.candidates, options=whole.options,
                   reason=f"two takes {how}: {_where(a, event.t_start)} — {da.reason}; {_where(b, event.t_start)} — "
                          f"{db.reason}",
                   parts=(da, db))


def _where(parts: Sequence[weight.BinChange], t0: float) -> str:
    """Bins and interval of a take, in seconds from ``t0`` (the event's start), for a review reason."""
    codes = list(dict.fromkeys(p.code for p in parts))
    return ",".join(codes) + f" ({min(p.t_start for p in parts) - t0:.1f}–{max(p.t_end for p in parts) - t0:.1f} s)"


def _joint_parts(da: Decision, db: Decision, carts: Holdings, party_of: Mapping[str, str], config: FusionConfig
                 ) -> tuple[float, Decision, Decision] | None:
    """Who did each of two parts of a merged event, decided jointly: P(a by tₐ, b by t_b) ∝ Pₐ(tₐ) · P_b(t_b) ·
    (``same_track_prior`` when tₐ = t_b), over each part's candidate posteriors plus "nobody" (the rest of its
    mass). One shopper taking from two neighbouring groups of plates at the same moment is rarer than two
    shoppers side by side (the labelled AutoCheckout events: 3 of 237 hold two products). The confidence is the
    best pair's share times both parts' product posteriors; a put-back share must be held by its track's party.
    Returns (confidence, part a, part b), or None when no pair of real tracks is feasible or either part is
    an identity doubt."""
    if da.review or db.review or da.awaits_review or db.awaits_review:  # decided with threshold 0: only an
        return None                                                      # identity doubt or infeasibility is left
    code_a, code_b = da.barcode, db.barcode
    if code_a is None or code_b is None:  # the callers pass decided parts (``changes`` non-empty)
        return None
    pa = {c.track_id: c.posterior for c in da.candidates}
    pb = {c.track_id: c.posterior for c in db.candidates}
    na, nb = max(1.0 - sum(pa.values()), 0.0), max(1.0 - sum(pb.values()), 0.0)
    pairs = [(wa * wb * (config.same_track_prior if ta == tb else 1.0), ta, tb)
             for ta, wa in pa.items() for tb, wb in pb.items()]
    total = sum(w for w, _, _ in pairs) + na * (sum(pb.values()) + nb) + nb * sum(pa.values())
    if total <= 0:
        return None
    for w, ta, tb in sorted(pairs, key=lambda x: -x[0]):
        parts = []
        for d, code, t in ((da, code_a, ta), (db, code_b, tb)):
            q = d.quantity
            holder = _holder(t, code, q, carts, party_of)
            if q < 0 and party_holdings(t, carts, party_of).get(code, 0) < -q:
                break
            parts.append(replace(d, track_id=t, charge_track=holder, shares=((holder, q),)))
        if len(parts) == 2:
            return w / total * da.product * db.product, parts[0], parts[1]
    return None


def _cuts(event: weight.ShelfEvent, bins: BinGeometry, gap_s: float
          ) -> list[tuple[tuple[weight.BinChange, ...], tuple[weight.BinChange, ...]]]:
    """Every way to cut a merged event's changes (``event.parts``) into two takes: by place, into two runs of
    neighbouring bins along the shelf (bins ordered by their centre's coordinate along the shelf axis; all of a
    bin's changes on one side), and by time, into the changes that settled before a moment and those that began
    at least ``gap_s`` seconds after it (one shopper's take after another's on the same plates: a plate that
    settled between two changes was touched twice)."""
    idx = {p.code: bins.index[p.code] for p in event.parts}
    along = {c: float(bins.centre[i, 0] * math.cos(bins.yaw[i]) + bins.centre[i, 1] * math.sin(bins.yaw[i]))
             for c, i in idx.items()}
    codes = sorted(idx, key=lambda c: along[c])
    out = [(tuple(p for p in event.parts if p.code in codes[:k]), tuple(p for p in event.parts if p.code in codes[k:]))
           for k in range(1, len(codes))]
    by_time = sorted(event.parts, key=lambda p: (p.t_start, p.t_end))
    for k in range(1, len(by_time)):
        early, late = by_time[:k], by_time[k:]
        if max(p.t_end for p in early) + gap_s <= min(p.t_start for p in late):
            cut = (tuple(early), tuple(late))
            if not any(set(cut[0]) == set(a) for a, _ in out):
                out.append(cut)
    return out


def _one_unit(event: weight.ShelfEvent) -> bool:
    """Whether the sensors explain ``event`` best as one unit taken or put back (its first hypothesis that is not
    the unexplained outcome; a disturbance or an event with none: False). One unit moves at one moment; an event
    of several units may be several takes over its length (two shoppers one after the other on one plate)."""
    if event.disturbance:
        return False
    best = next((h for h in event.hypotheses if not h.unexplained), None)
    return best is not None and abs(int(best.quantity)) == 1


def _decide_whole(event: weight.ShelfEvent, hands: TrackObservations, bins: BinGeometry,
                  planogram: weight.Planogram, *, carts: Holdings, party_of: Mapping[str, str] | None,
                  eligible: Sequence[str] | None, review_confidence: float, config: FusionConfig,
                  bodies: TrackObservations | None, pending: Holdings, strays: Holdings,
                  onset: bool | None = None) -> Decision:
    """:func:`decide_event` for the event taken whole (one take, or one product split between two shoppers).
    ``onset``: read the hands at the change's start (:func:`hand_evidence`); None: when the event is one unit
    (:func:`_one_unit`)."""
    party_of = party_of or {}
    ev = hand_evidence(event, hands, bins, config, eligible=eligible,
                       onset=_one_unit(event) if onset is None else onset)
    if bodies is not None and config.hidden_prior > 0 and not getattr(event, "weak", False):
        # a weak event (the reach look's) exists because a hand was seen reaching in: its candidates are the hands
        # seen (the store loop bills a party without waiting for such an event where no hand of theirs came near)
        ev = hidden_hands(ev, event, hands, bodies, bins, config, eligible=eligible)
    if bodies is not None and config.walking_factor < 1:

        ev = walking_hands(ev, event, bodies, config)
    s0 = 0.5 * math.exp(-config.nobody_m ** 2 / (2 * config.sigma_m ** 2))
    tracks = [str(t) for t in ev.track_id]
    held = {t: party_holdings(t, carts, party_of) for t in tracks}
    maybe = {t: party_holdings(t, pending, party_of) for t in tracks}
    if event.delta_g > 0:
        opts = _putback_options(event, planogram, {b for h in (*held.values(), *maybe.values())
                                                   for b, q in h.items() if q > 0}, config)
    else:
        opts = _pick_options(event, planogram, strays, config)
    L = np.array([o[2] for o in opts], dtype=np.float64)
    unexplained = np.array([o[0] == weight.UNEXPLAINED for o in opts])
    K, H = len(tracks), len(opts)
    qprior = np.array([1.0 if o[1] == 0 else config.quantity_prior[min(abs(o[1]), len(config.quantity_prior)) - 1]
                       for o in opts])
    L = L * qprior
    feas = np.ones((K, H))
    infeasible_kj = np.zeros((K, H), dtype=bool)
    awaits_kj = np.zeros((K, H), dtype=bool)
    for k, t in enumerate(tracks):
        for j, (code, q, _) in enumerate(opts):
            if q < 0 and held[t].get(code, 0) < -q:
                if held[t].get(code, 0) + maybe[t].get(code, 0) >= -q:
                    feas[k, j] = config.pending_prior
                    awaits_kj[k, j] = True
                else:
                    feas[k, j] = config.infeasible_prior
                    infeasible_kj[k, j] = True
    feas *= _where_the_hand_was(event, opts, ev, bins, planogram, config)
    feas *= _others_took_nothing(ev, opts, config)
    off = _off_its_facing(event, opts, planogram, config, strays)
    # what the off-facing factor takes away goes to "something not listed" (one of each product: a cut of the
    # event explains it), so that a whole q × P no longer looks sure for want of a rival
    elsewhere = float((ev.score[:, None] * L[None, :] * feas * (1.0 - off)[None, :]).sum())
    feas *= off[None, :]
    joint = np.vstack([ev.score[:, None] * L[None, :] * feas, s0 * L[None, :]])  # (K + 1, H), last row: nobody
    splits = _splits(tracks, ev, opts, L / qprior * off, held, config)
    total = float(joint.sum()) + sum(w for w, *_ in splits) + elsewhere
    post_track = joint.sum(axis=1) / total
    post_opt = joint.sum(axis=0) / total
    cands = tuple(Candidate(tracks[k], float(ev.distance_m[k]), float(ev.t_closest[k]), float(ev.score[k]),
                            float(ev.motion_m[k]), float(post_track[k]), tuple(ev.hand_xyz[k].tolist()))
                  for k in range(K))
    options = tuple(sorted((Option(o[0], o[1], float(L[j]), float(post_opt[j])) for j, o in enumerate(opts)),
                           key=lambda o: -o.posterior))
    real = joint[:K].copy()
    real[:, unexplained] = 0.0
    if K == 0 or not real.any():
        why = ("no shopper was in the store (no open visit) during the event"
               if K == 0 and eligible is not None and len(eligible) == 0
               else "no eligible shopper's hand came near the bin" if K == 0
               else "the weight change matches no product facing these bins or held by the shoppers near")
        return Decision(tracks[0] if K else None, None, None, 0, 0.0, float(post_track[0]) if K else 0.0,
                        float(post_opt[unexplained].sum()), True, why, cands, options)
    k, j = (int(i) for i in np.unravel_index(int(np.argmax(real)), real.shape))
    track, (code, q, _) = tracks[k], opts[j]
    conf = float(real[k, j] / total)
    shares: tuple[tuple[str, int], ...] = ((track, int(q)),)
    infeasible, awaits = bool(infeasible_kj[k, j]), bool(awaits_kj[k, j])
    if splits and splits[0][0] > real[k, j]:
        w, code, shares = splits[0]
        q = sum(x for _, x in shares)
        track, conf, infeasible, awaits = shares[0][0], float(w / total), False, False
    shares = tuple((_holder(t, code, x, carts, party_of), x) for t, x in shares)
    charge = shares[0][0]
    like = float(L[[o[0] for o in opts].index(code)])
    reason = _hand_reason(cands) + f"; {code} × {q:+d} (weight likelihood {like:.2f})"
    if len(shares) > 1:
        reason += "; split between " + " and ".join(f"{t} ({x:+d})" for t, x in shares)
    elif charge != track:
        reason += f"; party member {charge} holds it"
    if awaits:
        reason += "; its pick awaits review: applied once that is resolved"
    doubt = identity_jumps(
        bodies, [t for t, _ in shares], event.t_start - config.id_window_s, event.t_end + config.id_window_s, config
    ) if bodies is not None and math.isfinite(config.id_jump_speed_m_s) else []
    review = conf < review_confidence or infeasible or bool(doubt)
    if review:
        reason = (f"confidence {conf:.3f} below {review_confidence:.2f}: " if conf < review_confidence
                  else "put-back of an item the shopper's party does not hold: " if infeasible
                  else f"track {doubt[0]} jumped (a possible id switch with a neighbour): ") + reason
    return Decision(track, charge, code, int(q), conf, float(post_track[tracks.index(track)]),
                    float(post_opt[[o[0] for o in opts].index(code)]), review, reason, cands, options, shares,
                    awaits_review=awaits and not review)


def identity_jumps(bodies: TrackObservations, tracks: Sequence[str], t0: float, t1: float,
                   config: FusionConfig = FusionConfig()) -> list[str]:
    """Tracks among ``tracks`` whose floor position (``neck`` keypoints, else ``head``) moves faster than
    ``id_jump_speed_m_s`` between two sightings at most ``0.3`` s apart within ``[t0, t1]`` (s UTC) — more than a
    person walks or turns (≤ 2 m/s), what a tracker's id switch between neighbours looks like. Source of the
    speed: walking speed 1.2–1.5 m/s plus the body keypoint noise of the store's tracker (a few cm).

    Off by default (``FusionConfig.id_jump_speed_m_s = inf``): on the simulator an id switch between neighbours
    less than 0.6 m apart is a jump no larger than 0.3 s of walking plus 10 Hz keypoint noise, so a threshold that
    caught half the switches (2.5 m/s) sent a fifth of all events to review, and one that spared the reviewers
    (4 m/s) caught few. Kept as a knob for trackers with less noise or higher frame rates."""
    w = bodies.between(t0, t1)
    out = []
    for name in ("neck", "head"):
        k = w[w.keypoint == name]
        if len(k) == 0:
            continue
        for track in tracks:
            m = k[k.track_id == track]
            if len(m) < 2:
                continue
            order = np.argsort(m.t, kind="stable")
            t, xy = m.t[order], m.xyz[order, :2]
            dt = np.diff(t)
            v = np.hypot(*np.diff(xy, axis=0).T) / np.maximum(dt, 1e-3)
            if np.any((dt <= 0.3) & (v > config.id_jump_speed_m_s)):
                out.append(track)
        break
    return out


def _holder(track: str, code: str, q: int, carts: Holdings, party_of: Mapping[str, str]) -> str:
    """The track whose cart takes ``q`` of ``code``: ``track`` itself, or for a put-back of more than it holds, the
    member of its party who holds the most of it (when that is enough)."""
    if q >= 0 or carts.get(track, {}).get(code, 0) >= -q:
        return track
    key = party_of.get(track, track)
    holders = sorted(((carts[m].get(code, 0), m) for m in carts if party_of.get(m, m) == key), reverse=True)
    return holders[0][1] if holders and holders[0][0] >= -q else track


def _splits(tracks: list[str], ev: HandEvidence, opts: list[tuple[str, int, float]], L: np.ndarray,
            held: Mapping[str, Mapping[str, int]], config: FusionConfig) -> list[tuple[float, str, tuple]]:
    """Two shoppers at one shelf at once: an event of |q| ≥ 2 units of one product may be q₁ by one track and
    q₂ by another (their changes merged into one event). Scored ``s_a · s_b · L · prior(q₁) · prior(q₂) ·
    split_prior`` over the three best tracks; returns [(weight, barcode, ((track, q₁), (track, q₂)))], best
    first. Put-back shares must be held by the track's party."""
    out = []
    top = list(range(min(3, len(tracks))))
    qp = config.quantity_prior
    for j, (code, q, _) in enumerate(opts):
        if abs(q) < 2:
            continue
        sign = 1 if q > 0 else -1
        for a in top:
            for b in top:
                if b <= a:
                    continue
                for q1 in range(1, abs(q)):
                    q2 = abs(q) - q1
                    if sign < 0 and (held[tracks[a]].get(code, 0) < q1 or held[tracks[b]].get(code, 0) < q2):
                        continue
                    w = (ev.score[a] * ev.score[b] * L[j] * qp[min(q1, len(qp)) - 1] * qp[min(q2, len(qp)) - 1]
                         * config.split_prior)
                    out.append((float(w), code, ((tracks[a], sign * q1), (tracks[b], sign * q2))))
    out.sort(key=lambda x: -x[0])
    return out


def eligible_tracks(entries: Mapping[str, float], exits: Mapping[str, float], event: _Event, *, now: float,
                    settle_s: float) -> list[str]:
    """Tracks that may have caused ``event`` when it is decided at ``now`` (s UTC): entered (``entries``: track →
    entry time) by ``now`` and not gone, i.e. no exit (``exits``: track → exit time, those known by ``now``) or
    one at most ``settle_s`` seconds before the event began (a shopper leaving while the plate still settles)."""
    out = []
    for track, t_in in entries.items():
        if t_in > now:
            continue
        t_out = exits.get(track)
        if t_out is None or event.t_start <= t_out + settle_s:
            out.append(track)
    return out
