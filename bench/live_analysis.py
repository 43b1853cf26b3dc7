"""Analysis and printing of ``bench/bench_live.py``: event → phone and exit → receipt latencies from the database
and the WebSocket messages, exit → capture by stage from the workers' logs, the saturating process, the table."""
from __future__ import annotations

import math
import re

from live_stack import say

GOAL_PHONE_P95_S = 1.0
GOAL_RECEIPT_P95_S = 5.0
#: the store worker logs steps longer than this (s; carts.runtime.StoreWorker.SLOW_STEP_S, its default)
SLOW_STEP_S = 1.0


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else math.nan


def analyse(url: str, messages: list[tuple[float, str, dict]], exits: dict[str, float] | None = None) -> dict:
    """Latencies from the database and the WebSocket messages (recv wall time, account, message). ``exits``: the
    session's exit time of each recorded track (recording s, ``gates.csv``): a party's exit is its last member's,
    placed on the wall clock by the median shift between the visits' ``exited_at`` and their tracks' exits (one pass
    exits every member's visit at the first member's scan, ``store.gates.services.visit_exit_scan``)."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        visits = conn.execute(
            "SELECT v.id, u.username, v.state, extract(epoch FROM v.exited_at), coalesce(v.party_lead_id, v.id), "
            "v.track_id FROM gates_visit v JOIN auth_user u ON u.id = v.shopper_id").fetchall()
        events = conn.execute(
            "SELECT e.id, e.visit_id, extract(epoch FROM e.created_at), e.quantity, p.barcode, "
            "extract(epoch FROM s.t_end), e.source FROM carts_cartevent e JOIN inventory_product p "
            "ON p.id = e.product_id LEFT JOIN sensors_shelfevent s ON s.id = e.shelf_event_id ORDER BY e.id").fetchall()
        captures = dict(conn.execute(
            "SELECT visit_id, extract(epoch FROM min(created_at)) FROM billing_paymentattempt "
            "WHERE kind = 'capture' AND status = 'succeeded' GROUP BY visit_id").fetchall())
        reviews = conn.execute("SELECT count(*) FROM carts_reviewitem").fetchone()[0]
        held = {v for (v,) in conn.execute("SELECT DISTINCT visit_id FROM gates_visittransition "
                                             "WHERE to_state = 'under_review'")}
    snaps: dict[int, list[tuple[float, dict]]] = {}
    gaps = 0
    last_seq: dict[int, int] = {}
    for recv, _, msg in messages:
        if msg.get("type") != "snapshot":
            continue
        v = int(msg["visit"])
        snaps.setdefault(v, []).append((recv, msg))
        if v in last_seq and msg["seq"] > last_seq[v] + 1:
            gaps += 1
        last_seq[v] = max(last_seq.get(v, 0), msg["seq"])
    by_visit: dict[int, list] = {}
    for row in events:
        by_visit.setdefault(row[1], []).append(row)
    lat_db, lat_shelf, missing = [], [], 0
    for v, rows in by_visit.items():
        state: dict[str, int] = {}
        after = []
        for row in rows:
            state[row[4]] = state.get(row[4], 0) + row[3]
            after.append(frozenset((k, q) for k, q in state.items() if q > 0))
        got = snaps.get(v, [])
        for i, row in enumerate(rows):
            if row[6] != "fusion":
                continue
            wanted = set(after[i:])
            created = float(row[2])
            hit = next((recv for recv, msg in got if recv >= created and
                        frozenset((ln["barcode"], ln["quantity"]) for ln in msg.get("lines", [])) in wanted), None)
            if hit is None:
                missing += 1
                continue
            lat_db.append(hit - created)
            if row[5] is not None:
                lat_shelf.append(hit - float(row[5]))
    exit_ws, exit_cap, no_receipt = [], [], 0
    billed: dict[int, dict] = {}  # visit → exit, capture and receipt-on-the-phone times (wall s)
    # a party's receipt comes once its last member has left (carts.loop_billing: the party is billed together), so
    # its exit is its last member's, as bench_store counts it
    party_exit: dict[int, float] = {}
    track_exit = {}  # visit → its recorded track's exit (recording s)
    for vid, _, _, _, _, track in visits:
        recorded = str(track or "").rsplit("-", 1)[-1]  # emulate_store:<run tag>-<recorded track>
        if exits and recorded in exits:
            track_exit[vid] = exits[recorded]
    shifts = [float(v[3]) - track_exit[v[0]] for v in visits if v[3] is not None and v[0] in track_exit]
    shift = float(sorted(shifts)[len(shifts) // 2]) if shifts else None
    for vid, _, _, exited, lead, _ in visits:
        if exited is not None:
            party_exit[lead] = max(party_exit.get(lead, -math.inf), float(exited))
        if shift is not None and vid in track_exit:
            party_exit[lead] = max(party_exit.get(lead, -math.inf), track_exit[vid] + shift)
    for vid, _, _state, exited, lead, _ in visits:
        if exited is None or vid in held:  # billed once people decided its reviews (here: the oracle, at the end)
            continue
        # the member's own exit, as the loop saw it (its recorded exit where known: the database has the first
        # member's scan for the whole party), from which the worker's log counts "queued … after its exit"
        own = track_exit[vid] + shift if shift is not None and vid in track_exit else float(exited)
        exited = party_exit[lead]
        hit = next((recv for recv, msg in snaps.get(vid, []) if msg.get("receipt")), None)
        if hit is None:
            no_receipt += 1
        else:
            exit_ws.append(hit - exited)
        if vid in captures:
            exit_cap.append(float(captures[vid]) - exited)
            billed[vid] = {"exit": exited, "own_exit": own, "capture": float(captures[vid]), "phone": hit}
    states: dict[str, int] = {}
    for _, _, state, _, _, _ in visits:
        states[state] = states.get(state, 0) + 1
    return {"cart_events": sum(1 for r in events if r[6] == "fusion"), "matched": len(lat_db), "missing": missing,
            "phone_db": [pct(lat_db, q) for q in (50, 95, 99)],
            "phone_shelf": [pct(lat_shelf, q) for q in (50, 95, 99)],
            "receipt_ws": [pct(exit_ws, q) for q in (50, 95)], "receipt_capture": [pct(exit_cap, q) for q in (50, 95)],
            "receipts_seen": len(exit_ws), "no_receipt": no_receipt, "visits": len(visits), "states": states,
            "reviews": reviews, "under_review": len(held), "seq_gaps": gaps, "ws_messages": len(messages),
            "billed_times": billed}


#: the store worker's line; a loop or record ahead of the wall clock (devices faster than real time) is worded
#: "ahead of" / "early" with the magnitude, read back here as a negative lag
_QUEUED = re.compile(r"visit (\d+) checkout queued (\S+) s after its exit: settle (\S+) s, overshoot (\S+) s, "
                     r"waited (\S+) s \(([^)]*)\); the loop ran (\S+) s (behind|ahead of) the wall clock "
                     r"\(watermark (\S+) s: the newest record (\S+) s (late|early), the slowest source (\S+) (\S+) s "
                     r"behind it; step (\S+) s\)")
_PICKED = re.compile(r"visit (\d+): checkout picked up (\S+) s after it was queued")
#: the stages of exit → receipt, in order (``exit_stages``), with what each is
STAGES = (
    ("settle", "settle time (LoopConfig.settle_s)"),
    ("overshoot", "loop's step past the deadline"),
    ("w_shelves", "  wait: a shelf controller behind"),
    ("w_party", "  wait: party member inside/seen"),
    ("w_held", "  wait: held changes they may touch"),
    ("w_reach", "  wait: reach looks they may touch"),
    ("w_events", "  wait: undecided events of theirs"),
    ("waited", "waits past the settle, all"),
    ("devices", "loop behind: devices' newest record late"),
    ("slowest_wait", "loop behind: slowest source behind it"),
    ("step", "loop behind: its step until checkout"),
    ("queue", "queued → billing worker picks it up"),
    ("task", "picked up → capture recorded"),
    ("total", "= exit → capture"),
    ("phone", "capture → receipt on the phone"),
)


def exit_stages(store_log: str, billing_log: str, billed: dict[int, dict]) -> dict:
    """Where each visit's exit → capture time went (wall s), from the store worker's "checkout queued" lines
    (``carts.runtime.StoreWorker._log_checkouts``), the billing worker's "picked up" lines
    (``store.gates.checkout_task.visit_checkout_task``) and the capture's ``PaymentAttempt.created_at``. Returns
    {stage: [values]} over the visits found in both logs, plus ``slowest``: {source kind: checkouts}."""
    queued = {int(m.group(1)): m for m in _QUEUED.finditer(store_log)}
    picked = {int(m.group(1)): float(m.group(2)) for m in _PICKED.finditer(billing_log)}
    out: dict = {k: [] for k, _ in STAGES}
    out["slowest"] = {}
    for vid, times in billed.items():
        m = queued.get(vid)
        if m is None or vid not in picked:
            continue
        after_exit, settle, over, waited = (float(m.group(i)) for i in (2, 3, 4, 5))
        waits = dict((k, float(v)) for k, v in (w.split() for w in m.group(6).split(", ") if " " in w))
        out["settle"].append(settle)
        out["overshoot"].append(over)
        for k in ("shelves", "party", "held", "reach", "events"):
            out[f"w_{k}"].append(waits.get(k, 0.0))
        out["waited"].append(waited)
        out["devices"].append(float(m.group(10)) * (-1 if m.group(11) == "early" else 1))
        out["slowest_wait"].append(float(m.group(13)))
        out["step"].append(float(m.group(14)))
        out["queue"].append(picked[vid])
        out["task"].append(times["capture"] - times.get("own_exit", times["exit"]) - after_exit - picked[vid])
        out["total"].append(times["capture"] - times["exit"])
        if times["phone"] is not None:
            out["phone"].append(times["phone"] - times["capture"])
        kind = m.group(12).split(":")[0]
        out["slowest"][kind] = out["slowest"].get(kind, 0) + 1
    return out


_SLOW = re.compile(r"slow step, ([0-9.]+) s wall \(([0-9.]+) s CPU of this worker\): read (\d+) records \(count "
                   r"(\d+)(, full)?\) in ([0-9.]+) s, applied in ([0-9.]+) s, advanced ([0-9.]+) store s in "
                   r"([0-9.]+) s; the loop is ([0-9.-]+) s behind")


def slow_steps(store_log: str) -> dict:
    """The store worker's slow steps (``carts.runtime.StoreWorker.SLOW_STEP_S``, its "slow step" lines): how many,
    their wall and CPU seconds, how long the reads, applies and advances took in all, the store seconds advanced,
    and the loop's largest lag behind the wall clock at their end."""
    rows = [tuple(float(x) if x and x[0] != "," else x for x in m.groups()) for m in _SLOW.finditer(store_log)]
    if not rows:
        return {"n": 0}
    col = lambda i: [r[i] for r in rows]  # noqa: E731
    return {"n": len(rows), "wall": sum(col(0)), "cpu": sum(col(1)), "records": sum(col(2)),
            "full": sum(1 for r in rows if r[4]), "read": sum(col(5)), "apply": sum(col(6)),
            "store_s": sum(col(7)), "advance": sum(col(8)), "behind_max": max(col(9))}


def print_stages(r: dict) -> None:
    st = r.get("stages") or {}
    n = len(st.get("total", []))
    if not n:
        say("  exit → capture by stage: no checkout found in both the store worker's and the billing worker's logs")
        return
    say(f"  exit → capture by stage, {n} visits billed without review (wall s, p50 / p95 / max; p95s do not add up; a party's exit is its last member's):")
    for key, label in STAGES:
        v = st.get(key, [])
        if v:
            say(f"    {label:<40}{pct(v, 50):>7.2f} /{pct(v, 95):>6.2f} /{max(v):>6.2f}")
    say(f"    slowest source at the checkouts: {st.get('slowest')}")


def _ingest_backlog(log: str) -> int:
    """Largest (received − handled) of ingest_mqtt's progress lines: messages it had taken and not yet handled."""
    worst = 0
    for line in log.splitlines():
        if line.startswith("progress "):
            parts = line.split()
            try:
                worst = max(worst, int(parts[parts.index("received") + 1]) - int(parts[parts.index("handled") + 1]))
            except (ValueError, IndexError):
                pass
    return worst


def saturation(row: dict) -> str:
    """Which process saturates and what shows it."""
    series = row.get("series") or []
    cpu = row.get("cpu", {})
    if not cpu:
        return "no measurement"
    top = max(cpu, key=cpu.get)
    notes = [f"{top} uses the most CPU ({cpu[top] * 100:.0f}% of a core)"]
    if series:
        live = [s for s in series if s.get("emulating")] or series
        for kind in ("shelf", "obs"):
            lags = [s.get(f"lag_{kind}", 0) for s in series]
            if lags and max(lags) > 500:
                notes.append(f"the store worker fell behind on {kind} (up to {max(lags)} unread records)")
            # p95, not max: after the recording the emulator scores the session and its devices fall silent
            ages = [s[f"age_{kind}"] for s in live if f"age_{kind}" in s and s.get("emulating")]
            if ages and pct(ages, 95) > 2.0:
                who = "emulator/daphne" if kind == "obs" else "emulator/mosquitto/ingest_mqtt"
                notes.append(f"{kind} records reach the stream {pct(ages, 95):.1f} s late (p95; {who} behind)")
    if row.get("ingest_backlog_max", 0) > 100:
        notes.append(f"ingest_mqtt had up to {row['ingest_backlog_max']} messages queued")
    busy = [k for k, v in cpu.items() if v > 0.85]
    if busy:
        notes.append("at the limit of one core (single-threaded): " + ", ".join(busy))
    return "; ".join(notes)


def print_table(rows: list[dict]) -> None:
    def ms(v: float) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.0f}"

    say("\n=== live store under load (production profile, loopback; figures in ms unless said) ===")
    say(f"{'shoppers':>8} {'peak in':>7} {'cart ev':>7} {'seen':>5}  {'event→phone p50/p95/p99':>24}  "
        f"{'shelf end→phone p50/p95/p99':>28}  {'exit→receipt(ws) p50/p95':>24}  {'exit→capture p50/p95':>20}  "
        f"{'F1 live':>7} {'F1 off':>7} {'equal':>5}")
    for r in rows:
        if "error" in r:
            say(f"{r['n']:>8}  failed: {r['error']}")
            continue
        f_live, f_off = r.get("f1_live", math.nan), r.get("f1_offline", math.nan)
        eq = "n/a" if math.isnan(f_live) or math.isnan(f_off) else ("yes" if abs(f_live - f_off) < 5e-4 else "NO")
        say(f"{r['n']:>8} {r['peak_inside']:>7} {r['cart_events']:>7} {r['matched']:>5}  "
            f"{'/'.join(ms(v) for v in r['phone_db']):>24}  {'/'.join(ms(v) for v in r['phone_shelf']):>28}  "
            f"{'/'.join(ms(v) for v in r['receipt_ws']):>24}  {'/'.join(ms(v) for v in r['receipt_capture']):>20}  "
            f"{f_live:>7.3f} {f_off:>7.3f} {eq:>5}")
    for r in rows:
        if "error" in r:
            continue
        say(f"\n{r['n']} shoppers in {r.get('rooms', 1)} room(s): wall {r['wall_s']:.0f} s for {r['length_s']:.0f} s "
            f"of store time (load average 1/5/15 min at its end: "
            f"{'/'.join(f'{x:.1f}' for x in r.get('load', ())) or '?'})"
            f"{' (TIMED OUT)' if r['timed_out'] else ''}; visits {r['visits']} {r['states']}; review items "
            f"{r['reviews']}; visits held for review {r['under_review']} (not in exit→receipt); receipts seen on the phone {r['receipts_seen']} (exited without one: {r['no_receipt']});"
            f" cart events not seen on the phone {r['missing']}; seq gaps {r['seq_gaps']}; WebSocket messages "
            f"{r['ws_messages']}")
        say(f"  {'process':<12}{'CPU % core':>11}{'peak RSS MB':>13}")
        for k, v in r["cpu"].items():
            say(f"  {k:<12}{v * 100:>11.0f}{r['rss_peak'].get(k, 0) / 2**20:>13.0f}")
        for k, v in r["svc_cpu"].items():
            say(f"  {k + ' *':<12}{v * 100:>11.0f}{'-':>13}")
        series = r["series"]
        lag = {k: max([s.get(f"lag_{k}", 0) for s in series] or [0]) for k in ("shelf", "obs", "gate")}
        age = {k: pct([s[f"age_{k}"] for s in series if s.get("emulating") and f"age_{k}" in s] or [0], 95)
               for k in ("shelf", "obs")}
        say(f"  (* shared services, whole machine.) stream lag max {lag} records; newest record age p95 "
            f"{ {k: round(v, 2) for k, v in age.items()} } s; ingest queue max {r['ingest_backlog_max']}; "
            f"load average max {max([s.get('load1', 0) for s in series] or [0]):.1f}")
        def verdict(v: float, goal: float) -> str:
            return "not measured" if math.isnan(v) else ("met" if v < goal else "MISSED")

        say(f"  goals: event→phone p95 < {GOAL_PHONE_P95_S:g} s {verdict(r['phone_db'][1], GOAL_PHONE_P95_S)} "
            f"(from the shelf event's end: {verdict(r['phone_shelf'][1], GOAL_PHONE_P95_S)}); exit→receipt p95 < "
            f"{GOAL_RECEIPT_P95_S:g} s {verdict(r['receipt_ws'][1], GOAL_RECEIPT_P95_S)}")
        say(f"  saturation: {saturation(r)}")
        sl = r.get("slow_steps") or {"n": 0}
        if sl["n"]:
            say(f"  store worker's slow steps (over {SLOW_STEP_S:g} s): {sl['n']}, {sl['wall']:.1f} s wall of which "
                f"{sl['cpu']:.1f} s its own CPU; reading {sl['read']:.1f} s, applying {sl['apply']:.1f} s "
                f"({sl['records']:.0f} records, {sl['full']} full reads), advancing {sl['advance']:.1f} s over "
                f"{sl['store_s']:.1f} store s; the loop at most {sl['behind_max']:.1f} s behind the wall clock")
        print_stages(r)
