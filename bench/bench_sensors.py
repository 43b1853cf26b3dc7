"""Throughput of the weight-event detector (``sensors.weight``) on one core: 306 plates × 60 Hz, the size of the
AiFi NanoStore (5 gondolas × 6 shelves, store_meta/Plates.json).

Plain script: ``.venv/bin/python bench/bench_sensors.py [--seconds 600] [--block 12] [--bins 306]``.

The stream is synthetic but shaped like the real one: each plate gets a raw level (1–6 kg), white noise with a
per-plate sd drawn from 0.3–5 g (the quiet-plate range measured on BENCHMARK-1), a slow drift, and a pick or a
put-back on some plate every ~2 s of store time (so the state machine's active path is exercised, not only the
quiet one). Blocks of ``--block`` samples are pushed as a live feed would (12 = one AutoCheckout message).
Prints samples/s (one sample = one row of all plates), plate-samples/s, and the × real-time ratio; also the
decoding speed of the real BENCHMARK-1 plate file when it is present beside the checkout.

MQTT ingestion (``--mqtt-seconds``, skipped when no broker answers on 127.0.0.1:1883; traffic goes only there):
a throw-away SQLite database (embedded profile, in a temporary folder) gets a 306-plate store served by 5
controllers (4 × 60 + 66 plates; the AiFi NanoStore's 5 gondolas); the real worker (``sensors.mqtt``) runs in a
thread. Phase 1 publishes ``--mqtt-seconds`` of store time from all 5 controllers as fast as the broker takes it
(QoS 1) and reports the messages/s the worker sustained, with the messages lost (sequence gaps; must be 0).
Phase 2 publishes ``--latency-seconds`` in real time with the controllers' clocks = the wall clock and a pick
every second on a random plate, and reports the delay from the moment the pick's weight has settled (its last
changing sample) to its shelf event being stored (``ShelfEvent.created_at``), p50 and p95. The detector itself
needs 0.5 s of stable samples after a change plus half of its 0.5 s window before it can call it settled, so
≈ 0.75 s is the floor of that delay. Stops by itself (< 2 minutes in all with the defaults).
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


def bench_detector(seconds: float, n_bins: int, rate_hz: float, block: int) -> None:
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


def bench_decode() -> None:
    if not PLATE_FILE.exists():
        print(f"decode: skipped, {PLATE_FILE} not found")
        return
    from sensors.autocheckout import blocks_by_gondola, read_plate_file

    t0 = time.process_time()
    blocks, errors = read_plate_file(PLATE_FILE)
    gondolas = blocks_by_gondola(blocks)
    cpu = time.process_time() - t0
    samples = sum(len(g) for g in gondolas.values())
    span = max(g.t[-1] for g in gondolas.values()) - min(g.t[0] for g in gondolas.values())
    print(f"decode: {len(blocks)} messages ({len(errors)} bad), {samples} gondola-samples, {span:.1f} s of store "
          f"time in {cpu * 1e3:.0f} ms CPU → × real time {span / cpu:,.0f}")


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
                              "gondolas": gondolas})
    catalogue_load(store=store, products=products, facings=facings)
    out = []
    for g, n in enumerate(plates, start=1):
        c, key = controller_create(store=store, name=f"g{g}", bin_codes=[f"{g}-1-{p}" for p in range(1, n + 1)])
        out.append((c, key, n))
    return out, weights


def bench_mqtt(seconds: float, latency_seconds: float, rate_hz: float = 60.0, block: int = 12) -> None:
    import socket
    import tempfile
    import threading

    try:
        socket.create_connection(MQTT_ADDR, timeout=2).close()
    except OSError as exc:
        print(f"mqtt: skipped, no broker on {MQTT_ADDR[0]}:{MQTT_ADDR[1]} ({exc})")
        return
    with tempfile.TemporaryDirectory(prefix="walkout-bench-") as tmp:
        t_setup = time.monotonic()
        _django(Path(tmp))
        from django.db import connection

        from sensors.ingest import encode_payload, weights_topic
        from sensors.live import ShelfIngestor
        from sensors.models import ShelfEvent
        from sensors.mqtt import MqttIngestWorker, Publisher
        from sensors.storage import RawSampleStore

        rng = np.random.default_rng(1)
        plates = (60, 60, 60, 60, 66)
        controllers, unit = _store(len(plates), plates, rng)
        connection.close()
        url = f"mqtt://{MQTT_ADDR[0]}:{MQTT_ADDR[1]}"
        ingestor = ShelfIngestor(raw=RawSampleStore(Path(tmp) / "raw", retention_h=1.0), session="bench")
        worker = MqttIngestWorker(url=url, ingestor=ingestor, subscription="walkout/bench/shelf/+/weights")
        stop = threading.Event()
        thread = threading.Thread(target=lambda: worker.run(stop=stop), daemon=True)
        thread.start()
        if not worker.subscribed.wait(10):
            print("mqtt: skipped, the worker could not subscribe")
            return
        print(f"mqtt: {sum(plates)} plates on {len(plates)} controllers, {block} samples per message, QoS 1 "
              f"(setup {time.monotonic() - t_setup:.1f} s)")
        levels = {c.name: rng.uniform(1000, 6000, n) for c, _, n in controllers}
        sd = {c.name: rng.uniform(0.3, 5.0, n) for c, _, n in controllers}
        seq = {c.name: 0 for c, _, _ in controllers}
        period = block / rate_hz

        def message(c, key, n, t0, extra=None):
            x = levels[c.name] + rng.normal(size=(block, n)) * sd[c.name]
            if extra is not None:
                x += extra
            m = encode_payload(controller=c.name, seq=seq[c.name], t0=t0, rate_hz=rate_hz, grams=x, key=key)
            seq[c.name] += 1
            return m

        # ---- phase 1: throughput
        n_blocks = int(seconds / period)
        t_base = time.time() - 3600.0           # an hour ago: the store's past, sent as fast as possible
        msgs = [(weights_topic("bench", c.name), message(c, key, n, t_base + i * period))
                for i in range(n_blocks) for c, key, n in controllers]
        handled0 = worker.stats.handled
        t0 = time.monotonic()
        with Publisher(url) as pub:
            for topic, m in msgs:
                pub.publish(topic, m)
        t_pub = time.monotonic() - t0
        deadline = time.monotonic() + 60
        while worker.stats.handled - handled0 < len(msgs) and time.monotonic() < deadline:
            time.sleep(0.01)
        took = time.monotonic() - t0
        done = worker.stats.handled - handled0
        lost = ingestor.stats.problems.get("gap", 0)
        print(f"  throughput: {done} of {len(msgs)} messages ({seconds:g} s of store time, "
              f"{done * block * sum(plates) / len(plates):,.0f} plate-samples) handled in {took:.2f} s → "
              f"{done / took:,.0f} messages/s sustained ({done / took / (len(plates) / period):,.1f} × the store's "
              f"real-time {len(plates) / period:.0f} msgs/s); published in {t_pub:.2f} s; lost {len(msgs) - done}, "
              f"sequence gaps {lost}")
        # ---- phase 2: latency, paced in real time, a pick every second. The controllers restart (sequence
        # numbers from 0, clocks = now), which the stream takes as a new timeline.
        for name in seq:
            seq[name] = 0
        truth = []
        next_pick = time.time() + 1.0
        ramp = np.clip(np.arange(block) / 8.0, 0, 1)[:, None]
        with Publisher(url) as pub:
            t_start = time.time()
            t_next = t_start
            k = 0
            while t_next < t_start + latency_seconds:
                now = time.time()
                if now < t_next + period:
                    time.sleep(t_next + period - now)  # a block is sent when its last sample was taken
                for c, key, n in controllers:
                    extra = None
                    if (c.name == controllers[k % len(controllers)][0].name and t_next >= next_pick
                            and t_next < t_start + latency_seconds - 2.0):  # every pick gets 2 s to settle
                        b = int(rng.integers(n))
                        code = c.bin_codes[b]
                        extra = np.zeros((block, n))
                        extra[:, b] = -unit[code] * ramp[:, 0]
                        levels[c.name][b] -= unit[code]
                        truth.append((code, t_next + 8 / rate_hz))   # settled at the 9th sample of the block
                        next_pick += 1.0
                        k += 1
                    pub.publish(weights_topic("bench", c.name), message(c, key, n, t_next, extra))
                t_next += period
        time.sleep(2.0)
        stop.set()
        thread.join(15)
        lat, found = [], 0
        rows = list(ShelfEvent.objects.filter(session="bench").select_related("bin"))
        for code, t_settle in truth:
            match = [e for e in rows if e.bin.code == code and abs(e.t_start.timestamp() - t_settle) < 1.5]
            if match:
                found += 1
                lat.append(match[0].created_at.timestamp() - t_settle)
            else:
                near = [(e.bin.code, round(e.t_start.timestamp() - t_settle, 2)) for e in rows
                        if abs(e.t_start.timestamp() - t_settle) < 3]
                print(f"  not stored: pick on {code} settled at {t_settle:.2f} (events near it: {near})")
        lat_a = np.array(lat) if lat else np.array([np.nan])
        print(f"  latency: {found} of {len(truth)} real-time picks stored; last settled sample → stored "
              f"p50 {np.percentile(lat_a, 50) * 1e3:,.0f} ms, p95 {np.percentile(lat_a, 95) * 1e3:,.0f} ms "
              f"(floor ≈ 750 ms: 0.5 s stable + half a 0.5 s window)")
        print(f"  problems counted: {dict(ingestor.stats.problems) or 'none'}; events stored {len(rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--bins", type=int, default=306)
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--block", type=int, default=12)
    ap.add_argument("--mqtt-seconds", type=float, default=60.0, help="store time pushed for the throughput test")
    ap.add_argument("--latency-seconds", type=float, default=20.0, help="real-time phase for the latency test")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pid {os.getpid()}")
    bench_detector(args.seconds, args.bins, args.rate, args.block)
    bench_decode()
    if args.mqtt_seconds > 0:
        bench_mqtt(args.mqtt_seconds, args.latency_seconds, args.rate, args.block)


if __name__ == "__main__":
    main()
