"""``manage.py track SOURCE [--model PATH] [--tracker bytetrack|botsort] [--calibration FILE] [--out DIR]``

Detection + tracking of people on a video file, an image folder, a URL or a device; writes the tracks in
MOTChallenge text (``DIR/<name>.txt``: frame, id, x, y, w, h, conf, -1, -1, -1) and, with a calibration, each
track's floor start/end in metres. The last line printed is ``tracks <N> frames <F> fps <R>`` (R: frames per
second of decode + detect + track + project, wall clock).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from vision.detector import DetectorError, PersonDetector
from vision.geometry import CalibrationError, CameraModel, read_cameras_file
from vision.config import vision_settings
from vision.tracking import CameraTracker, FrameSource, SourceError, TrackSummary, write_mot


class Command(BaseCommand):
    help = "Detect and track people in a video or image folder; write MOTChallenge tracks and a summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", help="video file, image folder, rtsp/http URL or device index")
        parser.add_argument("--model", default=None, help="model path or name (default: settings VISION MODEL)")
        parser.add_argument("--tracker", choices=["bytetrack", "botsort"], default=None)
        parser.add_argument("--calibration", default=None, help="camera JSON (vision.geometry.CameraModel form)")
        parser.add_argument("--camera", default=None, help="camera name inside a multi-camera calibration file")
        parser.add_argument("--out", default="var/tracks", help="output folder (default var/tracks)")
        parser.add_argument("--imgsz", type=int, default=None)
        parser.add_argument("--stride", type=int, default=1, help="process every n-th frame")
        parser.add_argument("--max-frames", type=int, default=None)
        parser.add_argument("--fps", type=float, default=None, help="frame rate (image folders; default 25)")

    def handle(self, *args, **opts) -> None:
        for name in ("max_frames", "stride", "imgsz"):
            if opts.get(name) is not None and opts[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1, got {opts[name]}")
        if opts.get("fps") is not None and not opts["fps"] > 0:
            raise CommandError(f"--fps must be positive, got {opts['fps']}")
        cfg = vision_settings()
        src_name = Path(opts["source"]).stem or "stream"
        camera = CameraModel(name=src_name, source=opts["source"])
        if opts["calibration"]:
            try:
                cams = read_cameras_file(opts["calibration"])
            except CalibrationError as exc:
                raise CommandError(str(exc)) from None
            if opts["camera"]:
                cams = [c for c in cams if c.name == opts["camera"]]
                if not cams:
                    raise CommandError(f"{opts['calibration']}: no camera named {opts['camera']!r}")
            camera = cams[0]
        try:
            source = FrameSource(opts["source"], stride=opts["stride"], max_frames=opts["max_frames"],
                                 fps=opts["fps"], name=camera.name)
            det = PersonDetector(opts["model"] or cfg["MODEL"], imgsz=opts["imgsz"] or cfg["IMGSZ"],
                                 conf=float(cfg["CONF"]), tracker=opts["tracker"] or cfg["TRACKER"],
                                 pose=cfg.get("POSE_MODEL"))
        except (SourceError, DetectorError) as exc:
            raise CommandError(str(exc)) from None
        tracker = CameraTracker(camera, det, session=src_name)
        summary = TrackSummary(keep_mot=True)
        t0 = time.perf_counter()
        for ft in tracker.run(source):
            summary.add(ft)
        wall = time.perf_counter() - t0
        out = write_mot(Path(opts["out"]) / f"{src_name}.txt", summary.mot_rows)
        self.stdout.write(f"model {det.model_name} imgsz {det.imgsz} tracker {det.tracker}; hands {det.hands_source}")
        for iv in summary.intervals.values():
            floor = ""
            if camera.has_floor and math.isfinite(iv.floor_start[0]):
                floor = (f" floor ({iv.floor_start[0]:.2f}, {iv.floor_start[1]:.2f}) → "
                         f"({iv.floor_end[0]:.2f}, {iv.floor_end[1]:.2f}) m")
            self.stdout.write(f"track {iv.key}: frames {iv.frame_start}–{iv.frame_end} ({iv.frames} seen) "
                              f"conf {iv.mean_confidence:.2f}{floor}")
        for p in source.problems + tracker.problems:
            self.stdout.write(f"problem: {p}")
        self.stdout.write(f"wrote {out}")
        fps = summary.frames / wall if wall > 0 else 0.0
        self.stdout.write(f"tracks {len(summary.intervals)} frames {summary.frames} fps {fps:.1f}")
