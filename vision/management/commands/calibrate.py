"""``manage.py calibrate POINTS [--still KEY] [--camera STORE:NAME] [--intrinsics FILE] [--out FILE]``

Compute a camera's floor homography from ≥ 4 marked floor points (``POINTS``: CSV ``u,v,x,y``, JSON
``[{"u", "v", "x", "y"}]``, or a per-camera JSON such as ``vision/calibrations/autocheckout_stills.json`` whose
camera ``--still KEY`` picks; pixels and store metres) with ``cv2.findHomography`` (RANSAC) and print the reprojection
error in pixels and centimetres. ``--camera STORE:NAME`` saves it on that Camera row (its intrinsics undistort
first); ``--out FILE`` writes a camera JSON usable by ``manage.py track --calibration FILE``.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from vision.geometry import CalibrationError, CameraModel, calibrate_floor, read_calibration_points
from vision.models import Camera
from vision.services import camera_calibrate


class Command(BaseCommand):
    help = "Compute a camera's floor homography from marked floor points; print the reprojection error."

    def add_arguments(self, parser) -> None:
        parser.add_argument("points", help="CSV u,v,x,y, JSON list of {u, v, x, y}, or a per-camera JSON "
                                           "{cameras: {KEY: {points: [...]}}} with --still KEY")
        parser.add_argument("--still", default=None, metavar="KEY",
                            help="the camera of a per-camera points file, e.g. 1 of "
                                 "vision/calibrations/autocheckout_stills.json")
        parser.add_argument("--camera", default=None, help="STORE:NAME of a Camera row to save it on")
        parser.add_argument("--name", default="camera", help="camera name in --out (default camera)")
        parser.add_argument("--out", default=None, help="write a camera calibration JSON here")

    def handle(self, *args, **opts) -> None:
        try:
            img, flr = read_calibration_points(opts["points"], still=opts["still"])
            if opts["camera"]:
                store_code, _, name = opts["camera"].partition(":")
                try:
                    camera = Camera.objects.get(store__code=store_code, name=name)
                except Camera.DoesNotExist:
                    raise CommandError(f"no camera {name!r} in store {store_code!r}") from None
                cal = camera_calibrate(camera=camera, points=[{"u": u, "v": v, "x": x, "y": y}
                                                              for (u, v), (x, y) in zip(img, flr)])
            else:
                cal = calibrate_floor(img, flr)
        except CalibrationError as exc:
            raise CommandError(str(exc)) from None
        for i, (ep, em) in enumerate(zip(cal.error_px, cal.error_m)):
            flag = "" if cal.inliers[i] else "  (outlier)"
            self.stdout.write(f"point {i + 1}: {ep:.2f} px {100 * em:.1f} cm{flag}")
        if opts["out"]:
            data = CameraModel(name=opts["name"], H=cal.H).to_dict()
            try:
                Path(opts["out"]).parent.mkdir(parents=True, exist_ok=True)
                Path(opts["out"]).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {opts['out']}: {exc.strerror or exc}") from None
            self.stdout.write(f"wrote {opts['out']}")
        self.stdout.write(cal.summary())
