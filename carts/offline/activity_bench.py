"""Reach detection measured on real footage against the hand labels of ``tests/data/reach_labels.json``
(``make bench-activity``; the test ``tests/test_vision_activity.py`` asserts a floor on the same figures).

For each labelled clip: people found and tracked (:class:`vision.detector.PersonDetector`, ByteTrack), BlazePose
landmarks on each person's crop (:class:`vision.pose.BlazePoseLandmarks`), every ``stride``-th frame; each track's
poses through :func:`vision.activity.image_features` and :func:`vision.activity.segment`; the reach intervals of
all tracks pooled and matched to the labels (:func:`vision.activity.match_intervals`, 0.5 s tolerance). Nothing is
cached: the figures come from the video every run.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.activity import ActivityConfig, ActivityStats, image_features, match_intervals, reach_intervals, segment
from vision.tracking import FrameSource
from vision.detector import PersonDetector
from vision.pose import BlazePoseLandmarks

LABELS = Path(__file__).resolve().parents[2] / "tests" / "data" / "reach_labels.json"


@dataclass
class TrackPoses:
    """One track's samples: ``t`` (n,) s from the clip's start, ``keypoints`` (n, 33, 3) pixels + visibility."""

    t: list
    keypoints: list


def video_poses(path: str | Path, detector, pose, *, stride: int = 1, min_score: float = 0.5) -> dict[int, TrackPoses]:
    """Per raw track id, the BlazePose keypoints of each tracked person in every ``stride``-th frame of the video
    ``path`` (crops whose pose-presence is under ``min_score`` are left out: no pose found)."""
    out: dict[int, TrackPoses] = {}
    for frame in FrameSource(path, stride=stride):
        det = detector.track(frame.image)
        for i in range(len(det)):
            p = pose(frame.image, det.xyxy[i])
            if p.score < min_score:
                continue
            tp = out.setdefault(int(det.tracker_id[i]), TrackPoses([], []))
            tp.t.append(frame.t)
            tp.keypoints.append(p.keypoints)
    return out


def clip_reaches(tracks: dict[int, TrackPoses], config: ActivityConfig = ActivityConfig(),
                 stats: ActivityStats | None = None) -> list[tuple[float, float]]:
    """The reach intervals of all tracks, pooled and sorted."""
    found = []
    for tp in tracks.values():
        f = image_features(np.asarray(tp.t), np.asarray(tp.keypoints), None, config, stats)
        found += reach_intervals(segment(f, config)[1])
    return sorted(found)


def evaluate(shared: Path, *, detector_model: str = "models/yolo11n_int8.onnx",
             pose_model: str = "models/mediapipe_pose_landmark_full.tflite", stride: int = 1,
             clips: list[str] | None = None, config: ActivityConfig = ActivityConfig()) -> dict:
    """Run every labelled clip (or ``clips``, keys of the label file) found under ``shared``; returns per clip and
    pooled ``{"tp", "fp", "fn", "precision", "recall"}`` plus the detected intervals, refused poses and CPU s.
    Clips whose file is absent are listed in ``"missing"``."""
    labels = json.loads(LABELS.read_text())
    tol = float(labels["tolerance_s"])
    pose = BlazePoseLandmarks(shared / pose_model, num_threads=1)
    result: dict = {"clips": {}, "missing": []}
    total = {"tp": 0, "fp": 0, "fn": 0}
    for name, clip in labels["clips"].items():
        if clips and name not in clips:
            continue
        path = shared / clip["file"]
        if not path.exists():
            result["missing"].append(str(path))
            continue
        detector = PersonDetector(shared / detector_model, approximate_hands=False)
        cpu0 = time.process_time()
        stats = ActivityStats()
        tracks = video_poses(path, detector, pose, stride=stride)
        found = clip_reaches(tracks, config, stats)
        truth = [(r["start_s"], r["end_s"], bool(r["certain"])) for r in clip["reaches"]]
        m = match_intervals(found, truth, tol)
        for k in total:
            total[k] += m[k]
        result["clips"][name] = {**{k: m[k] for k in ("tp", "fp", "fn", "precision", "recall")},
                                 "detected": [(round(a, 2), round(b, 2)) for a, b in found],
                                 "tracks": len(tracks), "poses": stats.samples,
                                 "refused": dict(stats.rejected), "cpu_s": round(time.process_time() - cpu0, 1)}
    tp, fp, fn = total["tp"], total["fp"], total["fn"]
    result["all"] = {**total, "precision": tp / (tp + fp) if tp + fp else float("nan"),
                     "recall": tp / (tp + fn) if tp + fn else float("nan")}
    return result
