"""The store loop's checkout gate (pure NumPy, no Django): an exited party is billed once its settle time has passed
and no event that could still name them is undecided, held back or still to come from a reach (:class:`BillWait`
says how each checkout waited). :class:`CheckoutGate` holds these methods of ``carts.loop.StoreLoop``, which
inherits them: they read the loop's state (pending events, held changes, windows, visits) and are no object of their
own."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable


from sensors import weight
from sensors.rfid import exit_lane_tags
from store.recording import TrackObservations
from vision.identity import REPAIR_LOOKBACK_S, swaps_of
from vision.identity_frames import FramedBodies

from .fusion import evidence_window
from .fusion_hands import candidate_reach_m, hidden_reach_m, wrist_ray_hands
from .loop_state import BillWait, LoopState


@dataclass(frozen=True)
class HeldWindow:
    """Where and when a shelf event may still come from changes a controller holds back, or from a reach the look
    has not looked at yet (:meth:`StoreLoop._bill`): ``t_start``/``t_end`` s UTC (the oldest held change's start;
    the loop's now — for a reach, the reach's interval, or up to now while it goes on), ``bin_codes`` the bins the
    event may lie on. ``weak``: the event would be a look's (``sensors.weight.ShelfEvent.weak``), which fusion
    attributes to seen hands only (``carts.fusion.decide_event``)."""

    t_start: float
    t_end: float
    bin_codes: tuple[str, ...]
    weak: bool = False


#: What can keep an exited party's checkout waiting past its settle time (:class:`BillWait`): ``shelves`` a shelf
#: controller not yet fed up to the deadline (``StoreLoop.shelf_horizon``), ``party`` a member still inside or seen
#: too recently, ``held`` changes held back from becoming events on bins they may have reached, ``reach`` a reach
#: the look may still turn into an event there, ``events`` an undecided event that may name them.
BILL_WAITS = ("shelves", "party", "held", "reach", "events")


class CheckoutGate(LoopState):
    """When an exited party may be billed, for :class:`carts.loop.StoreLoop` (module docstring). A mixin: the
    attributes it reads are the loop's (``carts.loop_state``)."""

    def _bill(self) -> None:
        """Check out the exited visits whose settle time has passed and for whom no event that could still be
        theirs is undecided: every shelf event that began by the end of the settle time and may name one of the
        party's tracks (:meth:`_may_involve`; all of them while a member of the party is still inside or was seen
        too recently), every change begun by then and still held back from becoming an event on a controller whose
        bins the party may have reached, and every reach begun by then that the look may still make an event of
        whose decision may name the party (the same test over the bins and interval of the event it would make,
        a weak one: the party's own hand, a hand of theirs near those bins, or an id switch reaching a track whose
        hand came near them; not a body alone)."""
        if not self._to_bill:
            return
        settle = self.config.settle_s
        for track, t_exit in sorted(self._to_bill.items(), key=lambda kv: kv[1]):
            deadline = t_exit + settle
            if deadline > self.now:
                continue
            wait = self._bill_wait(track, deadline)
            timing = self._bill_waits.get(track)
            if timing is None:
                timing = self._bill_waits[track] = BillWait(track, t_exit, deadline, due=self.now)
            elif timing.last is not None:
                timing.waited[timing.last] = timing.waited.get(timing.last, 0.0) + self.now - timing.now
            timing.last, timing.now = wait, self.now
            if wait is not None:
                continue
            del self._to_bill[track]
            del self._bill_waits[track]
            self.bill_timings.append(timing)
            if self._exit_reads and hasattr(self.sink, "exit_tags"):
                att = exit_lane_tags(track, self._exit_reads, self.exits, self.party_of, self.config.exit_lane)
                if att.ambiguous:
                    self.stats.problem(f"track {track}: {len(att.ambiguous)} exit-lane tag(s) shared with another "
                                       f"party leaving within {self.config.exit_lane.tie_s:g} s; not charged")
                if att.tags or att.ambiguous:
                    self.stats.exit_tags += len(att.tags)
                    self.sink.exit_tags(track, att)
            self._billed[track] = self.now
            if self.sink.checkout(track, deadline):
                self.stats.receipts += 1

    def _bill_wait(self, track: str, deadline: float) -> str | None:
        """What still keeps ``track``'s checkout (its settle time ending at ``deadline``, passed) waiting: one of
        :data:`BILL_WAITS`, or None when it can be billed now (:meth:`_bill`)."""
        if deadline > self.shelf_horizon:
            return "shelves"
        early = [ev for _, ev in self._pending if ev.t_start <= deadline]
        # changes held back from becoming events: the event they will make lies on their controller's bins and
        # ends by now at the latest (a change joining them later comes after now, when the party is gone); and
        # reaches the look may still turn into events, on the bins the hand came to
        held = [HeldWindow(min(float(c.t_start.min()) for c in cs), self.now, codes)
                for codes, cs in self._held.items() if min(float(c.t_start.min()) for c in cs) <= deadline]
        # a reach that ended makes its event over its own interval (ReachLook._event); one going on, up to now
        reach = [HeldWindow(t0, t1 if math.isfinite(t1) else max(t0, self.now), codes, weak=True)
                 for t0, t1, codes in self._look.pending_windows(deadline)]
        if not (early or held or reach):
            return None
        members = self._gone_party(track)
        if members is None:
            return "party"
        rows = self._party_rows(members, [*early, *held, *reach])
        for name, windows in (("held", held), ("reach", reach)):
            # any window of the kind that may involve them: the hands and bodies of every window first, then the
            # id switches (the dearer test; the same answer, in any order)
            asked = []
            for w in windows:
                codes = tuple(c for c in w.bin_codes if c in self.bins.index)
                window = HeldWindow(w.t_start, w.t_end, codes, w.weak)
                if not codes or self._may_involve(window, members, cache=False, switches=False, rows=rows):
                    return name
                asked.append(window)
            if self.fusion.repair_id_switches and any(
                    self._switch_may_involve(w, w.t_start - self.fusion.pad_s, w.t_end + self.fusion.pad_s, members)
                    for w in asked):
                return name
        if any(self._may_involve(ev, members, rows=rows) for ev in early):
            return "events"
        return None

    def _party_rows(self, members: tuple[str, ...], windows: list) -> tuple[TrackObservations, TrackObservations]:
        """The hand and body rows of ``members`` over every window :meth:`_may_involve` may read for ``windows``
        (events and :class:`HeldWindow` s: from the earliest start less ``max(pad_s, hidden_seen_s)`` to the latest
        end plus it), read once for a billing wait instead of once per window (the store's rows, not the party's,
        are what each read would cut down)."""
        if not windows:
            empty = TrackObservations.empty()
            return empty, empty
        pad = max(self.fusion.pad_s, self.fusion.hidden_seen_s)
        lo = min(w.t_start for w in windows) - pad
        hi = max(w.t_end for w in windows) + pad
        hands = self.hands.between(lo, hi)
        bodies = self.bodies.between(lo, hi)
        return hands[hands.track_in(members)], bodies[bodies.track_in(members)]

    def _gone_party(self, track: str) -> tuple[str, ...] | None:
        """The tracks of ``track``'s party (itself included) when every one of them has exited and none was seen
        for ``max(pad_s, hidden_seen_s)``: no hand or body of theirs can enter a window of an event not yet begun,
        and the windows of the events pending now hold all of their sightings. None otherwise."""
        lead = self.party_of.get(track, track)
        members = tuple(sorted(t for t in self.entries if self.party_of.get(t, t) == lead) or (track,))
        quiet = max(self.fusion.pad_s, self.fusion.hidden_seen_s)
        for m in members:
            if m not in self.exits:
                return None
            seen = self._seen.get(m)
            if seen is not None and self.now < seen[1] + quiet:
                return None
        return members

    def _may_involve(self, event: weight.ShelfEvent | HeldWindow, members: tuple[str, ...], *,
                     cache: bool = True, switches: bool = True,
                     rows: tuple[TrackObservations, TrackObservations] | None = None) -> bool:
        """Whether deciding ``event`` (pending) may name one of ``members`` (a party gone from the store,
        :meth:`_gone_party`) as a candidate, the cart of a put-back or a review. Fusion names only tracks of its
        hand evidence (:func:`carts.fusion.decide_event`): a hand within ``2 · reach_m`` (``weak_reach_m`` for a weak
        event: :func:`carts.fusion_hands.candidate_reach_m`) of one of the event's bins
        in its padded window (``hand_evidence``; a single-view wrist ray read at its nearest point,
        ``wrist_ray_hands``), under its label after the id-switch repair; and, for an event that is not weak, a
        body within reach of ``hidden_hands`` in its window. So the test is: a hand of theirs that near; for an
        event that is not ``weak`` (a look's event names seen hands only), a body of theirs that near; or a chain of
        id switches from one of them, each overlapping the hand window (``vision.identity.swaps_of``: a sighting is
        relabelled through every switch on at its moment, ``apply_swaps``), that reaches a track with a hand that
        near (a neighbour's sighting relabelled with their id), or that is still on past what is fed (a hand to come
        may be relabelled). False means its decision and their carts are independent: their visit may be billed
        first. Cached per event and party (their sightings are all in) unless ``cache`` is False (a
        :class:`HeldWindow`, whose end moves with the loop's clock). ``switches`` False: the hands and bodies only
        (the id switches are :meth:`_switch_may_involve`'s, the caller's to ask). ``rows``: ``members``' hand and
        body rows over a span holding the event's windows (:meth:`_party_rows`), read instead of the store's."""
        cache = cache and switches  # a partial answer is not kept
        key = (event.t_start, event.t_end, event.bin_codes, members)
        cached = self._involved.get(key) if cache else None
        if cached is not None:
            return cached
        cfg = self.fusion
        lo, hi = event.t_start - cfg.pad_s, event.t_end + cfg.pad_s
        found = bool(self._near_hands(event, lo, hi, members, hands=None if rows is None else rows[0]))
        if not found and cfg.hidden_prior > 0 and not getattr(event, "weak", False):
            b0, b1 = event.t_start - cfg.hidden_seen_s, event.t_end + cfg.hidden_seen_s
            if rows is None:
                bodies = self.bodies.between(b0, b1)
                bodies = bodies[bodies.track_in(members)]
            else:
                bodies = rows[1][(rows[1].t >= b0) & (rows[1].t <= b1)]
            if len(bodies):
                reach = hidden_reach_m(cfg)  # hidden_hands scores a body this near above 1e-6
                d = self.bins.nearest_floor_distance(bodies.xyz, event.bin_codes)
                found = bool((d <= reach + 1e-6).any())
        if not found and switches and cfg.repair_id_switches:
            found = self._switch_may_involve(event, lo, hi, members)
        if cache:
            self._involved[key] = found
        return found

    def _near_hands(self, event: weight.ShelfEvent | HeldWindow, lo: float, hi: float,
                    tracks: Iterable[str] | None, hands: TrackObservations | None = None) -> set[str]:
        """The tracks (of ``tracks``; None: any) with a hand sighting in ``[lo, hi]`` (s) within
        :func:`carts.fusion_hands.candidate_reach_m` of one of ``event``'s bins by fusion's distance (rays at their nearest point): those ``hand_evidence`` may
        read (it also drops sightings scored below ``min_hand_score``; these are kept, a superset). ``hands``:
        the rows of ``tracks`` over a span holding ``[lo, hi]``, in the window's order, to read instead of it."""
        cfg = self.fusion
        if hands is not None:
            hands = hands[(hands.t >= lo) & (hands.t <= hi)]
        else:
            hands = self.hands.between(lo, hi)
            if tracks is not None:
                hands = hands[hands.track_in(tuple(tracks))]
        if not len(hands):
            return set()
        hands = wrist_ray_hands(hands, event.bin_codes, self.bins, cfg)
        if not len(hands):
            return set()
        scale = cfg.sigma_m / cfg.along_sigma_m
        d = self.bins.nearest_distance(hands.xyz, event.bin_codes, cfg.clearance_m, scale)
        return {str(x) for x in hands.track_id[d <= candidate_reach_m(event, cfg) + 1e-6]}

    #: s: a chain of id switches still on this close to the loop's clock may relabel sightings not fed yet
    #: (:meth:`_switch_may_involve`): two body frames (``vision.identity`` reads 0.1 s frames; the newest may be
    #: partly fed, and a switch found there may yet move)
    SWITCH_FED_MARGIN_S = 0.2

    #: s: the frames of a billing look at id switches begin on this grid (the event's look-back, floored): the
    #: windows of a step's held changes, reaches and events begin within a few seconds of each other, so most share
    #: their start and :func:`vision.identity.swaps_of` answers a party's tracks once for them all, and again at the
    #: next step (its answers stand while the window's start is the same). Narrowed to
    #: ``LoopConfig.lookback_s − pad_s − vision.identity.REPAIR_LOOKBACK_S`` (3.5 s by default) where that is less,
    #: so that the frames read are still kept (``_forget``). The look reads more frames before the event than the
    #: repair will: the same kind of bound as the held changes' window, which begins at the oldest change
    SWITCH_GRID_S = 2.0

    def _switch_may_involve(self, event: weight.ShelfEvent | HeldWindow, lo: float, hi: float,
                            members: tuple[str, ...]) -> bool:
        """Whether an id switch may label a hand sighting near ``event``'s bins in ``[lo, hi]`` (its hand window, s)
        with one of ``members`` (:meth:`_may_involve`): the switches of the members with any track over the frames
        the repair reads (``vision.identity.swaps_of``), then those of each partner reached, each cut to the part of
        the hand window where every switch of its chain is on; True when a track reached had a hand near the bins
        in its part, when a part ends within ``SWITCH_FED_MARGIN_S`` of the loop's clock (a sighting still to come
        may be relabelled), or when a track of the window is placed by its head (``swaps_of`` None)."""
        (_, _), (b0, _) = evidence_window(event, self.fusion)
        # the grid, as fine as the frames kept allow (_forget keeps lookback_s before the oldest event or change)
        grid = min(self.SWITCH_GRID_S, self.config.lookback_s - self.fusion.pad_s - REPAIR_LOOKBACK_S)
        if grid > 0:
            b0 = math.floor(b0 / grid) * grid
        # the frames the repair reads for this event (from its look-back to the end of the hand window), not the
        # rows: swaps_of reads frames only
        empty = TrackObservations.empty()
        frames = FramedBodies(empty.track_id, empty.t, empty.keypoint, empty.xyz, empty.score,
                              frames=self.body_frames, t0=b0, t1=hi)
        # each track a sighting may be relabelled from, with when: a relabelling needs every switch of the chain
        # on at the sighting's moment (``apply_swaps``), so each link's interval is cut to the one before it
        switches: dict[str, list] = {}
        reached: dict[str, list[tuple[float, float]]] = {m: [(lo, hi)] for m in members}
        todo = [(m, lo, hi) for m in members]
        partners: list[tuple[str, float, float]] = []
        while todo:
            x, a, b = todo.pop()
            if x not in switches:
                found = swaps_of(frames, [x])
                if found is None:
                    return True
                switches[x] = found
            for sw in switches[x]:
                a2, b2 = max(a, sw.t_from), min(b, sw.t_to)
                y = sw.b if sw.a == x else sw.a
                if a2 > b2 or y in members or any(c0 <= a2 and b2 <= c1 for c0, c1 in reached.get(y, [])):
                    continue
                reached.setdefault(y, []).append((a2, b2))
                todo.append((y, a2, b2))
                partners.append((y, a2, b2))
        for y, a2, b2 in partners:
            if b2 > self.now - self.SWITCH_FED_MARGIN_S or self._near_hands(event, a2, b2, (y,)):
                return True
        return False
