"""Decoding the AiFi AutoCheckout plate messages (carts.offline.autocheckout_plates) on the real BENCHMARK-1 export and on
damaged copies of its lines. Pure pytest, no database."""
from __future__ import annotations

import base64
import copy
import json
import logging

import numpy as np
import pytest

from carts.offline.autocheckout_plates import (
    AutoCheckoutError,
    PlateBlock,
    PlateMessageError,
    blocks_by_gondola,
    decode_plate_document,
    parse_utc,
    read_planogram,
    read_plate_file,
    read_products,
)
from tests.conftest import BENCHMARK_1, need

DATA = BENCHMARK_1
PLATES = DATA / "plate_data.json"
PRODUCTS = DATA / "products.json"
PLANOGRAM = DATA / "planogram.json"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return need(PLATES).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def decoded():
    return read_plate_file(need(PLATES))


# ------------------------------------------------------------------------------------------------ real file
def test_all_344_messages_decode(decoded):
    blocks, errors = decoded
    assert errors == []
    assert len(blocks) == 344
    per = {}
    for b in blocks:
        per[b.gondola] = per.get(b.gondola, 0) + 1
        assert b.grams.dtype == np.float32 and len(b) == 12 and b.rate_hz == 60.0
    assert per == {1: 86, 2: 86, 3: 86, 4: 86}
    shapes = {b.gondola: b.grams.shape[1:] for b in blocks}
    assert shapes == {1: (6, 14), 2: (6, 12), 3: (5, 12), 4: (6, 12)}


def test_padding_removed_and_indexing(lines):
    doc = json.loads(lines[0])
    values = doc["document"]["plate_data"]["values"]
    raw = np.frombuffer(base64.b64decode(values["data"]), dtype="<f4").reshape(values["shape"])
    assert np.isnan(raw[:, 0, :]).all() and np.isnan(raw[:, :, 0]).all()
    block = decode_plate_document(doc)
    assert block.gondola == 1
    # grams[:, s-1, p-1] is shelf s plate p
    np.testing.assert_array_equal(block.grams[:, 4, 10], raw[:, 5, 11])
    np.testing.assert_array_equal(block.grams, raw[:, 1:, 1:])
    assert block.bin_codes[(5 - 1) * block.n_plates + (11 - 1)] == "1-5-11"
    np.testing.assert_array_equal(block.flat_grams()[:, (5 - 1) * block.n_plates + 10], raw[:, 5, 11])


def test_time_is_t_origin_of_first_sample(lines):
    doc = json.loads(lines[0])
    block = decode_plate_document(doc)
    assert block.t[0] == pytest.approx(parse_utc("2020-04-22T05:06:36.859Z"))
    assert block.t[0] == pytest.approx(1587531996.859)
    np.testing.assert_allclose(np.diff(block.t), 1 / 60.0, rtol=0, atol=1e-6)  # float64 at 1.6e9 s


def test_gondola_streams_tile_time_without_gaps(decoded):
    gondolas = blocks_by_gondola(decoded[0])
    for g, blk in gondolas.items():
        assert len(blk) == 86 * 12
        dt = np.diff(blk.t)
        # messages are 0.2 s apart and hold 12 samples at 60 Hz: the time grid is continuous
        np.testing.assert_allclose(dt, 1 / 60.0, atol=1e-6, err_msg=f"gondola {g}")
    assert [blk.gondola for blk in gondolas.values()] == [1, 2, 3, 4]
    span = max(b.t[-1] for b in gondolas.values()) - min(b.t[0] for b in gondolas.values())
    assert 17.0 < span < 17.5


# ------------------------------------------------------------------------------------------------ bad input
def _mutate(line: str, fn) -> str:
    doc = json.loads(line)
    fn(doc)
    return json.dumps(doc)


def _values(doc):
    return doc["document"]["plate_data"]["values"]


def test_bad_lines_are_reported_with_file_and_line_and_others_kept(lines, tmp_path, caplog):
    good = lines[:3]
    bad_lines = [
        good[0],                                                                                        # 1 ok
        _mutate(good[1], lambda d: _values(d).update(data=_values(d)["data"][:-40])),                   # 2 trunc
        _mutate(good[1], lambda d: _values(d).update(shape=[12, 7, 14])),                               # 3 shape
        '{"document": {"header": ',                                                                     # 4 JSON
        _mutate(good[1], lambda d: _values(d).update(type="DATATYPE_UINT16")),                          # 5 dtype
        _mutate(good[1], lambda d: d["document"]["header"].update(t_origin="not a time")),             # 6 time
        _mutate(good[1], lambda d: d["document"]["plate_data"].pop("freq_samp")),                       # 7 field
        _mutate(good[1], lambda d: _values(d).update(data="@@@@" + _values(d)["data"][4:])),            # 8 b64
        "",                                                                                             # 9 blank
        good[2],                                                                                        # 10 ok
    ]
    path = tmp_path / "plate_data.json"
    path.write_text("\n".join(bad_lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="carts.offline.autocheckout_plates"):
        blocks, errors = read_plate_file(path)
    assert [b.gondola for b in blocks] == [1, 4]  # lines 1 and 10 kept, in order
    assert [e.line for e in errors] == [2, 3, 4, 5, 6, 7, 8]
    for e in errors:
        assert isinstance(e, PlateMessageError) and isinstance(e, ValueError)
        assert f"{path}:{e.line}" in str(e)
        assert any(f"{path}:{e.line}" in r.getMessage() for r in caplog.records)
    msgs = {e.line: str(e) for e in errors}
    assert "bytes" in msgs[2] and "values.data" in msgs[2]
    assert "needs" in msgs[3] or "bytes" in msgs[3]
    assert "bad JSON" in msgs[4]
    assert "DATATYPE_FLOAT32" in msgs[5]
    assert "t_origin" in msgs[6]
    assert "freq_samp" in msgs[7]
    assert "base64" in msgs[8]


@pytest.mark.parametrize("mutation, expect", [
    (lambda d: d["document"]["header"].update(t_origin=12.5), "ISO-8601"),
    (lambda d: d["document"]["header"].update(t_origin="9999-99-99T00:00:00Z"), "t_origin"),
    (lambda d: _values(d).update(shape=[12, 7]), "shape"),
    (lambda d: _values(d).update(shape=[12, 1, 15]), "shape"),
    (lambda d: d["document"]["plate_data"]["plate_id"]["shelf_id"]["gondola_id"].update(id=0), "gondola"),
    (lambda d: d["document"]["plate_data"].update(freq_samp=float("nan")), "freq_samp"),
    (lambda d: d["document"].pop("header"), "document.header"),
    (lambda d: _values(d).pop("shape"), "document.plate_data.values.shape"),
    (lambda d: _values(d).update(data=_values(d)["data"][:-3]), "base64"),  # truncated mid-quantum
])
def test_decode_errors_name_the_field(lines, mutation, expect):
    doc = json.loads(lines[0])
    mutation(doc)
    with pytest.raises(PlateMessageError) as info:
        decode_plate_document(doc, where="plates.json:17")
    assert "plates.json:17" in str(info.value) and expect in str(info.value)
    assert info.value.line == 17 and info.value.path == "plates.json"


def test_decode_does_not_mutate_input(lines):
    doc = json.loads(lines[0])
    before = copy.deepcopy(doc)
    decode_plate_document(doc)
    assert doc == before


def test_plate_block_validation_messages():
    with pytest.raises(ValueError, match=r"\(n, S, P\) with n = 3"):
        PlateBlock(1, np.arange(3.0), np.zeros((2, 6, 12), np.float32))
    with pytest.raises(ValueError, match="float32"):
        PlateBlock(1, np.arange(3.0), np.zeros((3, 6, 12)))
    with pytest.raises(ValueError, match="increasing"):
        PlateBlock(1, np.array([0.0, 0.0, 1.0]), np.zeros((3, 6, 12), np.float32))


def test_concat_rejects_overlap_and_mixed_gondolas(decoded):
    blocks = [b for b in decoded[0] if b.gondola == 1][:3]
    joined = PlateBlock.concat(list(reversed(blocks)))  # order restored
    assert np.all(np.diff(joined.t) > 0) and len(joined) == 36
    shifted = PlateBlock(1, blocks[1].t - 0.1, blocks[1].grams)
    with pytest.raises(ValueError, match="overlaps"):
        PlateBlock.concat([blocks[0], shifted])
    other = next(b for b in decoded[0] if b.gondola == 2)
    with pytest.raises(ValueError, match="several gondolas"):
        PlateBlock.concat([blocks[0], other])


# ------------------------------------------------------------------------------------------------ catalogue
def test_products_and_planogram_adapters(decoded):
    products, perr = read_products(need(PRODUCTS))
    lines = [json.loads(x) for x in PRODUCTS.read_text(encoding="utf-8").splitlines() if x.strip()]
    with_weight = {d["product_id"]["id"] for d in lines if "weight" in d["metadata"]}
    no_weight = [d for d in lines if "weight" not in d["metadata"]]
    assert len(products) == len(with_weight)
    assert len(perr) == len(no_weight) and all(isinstance(e, AutoCheckoutError) for e in perr)
    i = products.barcode.tolist().index("071142008582")
    assert products.mean_g[i] == pytest.approx(621.67, abs=0.01)
    assert products.sd_g[i] == pytest.approx(0.03 * 621.67, rel=1e-6)
    assert np.all(products.sd_g >= 2.0)

    codes = [c for blk in blocks_by_gondola(decoded[0]).values() for c in blk.bin_codes]
    planogram, gerr = read_planogram(need(PLANOGRAM), products, codes)
    assert planogram.facings["1-5-11"] == ("071142008582",)
    assert planogram.facings["1-5-12"] == ("071142008582",)
    assert planogram.neighbours["1-5-11"] == ("1-5-10", "1-5-12")
    assert planogram.neighbours["1-1-1"] == ("1-1-2",)
    # the export has one entry without a product id (line 3): reported with file:line and field
    assert len(gerr) == 1 and "planogram_product_id.id" in str(gerr[0]) and f"{PLANOGRAM}:3" in str(gerr[0])


def test_catalogue_readers_report_bad_lines_by_file_and_line_and_keep_the_rest(tmp_path):
    """``read_products`` and ``read_planogram`` read JSON lines alike: a blank line is skipped, a line that is not
    JSON (or not an object) is an AutoCheckoutError naming ``file:line``, every other line is read."""
    products_path = tmp_path / "products.json"
    products_path.write_text("\n".join([
        json.dumps({"product_id": {"id": "A"}, "metadata": {"weight": 100.0}}),   # 1 ok
        "",                                                                         # 2 blank
        '{"product_id": ',                                                          # 3 bad JSON
        "[1, 2]",                                                                   # 4 not an object
        json.dumps({"product_id": {"id": "B"}, "metadata": {"weight": 250}}),      # 5 ok
    ]) + "\n", encoding="utf-8")
    products, perr = read_products(products_path)
    assert products.barcode.tolist() == ["A", "B"]
    assert products.mean_g.tolist() == [100.0, 250.0]
    assert [e.line for e in perr] == [3, 4]
    assert "bad JSON" in str(perr[0]) and f"{products_path}:3" in str(perr[0])
    assert "product_id.id" in str(perr[1])

    plate = {"shelf_id": {"gondola_id": {"id": 1}, "shelf_index": 2}, "plate_index": 3}
    planogram_path = tmp_path / "planogram.json"
    planogram_path.write_text("\n".join([
        "not json",                                                                 # 1 bad JSON
        "   ",                                                                      # 2 blank
        json.dumps({"planogram_product_id": {"id": "B"}, "plate_ids": [plate]}),   # 3 ok
    ]) + "\n", encoding="utf-8")
    planogram, gerr = read_planogram(planogram_path, products, ["1-2-3", "1-2-4"])
    assert planogram.facings["1-2-3"] == ("B",)
    assert [e.line for e in gerr] == [1]
    assert "bad JSON" in str(gerr[0]) and f"{planogram_path}:1" in str(gerr[0])
