"""The whole pipeline on the real AutoCheckout BENCHMARK-1 session: gate → shelf event → fusion → cart → receipt."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from carts.models import CartEvent, ReviewItem
from carts.offline.replay import billed_receipts, replay_recording
from store.accounts.demo import demo_shopper_ensure
from sensors.models import ShelfEvent
from store.billing.models import PaymentAttempt, Receipt
from store.gates.models import Visit
from store.recording import read_recording

TRUE_BARCODE = "071142008582"
TRUE_TRACK = "3325379692103139202"

pytestmark = pytest.mark.django_db


def replay(path, **kw):
    return replay_recording(read_recording(path), shopper_factory=demo_shopper_ensure, **kw)


def test_benchmark1_end_to_end(benchmark1_recording):
    result = replay(benchmark1_recording)
    # sensors: exactly one shelf event, on the true plate, ≈ −623 g, explained as one bottle of water
    events = list(ShelfEvent.objects.filter(session=result.session))
    assert len(events) == 1
    ev = events[0]
    assert ev.bin.code == "1-5-11" and ev.delta_g == pytest.approx(-623, abs=10)
    assert ev.hypotheses[0]["barcode"] == TRUE_BARCODE and ev.hypotheses[0]["quantity"] == 1
    # fusion: given to the one shopper, confidently, with its evidence
    (ce,) = CartEvent.objects.filter(visit__session=result.session)
    assert ce.product.barcode == TRUE_BARCODE and ce.quantity == 1 and ce.shelf_event_id == ev.pk
    assert ce.confidence > 0.9 and ce.evidence["candidates"][0]["track_id"] == TRUE_TRACK
    assert ce.evidence["candidates"][0]["distance_m"] < 0.3
    assert not ReviewItem.objects.filter(shelf_event__session=result.session).exists()
    # gates and billing: admitted, shopping, exited, billed; authorised at entry, captured at exit for the total
    visit = Visit.objects.get(session=result.session)
    assert visit.track_id == TRUE_TRACK and visit.state == Visit.State.BILLED
    assert [t.to_state for t in visit.transitions.all()] == ["admitted", "shopping", "exited", "billed"]
    receipt = Receipt.objects.get(visit=visit)
    assert [(x.barcode, x.quantity) for x in receipt.lines.all()] == [(TRUE_BARCODE, 1)]
    kinds = list(PaymentAttempt.objects.filter(visit=visit).values_list("kind", "status", "amount_minor"))
    assert kinds[0][:2] == ("authorise", "succeeded")
    assert ("capture", "succeeded", receipt.total_minor) in kinds
    assert billed_receipts(session=result.session) == {TRUE_TRACK: {TRUE_BARCODE: 1}}


def test_evaluate_prints_f1_one(benchmark1_recording):
    out = io.StringIO()
    call_command("evaluate", str(benchmark1_recording), replay=True, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert lines[-1] == "F1 1.000"
    assert any(line.split() == [TRUE_BARCODE, "1", "1"] for line in lines)


def test_a_rerun_of_the_same_session_says_its_receipt_was_billed_before(benchmark1_recording):
    """A newcomer replaying the same --session twice: the second run bills nothing (idempotent) and its summary
    says the receipt it prints comes from the earlier run, not "0 receipt(s)" above a printed receipt."""
    first, second = io.StringIO(), io.StringIO()
    call_command("replay", str(benchmark1_recording), session="rerun-1", create_shoppers=True, stdout=first)
    call_command("replay", str(benchmark1_recording), session="rerun-1", create_shoppers=True, stdout=second)
    summary = [line for line in first.getvalue().splitlines() if line.startswith("session rerun-1:")]
    assert summary and summary[0].endswith("1 receipt(s)")
    summary = [line for line in second.getvalue().splitlines() if line.startswith("session rerun-1:")]
    assert summary and summary[0].endswith("0 receipt(s) (1 billed by an earlier run of this session: nothing is "
                                           "billed twice)")
    assert sum(line.startswith("receipt ") for line in second.getvalue().splitlines()) == 1
    assert Receipt.objects.filter(visit__session="rerun-1").count() == 1


def test_missing_file_is_a_clear_error(benchmark1_recording, tmp_path):
    rec = tmp_path / "rec"
    shutil.copytree(benchmark1_recording, rec)
    (rec / "store.json").unlink()
    with pytest.raises(CommandError, match=r"store\.json: missing file"):
        call_command("replay", str(rec), create_shoppers=True, stdout=io.StringIO())


def test_nan_burst_and_corrupt_rows_leave_the_rest_of_the_replay_intact(benchmark1_recording, tmp_path):
    """A NaN burst on the true plate before the pick, a NaN burst on another plate, and garbage rows: the replay
    reports each with its line, and still bills exactly the one true item."""
    rec_dir = tmp_path / "rec"
    shutil.copytree(benchmark1_recording, rec_dir)
    path = rec_dir / "shelves.csv"
    lines = path.read_text().splitlines()
    t0 = float(lines[1].split(",")[0])
    out = [lines[0]]
    for i, line in enumerate(lines[1:], start=2):
        t, code, g = line.split(",")
        dt = float(t) - t0
        if code in ("1-5-11", "2-3-4") and 3.0 <= dt < 3.5:      # half a second of NaN on two plates
            line = f"{t},{code},nan"
        if i in (1000, 2000):
            line = f"{t},{code},#corrupt#"
        out.append(line)
    out.insert(5000, "this,is,not,a,row")
    path.write_text("\n".join(out) + "\n")
    rec = read_recording(rec_dir)
    assert any(":1000: grams '#corrupt#'" in p for p in rec.problems)
    assert any(":5001:" in p for p in rec.problems)
    block = next(s for s in rec.shelves if "1-5-11" in s.bin_codes)
    assert np.isnan(block.grams[:, block.bin_codes.index("1-5-11")]).sum() >= 25
    result = replay_recording(rec, shopper_factory=demo_shopper_ensure)
    assert billed_receipts(session=result.session) == {TRUE_TRACK: {TRUE_BARCODE: 1}}
    assert ShelfEvent.objects.filter(session=result.session).count() == 1


def test_replay_is_repeatable_and_sessions_are_separate(benchmark1_recording):
    a = replay(benchmark1_recording)
    b = replay(benchmark1_recording)
    assert a.session != b.session
    assert Visit.objects.filter(session__in=[a.session, b.session]).count() == 2
    assert billed_receipts(session=a.session) == billed_receipts(session=b.session)
