"""Truth of a simulated session beyond the receipts (``carts.offline.simulation``): every true shelf interaction
with its scenario labels (:class:`TruthEvents`, ``truth_events.json``), and the parties that the entry scans make
(:func:`parties_from_gates`, as the store bills them)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from store.checks import check_rows
from store.recording import GateScan

TRUTH_EVENTS = "truth_events.json"


@dataclass(frozen=True)
class TruthEvents:
    """True shelf interactions of a simulated session (``truth_events.json``), one row per interaction.

    ``t`` (n,) float64 s UTC, when the weight moved; ``t_start``, ``t_end`` (n,) float64 s UTC, the hand at the
    shelf; ``track`` (n,) object str, the shopper who did it; ``party`` (n,) object str, the track of the party's
    lead (the track itself when alone); ``bins`` (n,) object tuples of bin codes whose weight changed;
    ``lines`` (n,) object tuples of (barcode, signed quantity: + taken, − put back); ``scenarios`` (n,) object
    tuples of labels (``pick``, ``put-back``, ``misplaced``, ``multi-unit``, ``mixed``, ``party``, ``handoff``,
    ``crowded``, ``reach-across``, ``exit-settle``). Raises ValueError on mismatched shapes.
    """

    t: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    track: np.ndarray
    party: np.ndarray
    bins: np.ndarray
    lines: np.ndarray
    scenarios: np.ndarray

    def __post_init__(self) -> None:
        check_rows(self, ("t_start", "t_end", "track", "party", "bins", "lines", "scenarios"), self.t.shape[0])

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def to_json(self) -> dict:
        """Plain JSON (the ``truth_events.json`` document)."""
        return {"events": [
            {"t": round(float(self.t[i]), 6), "t_start": round(float(self.t_start[i]), 6),
             "t_end": round(float(self.t_end[i]), 6), "track": str(self.track[i]), "party": str(self.party[i]),
             "bins": list(self.bins[i]), "lines": [{"barcode": b, "quantity": int(q)} for b, q in self.lines[i]],
             "scenarios": list(self.scenarios[i])} for i in range(len(self))]}

    @classmethod
    def from_json(cls, data: Mapping, source: str = TRUTH_EVENTS) -> "TruthEvents":
        """Parse a ``truth_events.json`` document. Raises ValueError naming ``source`` and the event (index from 0)
        when malformed: not an object with an ``events`` list, a missing or mistyped field, a quantity that is not
        an integer, bins or scenarios that are not lists of strings."""
        if not isinstance(data, Mapping) or not isinstance(data.get("events", []), list):
            raise ValueError(f"{source}: expected an object with an 'events' list")
        rows = data.get("events", [])
        cols: dict[str, list] = {k: [] for k in ("t", "t_start", "t_end", "track", "party", "bins", "lines",
                                                 "scenarios")}
        for i, r in enumerate(rows):
            try:
                if not isinstance(r, Mapping):
                    raise TypeError("not an object")
                bins, scen = r["bins"], r.get("scenarios", [])
                if not (isinstance(bins, list) and all(isinstance(b, str) for b in bins)):
                    raise TypeError("'bins' must be a list of bin codes")
                if not (isinstance(scen, list) and all(isinstance(x, str) for x in scen)):
                    raise TypeError("'scenarios' must be a list of labels")
                if not isinstance(r["lines"], list):
                    raise TypeError("'lines' must be a list")
                lines = []
                for x in r["lines"]:
                    q = x["quantity"]
                    if isinstance(q, bool) or not isinstance(q, int):
                        raise TypeError(f"quantity {q!r} is not an integer")
                    lines.append((str(x["barcode"]), int(q)))
                times = [float(r[k]) for k in ("t", "t_start", "t_end")]
                if not all(math.isfinite(v) for v in times):
                    raise ValueError("times must be finite")
            except KeyError as exc:
                raise ValueError(f"{source}: event {i} has no {exc.args[0]!r}") from None
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{source}: event {i} is malformed ({exc})") from None
            for k, v in zip(("t", "t_start", "t_end"), times):
                cols[k].append(v)
            cols["track"].append(str(r["track"]))
            cols["party"].append(str(r.get("party") or r["track"]))
            cols["bins"].append(tuple(bins))
            cols["lines"].append(tuple(lines))
            cols["scenarios"].append(tuple(scen))

        def obj(values):
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            return arr

        return cls(np.array(cols["t"], dtype=np.float64), np.array(cols["t_start"], dtype=np.float64),
                   np.array(cols["t_end"], dtype=np.float64), obj(cols["track"]), obj(cols["party"]),
                   obj(cols["bins"]), obj(cols["lines"]), obj(cols["scenarios"]))


def read_truth_events(path: str | Path) -> TruthEvents | None:
    """``<recording>/truth_events.json`` (or the file itself) → :class:`TruthEvents`; None when absent.
    Raises ValueError when malformed."""
    p = Path(path)
    if p.is_dir():
        p = p / TRUTH_EVENTS
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    return TruthEvents.from_json(data, source=str(p))


def parties_from_gates(gates: Iterable[GateScan], *, within_s: float = 10.0) -> dict[str, str]:
    """Track → party lead track, from entry scans: entries on one (non-empty) account within ``within_s`` seconds
    of the first are one party, led by the first (DESIGN: a party is billed together). Tracks alone map to
    themselves."""
    out: dict[str, str] = {}
    open_party: dict[str, tuple[float, str]] = {}
    for g in sorted((g for g in gates if g.kind == "entry"), key=lambda g: g.t):
        lead = g.track
        if g.account and g.account in open_party and g.t - open_party[g.account][0] <= within_s:
            lead = open_party[g.account][1]
        elif g.account:
            open_party[g.account] = (g.t, g.track)
        out[g.track] = lead
    return out
