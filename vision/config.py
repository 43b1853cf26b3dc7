"""The camera pipeline's settings: ``settings.VISION`` merged over defaults that find the models in ``SHARED_DIR``
(read by the camera workers, the store's camera pages and the video replay)."""
from __future__ import annotations

import os

from django.conf import settings

from vision.pose import litert_available


def vision_settings() -> dict:
    """``settings.VISION`` merged over the defaults: ``MODEL`` (path or name; default ``$WALKOUT_VISION_MODEL``,
    else ``SHARED_DIR/models/yolo11n_int8.onnx`` where present, else ``yolo11n.pt``, downloaded by ultralytics on a
    machine with internet), ``TRACKER`` (bytetrack|botsort),
    ``IMGSZ`` (None: the model's), ``CONF``, ``STRIDE`` (process every n-th frame), ``GATE_M``, ``MAX_GAP_S``,
    ``POSE_MODEL`` (the BlazePose landmark ``.tflite`` for wrists on person crops, :mod:`vision.pose`; default
    ``$WALKOUT_VISION_POSE_MODEL``, else ``SHARED_DIR/models/mediapipe_pose_landmark_lite.tflite`` where present and
    ``ai-edge-litert`` is installed, else None: the box approximation)."""
    shared = getattr(settings, "SHARED_DIR", None)
    local = shared / "models" / "yolo11n_int8.onnx" if shared else None
    default_model = os.environ.get("WALKOUT_VISION_MODEL") or (str(local) if local and local.exists()
                                                               else "yolo11n.pt")
    out = {"MODEL": default_model, "TRACKER": "bytetrack", "IMGSZ": None, "CONF": 0.25, "STRIDE": 1,
           "GATE_M": 1.0, "MAX_GAP_S": 2.0, "POSE_MODEL": default_pose_model()}
    out.update(getattr(settings, "VISION", {}) or {})
    return out


def default_pose_model() -> str | None:
    """``$WALKOUT_VISION_POSE_MODEL``, else the shared BlazePose lite model when it and ``ai-edge-litert`` are
    present, else None."""
    env = os.environ.get("WALKOUT_VISION_POSE_MODEL")
    if env:
        return env
    shared = getattr(settings, "SHARED_DIR", None)
    lite = shared / "models" / "mediapipe_pose_landmark_lite.tflite" if shared else None
    if lite is None or not lite.exists():
        return None

    return str(lite) if litert_available() else None
