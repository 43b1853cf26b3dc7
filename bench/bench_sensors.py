"""Throughput of the weight-event detector (``sensors.weight``) on one core: 306 plates × 60 Hz, the size of the
AiFi NanoStore (5 gondolas × 6 shelves, store_meta/Plates.json); and of the real MQTT ingestion path.

Plain script: ``.venv/bin/python bench/bench_sensors.py [--seconds 600] [--block 12] [--bins 306]
[--mqtt-seconds 60] [--latency-seconds 20] [--sustained-seconds 300]`` (``WALKOUT_BENCH_SUSTAINED_S`` sets the
default of the last: 0 skips the 5-minute phase for a quick run; ``WALKOUT_BENCH_PROFILE=FILE`` runs the worker
under cProfile and writes its profile there).

The stream is synthetic but shaped like the real one: each plate gets a raw level (1–6 kg), white noise with a
per-plate sd drawn from 0.3–5 g (the quiet-plate range measured on BENCHMARK-1), a slow drift, and a pick or a
put-back on some plate every ~2 s of store time (so the state machine's active path is exercised, not only the
quiet one). Blocks of ``--block`` samples are pushed as a live feed would (12 = one AutoCheckout message).
Prints samples/s (one sample = one row of all plates), plate-samples/s, and the × real-time ratio; also the
decoding speed of the real BENCHMARK-1 plate file when it is present beside the checkout.

MQTT ingestion (skipped when no broker answers on 127.0.0.1:1883; traffic goes only there): a throw-away SQLite
database (embedded profile, in a temporary folder) gets a 306-plate store served by 5 controllers (4 × 60 + 66
plates; the AiFi NanoStore's 5 gondolas), and ONE real ``manage.py ingest_mqtt`` process (its own client id and
session, ``--progress`` lines read for its totals and CPU time) consumes the broker. Phases:

1. burst: ``--mqtt-seconds`` of store time from all 5 controllers published as fast as the broker takes it (QoS 1):
   messages/s the worker sustained, and messages lost (never handled, or sequence gaps; must be 0).
2. latency: ``--latency-seconds`` in real time, the controllers' clocks = the wall clock, a pick every second on a
   random plate: the delay from the moment the pick's weight has settled (its last changing sample) to its shelf
   event being stored (``ShelfEvent.created_at``), p50 and p95. The floor of that delay (the detector's
   confirmation, its window's look-ahead, the store loop's hold for a neighbouring change, the message's own
   length) is printed before the MQTT phases by :func:`latency_breakdown` (≈ 0.87 s; docs/ingestion.md).
3. sustained: ``--sustained-seconds`` (default 300) at the store's real rate (25 messages/s) with a pick every 2 s:
   messages handled vs published, lost, the backlog when publishing ends, the worker's CPU per message, the
   latency percentiles.

Printed last, the regression guard: the burst rate and the CPU per message as ratios to the detector alone (the
part of the path that was never the problem: a ratio that drops is a regression of the path around it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sensors.weight import WeightChanges, WeightEventDetector  # noqa: E402
from carts.offline.autocheckout_plates import blocks_by_gondola, read_plate_file  # noqa: E402
from carts.loop_config import LoopConfig  # noqa: E402
from sensors.ingest import encode_payload, weights_topic  # noqa: E402

PLATE_FILE = ROOT.parent / "shared" / "datasets" / "autocheckout" / "BENCHMARK-1" / "plate_data.json"


def synthetic_stream(seconds: float, n_bins: int, rate_hz: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(t (n,), grams (n, B), number of injected changes) — see the module docstring."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = 1.6e9 + np.arange(n) / rate_hz
    level = rng.uniform(1000, 6000, n_bins)
    sd = rng.uniform(0.3, 5.0, n_bins)
    drift = rng.normal(0, 2.0 / 900.0, n_bins)  # ~2 g per 15 min
    x = level + np.outer(np.arange(n) / rate_hz, drift) + rng.normal(size=(n, n_bins)) * sd
    n_events = 0
    for start in range(int(rate_hz), n - int(3 * rate_hz), int(2 * rate_hz)):
        b = int(rng.integers(n_bins))
        step = float(rng.choice([-1.0, 1.0]) * rng.uniform(50, 800))
        ramp = int(rng.integers(6, 20))
        x[start:start + ramp, b] += np.linspace(0, step, ramp) + rng.normal(0, 30, ramp)
        x[start + ramp:, b] += step
        n_events += 1
    return t, x, n_events


def bench_detector(seconds: float, n_bins: int, rate_hz: float, block: int) -> dict[str, float]:
    t, x, injected = synthetic_stream(seconds, n_bins, rate_hz)
    det = WeightEventDetector(n_bins, rate_hz)
    found = []
    t0 = time.process_time()
    for i in range(0, t.shape[0], block):
        found.append(det.push(t[i:i + block], x[i:i + block]))
    found.append(det.flush())
    cpu = time.process_time() - t0
    changes = WeightChanges.concat(found)
    n = t.shape[0]
    print(f"detector: {n_bins} bins × {rate_hz:g} Hz, {seconds:g} s of stream in blocks of {block}")
    print(f"  CPU time {cpu:.2f} s → {n / cpu:,.0f} samples/s per core ({n * n_bins / cpu:,.0f} plate-samples/s)")
    print(f"  × real time: {seconds / cpu:,.0f}")
    print(f"  changes found {len(changes)} of {injected} injected")
    return {"x_real_time": seconds / cpu}


def bench_decode() -> None:
    if not PLATE_FILE.exists():
        print(f"decode: skipped, {PLATE_FILE} not found")
        return

    t0 = time.process_time()
    blocks, errors = read_plate_file(PLATE_FILE)
    gondolas = blocks_by_gondola(blocks)
    cpu = time.process_time() - t0
    samples = sum(len(g) for g in gondolas.values())
    span = max(g.t[-1] for g in gondolas.values()) - min(g.t[0] for g in gondolas.values())
    print(f"decode: {len(blocks)} messages ({len(errors)} bad), {samples} gondola-samples, {span:.1f} s of store "
          f"time in {cpu * 1e3:.0f} ms CPU → × real time {span / cpu:,.0f}")


def latency_breakdown(n_picks: int = 60, n_bins: int = 60, rate_hz: float = 60.0, block: int = 12,
                      seed: int = 2) -> dict[str, float]:
    """Where the delay from a pick's last moving sample to its shelf event goes, without a broker or a database:
    one controller's stream shaped as the MQTT phases' (the same noise, unit weights and 8-sample ramp), fed
    sample by sample to the detector, with the store loop's release rule (``carts.loop_config.LoopConfig.hold_gap_s`` on
    ``settled_until``). Per pick: when the detector returns the change, when the loop may release it, and when
    the message holding that sample is published (a block goes out when its last sample is taken). Prints the
    medians and p95s; the MQTT phases' measured latency minus the last is the ingestion and database share."""
    rng = np.random.default_rng(seed)
    gap = LoopConfig().hold_gap_s
    det = WeightEventDetector(n_bins, rate_hz)
    levels = rng.uniform(1000, 6000, n_bins)
    sd = rng.uniform(0.3, 5.0, n_bins)
    unit = rng.uniform(60, 900, n_bins)
    ramp = np.clip(np.arange(block) / 8.0, 0, 1)
    period = 1.0 / rate_hz
    pick_every = 2 * int(rate_hz)                     # a pick every 2 s, at a block's start
    n = (n_picks + 2) * pick_every
    t0 = 1.6e9
    x = levels + rng.normal(size=(n, n_bins)) * sd
    settle = {}
    for k in range(1, n_picks + 1):
        i, b = k * pick_every, int(rng.integers(n_bins))
        x[i:i + block, b] -= unit[b] * ramp
        x[i + block:, b] -= unit[b]
        settle[b] = settle.get(b, []) + [i + 8]
    waiting: list[tuple[int, int, float]] = []
    released: list[tuple[int, int, int]] = []         # (bin, sample the detector returned it, sample released)
    for i in range(n):
        ch = det.push(np.array([t0 + i * period]), x[i:i + 1])
        for j in range(len(ch)):
            waiting.append((int(ch.bin_index[j]), i, float(ch.t_end[j])))
        if waiting and det.settled_until() >= max(w[2] for w in waiting) + gap:
            released += [(b, i_det, i) for b, i_det, _ in waiting]
            waiting = []
    det_s, rel_s, pub_s = [], [], []
    for b, i_det, i_rel in released:
        last = max((s for s in settle.get(b, []) if s <= i_det), default=None)
        if last is None:
            continue
        det_s.append((i_det - last) * period)
        rel_s.append((i_rel - last) * period)
        pub_s.append(((i_rel // block + 1) * block - last) * period)
    if not det_s:
        print("latency breakdown: no pick detected")
        return {}
    q = lambda a: f"p50 {np.percentile(a, 50) * 1e3:,.0f} ms, p95 {np.percentile(a, 95) * 1e3:,.0f} ms"  # noqa: E731
    h = det._h / rate_hz
    print(f"latency breakdown ({len(det_s)} of {n_picks} picks on {n_bins} plates; time after the last moving "
          f"sample):\n  detector returns the change at the sample {q(np.array(det_s))} (of which {h * 1e3:.0f} ms is "
          f"the centred window's look-ahead, DetectorConfig.window_s / 2)\n  store loop may release it "
          f"(settled_until ≥ t_end + hold_gap_s {gap:g} s): {q(np.array(rel_s))}\n  the message holding that sample "
          f"is published ({block} samples a message): {q(np.array(pub_s))} — the floor of the MQTT phases' latency; "
          f"the rest there is ingestion and the database")
    return {"floor_p95_ms": float(np.percentile(pub_s, 95) * 1e3)}


MQTT_ADDR = ("127.0.0.1", 1883)


def _django(tmp: Path) -> None:
    """Set up Django on a throw-away SQLite database in ``tmp`` (embedded profile) and migrate it."""
    os.environ["WALKOUT_PROFILE"] = "embedded"
    os.environ["WALKOUT_SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ["MQTT_URL"] = ""
    os.environ["WALKOUT_LOG_LEVEL"] = "ERROR"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _store(n_controllers: int, plates: tuple[int, ...], rng: np.random.Generator):
    """A store of ``sum(plates)`` bins on ``n_controllers`` gondolas (one shelf each) with one product per bin;
    returns [(controller, key, bin count)] and the unit weight of each bin's product."""
    # lazy: Django models; bench_mqtt sets Django up (_django) before it makes the store
    from sensors.services import controller_create
    from store.inventory.services import catalogue_load
    from store.layout.services import layout_load

    gondolas, products, facings, weights = [], [], [], {}
    for g, n in enumerate(plates, start=1):
        bins = [{"number": p, "code": f"{g}-1-{p}", "x": g + 0.1 * p, "y": 0.2, "z": 1.0, "width_m": 0.1,
                 "depth_m": 0.4, "yaw_rad": 0.0} for p in range(1, n + 1)]
        gondolas.append({"number": g, "x": float(g), "y": 0.0, "yaw_rad": 0.0, "width_m": 0.1 * n, "depth_m": 0.4,
                         "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": bins}]})
        for b in bins:
            w = float(rng.uniform(60, 900))
            code = f"P{g:02d}{b['number']:03d}"
            products.append({"barcode": code, "name": code, "price": "1.00", "unit_weight_g": round(w, 1),
                             "unit_weight_sd_g": round(0.013 * w, 2)})
            facings.append({"bin": b["code"], "barcode": code})
            weights[b["code"]] = w
    store = layout_load(data={"store": {"code": "bench", "name": "Bench", "currency": "usd"}, "zones": [],
                              "gondolas": gondolas}, listed=False)
    catalogue_load(store=store, products=products, facings=facings)
    out = []
    for g, n in enumerate(plates, start=1):
        c, key = controller_create(store=store, name=f"g{g}", bin_codes=[f"{g}-1-{p}" for p in range(1, n + 1)])
        out.append((c, key, n))
    return out, weights


class _Controllers:
    """The 5 bench controllers' sample generator: levels, noise, sequence numbers, picks."""

    def __init__(self, controllers, unit: dict[str, float], rng: np.random.Generator, rate_hz: float, block: int):
        self.controllers = controllers
        self.unit = unit
        self.rng = rng
        self.rate_hz = rate_hz
        self.block = block
        self.levels = {c.name: rng.uniform(1000, 6000, n) for c, _, n in controllers}
        self.sd = {c.name: rng.uniform(0.3, 5.0, n) for c, _, n in controllers}
        self.seq = {c.name: 0 for c, _, _ in controllers}
        self.ramp = np.clip(np.arange(block) / 8.0, 0, 1)

    def restart(self) -> None:
        """The controllers restart: sequence numbers from 0 (the stream takes it as a new timeline)."""
        for name in self.seq:
            self.seq[name] = 0

    def message(self, c, key, n, t0, pick: int | None = None) -> bytes:
        """One block of controller ``c`` starting at ``t0``; ``pick``: a plate that loses one unit, settling at the
        9th sample of the block."""
        x = self.levels[c.name] + self.rng.normal(size=(self.block, n)) * self.sd[c.name]
        if pick is not None:
            code = c.bin_codes[pick]
            x[:, pick] -= self.unit[code] * self.ramp
            self.levels[c.name][pick] -= self.unit[code]
        m = encode_payload(controller=c.name, seq=self.seq[c.name], t0=t0, rate_hz=self.rate_hz, grams=x, key=key)
        self.seq[c.name] += 1
        return m

    def real_time(self, pub, seconds: float, pick_every_s: float, on_second=None) -> tuple[list, int]:
        """Publish ``seconds`` in real time (a block when its last sample was taken), a pick every ``pick_every_s``
        (none in the last 2 s); returns [(bin code, settle time)] and the messages published. ``on_second``: called
        with the messages published so far about once a second."""
        period = self.block / self.rate_hz
        truth, published, k = [], 0, 0
        t_start = time.time()
        t_next, next_pick, next_tick = t_start, t_start + 1.0, t_start + 1.0
        while t_next < t_start + seconds:
            now = time.time()
            if now < t_next + period:
                time.sleep(t_next + period - now)
            for i, (c, key, n) in enumerate(self.controllers):
                pick = None
                if i == k % len(self.controllers) and t_next >= next_pick and t_next < t_start + seconds - 2.0:
                    pick = int(self.rng.integers(n))
                    truth.append((c.bin_codes[pick], t_next + 8 / self.rate_hz))
                    next_pick += pick_every_s
                    k += 1
                pub.publish(weights_topic("bench", c.name), self.message(c, key, n, t_next, pick))
                published += 1
            t_next += period
            if on_second is not None and time.time() >= next_tick:
                next_tick += 1.0
                on_second(published)
        return truth, published


class _Worker:
    """One ``manage.py ingest_mqtt`` process on the bench database; ``totals()`` its last progress line."""

    def __init__(self, tmp: Path, url: str):
        import subprocess
        import threading
        import uuid

        env = dict(os.environ, WALKOUT_PROFILE="embedded", WALKOUT_SQLITE_PATH=str(tmp / "bench.sqlite3"),
                   MQTT_URL="", WALKOUT_LOG_LEVEL="ERROR", PYTHONUNBUFFERED="1")
        self.err = open(tmp / "worker.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, *(["-m", "cProfile", "-o", os.environ["WALKOUT_BENCH_PROFILE"]]
                               if os.environ.get("WALKOUT_BENCH_PROFILE") else []),
             str(ROOT / "manage.py"), "ingest_mqtt", "--url", url, "--session", "bench",
             "--subscription", "walkout/bench/shelf/+/weights", "--raw-dir", str(tmp / "raw"),
             "--client-id", f"walkout-bench-{uuid.uuid4().hex[:8]}", "--session-expiry", "30", "--progress", "0.1"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.last: dict[str, float] = {}
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            words = line.split()
            if words and words[0] == "progress":
                self.last = {words[i]: float(words[i + 1]) for i in range(1, len(words) - 1, 2)}
                self.ready.set()

    def totals(self) -> dict[str, float]:
        return dict(self.last)

    def wait_handled(self, n: int, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while self.last.get("handled", 0) < n and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.02)
        return self.totals()

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
        self.err.close()


def _latencies(truth: list, session: str = "bench") -> tuple[np.ndarray, list[str]]:
    # lazy: Django models; bench_mqtt sets Django up (_django) first
    from sensors.models import ShelfEvent

    rows = list(ShelfEvent.objects.filter(session=session).select_related("bin"))
    lat, missed = [], []
    for code, t_settle in truth:
        match = [e for e in rows if e.bin.code == code and abs(e.t_start.timestamp() - t_settle) < 1.5]
        if match:
            lat.append(match[0].created_at.timestamp() - t_settle)
        else:
            missed.append(f"pick on {code} settled at {t_settle:.2f}")
    return np.array(lat), missed


def _pct(lat: np.ndarray) -> str:
    if lat.size == 0:
        return "p50 – p95 – (no event stored)"
    return f"p50 {np.percentile(lat, 50) * 1e3:,.0f} ms, p95 {np.percentile(lat, 95) * 1e3:,.0f} ms"


def _problems(controllers) -> dict[str, tuple[int, int]]:
    # lazy: Django models; bench_mqtt sets Django up (_django) first
    from sensors.models import ControllerProblem

    out: dict[str, tuple[int, int]] = {}
    for reason, count, lost in ControllerProblem.objects.filter(controller__in=[c for c, _, _ in controllers]) \
            .values_list("reason", "count", "samples_lost"):
        a, b = out.get(reason, (0, 0))
        out[reason] = (a + count, b + lost)
    return out


def bench_mqtt(seconds: float, latency_seconds: float, sustained_seconds: float, rate_hz: float = 60.0,
               block: int = 12) -> dict[str, float]:
    """The three MQTT phases (module docstring); returns the figures the guard compares."""
    import socket
    import tempfile

    try:
        socket.create_connection(MQTT_ADDR, timeout=2).close()
    except OSError as exc:
        print(f"mqtt: skipped, no broker on {MQTT_ADDR[0]}:{MQTT_ADDR[1]} ({exc})")
        return {}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="walkout-bench-") as tmp:
        t_setup = time.monotonic()
        _django(Path(tmp))
        from django.db import connection

        # lazy: imports Django models, so it loads after _django() above
        from sensors.mqtt import Publisher

        rng = np.random.default_rng(1)
        plates = (60, 60, 60, 60, 66)
        controllers, unit = _store(len(plates), plates, rng)
        connection.close()
        url = f"mqtt://{MQTT_ADDR[0]}:{MQTT_ADDR[1]}"
        worker = _Worker(Path(tmp), url)
        try:
            if not worker.ready.wait(60):
                print(f"mqtt: skipped, the worker did not subscribe: {(Path(tmp) / 'worker.log').read_text()[-2000:]}")
                return {}
            gen = _Controllers(controllers, unit, rng, rate_hz, block)
            real_rate = len(plates) * rate_hz / block
            print(f"mqtt: {sum(plates)} plates on {len(plates)} controllers, {block} samples per message, QoS 1, one "
                  f"ingest_mqtt process (pid {worker.proc.pid}; setup {time.monotonic() - t_setup:.1f} s); the "
                  f"store's real-time rate is {real_rate:.0f} messages/s")

            # ---- phase 1: burst
            period = block / rate_hz
            n_blocks = int(seconds / period)
            t_base = time.time() - 3600.0           # an hour ago: the store's past, sent as fast as possible
            msgs = [(weights_topic("bench", c.name), gen.message(c, key, n, t_base + i * period))
                    for i in range(n_blocks) for c, key, n in controllers]
            before = worker.totals()
            t0 = time.monotonic()
            with Publisher(url) as pub:
                for topic, m in msgs:
                    pub.publish(topic, m)
            t_pub = time.monotonic() - t0
            after = worker.wait_handled(before["handled"] + len(msgs), 120)
            took = time.monotonic() - t0
            done = int(after["handled"] - before["handled"])
            cpu_msg = (after["cpu_s"] - before["cpu_s"]) / max(done, 1)
            rate = done / took
            out.update(burst_rate=rate, burst_cpu_ms=cpu_msg * 1e3, real_rate=real_rate)
            print(f"  burst: {done} of {len(msgs)} messages ({seconds:g} s of store time, "
                  f"{done * block * sum(plates) / len(plates):,.0f} plate-samples) handled in {took:.2f} s → "
                  f"{rate:,.0f} messages/s sustained ({rate / real_rate:,.1f} × real time); published in "
                  f"{t_pub:.2f} s; not handled {len(msgs) - done}; CPU {cpu_msg * 1e3:.2f} ms per message")

            # ---- phase 2: latency
            gen.restart()
            with Publisher(url) as pub:
                truth, published = gen.real_time(pub, latency_seconds, 1.0)
            time.sleep(2.5)
            lat, missed = _latencies(truth)
            for m in missed:
                print(f"  not stored: {m}")
            out.update(latency_p95_ms=float(np.percentile(lat, 95) * 1e3) if lat.size else float("nan"))
            print(f"  latency: {lat.size} of {len(truth)} real-time picks stored; last settled sample → stored "
                  f"{_pct(lat)} (the floor is the breakdown's last line)")

            # ---- phase 3: sustained at the real rate
            if sustained_seconds > 0:
                connection.close()
                gen.restart()
                before = worker.totals()
                backlog: list[float] = []

                def tick(published: int) -> None:
                    backlog.append(published - (worker.totals()["handled"] - before["handled"]))

                with Publisher(url) as pub:
                    truth, published = gen.real_time(pub, sustained_seconds, 2.0, on_second=tick)
                end = worker.totals()
                at_end = published - (end["handled"] - before["handled"])
                after = worker.wait_handled(before["handled"] + published, 30)
                time.sleep(2.5)
                done = int(after["handled"] - before["handled"])
                cpu_msg = (after["cpu_s"] - before["cpu_s"]) / max(done, 1)
                lat, missed = _latencies(truth)
                for m in missed[:5]:
                    print(f"  not stored: {m}")
                out.update(sustained_lost=published - done, sustained_cpu_ms=cpu_msg * 1e3)
                print(f"  sustained: {sustained_seconds:g} s at {published / sustained_seconds:.1f} messages/s: "
                      f"{done} of {published} handled, not handled {published - done}; backlog at the end "
                      f"{at_end:.0f} (max during the phase {max(backlog, default=0):.0f}); CPU {cpu_msg * 1e3:.2f} ms "
                      f"per message ({cpu_msg * published / sustained_seconds * 100:.1f} % of a core); "
                      f"latency {lat.size} of {len(truth)} picks stored, {_pct(lat)}")
        finally:
            worker.stop()
        problems = _problems(controllers)
        gaps = problems.get("gap", (0, 0))
        out["gaps"] = gaps[0]
        print(f"  problems counted over all phases: "
              f"{ {k: v[0] for k, v in problems.items()} or 'none'}; sequence gaps {gaps[0]} ({gaps[1]} samples lost)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--bins", type=int, default=306)
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--block", type=int, default=12)
    ap.add_argument("--mqtt-seconds", type=float, default=60.0, help="store time pushed for the burst phase")
    ap.add_argument("--latency-seconds", type=float, default=20.0, help="real-time phase for the latency test")
    ap.add_argument("--sustained-seconds", type=float,
                    default=float(os.environ.get("WALKOUT_BENCH_SUSTAINED_S", "300")),
                    help="real-rate phase (default 300, or WALKOUT_BENCH_SUSTAINED_S; 0 skips it)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pid {os.getpid()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    det = bench_detector(args.seconds, args.bins, args.rate, args.block)
    bench_decode()
    latency_breakdown(block=args.block, rate_hz=args.rate)
    figures = bench_mqtt(args.mqtt_seconds, args.latency_seconds, args.sustained_seconds, args.rate, args.block) \
        if args.mqtt_seconds > 0 else {}
    if figures.get("burst_rate"):
        real_rate = figures["real_rate"]
        det_rate = det["x_real_time"] * real_rate          # the detector alone, in store messages per second
        det_ms = 1e3 / det_rate                            # its CPU per store message
        line = (f"guard: burst {figures['burst_rate']:,.0f} messages/s = {figures['burst_rate'] / det_rate:.2f} × the "
                f"detector alone ({det_rate:,.0f} store messages/s); CPU per message {figures['burst_cpu_ms']:.2f} ms "
                f"burst")
        if "sustained_cpu_ms" in figures:
            line += f", {figures['sustained_cpu_ms']:.2f} ms sustained"
        line += f" = {figures['burst_cpu_ms'] / det_ms:.1f} × the detector's {det_ms:.2f} ms"
        print(line)


if __name__ == "__main__":
    main()
