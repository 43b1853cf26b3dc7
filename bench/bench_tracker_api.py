"""The external-tracker adapter alone (``make bench-tracker``): CPU per request and per row of ``POST
/vision/api/observations/`` (``vision.api.observations``) at a large crowd, and where that time goes.

Plain script: ``.venv/bin/python bench/bench_tracker_api.py [--tracks 200] [--frames 1,2] [--requests 60]
[--warmup 60] [--seed 5] [--profile] [--digest]``.

It migrates a throwaway SQLite database (the embedded profile: ``WALKOUT_SQLITE_PATH`` in a temporary folder,
``WALKOUT_STORE_LOOP=on``, the in-process bus and cache), creates a store and a tracker (``vision.services.
tracker_create``), and posts bodies the way the device emulator does (``carts.offline.emulator``: rows
``[track, t, keypoint, x, y, z, score]`` with run-tagged string track ids, t rounded to µs, metres and scores to 4
decimals) through Django's test ``Client`` (middleware included, as daphne runs it): ``--tracks`` shoppers, each
with the ``head``, ``neck``, ``l_wrist`` and ``r_wrist`` keypoints, walking slowly and now and then reaching out,
15 Hz, ``--frames`` sightings per shopper per request (1: 800 rows at 200 tracks; the emulator's half-second steps at
200 shoppers carried ~1,300). ``--warmup`` requests first fill the live map's activity window (4 s of store time),
then ``--requests`` are timed: the CPU time of the process (``time.process_time``) around each ``Client.post``,
so other load on the shared machine counts only through caches. No worker reads the stream (the records are
drained, untimed, after each request). It prints, per size, the median and p90 CPU ms per request and the median µs
per row; with ``--profile``, cProfile's top 20 functions by cumulative time over the timed requests; with
``--digest``, a SHA-256 of every record the adapter put on the stream and of the live map's last state (to check
that a change to the adapter leaves what it delivers identical).
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HZ = 15.0
KEYPOINTS = ("head", "neck", "l_wrist", "r_wrist")


def bodies(tracks: int, frames: int, count: int, seed: int, t0: float) -> list[bytes]:
    """``count`` request bodies (JSON bytes, version 1) of ``tracks`` shoppers × ``frames`` sightings at 15 Hz
    each, consecutive in time from ``t0`` (s UTC): positions in metres on a 30 × 20 m floor, a slow walk (~0.4 m/s
    random heading), wrists at the sides, one shopper in ten reaching out (0.6 m, 1.3 m up) at any time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tag = "bench1"
    xy = rng.uniform([1, 1], [29, 19], size=(tracks, 2))
    heading = rng.uniform(0, 2 * np.pi, tracks)
    out = []
    k = 0
    for _ in range(count):
        rows = []
        for _ in range(frames):
            t = t0 + k / HZ
            k += 1
            heading += rng.normal(0, 0.2, tracks)
            xy += 0.4 / HZ * np.c_[np.cos(heading), np.sin(heading)]
            xy = np.clip(xy, 0.5, [29.5, 19.5])
            reach = rng.random(tracks) < 0.1
            for i in range(tracks):
                x, y = float(xy[i, 0]), float(xy[i, 1])
                side = 0.2 if not reach[i] else 0.6
                pts = {"head": (x, y, 1.7), "neck": (x, y, 1.5), "l_wrist": (x - side, y, 1.3 if reach[i] else 0.8),
                       "r_wrist": (x + 0.2, y, 0.8)}
                for kp in KEYPOINTS:
                    px, py, pz = pts[kp]
                    rows.append([f"{tag}-{i}", round(t, 6), kp, round(px, 4), round(py, 4), round(pz, 4),
                                 round(float(rng.uniform(0.6, 1.0)), 4)])
        out.append(json.dumps({"v": 1, "t_last": round(t0 + (k - 1) / HZ, 6), "rows": rows}).encode())
    return out


def run(tracks: int, frames: int, requests: int, warmup: int, seed: int, profile: bool, digest: bool) -> dict:
    """One size (module docstring). Returns its figures."""
    import numpy as np
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from carts import runtime_publish
    from carts.bus import bus
    from store.layout.models import Store
    from vision.services import _ACTIVITY, store_map_positions, tracker_create

    assert settings.WALKOUT.get("STORE_LOOP") == "on"
    code = f"bench-trk-{tracks}-{frames}"
    store = Store.objects.create(code=code, name="Tracker bench")
    _, key = tracker_create(store=store, name="ceiling")
    runtime_publish.register_local(store.code, None)  # nobody steps a loop: the records stay on the bus, drained below
    _ACTIVITY.pop(code, None)
    t0 = 1_700_000_000.0  # fixed (a past time is always taken): the same bodies, the same digest, every run
    posts = bodies(tracks, frames, warmup + requests, seed, t0)
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Tracker {key}"}
    prof = cProfile.Profile() if profile else None
    sha = hashlib.sha256()
    cpu_ms = []
    rows_per = len(json.loads(posts[0])["rows"])
    for j, body in enumerate(posts):
        timed = j >= warmup
        if timed and prof is not None:
            prof.enable()
        c0 = time.process_time()
        r = client.post("/vision/api/observations/", data=body, content_type="application/json", **headers)
        c1 = time.process_time()
        if timed and prof is not None:
            prof.disable()
        if r.status_code != 202:
            raise SystemExit(f"request {j}: {r.status_code} {r.content[:300]!r}")
        if timed:
            cpu_ms.append((c1 - c0) * 1000.0)
        records = bus().read(code, block_ms=0)
        if records:
            bus().ack(code, {kind: sid for kind, sid, _ in records})
        if digest:
            for kind, _, rec in records:
                sha.update(kind.encode() + json.dumps(rec, sort_keys=True).encode())
    out = {"tracks": tracks, "frames": frames, "rows": rows_per, "requests": requests,
           "ms_p50": float(np.median(cpu_ms)), "ms_p90": float(np.percentile(cpu_ms, 90)),
           "us_row": float(np.median(cpu_ms)) * 1000.0 / rows_per}
    if digest:
        out["stream_sha256"] = sha.hexdigest()[:16]
        out["map_sha256"] = hashlib.sha256(json.dumps(store_map_positions(store_code=code, max_age_s=1e9),
                                                      sort_keys=True).encode()).hexdigest()[:16]
    if prof is not None:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(20)
        out["profile"] = buf.getvalue()
    runtime_publish.unregister_local(code)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=200, help="shoppers in view (default 200)")
    ap.add_argument("--frames", default="1,2", help="comma-separated sightings per shopper per request (default 1,2)")
    ap.add_argument("--requests", type=int, default=60, help="timed requests per size (default 60)")
    ap.add_argument("--warmup", type=int, default=60, help="untimed requests first (default 60: 4 s at 15 Hz)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print cProfile's top 20 by cumulative time")
    ap.add_argument("--digest", action="store_true", help="print a hash of what reached the stream and the map")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"WALKOUT_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"), "WALKOUT_STORE_LOOP": "on",
                           "DJANGO_SETTINGS_MODULE": "store.settings", "WALKOUT_LOG_LEVEL": "ERROR"})
        os.environ.pop("WALKOUT_PROFILE", None)
        import django

        django.setup()
        print("tracks  frames  rows/req  CPU-ms/req-p50  p90  µs/row" + ("  stream-sha  map-sha" if args.digest else ""))
        for frames in [int(x) for x in args.frames.split(",") if x.strip()]:
            r = run(args.tracks, frames, args.requests, max(args.warmup // frames, 1), args.seed, args.profile,
                    args.digest)
            print(f"{r['tracks']:>6}  {r['frames']:>6}  {r['rows']:>8}  {r['ms_p50']:>14.2f}  {r['ms_p90']:>5.1f}  "
                  f"{r['us_row']:>6.1f}" + (f"  {r['stream_sha256']}  {r['map_sha256']}" if args.digest else ""),
                  flush=True)
            if r.get("profile"):
                print(r["profile"])


if __name__ == "__main__":
    main()
