"""Recordings: the folder format that holds one store session, for replay and evaluation (DESIGN.md "Recordings").

Pure Python + NumPy (no Django): read by ``replay``/``evaluate``, written by ``import_autocheckout`` and the
simulator. The format is documented for people in ``docs/recording-format.md``; this module is its reference
implementation. Every reader error is a :class:`RecordingError` naming the file and the line or field.

Units: time in seconds since the Unix epoch, UTC; lengths in metres in store coordinates; weights in grams;
prices as decimal strings in the store's currency.
"""
from __future__ import annotations

from .contract import (
    BODY_KEYPOINTS, CAMERAS, FORMAT, GATES, GateScan, HAND_KEYPOINTS, KEYPOINTS, MANIFEST, NameCodes, RAY_KEYPOINTS,
    REQUIRED,
    RecordedCamera, Recording, RecordingError, SHELF_FORMS, SHELVES, SHELVES_INDEX, SHELVES_NPY, STORE, ShelfSamples,
    TRACKS, TRUTH, TrackObservations, TruthLine, TruthReceipt, VERSION, WRIST_RAY_KEYPOINTS, member,
)
from .folder import (
    cameras_shift, destination_prepare, read_cameras, read_gates, read_recording, read_store, read_tracks, read_truth,
    write_recording,
)
from .shelves import read_shelves, read_shelves_npy, write_shelves

__all__ = [
    "BODY_KEYPOINTS",
    "CAMERAS",
    "FORMAT",
    "GATES",
    "GateScan",
    "HAND_KEYPOINTS",
    "KEYPOINTS",
    "MANIFEST",
    "NameCodes",
    "RAY_KEYPOINTS",
    "REQUIRED",
    "RecordedCamera",
    "Recording",
    "RecordingError",
    "SHELF_FORMS",
    "SHELVES",
    "SHELVES_INDEX",
    "SHELVES_NPY",
    "STORE",
    "ShelfSamples",
    "TRACKS",
    "TRUTH",
    "TrackObservations",
    "TruthLine",
    "TruthReceipt",
    "VERSION",
    "WRIST_RAY_KEYPOINTS",
    "cameras_shift",
    "destination_prepare",
    "member",
    "read_cameras",
    "read_gates",
    "read_recording",
    "read_shelves",
    "read_shelves_npy",
    "read_store",
    "read_tracks",
    "read_truth",
    "write_recording",
    "write_shelves",
]
