"""The binary form of the shelf samples (``shelves/``: one ``.npy`` pair per controller and ``index.json``): the same
samples as ``shelves.csv``, memory-mapped, and malformed input refused with the reason."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from store.recording import (SHELVES, SHELVES_NPY, RecordingError, ShelfSamples, read_recording, write_recording,
                             write_shelves)
from test_recording import small_store, write_small


def two_blocks() -> list[ShelfSamples]:
    """Two controllers on their own clocks (60 Hz and 30 Hz), a missing sample (NaN) on one plate."""
    rng = np.random.default_rng(3)
    t1 = 1_600_000_000 + np.arange(90) / 60.0
    g1 = 1000 + rng.normal(0, 1, (90, 1))
    g1[10, 0] = np.nan
    t2 = 1_600_000_000.01 + np.arange(45) / 30.0
    g2 = np.stack([700 + rng.normal(0, 1, 45)], axis=1)
    return [ShelfSamples(t1, ("1-1-1",), g1), ShelfSamples(t2, ("1-1-2",), g2)]


def write(path, shelves, form):
    return write_recording(path, manifest={"name": "npy", "t_start": 1_600_000_000.0, "t_end": 1_600_000_002.0},
                           store=small_store(), shelves=shelves, shelves_form=form)


def same(a: list[ShelfSamples], b: list[ShelfSamples]) -> bool:
    return len(a) == len(b) and all(
        x.bin_codes == y.bin_codes and np.array_equal(x.t, y.t) and np.array_equal(x.grams, y.grams, equal_nan=True)
        and x.grams.dtype == y.grams.dtype == np.float64 for x, y in zip(a, b))


def test_csv_and_binary_forms_read_as_identical_shelf_samples(tmp_path):
    blocks = two_blocks()
    from_csv = read_recording(write(tmp_path / "csv", blocks, "csv"))
    assert (tmp_path / "csv" / SHELVES).exists() and not (tmp_path / "csv" / SHELVES_NPY).exists()
    # the CSV recording's samples converted to the binary form read back identical
    converted = read_recording(write(tmp_path / "npy", from_csv.shelves, "npy"))
    assert not (tmp_path / "npy" / SHELVES).exists()
    assert same(converted.shelves, from_csv.shelves)
    assert [p for p in converted.problems + from_csv.problems if "shelves" in p] == []
    assert isinstance(converted.shelves[0].grams, np.memmap)  # mapped, not read
    # and the binary form is lossless (the CSV form rounds grams to 0.01 g)
    direct = read_recording(write(tmp_path / "direct", blocks, "npy"))
    assert same(direct.shelves, sorted(blocks, key=lambda s: s.bin_codes[0]))
    # writing the other form replaces the first one
    write_shelves(tmp_path / "npy", from_csv.shelves, form="csv")
    assert (tmp_path / "npy" / SHELVES).exists() and not (tmp_path / "npy" / SHELVES_NPY).exists()
    assert same(read_recording(tmp_path / "npy").shelves, from_csv.shelves)


def test_blocks_on_one_clock_are_one_controller_in_both_forms(tmp_path):
    """The simulator hands its plates over per gondola, on one clock: the CSV form reads them back as one controller
    (bins sorted by code), and so must the binary form, or the two forms would play differently."""
    t = 1_600_000_000 + np.arange(30) / 60.0
    rng = np.random.default_rng(4)
    blocks = [ShelfSamples(t, ("1-1-2",), 700 + rng.normal(0, 1, (30, 1))),
              ShelfSamples(t.copy(), ("1-1-1",), 900 + rng.normal(0, 1, (30, 1)))]
    from_csv = read_recording(write(tmp_path / "csv", blocks, "csv")).shelves
    from_npy = read_recording(write(tmp_path / "npy", blocks, "npy")).shelves
    assert [b.bin_codes for b in from_csv] == [b.bin_codes for b in from_npy] == [("1-1-1", "1-1-2")]
    assert np.array_equal(from_npy[0].grams, np.concatenate([blocks[1].grams, blocks[0].grams], axis=1))
    assert same(read_recording(write(tmp_path / "conv", from_csv, "npy")).shelves, from_csv)


def test_both_forms_present_are_refused(tmp_path):
    path, _ = write_small(tmp_path / "rec")
    shutil.copy(path / SHELVES, tmp_path / "keep.csv")
    write_shelves(path, read_recording(path).shelves, form="npy")
    shutil.copy(tmp_path / "keep.csv", path / SHELVES)
    with pytest.raises(RecordingError, match=r"shelf samples twice, shelves\.csv and shelves/"):
        read_recording(path)


@pytest.fixture
def npy_rec(tmp_path):
    path = write(tmp_path / "rec", two_blocks(), "npy")
    return path, path / SHELVES_NPY


def test_a_grams_array_of_the_wrong_shape_is_refused(npy_rec):
    path, folder = npy_rec
    np.save(folder / "c0-grams.npy", np.zeros((89, 1)))
    with pytest.raises(RecordingError, match=r"controllers\[0\]: c0-grams\.npy must be \(T, B\) = \(90, 1\).*"
                                             r"got shape \(89, 1\)"):
        read_recording(path)


def test_time_that_does_not_increase_is_refused(npy_rec):
    path, folder = npy_rec
    t = np.load(folder / "c1-t.npy")
    t[20] = t[18]
    np.save(folder / "c1-t.npy", t)
    with pytest.raises(RecordingError, match=r"controllers\[1\]: c1-t\.npy must increase strictly; sample 20"):
        read_recording(path)


def test_an_unknown_bin_is_left_out_and_reported(npy_rec):
    path, folder = npy_rec
    index = json.loads((folder / "index.json").read_text())
    index["controllers"][1]["bins"] = ["9-9-9"]
    (folder / "index.json").write_text(json.dumps(index))
    rec = read_recording(path)
    assert [s.bin_codes for s in rec.shelves] == [("1-1-1",)]
    assert any("controllers[1]: unknown bin(s) 9-9-9; their samples skipped" in p for p in rec.problems)


@pytest.mark.parametrize("change, reason", [
    (lambda f: np.save(f / "c0-grams.npy", np.full((90, 1), np.inf)), r"90 infinite value\(s\)"),
    (lambda f: np.save(f / "c0-grams.npy", np.zeros((90, 1), dtype=np.float32)), r"must hold float64"),
    (lambda f: (f / "c0-t.npy").write_bytes(b"not an array"), r"c0-t\.npy is not a NumPy \.npy array"),
    (lambda f: (f / "c0-t.npy").unlink(), r"missing file c0-t\.npy"),
    (lambda f: (f / "index.json").write_text('{"controllers": [{"bins": ["1-1-1"], "t": "../x.npy", '
                                             '"grams": "c0-grams.npy"}]}'), r"\.t must name a \.npy file"),
    (lambda f: (f / "index.json").write_text('{"controllers": [{"bins": ["1-1-1", "1-1-1"], "t": "c0-t.npy", '
                                             '"grams": "c0-grams.npy"}]}'), r"1-1-1 listed twice"),
])
def test_malformed_binary_files_are_refused_with_the_reason(npy_rec, change, reason):
    path, folder = npy_rec
    change(folder)
    with pytest.raises(RecordingError, match=reason):
        read_recording(path)
