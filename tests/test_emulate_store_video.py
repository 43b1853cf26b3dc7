"""The live camera path on real video: ``emulate_store`` plays cps-test-01's four ceiling-camera files as the store's
cameras (one camera worker per file, frames at their own rate, in step with the shelf controllers posting to the
controller API and the gate scanning a real pass); the cameras' tracks are joined into one shopper
(``vision.shoppers.ShopperStream``, the replay's own path) on the store loop's observation stream; the loop binds
the scan to him, decides the shelf event from his hand and bills him once he has left. The whole session is in
docs/cps-test-video.md (about a minute and a half); here a few seconds around the Taco Bell Fire take, whose weight
alone says Diablo (103.9 g) rather than Fire (105.5 g): the hand at the Fire plates decides it."""
from __future__ import annotations

import dataclasses
import io

import pytest

from carts.offline.autocheckout import import_case
from carts.offline.emulator import emulate
from conftest import needs_ultralytics, shared_file
from store.gates.models import Visit
from store.recording import GateScan, ShelfSamples, read_recording

pytestmark = pytest.mark.django_db(transaction=True)

#: Seconds of cps-test-01 (from its start) played: the Taco Bell take's weight change runs 9.8–10.9 s.
WINDOW_S = (7.5, 12.5)


def window(recording, t0: float, t1: float):
    """``recording`` cut to ``[t_start + t0, t_start + t1]``: the shelves' samples inside, one entry scan of its
    shopper at the window's start, its cameras' frames inside (the emulator plays a camera's frames within the
    recording's span)."""
    a, b = recording.t_start + t0, recording.t_start + t1
    shelves = []
    for block in recording.shelves:
        keep = (block.t >= a) & (block.t <= b)
        shelves.append(ShelfSamples(t=block.t[keep], bin_codes=block.bin_codes, grams=block.grams[keep]))
    track = recording.gates[0].track
    return dataclasses.replace(recording, shelves=shelves, manifest={**recording.manifest, "t_start": a, "t_end": b},
                               gates=[GateScan(t=a, track=track, kind="entry", source="inferred")])


def test_four_real_cameras_through_the_live_store_bill_the_take_their_hands_decide(tmp_path):
    needs_ultralytics()
    src = shared_file("datasets/autocheckout/cps-test-01/products.csv").parent
    shared_file("models/yolo11n_int8.onnx")
    shared_file("models/mediapipe_pose_landmark_lite.tflite")

    dest, _ = import_case(src, tmp_path / "cps")
    recording = window(read_recording(dest), *WINDOW_S)
    err = io.StringIO()
    result = emulate(recording, speed=20.0, out=err)

    assert result.problems == [], result.problems
    assert result.sent["frames"] == 4 * 51  # 7.5–12.5 s of four 10 fps cameras: every frame read and processed
    (visit_id,) = result.visits.values()
    visit = Visit.objects.get(pk=visit_id)
    assert visit.state == Visit.State.BILLED, (visit.state, err.getvalue())
    # bound by the loop to the one shopper the four cameras' tracks were joined into (this run's id), not told;
    # exited by the loop once the cameras stopped seeing him (the window's end)
    reasons = list(visit.transitions.values_list("reason", flat=True))
    bound = [r for r in reasons if r.startswith("bound to track ")]
    assert len(bound) == 1 and bound[0].endswith("-S1"), reasons
    assert "left the store" in reasons, reasons
    lines = {line.barcode: line.quantity for line in visit.receipt.lines.all()}
    assert lines == {"071063437089": 1}, lines  # Taco Bell Fire, not Diablo (071063437553)
