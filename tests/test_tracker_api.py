"""The external-tracker adapter (POST /vision/api/observations/): who may post, what it accepts (onto the store's
observation stream, track ids namespaced by tracker), and every body it cannot use answered 400 with a reason and
counted — never a 500."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from carts.bus import bus
from carts.records import decode_obs
from store.layout.models import Store
from vision.models import TrackerSource
from vision.services import (
    EMULATED_TRACKER_CLOCK_AHEAD_MAX_S, TRACKER_CLOCK_AHEAD_MAX_S, TrackerInputError, observations_parse,
    tracker_create,
)

pytestmark = pytest.mark.django_db

URL = "/vision/api/observations/"


@pytest.fixture
def tracker(settings):
    settings.WALKOUT = {**settings.WALKOUT, "STORE_LOOP": "on"}
    store = Store.objects.create(code="trk-shop", name="Tracker shop")
    row, key = tracker_create(store=store, name="ceiling")
    # no local worker thread in this test: the records stay on the bus for us to read
    from carts import runtime_publish

    runtime_publish.register_local(store.code, None)
    yield row, key
    runtime_publish.unregister_local(store.code)


def post(body, key=None, client=None):
    headers = {"HTTP_AUTHORIZATION": f"Tracker {key}"} if key else {}
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return (client or Client()).post(URL, data=raw, content_type="application/json", **headers)


def test_observations_reach_the_store_loop_stream(tracker):
    row, key = tracker
    r = post({"v": 1, "t_last": 1_700_000_001.0,
              "rows": [["7", 1_700_000_000.5, "r_wrist", 3.4, -0.5, 1.1, 0.9],
                       [7, 1_700_000_000.5, "neck", 3.4, -0.6, 1.4, 0.95]]}, key)
    assert r.status_code == 202 and r.json() == {"accepted": 2}
    records = bus().read(row.store.code, block_ms=0)
    assert [kind for kind, _, _ in records] == ["obs"]
    source, obs, t_last = decode_obs(records[0][2])
    assert source == "tracker:ceiling" and t_last == 1_700_000_001.0
    assert list(obs.track_id) == ["ceiling:7", "ceiling:7"] and list(obs.keypoint) == ["r_wrist", "neck"]
    row.refresh_from_db()
    assert row.observations == 2



def test_rows_without_t_last_move_the_trackers_clock_to_the_newest_row(tracker):
    """Without ``t_last`` the newest row's time is the tracker's clock (the store loop waits for it as a live source);
    an empty post without one moves nothing."""
    row, key = tracker
    r = post({"v": 1, "rows": [["7", 1_700_000_000.5, "r_wrist", 3.4, -0.5, 1.1, 0.9],
                               ["8", 1_700_000_000.9, "neck", 2.0, 1.0, 1.4, 0.95]]}, key)
    assert r.status_code == 202
    assert post({"v": 1, "rows": []}, key).status_code == 202
    records = bus().read(row.store.code, block_ms=0)
    assert [decode_obs(rec)[2] for _, _, rec in records] == [1_700_000_000.9, None]

@pytest.mark.parametrize("body, reason", [
    ("[" * 100_000, "malformed_json"),
    ('{"v": 1, "rows": [], "t_last": ' + "9" * 5001 + "}", "malformed_json"),
    (b"\xff\xfe not utf-8", "malformed_json"),
    ({"v": 2, "rows": []}, "bad_request"),
    ({"v": 1, "rows": "all of them"}, "bad_request"),
    ({"v": 1, "rows": [["7", 1.0, "neck", 1.0, 2.0]]}, "bad_row"),
    ({"v": 1, "rows": [["7", 1.0, "neck", 1.0, 2.0, 3.0, 1.5]]}, "bad_row"),
    ('{"v": 1, "rows": [["7", 1.0, "neck", NaN, 2.0, 3.0, 0.5]]}', "malformed_json"),
    ({"v": 1, "rows": [["7", True, "neck", 1.0, 2.0, 3.0, 0.5]]}, "bad_row"),
    ({"v": 1, "t_last": "soon", "rows": []}, "bad_request"),
    ({"v": 1, "rows": [["7", 1.0, "neck", 1.0, 2.0, 3.0, 0.5]] * 50_001}, "too_large"),
    # implausible values: what no tracker in a store can mean
    ({"v": 1, "rows": [["7", 1_700_000_000.0, "tail", 1.0, 2.0, 1.0, 0.5]]}, "bad_row"),
    ({"v": 1, "rows": [["7", 1_700_000_000.0, "neck", 1e300, 2.0, 1.0, 0.5]]}, "bad_row"),
    ({"v": 1, "rows": [["7", 1_700_000_000.0, "neck", 1.0, 2.0, -1001.0, 0.5]]}, "bad_row"),
    ({"v": 1, "rows": [["7", 1.0, "neck", 1.0, 2.0, 1.0, 0.5]]}, "bad_row"),
    ({"v": 1, "rows": [["7", 4.2e9, "neck", 1.0, 2.0, 1.0, 0.5]]}, "bad_row"),
    ({"v": 1, "t_last": 4.2e9, "rows": []}, "bad_request"),
    ({"v": 1, "t_last": 1.0, "rows": []}, "bad_request"),
    # an integer too large for a float (JSON allows 4,300 digits): refused, not a 500
    ({"v": 1, "rows": [["7", 1_700_000_000.0, "neck", 10 ** 400, 2.0, 1.0, 0.5]]}, "bad_row"),
    ({"v": 1, "t_last": 10 ** 400, "rows": []}, "bad_request"),
    # a track id PostgreSQL could not store (NUL) or that is not text (a lone surrogate)
    ({"v": 1, "rows": [["a\u0000b", 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 0.5]]}, "bad_row"),
    ('{"v": 1, "rows": [["\\ud800", 1700000000.0, "neck", 1.0, 2.0, 1.0, 0.5]]}', "bad_row"),
])
def test_bodies_it_cannot_use_are_refused_with_a_reason(tracker, body, reason):
    row, key = tracker
    r = post(body, key)
    assert r.status_code in (400, 413) and r.json()["reason"] == reason, r.content[:300]
    assert bus().read(row.store.code, block_ms=0) == []
    row.refresh_from_db()
    assert row.rejected == 1


def test_an_implausible_row_is_refused_with_what_is_wrong(tracker):
    row, key = tracker
    good = ["7", 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 0.5]
    for bad, words in ((["7", 1_700_000_000.0, "tail", 1.0, 2.0, 1.0, 0.5], "unknown keypoint 'tail'"),
                       (["7", 1_700_000_000.0, "neck", 1e300, 2.0, 1.0, 0.5], "beyond ±1000 m"),
                       (["7", 1.0, "neck", 1.0, 2.0, 1.0, 0.5], "from 2000-01-01 to 2100-01-01"),
                       (["x" * 65, 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 0.5], "track id must be a string or "
                                                                                  "integer of 1–64 characters"),
                       ([None, 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 0.5], "track id"),
                       (["7", "soon", "neck", 1.0, 2.0, 1.0, 0.5], "t must be a finite number"),
                       (["7", 1_700_000_000.0, 3, 1.0, 2.0, 1.0, 0.5], "keypoint must be a name"),
                       (["7", 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 1.5], "score 1.5 is outside 0–1"),
                       (["7", 1_700_000_000.0, "neck", 1.0, 2.0, 1.0], "got 6 values")):
        r = post({"v": 1, "rows": [good, bad]}, key)
        assert r.status_code == 400 and r.json()["message"].startswith("row 1 ") and words in r.json()["message"], \
            r.json()["message"]
    row.refresh_from_db()
    assert row.rejected == 9


#: 2096-01-01T00:00:00Z (``calendar.timegm((2096, 1, 1, 0, 0, 0))``): inside the 2000–2100 plausibility bounds, decades
#: ahead of any clock that was ever set.
YEAR_2096 = 3_976_214_400.0


def test_a_clock_ahead_of_the_servers_is_refused_naming_the_field(tracker):
    """A tracker's clock is off by seconds, never decades (issue #11): ``t_last`` or a row's ``t`` more than
    ``TRACKER_CLOCK_AHEAD_MAX_S`` after the server's clock is refused 400 ``clock_ahead``, naming the field, and
    counted; a few seconds ahead, and any time in the past (a recording's), is taken."""
    import time

    row, key = tracker
    now = time.time()
    refused = [({"v": 1, "t_last": YEAR_2096, "rows": []}, "t_last"),
               ({"v": 1, "t_last": now, "rows": [["7", YEAR_2096, "neck", 1.0, 2.0, 1.0, 0.5]]}, "row 0 t"),
               ({"v": 1, "t_last": now + TRACKER_CLOCK_AHEAD_MAX_S + 60, "rows": []}, "t_last")]
    for body, field in refused:
        r = post(body, key)
        assert r.status_code == 400 and r.json()["reason"] == "clock_ahead", r.content[:300]
        assert r.json()["message"].startswith(f"{field} = ") and "ahead of the server's clock" in r.json()["message"]
    assert bus().read(row.store.code, block_ms=0) == []
    row.refresh_from_db()
    assert row.rejected == len(refused)
    for t in (now + 5.0, 1_650_000_000.0):  # a clock a few seconds fast; a 2022 recording's time
        r = post({"v": 1, "t_last": t, "rows": [["7", t, "neck", 1.0, 2.0, 1.0, 0.5]]}, key)
        assert r.status_code == 202, r.content[:300]
    row.refresh_from_db()
    assert row.rejected == len(refused) and row.observations == 2


def test_the_emulators_tracker_may_run_ahead_as_far_as_a_fast_playback_takes_it(tracker):
    """``emulate_store --speed 20`` plays a recording on its clock moved to now, faster than real time: its own
    tracker (``emulated``) runs up to ``EMULATED_TRACKER_CLOCK_AHEAD_MAX_S`` ahead; 2096 is refused all the same."""
    import time

    row, key = tracker
    TrackerSource.objects.filter(pk=row.pk).update(emulated=True)
    ahead = time.time() + 20 * TRACKER_CLOCK_AHEAD_MAX_S
    assert ahead < time.time() + EMULATED_TRACKER_CLOCK_AHEAD_MAX_S
    r = post({"v": 1, "t_last": ahead, "rows": [["7", ahead, "neck", 1.0, 2.0, 1.0, 0.5]]}, key)
    assert r.status_code == 202, r.content[:300]
    r = post({"v": 1, "t_last": YEAR_2096, "rows": []}, key)
    assert r.status_code == 400 and r.json()["reason"] == "clock_ahead"


def test_who_may_post(tracker, settings):
    row, key = tracker
    assert post({"v": 1, "rows": []}).status_code == 401
    assert post({"v": 1, "rows": []}, "not-a-key").status_code == 401
    TrackerSource.objects.filter(pk=row.pk).update(active=False)
    assert post({"v": 1, "rows": []}, key).status_code == 401
    TrackerSource.objects.filter(pk=row.pk).update(active=True)
    settings.WALKOUT = {**settings.WALKOUT, "STORE_LOOP": "off"}
    r = post({"v": 1, "rows": []}, key)
    assert r.status_code == 503 and r.json()["reason"] == "store_loop_off"


def test_bad_keys_are_throttled_per_address(tracker, settings):
    row, key = tracker
    client = Client(REMOTE_ADDR="10.9.8.7")
    for _ in range(25):
        last = post({"v": 1, "rows": []}, "wrong", client=client)
    assert last.status_code == 429 and last.json()["reason"] == "throttled"
    assert post({"v": 1, "rows": []}, key, client=client).status_code == 429  # even a good key, from there
    assert post({"v": 1, "rows": []}, key).status_code == 202  # another address is not affected


@pytest.mark.django_db(transaction=True)
def test_a_driven_worker_takes_over_from_the_store_loop_thread_of_the_served_site(settings):
    """The served demo runs the loop in a thread started by the first device record; a live replay started from the
    dashboard then drives a worker of its own: the thread is stopped first (it checkpoints), never two loops."""
    from carts import runtime, runtime_publish

    settings.WALKOUT = {**settings.WALKOUT, "STORE_LOOP": "on"}
    store = Store.objects.create(code="trk-served", name="Served shop")
    threaded = runtime_publish.local_worker(store.code)
    thread = runtime_publish._local[store.code][1]
    assert thread.is_alive()
    driven = runtime.StoreWorker(store.code)
    try:
        runtime_publish.register_local(store.code, driven)
        assert not thread.is_alive() and threaded.stop.is_set()
        assert runtime_publish.local_worker(store.code) is driven
    finally:
        runtime_publish.unregister_local(store.code)


def test_a_large_batch_is_taken_column_by_column_with_the_row_by_rows_values_and_refusals():
    """200 shoppers × 4 keypoints in one body (issue #11) are checked a column at a time: the arrays are those the
    row-by-row checks build (integer tracks and numbers as str and float), and one bad row among them is refused
    with the same reason and message, naming it."""
    import time

    import numpy as np

    now = time.time()
    rows = [[i if i % 3 else f"s{i}", 1_700_000_000 + (i % 2) * 0.5, kp, i % 7, -1.25, 1.5, 1 if i % 5 else 0.75]
            for i in range(200) for kp in ("head", "neck", "l_wrist", "r_wrist")]
    obs, t_last = observations_parse({"v": 1, "rows": rows, "t_last": 1_700_000_001}, now=now)
    assert t_last == 1_700_000_001.0 and type(t_last) is float and len(obs) == 800
    assert obs.track_id.dtype == object and obs.track_id.tolist() == [str(r[0]) for r in rows]
    assert obs.keypoint.dtype == object and obs.keypoint.tolist() == [r[2] for r in rows]
    assert np.array_equal(obs.t, [float(r[1]) for r in rows]) and obs.t.dtype == np.float64
    assert np.array_equal(obs.xyz, [[float(v) for v in r[3:6]] for r in rows]) and obs.xyz.shape == (800, 3)
    assert np.array_equal(obs.score, [float(r[6]) for r in rows])
    for bad, reason, words in (([7, 1_700_000_000.0, "tail", 1.0, 2.0, 1.0, 0.5], "bad_row", "unknown keypoint"),
                               ([7, 1_700_000_000.0, "neck", 1.0, True, 1.0, 0.5], "bad_row", "finite numbers"),
                               ([7, 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 1.01], "bad_row", "0 ≤ score ≤ 1"),
                               ([7, 1_700_000_000.0, "neck", 1.0, 2.0], "bad_row", "finite numbers"),
                               (["", 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 0.5], "bad_row", "finite numbers"),
                               (["x" * 65, 1_700_000_000.0, "neck", 1.0, 2.0, 1.0, 0.5], "bad_row", "finite numbers"),
                               ([7, 1_700_000_000.0, "neck", 1.0, -1000.5, 1.0, 0.5], "bad_row", "beyond ±1000 m"),
                               ([7, float("inf"), "neck", 1.0, 2.0, 1.0, 0.5], "bad_row", "finite numbers"),
                               ([7, YEAR_2096, "neck", 1.0, 2.0, 1.0, 0.5], "clock_ahead", "row 500 t = ")):
        with pytest.raises(TrackerInputError) as err:
            observations_parse({"v": 1, "rows": rows[:500] + [bad] + rows[500:]}, now=now)
        assert err.value.reason == reason and str(err.value).startswith("row 500 ") and words in str(err.value)
