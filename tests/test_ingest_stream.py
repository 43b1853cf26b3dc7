"""Controller payloads and stream repair (sensors.ingest): every kind of bad input is rejected or repaired with a
reason, counted, and nothing else is lost. Streams are built from the real BENCHMARK-1 plate data (gondola 2,
72 columns at 60 Hz, sent as 12-sample messages like the store's own controllers). Pure pytest, no database."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from carts.offline.autocheckout_plates import blocks_by_gondola, read_plate_file
from sensors.ingest import (
    IngestConfig, PayloadError, SampleBlock, decode_payload, encode_payload, parse_topic, weights_topic,
)
from sensors.ingest_stream import ControllerStream
from sensors.weight import WeightChanges, WeightEventDetector
from tests.conftest import BENCHMARK_1

PLATES = BENCHMARK_1 / "plate_data.json"
RATE = 60.0
N = 12


@pytest.fixture(scope="module")
def real():
    """(t (n,), grams (n, B), bin codes) of gondola 1 of BENCHMARK-1 (the one with the real pick), all 84 columns."""
    if not PLATES.exists():
        pytest.skip(f"real data file {PLATES} is absent")
    blocks, errors = read_plate_file(PLATES)
    g = blocks_by_gondola(blocks)[1]
    return g.t, g.flat_grams(), g.bin_codes


def messages(t: np.ndarray, x: np.ndarray, name: str = "g1", key: str | None = None) -> list[bytes]:
    return [encode_payload(controller=name, seq=i // N, t0=float(t[i]), rate_hz=RATE, grams=x[i:i + N], key=key)
            for i in range(0, t.shape[0] - N + 1, N)]


def run(stream: ControllerStream, payloads, t_recv: float = 0.0):
    blocks, problems = [], []
    for k, p in enumerate(payloads):
        r = stream.accept_raw(p, t_recv + k * 0.2)
        blocks.extend(r.blocks)
        problems.extend(r.problems)
    r = stream.flush()
    return blocks + list(r.blocks), problems + list(r.problems)


def joined(blocks: list[SampleBlock]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([b.t for b in blocks]), np.concatenate([b.grams for b in blocks])


def reasons(problems) -> list[str]:
    return [p.reason for p in problems]


def test_topic_layout():
    assert weights_topic("aifi-nanostore", "g1") == "walkout/aifi-nanostore/shelf/g1/weights"
    assert parse_topic("walkout/aifi-nanostore/shelf/g1/weights") == ("aifi-nanostore", "g1")
    for bad in ("walkout/s/shelf/g1", "walkout//shelf/g1/weights", "x/s/shelf/g1/weights"):
        with pytest.raises(ValueError):
            parse_topic(bad)
    with pytest.raises(ValueError):
        weights_topic("a/b", "g1")


def test_clean_stream_round_trips_exactly(real):
    t, x, codes = real
    n = (t.shape[0] // N) * N
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, messages(t, x))
    tt, xx = joined(blocks)
    # float32 on the wire: the real data is float32 already, so nothing changes; NaN columns stay NaN
    np.testing.assert_array_equal(xx, x[:n].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(tt, t[:n], atol=1e-6)
    # the only problems are the export's dead columns (row 0 / NaN padding plates): reported once, repaired
    assert set(reasons(problems)) <= {"nan_burst"} and len(problems) == 1
    assert stream.counters.blocks == n // N and stream.counters.samples == n


@pytest.mark.parametrize("raw, reason, field", [
    (b"{not json", "malformed_json", "not JSON"),
    (b"[1, 2]", "malformed_json", "JSON object"),
    (b"\xff\xfe", "malformed_json", "not JSON"),
])
def test_malformed_json_rejected(raw, reason, field):
    s = ControllerStream("g1", 4, RATE)
    r = s.accept_raw(raw, 0.0)
    assert not r.blocks and reasons(r.problems) == [reason] and field in r.problems[0].message
    assert "controller g1" in r.problems[0].message and s.counters.problems == {reason: 1}


def _doc(**over):
    doc = json.loads(encode_payload(controller="g1", seq=5, t0=1.6e9, rate_hz=RATE, grams=np.ones((N, 4))))
    doc.update(over)
    return doc


@pytest.mark.parametrize("over, reason, text", [
    ({"data": "!!!not base64!!!"}, "bad_base64", "not base64"),
    ({"data": base64.b64encode(b"\0" * 20).decode()}, "bad_shape", "20 bytes"),
    ({"bins": 5}, "bad_shape", "registered with 4 bins"),
    ({"n": 0}, "bad_shape", "n must be"),
    ({"rate_hz": 50}, "bad_field", "registered 60 Hz"),
    ({"dtype": "<f8"}, "bad_field", "dtype"),
    ({"v": 2}, "bad_field", "version 2"),
    ({"t0": "yesterday"}, "bad_field", "'t0'"),
    ({"t0": 1e300}, "bad_field", "to 2100-01-01"),
    ({"t0": 1.0}, "bad_field", "from 2000-01-01"),
    ({"seq": -1}, "bad_field", "seq"),
    ({"controller": "g2"}, "wrong_controller", "'g2'"),
])
def test_bad_fields_rejected_with_reason(over, reason, text):
    s = ControllerStream("g1", 4, RATE)
    r = s.accept_raw(_doc(**over), 0.0)
    assert not r.blocks and reasons(r.problems) == [reason], r.problems
    assert text in r.problems[0].message
    doc = _doc()
    del doc["t0"]
    with pytest.raises(PayloadError, match="missing field 't0'"):
        decode_payload(doc, controller="g1", n_bins=4, rate_hz=RATE)


def test_a_rejected_message_loses_nothing_else(real):
    t, x, codes = real
    msgs = messages(t[:600], x[:600])
    msgs.insert(10, b"garbage")
    msgs.insert(20, json.dumps(_doc(bins=3)).encode())
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, msgs)
    assert sorted(set(reasons(problems))) == ["bad_shape", "malformed_json", "nan_burst"]
    np.testing.assert_array_equal(joined(blocks)[1], x[:600])


def test_duplicates_dropped_and_reordering_repaired(real):
    t, x, codes = real
    msgs = messages(t[:600], x[:600])
    order = list(range(len(msgs)))
    order[5], order[6] = order[6], order[5]          # swapped pair
    order[20], order[22] = order[22], order[20]      # two apart (within the default depth of 2)
    sent = [msgs[i] for i in order]
    sent.insert(12, msgs[11])                        # a retry of a message already taken
    sent.append(msgs[30])                            # a late duplicate
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, sent)
    rs = reasons(problems)
    # 6 arrives before 5; 22 and 21 both arrive before 20: three messages held and released in order
    assert rs.count("duplicate") == 2 and rs.count("reordered") == 3 and "gap" not in rs and "late" not in rs
    np.testing.assert_array_equal(joined(blocks)[1], x[:600])
    assert [b.seq for b in blocks] == list(range(len(msgs)))


def test_gap_reported_never_interpolated_and_late_message_refused(real):
    t, x, codes = real
    msgs = messages(t[:600], x[:600])
    lost = {7, 8, 9}
    sent = [m for i, m in enumerate(msgs) if i not in lost] + [msgs[8]]   # 8 arrives after it was given up
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, sent)
    gap = [p for p in problems if p.reason == "gap"]
    assert len(gap) == 1 and gap[0].samples_lost == 3 * N and "seqs 7–9" in gap[0].message
    assert [p.reason for p in problems if p.seq == 8] == ["late"]
    tt, xx = joined(blocks)
    keep = np.ones(600, bool)
    keep[7 * N:10 * N] = False
    np.testing.assert_array_equal(xx, x[:600][keep])      # the rest exactly, nothing filled in
    np.testing.assert_allclose(tt, t[:600][keep], atol=1e-6)
    # the time gap stays a gap: the detector sees no samples there
    assert np.isclose(tt[7 * N] - tt[7 * N - 1], (3 * N + 1) / RATE)


def test_hold_is_bounded_in_time():
    s = ControllerStream("g1", 2, RATE, IngestConfig(reorder_depth=5, hold_s=1.0))
    x = np.zeros((N, 2))
    assert len(s.accept_raw(encode_payload(controller="g1", seq=0, t0=1.6e9, rate_hz=RATE, grams=x), 0.0).blocks) == 1
    r = s.accept_raw(encode_payload(controller="g1", seq=2, t0=1.6e9 + 0.4, rate_hz=RATE, grams=x), 0.1)
    assert not r.blocks and reasons(r.problems) == ["reordered"]
    assert not s.poll(0.5).blocks                     # still waiting for seq 1
    r = s.poll(1.2)
    assert [b.seq for b in r.blocks] == [2] and reasons(r.problems) == ["gap"]


def test_clock_jump_retimed_onto_the_sample_count(real):
    t, x, codes = real
    msgs = []
    for k, i in enumerate(range(0, 600, N)):
        t0 = float(t[i]) + (3600.0 if k >= 20 else 0.0) - (2.5 if k >= 35 else 0.0)   # NTP step, then back
        msgs.append(encode_payload(controller="g1", seq=k, t0=t0, rate_hz=RATE, grams=x[i:i + N]))
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, msgs)
    jumps = [p for p in problems if p.reason == "clock_jump"]
    assert [p.seq for p in jumps] == [20, 35] and all(p.repaired for p in jumps)
    assert "+3600.000 s off" in jumps[0].message
    tt, xx = joined(blocks)
    np.testing.assert_allclose(tt, t[:600], atol=1e-6)   # one continuous timeline
    np.testing.assert_array_equal(xx, x[:600])
    assert stream.clock_correction_s == pytest.approx(-3597.5, abs=1e-6)
    # small jitter (crystal drift) is not a jump
    jitter = ControllerStream("g1", x.shape[1], RATE)
    ms = [encode_payload(controller="g1", seq=k, t0=float(t[i]) + 0.004 * (k % 3), rate_hz=RATE, grams=x[i:i + N])
          for k, i in enumerate(range(0, 240, N))]
    assert "clock_jump" not in reasons(run(jitter, ms)[1])


def test_controller_restart_resets_the_sequence(real):
    t, x, codes = real
    msgs = messages(t[:240], x[:240])
    restart = [encode_payload(controller="g1", seq=k, t0=float(t[240 + 120 + i]), rate_hz=RATE,
                              grams=x[360 + i:360 + i + N]) for k, i in enumerate(range(0, 120, N))]
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, msgs + restart)
    assert "sequence_reset" in reasons(problems) and "late" not in reasons(problems)
    tt, _ = joined(blocks)
    assert tt.shape[0] == 360 and np.all(np.diff(tt) > 0)


def test_nan_burst_inf_and_out_of_range_repaired_and_counted(real):
    t, x, codes = real
    live = np.flatnonzero(np.isfinite(x[:600]).all(axis=0))
    y = x[:600, live[:11]].copy()                   # 11 real plates that report all the time
    y[100:220, 3] = np.nan                          # 2 s burst on one plate
    y[300, 5] = np.inf
    y[310, 6] = -5e6                                # a glitch far beyond a 20 kg cell
    y[400, 7] = np.nan                              # a single dropped sample: normal, not a burst
    stream = ControllerStream("g1", y.shape[1], RATE)
    blocks, problems = run(stream, messages(t[:600], y))
    rs = reasons(problems)
    assert rs.count("nan_burst") == 1 and rs.count("non_finite") == 1 and rs.count("out_of_range") == 1
    assert "column(s) 3" in next(p.message for p in problems if p.reason == "nan_burst")
    _, xx = joined(blocks)
    assert np.isnan(xx[300, 5]) and np.isnan(xx[310, 6]) and np.isnan(xx[100:220, 3]).all()
    ok = np.isfinite(y) & (np.abs(y) < 1e5)
    np.testing.assert_array_equal(xx[ok], y[ok])


def test_faulty_stream_still_gives_the_real_pick_and_nothing_else(real):
    """Every fault at once on the real gondola-1 stream: the detector downstream still finds exactly the one
    real pick (1-5-11, ≈ −623 g) and no other change."""
    t, x, codes = real
    msgs = messages(t, x)
    rng = np.random.default_rng(0)
    faulty: list = []
    for k, m in enumerate(msgs):
        if k in (4, 50):
            faulty.append(b"{broken")
        if k == 30:
            continue                                # lost
        faulty.append(m)
        if k % 17 == 0:
            faulty.append(m)                        # duplicate
    faulty[40], faulty[41] = faulty[41], faulty[40]  # reordered
    stream = ControllerStream("g1", x.shape[1], RATE)
    det = WeightEventDetector(x.shape[1], RATE)
    found = []
    all_problems = []
    for k, p in enumerate(faulty):
        r = stream.accept_raw(p, float(k))
        all_problems.extend(r.problems)
        for b in r.blocks:
            found.append(det.push(b.t, b.grams))
    for b in stream.flush().blocks:
        found.append(det.push(b.t, b.grams))
    found.append(det.flush())
    ch = WeightChanges.concat(found).strong()  # weak wobbles are never events on their own
    assert [codes[i] for i in ch.bin_index] == ["1-5-11"]
    assert ch.delta_g[0] == pytest.approx(-623.0, abs=10.0)
    assert {"malformed_json", "duplicate", "reordered", "gap"} <= set(reasons(all_problems))
    assert rng is not None


def test_forward_sequence_jump_with_a_sane_clock_is_never_a_clock_jump(real):
    """Issue #12.6: a controller that restarts from a stored counter (seq +49,995, clock right) keeps its samples at
    their own time; when the clock shows samples missing too, that is a gap of those samples."""
    t, x, codes = real
    first = messages(t[:240], x[:240])                                       # seqs 0–19
    restart = [encode_payload(controller="g1", seq=50_015 + k, t0=float(t[240 + i]), rate_hz=RATE,
                              grams=x[240 + i:240 + i + N]) for k, i in enumerate(range(0, 120, N))]
    later = [encode_payload(controller="g1", seq=60_000 + k, t0=float(t[384 + i]), rate_hz=RATE,
                            grams=x[384 + i:384 + i + N]) for k, i in enumerate(range(0, 120, N))]   # 24 missing
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, first + restart + later)
    assert "clock_jump" not in reasons(problems) and stream.clock_correction_s == 0.0
    seen = [p for p in problems if p.reason != "nan_burst"]                 # the real data's unplugged columns
    assert [p.reason for p in seen] == ["sequence_reset", "gap"]            # released at once, not held
    assert seen[1].samples_lost == 24 and not seen[0].samples_lost
    tt, xx = joined(blocks)
    keep = np.r_[0:360, 384:504]
    np.testing.assert_allclose(tt, t[keep], atol=1e-6)                      # every sample at its own time
    np.testing.assert_array_equal(xx, x[keep])


def test_late_re_delivery_of_a_released_message_is_a_duplicate():
    """Issue #12.7: a retry of a message fed long ago (beyond the last 256) is a duplicate with nothing lost; a
    message given up as lost that arrives after all is late."""
    rng = np.random.default_rng(7)
    t, x = 1.6e9 + np.arange(3600) / RATE, rng.normal(1000.0, 1.0, (3600, 4))
    msgs = messages(t, x)                                                    # 300 messages
    stream = ControllerStream("g1", x.shape[1], RATE)
    blocks, problems = run(stream, [m for k, m in enumerate(msgs) if k != 200] + [msgs[10], msgs[200]])
    by = {p.seq: (p.reason, p.samples_lost) for p in problems if p.reason in ("duplicate", "late")}
    assert by == {10: ("duplicate", 0), 200: ("late", N)}
    assert len(blocks) == 299
