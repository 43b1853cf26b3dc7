"""The recording format: round trip, and clear errors that name the file and place."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from store.recording import (
    GateScan, RecordingError, ShelfSamples, TrackObservations, TruthLine, TruthReceipt, cameras_shift, read_recording,
    write_recording,
)


def small_store() -> dict:
    return {
        "store": {"code": "s1", "name": "Test store", "currency": "usd"},
        "zones": [],
        "gondolas": [{"number": 1, "x": 0.0, "y": 0.0, "yaw_rad": 0.0, "width_m": 1.0, "depth_m": 0.4,
                      "height_m": 2.0, "shelves": [{"number": 1, "z": 1.0, "bins": [
                          {"number": n, "code": f"1-1-{n}", "x": 0.05 + 0.1 * (n - 1), "y": 0.2, "z": 1.0,
                           "width_m": 0.1, "depth_m": 0.4, "yaw_rad": 0.0} for n in (1, 2)]}]}],
        "products": [{"barcode": "111", "name": "Water", "price": "1.25", "unit_weight_g": 500.0,
                      "unit_weight_sd_g": 5.0}],
        "facings": [{"bin": "1-1-1", "barcode": "111"}],
    }


def write_small(path):
    rng = np.random.default_rng(1)
    t = 1_600_000_000 + np.arange(120) / 60.0
    grams = 1000 + rng.normal(0, 1, (120, 2))
    tracks = TrackObservations(np.array(["a", "a"], dtype=object), np.array([t[0], t[-1]]),
                               np.array(["l_wrist", "r_wrist"], dtype=object),
                               np.array([[0.1, -0.1, 1.0], [0.2, -0.1, 1.1]]), np.array([0.9, 0.8]))
    return write_recording(path, manifest={"name": "small", "t_start": t[0], "t_end": t[-1]}, store=small_store(),
                           shelves=[ShelfSamples(t, ("1-1-1", "1-1-2"), grams)], tracks=tracks,
                           gates=[GateScan(t[0], "a", "entry"), GateScan(t[-1], "a", "exit")],
                           truth=[TruthReceipt("a", (TruthLine("111", 1),))]), grams


def test_round_trip(tmp_path):
    path, grams = write_small(tmp_path / "rec")
    rec = read_recording(path)
    assert rec.name == "small"
    assert len(rec.shelves) == 1 and rec.shelves[0].bin_codes == ("1-1-1", "1-1-2")
    np.testing.assert_allclose(rec.shelves[0].grams, grams, atol=0.006)
    assert rec.shelves[0].rate_hz == pytest.approx(60.0, rel=1e-3)
    assert rec.tracks.track_ids() == ["a"] and len(rec.tracks.hands()) == 2
    assert [g.kind for g in rec.gates] == ["entry", "exit"]
    assert rec.truth == [TruthReceipt("a", (TruthLine("111", 1),))]
    assert rec.problems == []


def test_missing_required_file_is_named(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    (path / "shelves.csv").unlink()
    with pytest.raises(RecordingError, match=r"shelves\.csv: missing file"):
        read_recording(path)


def test_missing_optional_file_is_a_problem_not_an_error(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    (path / "tracks.csv").unlink()
    rec = read_recording(path)
    assert len(rec.tracks) == 0
    assert any("tracks.csv: missing file" in p for p in rec.problems)
    assert rec.shelves[0].grams.shape == (120, 2)


def test_malformed_rows_are_skipped_with_file_and_line(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    lines = (path / "shelves.csv").read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",1-1-1,abc"          # not a number
    lines[6] = "oops,1-1-2,12.0"                               # bad time
    lines[7] = lines[7].split(",")[0] + ",9-9-9,12.0"          # unknown bin
    lines[8] = lines[8].split(",")[0] + ",1-1-1,nan"           # NaN: a gap, kept
    (path / "shelves.csv").write_text("\n".join(lines) + "\n")
    rec = read_recording(path)
    text = "\n".join(rec.problems)
    assert "shelves.csv:6: grams 'abc' is not a number" in text
    assert "shelves.csv:7: 'oops' is not a number" in text
    assert "shelves.csv:8: unknown bin '9-9-9'" in text
    assert len(rec.problems) == 3
    # one controller still: the time both rows of which were lost leaves the grid (a gap); at the next time one
    # bin's row was skipped and the other's was an explicit NaN, so both are NaN gaps on the grid
    assert len(rec.shelves) == 1 and rec.shelves[0].grams.shape == (119, 2)
    assert int(np.isnan(rec.shelves[0].grams).sum()) == 2


def test_bad_store_json_names_the_field(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    data = json.loads((path / "store.json").read_text())
    data["facings"].append({"bin": "7-7-7", "barcode": "111"})
    (path / "store.json").write_text(json.dumps(data))
    with pytest.raises(RecordingError, match=r"facings\[1\]\.bin '7-7-7' is not a bin"):
        read_recording(path)
    (path / "store.json").write_text("{ not json")
    with pytest.raises(RecordingError, match=r"store\.json:1: not valid JSON"):
        read_recording(path)


def test_wrong_manifest(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    (path / "recording.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(RecordingError, match="format must be 'walkout-recording'"):
        read_recording(path)
    shutil.rmtree(path)
    with pytest.raises(RecordingError, match="not a recording folder"):
        read_recording(path)


def test_bytes_quotes_keypoints_scores_and_order_are_reported_by_line(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    tracks = (path / "tracks.csv").read_bytes().splitlines()
    t0 = tracks[1].split(b",")[0]
    tracks += [t0 + b',a,nose,0.1,0.1,1.5,0.9',        # a COCO keypoint: kept
               t0 + b',a,tail,0.1,0.1,1.5,0.9',        # unknown keypoint
               t0 + b',a,l_wrist,0.1,0.1,1.5,2.5',     # score out of range
               t0 + b',"a,l_wrist,0.1,0.1,1.5,0.9',    # stray quote: this row only
               t0 + b',a,l_wrist,\xff\xfe,0.1,1.5,0.9',  # not UTF-8
               t0 + b',a,r_wrist,0.2,0.1,1.5,0.9']     # still read after all that
    (path / "tracks.csv").write_bytes(b"\n".join(tracks) + b"\n")
    lines = (path / "shelves.csv").read_text().splitlines()
    lines[3], lines[1] = lines[1], lines[3]            # two samples of bin 1-1-1 out of order
    (path / "shelves.csv").write_text("\n".join(lines) + "\n")
    rec = read_recording(path)
    text = "\n".join(rec.problems)
    assert "tracks.csv:5: unknown keypoint 'tail'" in text
    assert "tracks.csv:6: score 2.5 is outside [0, 1]" in text
    assert "tracks.csv:7: track id '\"a' is not of letters" in text
    assert "tracks.csv:8: not UTF-8 text" in text
    assert "out of time order; sorted by time" in text
    assert len(rec.tracks) == 4 and set(rec.tracks.keypoint) == {"l_wrist", "r_wrist", "nose"}
    assert np.all(np.diff(rec.shelves[0].t) > 0)


def test_impossible_manifest_and_catalogue_values_are_refused(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    manifest = json.loads((path / "recording.json").read_text())
    manifest["t_start"], manifest["t_end"] = manifest["t_end"], manifest["t_start"]
    (path / "recording.json").write_text(json.dumps(manifest))
    with pytest.raises(RecordingError, match="t_start .* is after t_end"):
        read_recording(path)
    path, _ = write_small(tmp_path / "rec2")
    for bad, message in ((0, "positive number of grams"), (-5, "positive number of grams"), ("x", "positive")):
        data = small_store()
        data["products"][0]["unit_weight_g"] = bad
        (path / "store.json").write_text(json.dumps(data))
        with pytest.raises(RecordingError, match=rf"products\[0\]\.unit_weight_g must be a {message}"):
            read_recording(path)
    data = small_store()
    data["products"][0]["barcode"] = None
    (path / "store.json").write_text(json.dumps(data))
    with pytest.raises(RecordingError, match=r"products\[0\]\.barcode must be a non-empty string"):
        read_recording(path)


def test_header_only_shelves_is_a_problem(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    (path / "shelves.csv").write_text("t,bin,grams\n")
    rec = read_recording(path)
    assert rec.shelves == [] and any("shelves.csv: no samples" in p for p in rec.problems)


def test_a_cameras_clock_moved_onto_the_shelves_clock(tmp_path):
    """``camera_clocks --write``: a camera found 0.97 s early is moved in cameras.json, so every reader (the replay
    and emulate_store's live cameras) plays it on the shelves' clock; the shift adds up and is kept beside it."""
    root, _ = write_small(tmp_path / "rec")
    (root / "video.mp4").write_bytes(b"")
    (root / "cameras.json").write_text(json.dumps({"cameras": [
        {"name": "cam1", "video": "video.mp4", "t_start": 1_600_000_000.0, "fps": 10},
        {"name": "cam3", "video": "video.mp4", "t_start": 1_600_000_001.0, "fps": 10}]}))
    assert cameras_shift(root, {"cam3": -0.97}) == ["cam3"]
    cams = {c.name: c.t_start for c in read_recording(root).cameras}
    assert cams == {"cam1": 1_600_000_000.0, "cam3": pytest.approx(1_600_000_000.03)}
    cameras_shift(root, {"cam3": -0.03})
    raw = {c["name"]: c for c in json.loads((root / "cameras.json").read_text())["cameras"]}
    assert raw["cam3"]["t_start"] == pytest.approx(1_600_000_000.0) and raw["cam3"]["clock_shift_s"] == -1.0
    with pytest.raises(RecordingError, match="no camera named cam9"):
        cameras_shift(root, {"cam9": 0.5})
    with pytest.raises(RecordingError, match="not finite"):
        cameras_shift(root, {"cam1": float("nan")})


def test_camera_clocks_refuses_a_recording_without_cameras(tmp_path):
    """``manage.py camera_clocks``: a recording without cameras.json, or no recording at all, is a one-line error."""
    from django.core.management import CommandError, call_command

    root, _ = write_small(tmp_path / "rec")
    with pytest.raises(CommandError, match="no cameras"):
        call_command("camera_clocks", str(root))
    with pytest.raises(CommandError):
        call_command("camera_clocks", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="--stride"):
        call_command("camera_clocks", str(root), "--stride", "0")
