"""Vision throughput and accuracy on this machine's CPUs (``make bench-vision``; under 10 minutes on 2 cores).

For each model in ``../shared/models`` (the ultralytics-loadable YOLO files) and each real clip in
``../shared/media`` at its own resolution, one subprocess per model (so its peak RSS is its own) measures:

- **ours**: decode (OpenCV) + detect + track (ByteTrack, ``model.track(persist=True, stream=True)``) + floor and
  wrist projection through a camera model + per-track summary, with the recommended deployment setting
  (``PersonDetector(threads=1)``: one single-threaded ONNX Runtime session without spin-waiting per worker
  process): frames per second of wall clock, and frames per CPU-second of the process (= per core; robust when
  other jobs share the machine, which wall-clock fps is not);
- **bare**: ultralytics alone with all its defaults (ONNX Runtime's default thread pool: one spin-waiting thread
  per core) on the same frames, ``model.track(source=clip, stream=True, persist=True)``, in the same process right
  after: frames per second, and ours/bare (what our own code costs, net of what the thread setting saves);
- the number of track ids on each clip;
- MOTA and IDF1 on the MOT15 sequences with ground truth (ByteTrack and BoT-SORT).

The first 10 frames of every run are warm-up and not timed. ``--frames N`` caps the frames per clip (default 150).
The real-time goal is 4 cameras × 10 fps = 40 fps on the machine: a configuration reaches it when frames per
CPU-second × cores ≥ 40 (one worker process per camera scales across cores), and the direct check runs 4 camera
workers (one process each, as deployed) at once on the aisle clip and reports their total fps and the slowest
camera's (each must keep 10 fps). The 1-minute load average is printed
beside each figure: above the core count, wall-clock fps are depressed by other jobs. Prints one line per
measurement, a summary table, and one goal line per model (its worst clip's frames per CPU-second, × cores, and
whether 4 cameras × 10 fps is reached on every clip); ``--json FILE`` saves the figures.

First, where ``../shared/datasets/autocheckout/cps-test-01`` is present: the four real ceiling cameras of that
session (issue #13), × real time with and without the wrist stage beside bare ultralytics (:func:`run_cps`;
``--cps`` runs only this).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
from vision import yolo_environment  # noqa: E402 — ultralytics' offline settings before it is imported below
from vision.geometry import CameraModel  # noqa: E402
from vision.detector import PersonDetector  # noqa: E402
from vision.metrics import evaluate, read_mot  # noqa: E402
from vision.tracking import CameraTracker, FrameSource, TrackSummary, write_mot  # noqa: E402
from vision.aifi_cameras import fit_all  # noqa: E402
from vision.config import default_pose_model  # noqa: E402

yolo_environment()

SHARED = Path(os.environ.get("WALKOUT_SHARED", ROOT.parent / "shared"))
MODELS = ["yolo11n_int8.onnx", "yolov8n_int8.onnx"]
CLIPS = ["store_aisle_overhead.mp4", "crowd_overhead.mp4", "shop_shelf_browsing.mp4"]
MOT = ["TUD-Campus", "TUD-Stadtmitte"]
WARMUP = 10
GOAL_FPS = 40.0
CORES = os.cpu_count() or 1
THREADS = 1  # ONNX Runtime intra-op threads of "ours": the recommended one per worker process (PersonDetector)


def _camera(width: int, height: int):
    """A plausible ceiling camera for the projection cost (2.6 m up, 50° down); the clips have no survey."""
    import numpy as np

    s, c = math.sin(math.radians(50)), math.cos(math.radians(50))
    z, x = np.array([c, 0, -s]), np.array([0.0, -1.0, 0.0])
    f = 0.65 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    return CameraModel(name="bench", width=width, height=height, K=K, R=np.column_stack([x, np.cross(z, x), z]),
                       C=np.array([0.0, 0.0, 2.6]))


def run_model(model: str, frames: int) -> dict:
    """All measurements of one model (runs inside its own subprocess)."""
    path = SHARED / "models" / model
    out: dict = {"model": model, "clips": [], "mot": []}
    for clip in CLIPS:
        video = SHARED / "media" / clip
        if not video.exists():
            print(f"skip {clip}: {video} is absent", flush=True)
            continue
        det = PersonDetector(path, threads=THREADS)
        src = FrameSource(video, max_frames=frames)
        tracker = CameraTracker(_camera(src.width, src.height), det, "bench")
        summary = TrackSummary()
        n, t0, c0 = 0, 0.0, 0.0
        for ft in tracker.run(src):
            n += 1
            if n == WARMUP:
                t0, c0 = time.perf_counter(), time.process_time()
            if n > WARMUP:
                summary.add(ft)
        ours = (n - WARMUP) / (time.perf_counter() - t0)
        ours_cpu = (n - WARMUP) / (time.process_time() - c0)
        # bare ultralytics on the same clip and frames, same process, fresh model
        from ultralytics import YOLO

        bare_model = YOLO(str(path), task="detect")
        m = 0
        for _ in bare_model.track(source=str(video), stream=True, persist=True, tracker="bytetrack.yaml",
                                  imgsz=det.imgsz, classes=[0], verbose=False, conf=det.conf):
            m += 1
            if m == WARMUP:
                b0, bc0 = time.perf_counter(), time.process_time()
            if m >= frames:
                break
        bare = (m - WARMUP) / (time.perf_counter() - b0)
        bare_cpu = (m - WARMUP) / (time.process_time() - bc0)
        row = {"clip": clip, "size": f"{src.width}x{src.height}", "imgsz": det.imgsz, "frames": n - WARMUP,
               "threads": THREADS, "threads_applied": det.threads_applied,
               "fps": round(ours, 1), "fps_per_core": round(ours_cpu, 1),
               "bare_fps": round(bare, 1), "bare_fps_per_core": round(bare_cpu, 1),
               "ours_over_bare": round(ours_cpu / bare_cpu, 3), "track_ids": len(summary.intervals),
               "meets_4x10fps": ours_cpu * CORES >= GOAL_FPS, "load": round(os.getloadavg()[0], 2)}
        out["clips"].append(row)
        print(f"{model} {clip} {row['size']} imgsz {det.imgsz}: ours (threads={THREADS}, applied "
              f"{row['threads_applied']}) {row['fps']} fps wall, {row['fps_per_core']} "
              f"frames per CPU-second; bare ultralytics {row['bare_fps']} fps wall, {row['bare_fps_per_core']} per "
              f"CPU-second; ratio ours/bare {row['ours_over_bare']}; {row['track_ids']} track ids; "
              f"4×10 fps on {CORES} cores {'yes' if row['meets_4x10fps'] else 'no'}; load {row['load']}", flush=True)
    for seq in MOT:
        folder = SHARED / "datasets" / "mot15" / seq
        if not folder.exists():
            print(f"skip {seq}: {folder} is absent", flush=True)
            continue
        for trk in ("bytetrack", "botsort"):
            det = PersonDetector(path, tracker=trk, threads=THREADS)
            tracker = CameraTracker(_camera(640, 480), det, seq)
            summary = TrackSummary(keep_mot=True)
            for ft in tracker.run(FrameSource(folder / "img1", fps=25)):
                summary.add(ft)
            hyp = write_mot(Path("var") / "bench" / f"{seq}-{model}-{trk}.txt", summary.mot_rows)
            s = evaluate(read_mot(folder / "gt" / "gt.txt"), read_mot(hyp))
            out["mot"].append({"seq": seq, "tracker": trk, "mota": round(s.mota, 3), "idf1": round(s.idf1, 3),
                               "idsw": s.idsw, "gt_ids": s.gt_ids, "hyp_ids": s.hyp_ids})
            print(f"{model} {seq} {trk}: {s.summary()}", flush=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)
    print(f"{model}: peak RSS {out['peak_rss_mb']:.0f} MB", flush=True)
    return out


CPS_VIDEOS = [f"datasets/autocheckout/cps-test-01/video/cps-test-01-nodepth-cam{n}.mp4" for n in (1, 3, 5, 7)]
CPS_FPS = 10.0


def run_cps(model: str, frames: int) -> dict | None:
    """The four real ceiling cameras of cps-test-01 (10 fps), first ``frames`` frames of each, in this process:
    process CPU seconds of ours with wrists (decode + detect + track + BlazePose lite on every person + projection
    through the camera's calibration), ours without wrists, and bare ultralytics on the same frames; × real time
    on this machine's cores = seconds of the session (frames per camera / 10 fps) / (CPU seconds of all four
    cameras / cores), one worker process per camera."""
    videos = [SHARED / v for v in CPS_VIDEOS]
    if not all(v.exists() for v in videos):
        print(f"skip cps-test-01: {next(v for v in videos if not v.exists())} is absent", flush=True)
        return None
    pose = default_pose_model()
    fits = fit_all()
    path = SHARED / "models" / model
    out = {"model": model, "frames": 0, "pose_model": pose}
    for label, with_pose in (("ours_wrists", True), ("ours_no_wrists", False)):
        if with_pose and pose is None:
            out[label] = None
            continue
        cpu = 0.0
        n = 0
        for v in videos:
            cam = fits[v.stem.split("-")[-1]].model
            det = PersonDetector(path, threads=THREADS, pose=pose if with_pose else None)
            tracker = CameraTracker(cam, det, "bench")
            c0 = time.process_time()
            for _ in tracker.run(FrameSource(v, fps=CPS_FPS, max_frames=frames)):
                n += 1
            cpu += time.process_time() - c0
        out[label], out["frames"] = round(cpu, 2), n
    from ultralytics import YOLO

    cpu = 0.0
    for v in videos:
        bare = YOLO(str(path), task="detect")
        c0 = time.process_time()
        for m, _ in enumerate(bare.track(source=str(v), stream=True, persist=True, tracker="bytetrack.yaml",
                                         classes=[0], verbose=False), start=1):
            if m >= frames:
                break
        cpu += time.process_time() - c0
    out["bare"] = round(cpu, 2)
    session_s = out["frames"] / len(videos) / CPS_FPS  # the four cameras play at once: real time is one camera's
    for key in ("ours_wrists", "ours_no_wrists", "bare"):
        if out.get(key):
            out[key + "_x_realtime"] = round(session_s / (out[key] / CORES), 2)
    return out


def run_camera_worker(model: str, frames: int, start_at: float) -> dict:
    """One camera worker of the concurrent run: decode + detect + track + project ``frames`` frames of the aisle
    clip (looping), starting at ``start_at`` (time.time()) so that every worker runs at once."""
    video = SHARED / "media" / CLIPS[0]
    det = PersonDetector(SHARED / "models" / model, threads=THREADS)
    n = 0
    while time.time() < start_at:
        time.sleep(0.005)
    t0, c0 = time.perf_counter(), time.process_time()
    while n < frames:
        src = FrameSource(video, max_frames=frames - n)
        tracker = CameraTracker(_camera(src.width, src.height), det, f"bench{n}")
        for _ in tracker.run(src):
            n += 1
    return {"frames": n, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def run_concurrent(model: str, frames: int, workers: int) -> dict | None:
    """``workers`` camera workers (one process each, as deployed) running at once; total and slowest fps."""
    if not (SHARED / "media" / CLIPS[0]).exists():
        return None
    start_at = time.time() + 15.0  # every worker has loaded its model by then
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", model, "--frames", str(frames),
                               "--start-at", str(start_at)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(workers)]
    rows = []
    for p in procs:
        out, _ = p.communicate()
        rows += [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    if len(rows) != workers:
        return None
    wall = max(r["wall_s"] for r in rows)
    return {"model": model, "workers": workers, "frames": frames, "total_fps": round(workers * frames / wall, 1),
            "slowest_fps": round(min(r["frames"] / r["wall_s"] for r in rows), 1),
            "load": round(os.getloadavg()[0], 2)}


def cps_section(model: str, frames: int) -> dict | None:
    """Run :func:`run_cps` in its own process and print its lines: × real time for the four cps-test-01 cameras
    with and without wrists, and bare ultralytics."""
    proc = subprocess.run([sys.executable, __file__, "--cps-model", model, "--frames", str(frames)],
                          capture_output=True, text=True, cwd=ROOT)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
        elif line.strip():
            print(line)
    if proc.returncode or not result:
        print(proc.stderr[-2000:])
        return None
    n = result["frames"]
    print(f"cps-test-01, 4 real cameras × {n // 4} frames at 10 fps ({n / 4 / CPS_FPS:.1f} s of the session), {model}, "
          f"process CPU on {CORES} cores, one process per camera:")
    for key, label in (("ours_wrists", f"ours with wrists ({Path(result['pose_model'] or 'none').name})"),
                       ("ours_no_wrists", "ours without wrists"), ("bare", "bare ultralytics")):
        if result.get(key):
            print(f"  {label:<55} {result[key]:7.1f} CPU-s  {result[key + '_x_realtime']:5.2f} × real time")
    if result.get("ours_wrists") and result.get("bare"):
        print(f"  ours with wrists / bare ultralytics: {result['ours_wrists'] / result['bare']:.2f} × the CPU")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--json", default=None)
    ap.add_argument("--cps", action="store_true", help="only the four real cameras of cps-test-01 (issue #13)")
    ap.add_argument("--cps-model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one or args.worker or args.cps_model:
        import django

        django.setup()
        result = (run_model(args.one, args.frames) if args.one
                  else run_cps(args.cps_model, args.frames) if args.cps_model
                  else run_camera_worker(args.worker, args.frames, args.start_at))
        print("RESULT " + json.dumps(result), flush=True)
        return
    cps_section(MODELS[0], args.frames * 2 if args.frames else 300)
    if args.cps:
        return
    results = []
    for model in MODELS:
        if not (SHARED / "models" / model).exists():
            print(f"skip {model}: {SHARED / 'models' / model} is absent")
            continue
        proc = subprocess.run([sys.executable, __file__, "--one", model, "--frames", str(args.frames)],
                              capture_output=True, text=True, cwd=ROOT)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                results.append(json.loads(line[7:]))
            else:
                print(line)
        if proc.returncode:
            print(proc.stderr[-2000:])
    print(f"\n{'model':<20} {'clip':<26} {'size':<9} {'in':>4} {'fps':>6} {'/core':>6} {'bare/c':>6} {'ratio':>6} "
          f"{'ids':>4} {'RSS MB':>7} {'load':>5}")
    for r in results:
        for c in r["clips"]:
            print(f"{r['model']:<20} {c['clip']:<26} {c['size']:<9} {c['imgsz']:>4} {c['fps']:>6} "
                  f"{c['fps_per_core']:>6} {c['bare_fps_per_core']:>6} {c['ours_over_bare']:>6} {c['track_ids']:>4} "
                  f"{r['peak_rss_mb']:>7.0f} {c['load']:>5}")
    print(f"\nreal-time goal: 4 cameras × 10 fps = {GOAL_FPS:.0f} fps on {CORES} cores, one worker process per "
          f"camera, ours with threads={THREADS}")
    for r in results:
        if not r["clips"]:
            continue
        worst = min(r["clips"], key=lambda c: c["fps_per_core"])
        bare = min(c["bare_fps_per_core"] for c in r["clips"])
        total = worst["fps_per_core"] * CORES
        every = all(c["meets_4x10fps"] for c in r["clips"])
        print(f"{r['model']} imgsz {worst['imgsz']}: {worst['fps_per_core']} frames per CPU-second (worst clip "
              f"{worst['clip']}; bare ultralytics defaults, worst clip: {bare}) × {CORES} cores = {total:.1f} fps: "
              f"4 cameras × 10 fps {'reached' if every else 'NOT reached'}"
              + ("" if every else f" ({sum(c['meets_4x10fps'] for c in r['clips'])}/{len(r['clips'])} clips)"))
    for r in results:
        c = run_concurrent(r["model"], args.frames, 4)
        if c is None:
            print(f"{r['model']}: concurrent run skipped ({SHARED / 'media' / CLIPS[0]} absent or a worker failed)")
            continue
        r["concurrent"] = c
        print(f"{r['model']}: 4 camera workers at once (one process each, {CLIPS[0]}, decode + detect + track + "
              f"project): {c['total_fps']} fps in total, slowest camera {c['slowest_fps']} fps: 4 cameras × 10 fps "
              f"{'reached' if c['slowest_fps'] >= GOAL_FPS / 4 else 'NOT reached'} in real time; load {c['load']}")
    for r in results:
        for m in r["mot"]:
            print(f"{r['model']:<20} {m['seq']:<16} {m['tracker']:<10} MOTA {m['mota']:.3f} IDF1 {m['idf1']:.3f} "
                  f"IDSW {m['idsw']} ids {m['hyp_ids']}/{m['gt_ids']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
