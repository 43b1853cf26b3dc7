"""Multi-object tracking metrics on MOTChallenge files: MOTA (CLEAR MOT) and IDF1 (no Django).

Written here because py-motmetrics 1.4.0 (PyPI) calls ``np.asfarray``, removed in NumPy 2. Definitions:

- CLEAR MOT (Bernardin & Stiefelhagen 2008, as py-motmetrics implements it): per frame, a ground-truth object keeps
  its previous hypothesis if their IoU is still ≥ ``iou``; the rest are matched by the Hungarian method on
  1 − IoU (pairs under ``iou`` excluded). ``MOTA = 1 − (FN + FP + IDSW) / GT``; an identity switch is a ground-truth
  object matched to a different hypothesis than at its last match.
- IDF1 (Ristani et al. 2016): one global bipartite matching of ground-truth to hypothesis identities maximising
  the number of frames where the pair overlaps with IoU ≥ ``iou`` (IDTP);
  ``IDF1 = 2·IDTP / (2·IDTP + IDFP + IDFN)``.

Boxes are MOTChallenge ``x, y, w, h`` pixels (top-left corner and size).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MotBoxes:
    """MOTChallenge rows: ``frame`` (n,) int64 (1-based), ``id`` (n,) int64, ``xywh`` (n, 4) float64 pixels,
    ``conf`` (n,) float64."""

    frame: np.ndarray
    id: np.ndarray
    xywh: np.ndarray
    conf: np.ndarray

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def __getitem__(self, mask) -> "MotBoxes":
        return MotBoxes(self.frame[mask], self.id[mask], self.xywh[mask], self.conf[mask])


def read_mot(path: str | Path) -> MotBoxes:
    """Read a MOTChallenge text file (``frame, id, x, y, w, h, conf, ...``, comma separated). Raises ValueError
    naming the line of a malformed row; a missing file raises FileNotFoundError."""
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            try:
                rows.append([float(v) for v in parts[:7]] + [1.0] * (7 - len(parts[:7])))
            except ValueError:
                raise ValueError(f"{path}:{i}: not a MOTChallenge row: {line[:60]!r}") from None
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return MotBoxes(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2:6], arr[:, 6])


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) of boxes ``a`` (n, 4) and ``b`` (m, 4), both ``x, y, w, h``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0:1], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1:2], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(frozen=True)
class MotScores:
    """Scores of one sequence: counts and ``mota``, ``idf1``, ``precision``, ``recall`` (fractions)."""

    gt: int
    fp: int
    fn: int
    idsw: int
    idtp: int
    idfp: int
    idfn: int
    gt_ids: int
    hyp_ids: int

    @property
    def mota(self) -> float:
        return 1.0 - (self.fn + self.fp + self.idsw) / self.gt if self.gt else float("nan")

    @property
    def idf1(self) -> float:
        den = 2 * self.idtp + self.idfp + self.idfn
        return 2 * self.idtp / den if den else float("nan")

    @property
    def recall(self) -> float:
        return (self.gt - self.fn) / self.gt if self.gt else float("nan")

    @property
    def precision(self) -> float:
        tp = self.gt - self.fn
        return tp / (tp + self.fp) if tp + self.fp else float("nan")

    def summary(self) -> str:
        return (f"MOTA {self.mota:.3f} IDF1 {self.idf1:.3f} recall {self.recall:.3f} precision {self.precision:.3f} "
                f"FP {self.fp} FN {self.fn} IDSW {self.idsw} ids gt {self.gt_ids} hyp {self.hyp_ids}")


def evaluate(gt: MotBoxes, hyp: MotBoxes, *, iou: float = 0.5, frames: np.ndarray | None = None) -> MotScores:
    """Score hypothesis boxes against ground truth; ``frames`` (optional) restricts both to those frame numbers
    (for a subsampled run)."""
    if frames is not None:
        gt = gt[np.isin(gt.frame, frames)]
        hyp = hyp[np.isin(hyp.frame, frames)]
    fp = fn = idsw = 0
    last: dict[int, int] = {}
    gid_list = np.unique(gt.id)
    hid_list = np.unique(hyp.id)
    gi = {g: i for i, g in enumerate(gid_list)}
    hi = {h: i for i, h in enumerate(hid_list)}
    overlap = np.zeros((gid_list.size, hid_list.size), dtype=np.int64)
    for f in np.union1d(gt.frame, hyp.frame):
        g = gt[gt.frame == f]
        h = hyp[hyp.frame == f]
        m = iou_xywh(g.xywh, h.xywh)
        ok = m >= iou
        for a, b in zip(*np.nonzero(ok)):
            overlap[gi[g.id[a]], hi[h.id[b]]] += 1
        matched_g, matched_h = set(), set()
        pairs = []
        for a in range(len(g)):  # keep last frame's correspondences still valid
            prev = last.get(int(g.id[a]))
            if prev is None:
                continue
            js = np.nonzero((h.id == prev) & ok[a])[0]
            if js.size:
                pairs.append((a, int(js[0])))
                matched_g.add(a)
                matched_h.add(int(js[0]))
        rest_g = [a for a in range(len(g)) if a not in matched_g]
        rest_h = [b for b in range(len(h)) if b not in matched_h]
        if rest_g and rest_h:
            cost = 1.0 - m[np.ix_(rest_g, rest_h)]
            cost[~ok[np.ix_(rest_g, rest_h)]] = 1e6
            r, c = linear_sum_assignment(cost)
            for a, b in zip(r, c):
                if cost[a, b] < 1e6:
                    pairs.append((rest_g[a], rest_h[b]))
        for a, b in pairs:
            gid, hid = int(g.id[a]), int(h.id[b])
            if gid in last and last[gid] != hid:
                idsw += 1
            last[gid] = hid
        fn += len(g) - len(pairs)
        fp += len(h) - len(pairs)
    if overlap.size:
        r, c = linear_sum_assignment(-overlap)
        idtp = int(overlap[r, c].sum())
    else:
        idtp = 0
    return MotScores(gt=len(gt), fp=fp, fn=fn, idsw=idsw, idtp=idtp, idfp=len(hyp) - idtp, idfn=len(gt) - idtp,
                     gt_ids=int(gid_list.size), hyp_ids=int(hid_list.size))
