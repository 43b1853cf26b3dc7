"""Reach detection on real footage (``make bench-activity``): precision and recall of reach intervals at 0.5 s
tolerance against the hand labels of ``tests/data/reach_labels.json`` (``carts.offline.activity_bench``), per clip and
pooled, with the CPU seconds each clip took. ``--stride N`` processes every N-th frame; ``--json FILE`` saves the
figures. Clips absent from ``../shared`` are named and skipped."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, before the import below

from carts.offline.activity_bench import evaluate  # noqa: E402
from carts.shared_data import shared_hint  # noqa: E402
from vision.detector import DetectorError  # noqa: E402
from vision.pose import PoseError  # noqa: E402

SHARED = Path(os.environ.get("WALKOUT_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--clip", action="append", help="a clip key of the label file (default: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    try:
        res = evaluate(SHARED, stride=args.stride, clips=args.clip)
    except (PoseError, DetectorError) as exc:  # a model file absent: one line, not a traceback
        print(f"bench-activity: {exc}; {shared_hint(SHARED)}", file=sys.stderr)
        return 1
    for path in res["missing"]:
        print(f"skipped: {path} is absent")
    for name, r in res["clips"].items():
        print(f"{name}: reaches precision {r['precision']:.2f} recall {r['recall']:.2f} (tp {r['tp']} fp {r['fp']} "
              f"fn {r['fn']}); detected {r['detected']}; {r['tracks']} tracks, {r['poses']} poses, refused "
              f"{r['refused'] or 'none'}; {r['cpu_s']} CPU s")
    a = res["all"]
    print(f"all clips: precision {a['precision']:.2f} recall {a['recall']:.2f} (tp {a['tp']} fp {a['fp']} fn {a['fn']})")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
