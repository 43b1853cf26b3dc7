"""The recording contract: the format's names and the typed containers every reader and writer passes around
(shelf samples, shopper-track observations, gate scans, truth receipts, recorded cameras), and
:class:`RecordingError`. Pure Python + NumPy; the types are the vision → carts and sensors → carts contract too
(``store.recording`` re-exports all of it). Units as ``docs/recording-format.md``: seconds UTC, metres, grams.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

log = logging.getLogger(__name__)


FORMAT = "walkout-recording"
VERSION = 1
MANIFEST = "recording.json"
STORE = "store.json"
SHELVES = "shelves.csv"
#: The binary form of the shelf samples (a folder): one ``.npy`` pair per shelf controller and :data:`SHELVES_INDEX`.
SHELVES_NPY = "shelves"
#: The binary form's index file, inside :data:`SHELVES_NPY`.
SHELVES_INDEX = "index.json"
#: Forms the shelf samples can be written in (:func:`write_shelves`): ``csv`` (``shelves.csv``) or ``npy``
#: (``shelves/``).
SHELF_FORMS = ("csv", "npy")
TRACKS = "tracks.csv"
GATES = "gates.csv"
TRUTH = "truth.json"
CAMERAS = "cameras.json"
#: Files a recording must hold; the shelf samples may be ``shelves.csv`` or the folder ``shelves/`` instead.
REQUIRED = (MANIFEST, STORE, SHELVES)

#: Keypoints that count as a hand for fusion (wrists are what pose models give; "hand" where a system has it).
HAND_KEYPOINTS = ("l_wrist", "r_wrist", "l_hand", "r_hand")
#: A wrist seen by one camera only, whose depth along the camera's ray is unknown: the two ends of the stretch of
#: that ray where the wrist can be (within an arm's reach of the body), as two rows of one track at one time, the
#: ``…_ray_a`` row before its ``…_ray_b`` row (several cameras' stretches at one time pair up in row order).
#: Wrist name → (end a, end b). Fusion reads such a stretch as the point of it nearest to an event's bins
#: (``carts.fusion_hands.wrist_ray_hands``): a depth-free lower bound of the hand's distance. The video path writes them
#: (``carts.offline.video``); keypoint sources with 3-D hands never do.
WRIST_RAY_KEYPOINTS = {"l_wrist": ("l_wrist_ray_a", "l_wrist_ray_b"), "r_wrist": ("r_wrist_ray_a", "r_wrist_ray_b")}
#: Every keypoint name of :data:`WRIST_RAY_KEYPOINTS`.
RAY_KEYPOINTS = tuple(k for ends in WRIST_RAY_KEYPOINTS.values() for k in ends)
#: Keypoint names a track may carry: the AutoCheckout/Walkout body set, the COCO-17 pose set (as ``l_``/``r_``), hands,
#: single-view wrist rays (:data:`WRIST_RAY_KEYPOINTS`) and ``floor`` (a bare floor position, z = 0).
KEYPOINTS = frozenset({
    "head", "neck", "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hand", "r_hand", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "floor",
    *RAY_KEYPOINTS,
})
#: Keypoints whose floor projection (x, y) gives a person's floor position, in order of preference.
BODY_KEYPOINTS = ("neck", "head", "l_shoulder", "r_shoulder", "floor")


_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RecordingError(ValueError):
    """A recording is missing a file or holds a malformed entry; the message names the file and place."""


# --------------------------------------------------------------------------------------------- typed containers
@dataclass(frozen=True)
class ShelfSamples:
    """Raw load-cell samples of the bins read by one shelf controller (bins sharing one clock and time grid).

    ``t`` (T,) float64 seconds since epoch UTC, increasing; ``bin_codes`` (B,) bin codes; ``grams`` (T, B) float64
    raw readings (not zeroed; NaN where a sample is missing).
    """

    t: np.ndarray
    bin_codes: tuple[str, ...]
    grams: np.ndarray

    def __post_init__(self) -> None:
        if self.t.ndim != 1:
            raise ValueError(f"t must be (T,), got {self.t.shape}")
        if self.grams.shape != (self.t.shape[0], len(self.bin_codes)):
            raise ValueError(f"grams must be (T, B) = {(self.t.shape[0], len(self.bin_codes))}, got {self.grams.shape}")

    @property
    def rate_hz(self) -> float:
        """Median sample rate, Hz (0 when fewer than two samples)."""
        if self.t.shape[0] < 2:
            return 0.0
        return float(1.0 / np.median(np.diff(self.t)))


@dataclass(frozen=True)
class NameCodes:
    """A string column (track ids or keypoint names) as integer codes: ``codes`` (n,) int32, each an index into
    ``names`` (the distinct strings, shared by every selection from one buffer, e.g. the store loop's observation
    window; it may hold names no row uses); ``index`` is its name → code map. Lets :meth:`TrackObservations.
    track_in` and :meth:`~TrackObservations.keypoint_in` test membership in NumPy instead of one Python ``in`` per
    row."""

    codes: np.ndarray
    names: list[str]
    index: dict[str, int]

    def isin(self, allowed: Iterable, rows: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: which rows' strings are in ``allowed``; (k,) for the rows at the indices ``rows`` (k,) only."""
        lut = np.zeros(len(self.names), dtype=bool)
        hits = [c for c in (self.index.get(str(a)) for a in allowed) if c is not None]
        if hits:
            lut[hits] = True
        return lut[self.codes if rows is None else self.codes[rows]]


@dataclass(frozen=True)
class TrackObservations:
    """Keypoint observations of shopper tracks in store coordinates (the vision → carts contract).

    ``track_id`` (n,) object array of str; ``t`` (n,) float64 s UTC; ``keypoint`` (n,) object array of str
    (``head``, ``neck``, ``l_wrist``, ``r_wrist``, …, or ``floor`` for a bare floor position with z = 0);
    ``xyz`` (n, 3) float64 metres; ``score`` (n,) float64 in [0, 1]. ``codes``: optionally, the same
    ``track_id`` and ``keypoint`` columns as :class:`NameCodes` (kept by selections); whoever attaches them vouches
    they are those columns (``carts.loop_window.ObservationWindow``). Not compared, not shown.
    """

    track_id: np.ndarray
    t: np.ndarray
    keypoint: np.ndarray
    xyz: np.ndarray
    score: np.ndarray
    codes: tuple[NameCodes, NameCodes] | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        for name in ("track_id", "keypoint", "score"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")
        if self.xyz.shape != (n, 3):
            raise ValueError(f"xyz must be ({n}, 3), got {self.xyz.shape}")
        if self.codes is not None and any(c.codes.shape != (n,) for c in self.codes):
            raise ValueError(f"codes must be ({n},) each, got {[c.codes.shape for c in self.codes]}")

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def __getitem__(self, mask: Any) -> "TrackObservations":
        """The rows ``mask`` selects (a boolean (n,) mask, integer indices or a slice), in that order. A boolean mask
        is turned into indices once and every column taken by them (NumPy scans a mask anew for each column: 5–7
        columns of up to ~10⁵ rows per selection in the store loop)."""
        if isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == self.t.shape:
            rows = np.flatnonzero(mask)
            out = self._take(rows)
            if self._sorted is True:  # a mask keeps the rows' order
                object.__setattr__(out, "_t_sorted", True)
            return out
        if isinstance(mask, slice):
            out = self._slice(mask)
            if self._sorted is True and mask.step in (None, 1):
                object.__setattr__(out, "_t_sorted", True)
            return out
        codes = None
        if self.codes is not None:
            tc, kc = self.codes
            codes = (NameCodes(tc.codes[mask], tc.names, tc.index), NameCodes(kc.codes[mask], kc.names, kc.index))
        return TrackObservations(self.track_id[mask], self.t[mask], self.keypoint[mask], self.xyz[mask],
                                 self.score[mask], codes=codes)

    def _take(self, rows: np.ndarray) -> "TrackObservations":
        """The rows at the indices ``rows`` (k,) int, each column taken once."""
        codes = None
        if self.codes is not None:
            tc, kc = self.codes
            codes = (NameCodes(tc.codes.take(rows), tc.names, tc.index),
                     NameCodes(kc.codes.take(rows), kc.names, kc.index))
        return TrackObservations(self.track_id.take(rows), self.t.take(rows), self.keypoint.take(rows),
                                 self.xyz.take(rows, axis=0), self.score.take(rows), codes=codes)

    def _slice(self, s: slice) -> "TrackObservations":
        """The rows of the slice ``s``: views of the columns, no copy."""
        codes = None
        if self.codes is not None:
            tc, kc = self.codes
            codes = (NameCodes(tc.codes[s], tc.names, tc.index), NameCodes(kc.codes[s], kc.names, kc.index))
        return TrackObservations(self.track_id[s], self.t[s], self.keypoint[s], self.xyz[s], self.score[s],
                                 codes=codes)

    @property
    def _sorted(self) -> bool | None:
        """Whether the rows are known to be sorted by ``t`` (non-decreasing, no NaN): True, False, or None when not
        yet looked at (:meth:`time_sorted` looks and remembers)."""
        return self.__dict__.get("_t_sorted")

    def time_sorted(self) -> bool:
        """Whether the rows are sorted by ``t`` (non-decreasing; a NaN anywhere among two or more rows: False),
        looked at once per object (selections by mask or slice of sorted rows inherit the answer)."""
        known = self.__dict__.get("_t_sorted")
        if known is None:
            t = self.t
            known = bool(t.shape[0] < 2 or np.all(t[1:] >= t[:-1]))
            object.__setattr__(self, "_t_sorted", known)
        return known

    def track_in(self, allowed: Iterable, rows: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: which rows' ``track_id`` is in ``allowed`` (:func:`member`; by :attr:`codes` when kept); (k,)
        for the rows at the indices ``rows`` (k,) only."""
        if self.codes is not None:
            return self.codes[0].isin(allowed, rows)
        return member(self.track_id if rows is None else self.track_id[rows], allowed)

    def track_set(self) -> set[str]:
        """The distinct track ids (by :attr:`codes` when kept)."""
        if self.codes is not None:
            names = self.codes[0].names
            return {str(names[c]) for c in np.unique(self.codes[0].codes).tolist()}
        return {str(x) for x in self.track_id.tolist()}

    def keypoint_in(self, allowed: Iterable, rows: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: which rows' ``keypoint`` is in ``allowed`` (:func:`member`; by :attr:`codes` when kept); (k,)
        for the rows at the indices ``rows`` (k,) only."""
        if self.codes is not None:
            return self.codes[1].isin(allowed, rows)
        return member(self.keypoint if rows is None else self.keypoint[rows], allowed)

    @classmethod
    def empty(cls) -> "TrackObservations":
        return cls(np.array([], dtype=object), np.zeros(0), np.array([], dtype=object), np.zeros((0, 3)), np.zeros(0))

    def hands(self) -> "TrackObservations":
        """Only the hand keypoints (``HAND_KEYPOINTS``) and single-view wrist rays (``RAY_KEYPOINTS``), in order."""
        return self[self.keypoint_in(HAND_KEYPOINTS + RAY_KEYPOINTS)]

    def track_ids(self) -> list[str]:
        """Distinct track ids, in order of first observation."""
        order = np.argsort(self.t, kind="stable")
        seen: dict[str, None] = {}
        for tid in self.track_id[order]:
            seen.setdefault(str(tid), None)
        return list(seen)

    def span(self, track_id: str) -> tuple[float, float]:
        """(first, last) observation time of ``track_id``, s UTC. Raises KeyError if it has none."""
        ts = self.t[self.track_id == track_id]
        if ts.size == 0:
            raise KeyError(track_id)
        return float(ts.min()), float(ts.max())

    def between(self, t0: float, t1: float) -> "TrackObservations":
        """Observations with ``t0 <= t <= t1`` (s), in their order. When the rows are sorted by ``t``
        (:meth:`time_sorted`: the store loop's windows, a recording in time order) the run of them found by
        bisection, as views of the columns (no copy); otherwise the rows a mask selects. ``self`` when every row
        is in range (a NaN bound or ``t0 > t1``: none is)."""
        t = self.t
        n = t.shape[0]
        if self.time_sorted():
            if not t0 <= t1:
                return self._slice(slice(0, 0))
            i0 = int(np.searchsorted(t, t0, side="left"))
            i1 = int(np.searchsorted(t, t1, side="right"))
            if i0 == 0 and i1 == n:
                return self
            return self[i0:max(i0, i1)]
        m = (t >= t0) & (t <= t1)
        return self if bool(m.all()) else self[m]


def member(values: np.ndarray, allowed: Iterable) -> np.ndarray:
    """(n,) bool: which of ``values`` (n,) (track ids, keypoint names: object arrays) are in ``allowed``. The same
    answer as ``np.isin``, which on object arrays compares every value with every allowed one."""
    allowed = allowed if isinstance(allowed, (set, frozenset)) else set(allowed)
    return np.fromiter((v in allowed for v in values.tolist()), dtype=bool, count=len(values))


@dataclass(frozen=True)
class GateScan:
    """A gate event: ``kind`` entry or exit, at ``t`` (s UTC), for shopper ``track``; ``account`` an e-mail or "";
    ``source`` ``scanned`` (a real scan) or ``inferred`` (an importer placed it at the track's first/last sighting)."""

    t: float
    track: str
    kind: str
    account: str = ""
    source: str = "scanned"


@dataclass(frozen=True)
class TruthLine:
    """One line of a true receipt: ``quantity`` net units (put-backs already cancel picks) of ``barcode``."""

    barcode: str
    quantity: int


@dataclass(frozen=True)
class TruthReceipt:
    """The true receipt of one shopper track."""

    track: str
    lines: tuple[TruthLine, ...]


@dataclass(frozen=True)
class RecordedCamera:
    """One camera's video in a recording (``cameras.json``): ``name`` unique in the recording; ``video`` the file
    (resolved against the recording folder when relative); ``t_start`` s UTC of frame 0; ``fps`` the frame rate
    (None: the container's); ``calibration`` the camera model as plain JSON (``vision.geometry.CameraModel.to_dict``
    form: ``K`` 3×3 pixels, ``dist``, ``R`` 3×3 and ``C`` metres camera-to-store, and/or ``H`` 3×3 pixel → floor
    metres, ``width``, ``height``, ``clock_offset_s``)."""

    name: str
    video: Path
    t_start: float
    fps: float | None = None
    calibration: dict = field(default_factory=dict)


@dataclass
class Recording:
    """A recording folder, read and validated. ``store`` is the parsed ``store.json`` (see docs)."""

    path: Path
    manifest: dict
    store: dict
    shelves: list[ShelfSamples]
    tracks: TrackObservations
    gates: list[GateScan]
    truth: list[TruthReceipt] | None
    problems: list[str] = field(default_factory=list)
    cameras: list[RecordedCamera] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def t_start(self) -> float:
        return float(self.manifest["t_start"])

    @property
    def t_end(self) -> float:
        return float(self.manifest["t_end"])
