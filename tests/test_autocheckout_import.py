"""Converting the real AutoCheckout BENCHMARK-1 test case into a recording: geometry, units, catalogue, truth."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from carts.offline.autocheckout import INCH_M, import_case
from carts.offline.autocheckout_store import AutoCheckoutError
from carts.offline.autocheckout_store import convert_layout
from store.recording import read_recording
from tests.conftest import shared_file


def bins_by_code(store: dict) -> dict:
    return {b["code"]: b for g in store["gondolas"] for s in g["shelves"] for b in s["bins"]}


def test_layout_composes_gondola_shelf_plate_poses():
    meta = shared_file("datasets/autocheckout/store_meta/Plates.json").parent
    gondolas = convert_layout(meta)
    bins = {b["code"]: b for g in gondolas for s in g["shelves"] for b in s["bins"]}
    assert len(gondolas) == 5 and len(bins) == 306  # README: 5 gondolas × 6 shelves = 306 plates
    b = bins["1-5-11"]
    # gondola 1 at (0.0254, 0.4921), shelf 5 at (0, −0.4064, 1.3748), plate 11 at x = 1.016, plate 0.1016 × 0.4064
    assert b["x"] == pytest.approx(0.0254 + 1.016 + 0.0508, abs=1e-3)
    assert b["y"] == pytest.approx(0.4921 - 0.4064 + 0.2032, abs=1e-3)
    assert b["z"] == pytest.approx(1.3748, abs=1e-3)
    # gondola 5 is turned by −90°: its plates run along −y (x constant), and the bin yaw follows
    g5 = [bins[c] for c in bins if c.startswith("5-1-")]
    xs, ys = np.array([x["x"] for x in g5]), np.array([x["y"] for x in g5])
    assert np.ptp(xs) < 1e-3 < np.ptp(ys)
    assert all(x["yaw_rad"] == pytest.approx(-math.pi / 2, abs=1e-3) for x in g5)


def test_benchmark1_recording(benchmark1_recording):
    rec = read_recording(benchmark1_recording)
    assert rec.name == "BENCHMARK-1"
    # 4 gondolas' controllers sent data (gondola 5 is silent in this case), 60 Hz, ~17 s
    assert len(rec.shelves) == 4
    assert all(s.rate_hz == pytest.approx(60.0, rel=0.02) for s in rec.shelves)
    assert 16.5 < rec.shelves[0].t[-1] - rec.shelves[0].t[0] < 17.5
    # one shopper track; entry at first and exit at last sighting, marked inferred
    assert rec.tracks.track_ids() == ["3325379692103139202"]
    assert [(g.kind, g.source) for g in rec.gates] == [("entry", "inferred"), ("exit", "inferred")]
    # keypoints converted from inches: the head of a standing person at ~1.5–1.9 m
    heads = rec.tracks[rec.tracks.keypoint == "head"]
    assert 1.4 < float(np.median(heads.xyz[:, 2])) < 1.95
    # the catalogue: the true product with its real weight and a spread, facing plates 11–12 of gondola 1 shelf 5
    products = {p["barcode"]: p for p in rec.store["products"]}
    water = products["071142008582"]
    assert water["unit_weight_g"] == pytest.approx(621.67, abs=0.01) and water["unit_weight_sd_g"] > 0
    facing_bins = {f["bin"] for f in rec.store["facings"] if f["barcode"] == "071142008582"}
    assert facing_bins == {"1-5-11", "1-5-12"}
    assert rec.truth[0].track == "3325379692103139202"
    assert [(x.barcode, x.quantity) for x in rec.truth[0].lines] == [("071142008582", 1)]


def test_hand_reaches_the_true_plate_in_store_coordinates(benchmark1_recording):
    """Units check: after inches → metres, a hand comes within 0.25 m of bin 1-5-11 while its weight drops."""
    rec = read_recording(benchmark1_recording)
    b = bins_by_code(rec.store)["1-5-11"]
    block = next(s for s in rec.shelves if "1-5-11" in s.bin_codes)
    g = block.grams[:, block.bin_codes.index("1-5-11")]
    t_drop = block.t[int(np.argmax(np.abs(g - np.nanmedian(g[:120])) > 300))]
    hands = rec.tracks.hands().between(t_drop - 2, t_drop + 1)
    d = np.hypot(hands.xyz[:, 0] - b["x"], np.maximum(np.abs(hands.xyz[:, 1] - b["y"]) - b["depth_m"] / 2, 0))
    assert d.min() < 0.25
    # with the wrong units (inches read as metres) nothing would be near
    assert np.min(np.hypot(hands.xyz[:, 0] / INCH_M - b["x"], hands.xyz[:, 1] / INCH_M - b["y"])) > 2


def test_missing_and_corrupt_inputs_are_named(tmp_path):
    src = shared_file("datasets/autocheckout/BENCHMARK-1/plate_data.json").parent
    case = tmp_path / "CASE"
    shutil.copytree(src, case)
    shutil.copytree(src.parent / "store_meta", tmp_path / "store_meta")
    (case / "products.json").unlink()
    with pytest.raises(AutoCheckoutError, match=r"products\.json: missing file"):
        import_case(case, tmp_path / "out")
    shutil.copy(src / "products.json", case / "products.json")
    # corrupt one plate message (truncated base64) and one line (truncated JSON): named, skipped, rest converted
    lines = (case / "plate_data.json").read_text().splitlines()
    doc = json.loads(lines[10])
    doc["document"]["plate_data"]["values"]["data"] = doc["document"]["plate_data"]["values"]["data"][:100]
    lines[10] = json.dumps(doc)
    lines[20] = lines[20][: len(lines[20]) // 2]
    (case / "plate_data.json").write_text("\n".join(lines) + "\n")
    _, problems = import_case(case, tmp_path / "out")
    text = "\n".join(problems)
    assert "plate_data.json:11" in text and "plate_data.json:21" in text
    rec = read_recording(tmp_path / "out")
    assert len(rec.shelves) == 4  # the other 342 messages are all there
    assert sum(s.t.size for s in rec.shelves) == (344 - 2) * 12


def test_unreadable_plate_file_and_bad_destination(tmp_path):
    src = shared_file("datasets/autocheckout/BENCHMARK-1/plate_data.json").parent
    case = tmp_path / "CASE"
    shutil.copytree(src, case)
    shutil.copytree(src.parent / "store_meta", tmp_path / "store_meta")
    (case / "plate_data.json").unlink()
    with pytest.raises(AutoCheckoutError, match=r"plate_data\.json: missing file"):
        import_case(case, tmp_path / "out")
    (case / "plate_data.json").write_bytes(bytes(range(256)) * 10)
    with pytest.raises(AutoCheckoutError, match=r"plate_data\.json: not UTF-8"):
        import_case(case, tmp_path / "out")
    shutil.copy(src / "plate_data.json", case / "plate_data.json")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(AutoCheckoutError, match="cannot write the recording there"):
        import_case(case, tmp_path / "a-file")


def test_a_folder_that_is_no_test_case_says_so_and_names_one(tmp_path):
    """An empty folder (or the data set's root) was refused as "<parent>/store_meta/Gondolas.json: missing file"."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutoCheckoutError, match=r"empty: not a test case folder \(none of plate_data.json.*BENCHMARK-1"):
        import_case(tmp_path / "empty", tmp_path / "rec")
