"""Review clips: the frames of the cameras that saw a shelf event sent to review, kept for the manager's console.

Each camera worker (``vision.worker.CameraWorker``) keeps a bounded ring of its recent frames in memory
(:class:`FrameRing`: JPEG-encoded, at most ``fps`` a second, at most ``seconds`` long, scaled to at most
``width_px`` wide) with the tracks it found in each (boxes, keys, wrists in pixels). When the store loop sends a shelf
event to review, the worker is told (:class:`ClipRequest`, polled from the review queue) and, if its camera sees the
shelf (the bin's centre projects inside the frame), writes the frames from ``pre_s`` before the event to ``post_s``
after it with the candidates' tracks and hands drawn (:func:`draw_overlay`) to :class:`ClipStore`; the console shows
them. Clips are deleted after ``retention_h`` hours (:meth:`ClipStore.prune`).

Layout: ``<root>/<review id>/<camera>/clip.json`` (``{"review", "camera", "t_event": [t0, t1], "bin": code,
"written_at": s UTC, "frames": [{"file", "t"}]}``) beside ``NNNN.jpg``. Plain Python + NumPy + OpenCV (no Django: the
shell passes the folder, as ``sensors.storage`` does for raw samples).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_JPG = re.compile(r"^\d{4}\.jpg$")


def _cv2():
    import cv2

    return cv2


@dataclass(frozen=True)
class RingFrame:
    """One kept frame: ``t`` s UTC; ``jpeg`` bytes (scaled by ``scale`` from the camera's pixels); ``keys`` (n,)
    str track keys; ``boxes`` (n, 4) x1 y1 x2 y2 in the kept image's pixels; ``wrists`` (n, 2, 2) [left, right]
    wrist pixels of the kept image (NaN where unknown)."""

    t: float
    jpeg: bytes
    scale: float
    keys: tuple[str, ...] = ()
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    wrists: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))


class FrameRing:
    """The last ``seconds`` of a camera's frames, at most ``fps`` per second, each at most ``width_px`` wide, as
    JPEG (quality ``quality``). Bounded in time and in count (``seconds × fps + 1`` frames). Not thread-safe.
    Raises ``ValueError`` for a non-positive ``seconds``, ``fps`` or ``width_px``."""

    def __init__(self, *, seconds: float = 30.0, fps: float = 5.0, width_px: int = 640, quality: int = 80) -> None:
        if not (seconds > 0 and fps > 0 and width_px > 0):
            raise ValueError(f"FrameRing needs seconds, fps, width_px > 0, got {seconds}, {fps}, {width_px}")
        self.seconds, self.fps, self.width_px, self.quality = float(seconds), float(fps), int(width_px), int(quality)
        self.frames: deque[RingFrame] = deque(maxlen=int(math.ceil(self.seconds * self.fps)) + 1)
        self._last_t = -math.inf

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def t_last(self) -> float:
        """Time of the newest kept frame (s UTC), -inf when empty."""
        return self.frames[-1].t if self.frames else -math.inf

    def add(self, t: float, image: np.ndarray, *, keys=(), boxes=None, wrists_px=None) -> bool:
        """Keep ``image`` ((H, W, 3) uint8 BGR) taken at ``t`` (s UTC) with its tracks (``keys`` (n,), ``boxes``
        (n, 4) and ``wrists_px`` (n, 2, 2) in the image's pixels) unless it comes sooner than ``1/fps`` after the
        last kept one. Returns True when kept."""
        if t < self._last_t + 1.0 / self.fps - 1e-6:
            return False
        cv2 = _cv2()
        h, w = image.shape[:2]
        scale = min(1.0, self.width_px / float(w))
        small = image if scale == 1.0 else cv2.resize(image, (int(round(w * scale)), int(round(h * scale))),
                                                      interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [int(cv2.IMWRITE_JPEG_QUALITY), self.quality])
        if not ok:
            return False
        n = len(keys)
        b = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, float).reshape(n, 4) * scale
        wr = np.full((n, 2, 2), np.nan) if wrists_px is None else np.asarray(wrists_px, float).reshape(n, 2, 2) * scale
        self.frames.append(RingFrame(t=float(t), jpeg=buf.tobytes(), scale=scale, keys=tuple(str(k) for k in keys),
                                     boxes=b, wrists=wr))
        self._last_t = float(t)
        while self.frames and self.frames[0].t < t - self.seconds:
            self.frames.popleft()
        return True

    def between(self, t0: float, t1: float) -> list[RingFrame]:
        """Kept frames with ``t0 <= t <= t1``, oldest first."""
        return [f for f in self.frames if t0 <= f.t <= t1]


@dataclass(frozen=True)
class ClipRequest:
    """A review item that wants a clip: ``review`` id; ``t0``/``t1`` the shelf event (s UTC); ``bin_code`` and
    ``bin_xyz`` (3,) metres, store coordinates (the top face's centre); ``labels``: track key → how the console names
    that candidate ("Shopper A"); other tracks are drawn grey and unnamed."""

    review: int
    t0: float
    t1: float
    bin_code: str
    bin_xyz: tuple[float, float, float]
    labels: dict = field(default_factory=dict)


#: Colours (BGR) of the candidates A, B, C… in the clip (the console's shelf plan uses the same, as hex).
CANDIDATE_BGR = ((40, 120, 230), (200, 110, 30), (60, 160, 60), (160, 60, 160), (30, 170, 200))
CANDIDATE_HEX = tuple("#%02x%02x%02x" % (r, g, b) for b, g, r in CANDIDATE_BGR)


def draw_overlay(image: np.ndarray, frame: RingFrame, request: ClipRequest, bin_px: np.ndarray | None,
                 *, t_label: str = "") -> np.ndarray:
    """Draw on ``image`` (the decoded kept frame, modified and returned): the shelf bin (a yellow ring at
    ``bin_px``, the bin centre in the kept image's pixels, when known), each track's box and wrists — a candidate
    in its colour with its label, any other track thin grey — and ``t_label`` in the corner."""
    cv2 = _cv2()
    order = list(request.labels)
    for i, key in enumerate(frame.keys):
        label = request.labels.get(key)
        colour = CANDIDATE_BGR[order.index(key) % len(CANDIDATE_BGR)] if label else (150, 150, 150)
        x1, y1, x2, y2 = (int(round(v)) for v in frame.boxes[i])
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2 if label else 1)
        if label:
            cv2.putText(image, label, (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
        for side in range(2):
            w = frame.wrists[i, side]
            if np.isfinite(w).all():
                cv2.circle(image, (int(round(w[0])), int(round(w[1]))), 6 if label else 3, colour, -1 if label else 1)
    if bin_px is not None and np.isfinite(bin_px).all():
        cv2.circle(image, (int(round(bin_px[0])), int(round(bin_px[1]))), 14, (0, 215, 255), 2)
        cv2.putText(image, request.bin_code, (int(bin_px[0]) + 16, int(bin_px[1]) + 5), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 215, 255), 1)
    if t_label:
        cv2.putText(image, t_label, (8, image.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2)
    return image


class ClipStore:
    """Writes, reads and prunes review clips under ``root`` (module docstring); clips written more than
    ``retention_h`` hours ago are removed by :meth:`prune`. Raises ``ValueError`` for a non-positive retention
    and for a camera name that is not a safe path component."""

    def __init__(self, root: str | Path, *, retention_h: float) -> None:
        if not (math.isfinite(retention_h) and retention_h > 0):
            raise ValueError(f"retention_h must be a positive number of hours, got {retention_h!r}")
        self.root = Path(root)
        self.retention_h = float(retention_h)
        self._pruned_at = -math.inf  # when write() last pruned (s UTC): at most once an hour

    def folder(self, review: int, camera: str) -> Path:
        if not _NAME.match(camera):
            raise ValueError(f"{camera!r} is not a safe file name (letters, digits, . _ -)")
        return self.root / str(int(review)) / camera

    def write(self, request: ClipRequest, camera: str, frames: list[RingFrame], *,
              bin_px_full: np.ndarray | None = None, now: float | None = None) -> Path | None:
        """Write ``frames`` (kept frames of ``camera``) for ``request`` with the overlay drawn; ``bin_px_full``: the
        bin's centre in the camera's full-size pixels (None: not drawn). Returns the clip folder, or None when there
        is no frame. A clip already written for this review and camera is left as it is (idempotent)."""
        if not frames:
            return None
        cv2 = _cv2()
        folder = self.folder(request.review, camera)
        if (folder / "clip.json").exists():
            return folder
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        listed = []
        for k, f in enumerate(frames):
            image = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            bin_px = None if bin_px_full is None else np.asarray(bin_px_full, float) * f.scale
            dt = f.t - request.t0
            draw_overlay(image, f, request, bin_px, t_label=f"{camera}  {dt:+.1f} s")
            name = f"{k:04d}.jpg"
            cv2.imwrite(str(tmp / name), image, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
            listed.append({"file": name, "t": round(f.t, 3)})
        meta = {"review": int(request.review), "camera": camera, "t_event": [request.t0, request.t1],
                "bin": request.bin_code, "labels": request.labels, "written_at": time.time() if now is None else now,
                "frames": listed}
        (tmp / "clip.json").write_text(json.dumps(meta))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        log.info("review %s: clip of camera %s written (%d frames)", request.review, camera, len(listed))
        t_now = time.time() if now is None else now
        if t_now - self._pruned_at >= 3600.0:  # the writer deletes what is past retention (no beat needed)
            self._pruned_at = t_now
            self.prune(now=t_now)
        return folder

    def clips(self, review: int, *, now: float | None = None) -> list[dict]:
        """The clips of ``review``: ``[{"camera", "t_event", "bin", "frames": [{"file", "t"}], "written_at"}]``
        by camera name; a clip whose ``clip.json`` cannot be read is left out (logged), and so is one written more
        than ``retention_h`` hours before ``now`` (s UTC, default the clock): past retention it is not shown even
        before :meth:`prune` deletes it."""
        cutoff = (time.time() if now is None else now) - self.retention_h * 3600.0
        base = self.root / str(int(review))
        out = []
        if not base.is_dir():
            return out
        for cam in sorted(p for p in base.iterdir() if p.is_dir() and _NAME.match(p.name)):
            try:
                meta = json.loads((cam / "clip.json").read_text())
            except (OSError, ValueError) as exc:
                if not cam.name.endswith(".tmp"):
                    log.warning("%s: unreadable clip (%s)", cam, exc)
                continue
            if float(meta.get("written_at", 0) or 0) <= cutoff:
                continue
            meta["frames"] = [f for f in meta.get("frames", []) if _JPG.match(str(f.get("file", "")))]
            out.append(meta)
        return out

    def frame_path(self, review: int, camera: str, file: str) -> Path | None:
        """The path of one frame file of a clip, or None when the names are not safe or it does not exist."""
        if not (_NAME.match(camera) and _JPG.match(file)):
            return None
        path = self.root / str(int(review)) / camera / file
        return path if path.is_file() else None

    def prune(self, *, now: float | None = None) -> int:
        """Delete every clip written more than ``retention_h`` hours before ``now`` (s UTC, default the clock),
        and the review folders left empty. Returns the number of clips deleted."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_h * 3600.0
        removed = 0
        if not self.root.is_dir():
            return 0
        for review in self.root.iterdir():
            if not (review.is_dir() and review.name.isdigit()):
                continue
            for cam in review.iterdir():
                try:
                    written = float(json.loads((cam / "clip.json").read_text()).get("written_at", 0))
                except (OSError, ValueError):
                    written = cam.stat().st_mtime
                if written <= cutoff:
                    shutil.rmtree(cam, ignore_errors=True)
                    removed += 1
            if not any(review.iterdir()):
                review.rmdir()
        if removed:
            log.info("review clips: %d older than %.1f h removed under %s", removed, self.retention_h, self.root)
        return removed


def clip_store() -> ClipStore:
    """The clip store configured by ``settings.WALKOUT["REVIEW_CLIPS_DIR"]`` and ``["REVIEW_CLIP_RETENTION_H"]``
    (the Django shell's helper; the rest of this module does not import Django)."""
    from django.conf import settings

    cfg = settings.WALKOUT
    root = Path(cfg.get("REVIEW_CLIPS_DIR", Path(settings.VAR_DIR) / "clips"))
    if not root.is_absolute():
        root = Path(settings.BASE_DIR) / root
    return ClipStore(root, retention_h=float(cfg.get("REVIEW_CLIP_RETENTION_H", 72.0)))
