"""Vision: cameras, detection and tracking, floor projection, shopper tracks and hand positions.

Importing ``vision`` does nothing. Whatever imports ultralytics calls :func:`yolo_environment` first
(``vision.detector`` does, before its lazy import), which sets its environment for an offline, non-interactive
process: ``YOLO_OFFLINE=1`` (no downloads or update checks),
``YOLO_AUTOINSTALL=0`` (never pip-install at run time) and ``YOLO_CONFIG_DIR`` (its settings file) under
``var/yolo`` of the checkout. Values already in the environment win.
"""
from __future__ import annotations

import os
from pathlib import Path

_VAR = Path(__file__).resolve().parent.parent / "var" / "yolo"


def yolo_environment() -> None:
    """Set ``YOLO_OFFLINE``, ``YOLO_AUTOINSTALL`` and ``YOLO_CONFIG_DIR`` unless already set (idempotent)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    if "YOLO_CONFIG_DIR" not in os.environ:
        try:
            _VAR.mkdir(parents=True, exist_ok=True)
            os.environ["YOLO_CONFIG_DIR"] = str(_VAR)
        except OSError:  # read-only checkout: ultralytics falls back to a temporary folder
            pass

