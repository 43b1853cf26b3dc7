"""The store loop's gate binding and exit watching (pure NumPy, no Django): a gate scan bound to the track that
appeared at the gate (in its entry zone where the store has them), bound tracks seen leaving (exit zones) or lost
inside and continued by a new track. :class:`TrackBinding` holds these methods of ``carts.loop.StoreLoop``, which
inherits them: they read and write the loop's state (scans, sightings, bound visits) and are no object of their own."""
from __future__ import annotations

import math
from typing import Hashable

import numpy as np

from .loop_state import LoopState


class TrackBinding(LoopState):
    """Who is who at the gate and at the exits, for :class:`carts.loop.StoreLoop` (module docstring). A mixin: the
    attributes it reads are the loop's (``carts.loop_state``)."""

    def _bind(self) -> None:
        """Decide the pending gate scans whose window is fed (``[t − bind_before_s, t + bind_after_s]`` around the
        scan), in scan order, each to a track not bound yet whose first sighting falls in that window:

        - without entry zones: the track first seen nearest the scan in time;
        - with entry zones, only a track first seen inside the scanning gate's zone (:attr:`gate_zones`, else any
          of :attr:`entry_zones`): a shopper already inside whose track restarts (a camera worker restarted, a
          track split) appears elsewhere and is never taken for a newly admitted visit. The scanned shopper is
          the one first seen nearest the scan in time (gates have no position in the layout: the zone is the
          gate's place, the scan time its order); a party lead whose guests were scanned takes the first track
          through the zone in the window, and each guest (waiting for its lead) the next one after the lead's.

        A scan with no such track by ``bind_timeout_s`` is reported unbound (its visit's events go to review). A
        scan bound to a track first seen less than ``bind_ambiguous_s`` from the track of another scan at the same
        gate that could have taken it is bound all the same (its exit is watched) but both visits are flagged
        (:meth:`_flag_ambiguous`)."""
        cfg = self.config
        bound = set(self.visit_of)
        left: list[tuple[float, Hashable, Hashable | None, str]] = []
        for scan in self._binds:
            t, visit, lead, gate = scan
            if self.now <= t + cfg.bind_after_s:  # a record at ``now`` may still come: the window's end is past
                left.append(scan)
                continue
            zones = self._gate_zones(gate)
            lead_track = self._track_of(lead) if lead is not None else None
            if zones and lead is not None and lead_track is None and any(b[1] == lead for b in left):
                left.append(scan)  # a guest is the next through the zone after its lead: the lead goes first
                continue
            window = [(seen[0], track) for track, seen in self._seen.items()
                      if track not in bound and t - cfg.bind_before_s <= seen[0] <= t + cfg.bind_after_s
                      and (not zones or self._in_zone(seen[4], seen[5], zones))]
            best = None
            if window and zones and lead_track is not None and lead_track in self._seen:
                after = [c for c in window if c[0] >= self._seen[lead_track][0]]
                best = min(after)[1] if after else min(window, key=lambda c: abs(c[0] - t))[1]
            elif window and zones and any(b[2] == visit for b in self._binds):
                best = min(window)[1]  # a party lead: the first of the party through the zone
            elif window:  # the first of equals in arrival order, as before zones were used
                best = min(window, key=lambda c: abs(c[0] - t))[1]
            if best is None:
                if self.now >= t + cfg.bind_timeout_s:
                    where = (f" in the entry zone of gate {gate or '?'}" if gate in self.gate_zones
                             else " in an entry zone") if zones else " at the gate"
                    self.sink.unbound(visit, t, f"no shopper track appeared{where} within "
                                                f"{cfg.bind_before_s:g} s before and {cfg.bind_after_s:g} s after the "
                                                f"scan (cameras down?)")
                else:
                    left.append(scan)
                continue
            bound.add(best)
            self.visit_of[best] = visit
            self.on_entry(track=best, t=t, party_lead=lead_track)
            self._bound_at[best] = t + cfg.bind_after_s  # settled then, whichever step got here
            self.sink.bind(best, visit, t)
            self._flag_ambiguous(t, visit, gate, best)
        self._binds = left
        keep = self.now - 2.0 * (cfg.bind_timeout_s + cfg.bind_before_s + cfg.bind_after_s)
        if self._recent_binds and self._recent_binds[0][0] < keep:
            self._recent_binds = [b for b in self._recent_binds if b[0] >= keep]

    def _flag_ambiguous(self, t: float, visit: Hashable, gate: str, track: str) -> None:
        """The scan of ``visit`` at ``t`` (s) by ``gate`` was just bound to ``track``. If a scan bound earlier at the
        same gate got a track first seen less than ``bind_ambiguous_s`` apart from this one, each inside the other
        scan's window (either scan could have taken either track), the tracker cannot tell which shopper came
        through first and the binding may have swapped them: both visits are flagged (an alert each; their shelf
        events go to review with the reason, :meth:`carts.loop.StoreLoop._decide`). Reads and extends
        :attr:`_recent_binds`."""
        cfg = self.config
        t_seen = self._seen[track][0]
        for t2, visit2, gate2, track2 in self._recent_binds:
            seen2 = self._seen.get(track2)
            if gate2 != gate or seen2 is None or abs(seen2[0] - t_seen) >= cfg.bind_ambiguous_s:
                continue
            if not (t - cfg.bind_before_s <= seen2[0] <= t + cfg.bind_after_s
                    and t2 - cfg.bind_before_s <= t_seen <= t2 + cfg.bind_after_s):
                continue
            reason = (f"binding ambiguous: scans {abs(t - t2) * 1000:.0f} ms apart at gate {gate or '?'}, their "
                      f"tracks first seen {abs(t_seen - seen2[0]) * 1000:.0f} ms apart")
            for tr, v in ((track2, visit2), (track, visit)):
                if tr not in self._ambiguous:
                    self._ambiguous[tr] = reason
                    self.sink.alert("worker", f"visit {v} (track {tr}): {reason}; its shelf events go to review",
                                    key=f"bind-ambiguous:{v}")
        self._recent_binds.append((t, visit, gate, track))

    def _gate_zones(self, gate: str) -> list[np.ndarray]:
        """The entry zone(s) where a shopper admitted by ``gate`` appears: its own, else every entry zone (none:
        the store has no entry zones)."""
        own = self.gate_zones.get(gate) if gate else None
        return [own] if own is not None else self.entry_zones

    def _track_of(self, visit: Hashable) -> str | None:
        """The track bound to ``visit`` (its first, when a lost track was continued), or None."""
        return next((k for k, v in self.visit_of.items() if v == visit), None)

    def _in_zone(self, x: float, y: float, zones: list[np.ndarray]) -> bool:
        for poly in zones:
            inside = False
            n = len(poly)
            for i in range(n):
                (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
                if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
                    inside = not inside
            if inside:
                return True
        return False

    def _others_inside(self, track: str) -> bool:
        """Whether another member of ``track``'s party (``party_of``) has entered and not exited."""
        lead = self.party_of.get(track, track)
        return any(k != track and k not in self.exits and self.party_of.get(k, k) == lead for k in self.entries)

    def _settle_exit_scans(self) -> None:
        """Take the pending exit scans of party members (:meth:`carts.loop.StoreLoop.on_visit_exit`): a member whose
        track is seen more than ``lost_s`` after the scan is still shopping (another member scanned; its exit is
        its track's, :meth:`_watch_exits`): the scan is dropped for it; a member whose track has been unseen for
        ``lost_s`` since the scan (or since it was last seen, if later) left at the scan's time, unless the store
        has exit zones, the track was lost outside them and a new track continues it (``_successor``: the tracker
        gave the member a new id): the scan is dropped, and the visit goes on under the new track."""
        lost = self.config.lost_s
        left = []
        for t, track in self._exit_scans:
            if track in self.exits:
                continue
            seen = self._seen.get(track)
            last = seen[1] if seen is not None else -math.inf
            if last > t + lost:
                continue  # still on the floor after the scan: watched on
            if self.now - max(t, last) < lost:
                left.append((t, track))
                continue
            if (self.exit_zones and seen is not None and not self._in_zone(seen[2], seen[3], self.exit_zones)
                    and self._successor(track, last, seen[2], seen[3]) is not None):
                continue  # lost inside and continued by a new track (an id switch): watched on, as anyone lost
            self.on_exit(track=track, t=t)
        self._exit_scans = left

    def _watch_exits(self) -> None:
        """Bound tracks unseen for ``lost_s``: gone through an exit (or, in a store without exit zones, gone);
        lost inside: an alert, a new track appearing close by continues the visit, and after ``lost_max_s`` the
        visit exits flagged. A track with a pending exit scan (:meth:`_settle_exit_scans`) exits at the scan's time
        there, not here."""
        cfg = self.config
        scanned = {tr for _, tr in self._exit_scans}
        for track, visit in list(self.visit_of.items()):
            if track in self.exits or track in scanned:
                continue
            seen = self._seen.get(track)
            if seen is None or self.now - seen[1] < cfg.lost_s:
                continue
            t_last, x, y = seen[1], seen[2], seen[3]
            if not self.exit_zones or self._in_zone(x, y, self.exit_zones):
                if self.on_exit(track=track, t=t_last):
                    self.sink.exit(track, visit, t_last, "left the store" if not self.exit_zones
                                   else "left through the exit zone")
                continue
            if track not in self._lost:
                self._lost[track] = self.now
                self.sink.alert("lost", f"shopper track {track} (visit {visit}) lost inside the store at "
                                        f"({x:.1f}, {y:.1f}) m", key=track)
            successor = self._successor(track, t_last, x, y)
            if successor is not None:
                del self._lost[track]
                self.exits[track] = t_last  # the old id is over; the visit goes on under the new one
                self.visit_of[successor] = visit
                if track in self._ambiguous:  # the visit stays flagged under its new track
                    self._ambiguous[successor] = self._ambiguous[track]
                self.on_entry(track=successor, t=self._seen[successor][0], party_lead=track)
                self.sink.bind(successor, visit, self._seen[successor][0], continues=track)
            elif self.now - t_last >= cfg.lost_max_s:
                del self._lost[track]
                if self.on_exit(track=track, t=t_last):
                    self.sink.exit(track, visit, t_last, f"lost inside the store for {cfg.lost_max_s:g} s")

    def _successor(self, track: str, t_last: float, x: float, y: float) -> str | None:
        """An unbound track first seen after ``t_last`` within ``reassociate_m`` of (x, y): the lost shopper."""
        best, best_d = None, self.config.reassociate_m
        bound = set(self.visit_of)
        for other, (t0, _, _, _, ox, oy) in self._seen.items():  # where it first appeared
            if other in bound or t0 < t_last or any(abs(t0 - b[0]) <= self.config.bind_before_s + self.config.bind_after_s
                                                   for b in self._binds):
                continue
            d = math.hypot(ox - x, oy - y)
            if d <= best_d:
                best, best_d = other, d
        return best
