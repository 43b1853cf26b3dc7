"""The review console's services: held decisions and undo (inside and outside the window, twice), the release that
bills the visits a decision held, the plain sentences and ranked answers, the weight trace from kept raw samples,
and the camera worker's frame ring written out as a review clip (and pruned)."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from carts.models import CartEvent, ReviewItem
from carts.review_console import PLAN_ROW_PX, review_console, shelf_plan_svg, units_text, weight_trace_svg
from carts.services.review import _release_schedule as release_schedule  # the real one (conftest stubs it)
from carts.services.review import review_holds_release, review_resolve, review_undo
from carts.services.ledger import cart_lines
from carts.services.review_queue import ReviewError, review_open_for
from store.gates.models import Visit
from test_carts_web import client_for, plain_settings, shelf_event, w  # noqa: F401
from store.inventory.models import Product
from store.layout.models import Bin, Shelf
from vision.clips import ClipRequest, ClipStore, FrameRing
from vision.tracking import FrameTracks
from vision.worker import CameraWorker

pytestmark = pytest.mark.django_db


def _item(w, *, candidates=None, hyps=None, delta_g=-150.0) -> ReviewItem:
    se = shelf_event(w, delta_g=delta_g, seconds_ago=10 + ReviewItem.objects.count(),
                     hypotheses=hyps or [{"barcode": "0002", "quantity": 1, "likelihood": 0.9}])
    return ReviewItem.objects.create(shelf_event=se, reason="confidence 0.513 below 0.60: hand of track 1002 came "
                                                          "within 0.00 m", candidates=candidates if candidates is not None
                                     else [{"visit": w.visit.pk, "track_id": "1002", "distance_m": 0.0,
                                            "score": 0.5, "posterior": 0.8, "hand_xyz": [0.2, 0.1, 1.05]}])


def held_decision(w, item, hold_s=10.0):
    return review_resolve(item=item, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia", hold_s=hold_s)


def test_a_held_decision_queues_its_release_by_the_task_name_beat_uses(settings, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    """With a broker (tasks not eager), the hold's release is the beat task, queued after commit with the hold's
    countdown, by its registered name (the service does not import the task module: that module calls it)."""
    from celery import current_app

    from carts.tasks import review_holds_release_task

    settings.CELERY_TASK_ALWAYS_EAGER = False
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **options: sent.append((name, options)))
    with django_capture_on_commit_callbacks(execute=True):
        release_schedule(item_id=1, at=timezone.now() + timedelta(seconds=8))
    ((name, options),) = sent
    assert name == review_holds_release_task.name == settings.CELERY_BEAT_SCHEDULE["review-holds-release"]["task"]
    assert 7.5 < options["countdown"] <= 8.1


def test_undo_inside_the_window_reverts_the_cart_and_reopens_the_item(w):
    item = _item(w)
    out = held_decision(w, item)
    assert out.item.undo_until is not None and out.checkouts == {}
    assert cart_lines(visit=w.visit)[0]["quantity"] == 1
    undone = review_undo(item=item, by="mia", decided_at=out.item.resolved_at)
    assert undone.undone and len(undone.reverted) == 1
    assert [e.quantity for e in CartEvent.objects.order_by("id")] == [1, -1]  # append-only: a compensating event
    assert undone.reverted[0].evidence["undo_of"] == out.cart_event.pk
    assert cart_lines(visit=w.visit) == []
    item.refresh_from_db()
    assert item.status == "open" and item.undo_until is None and item.resolution["undone"][0]["by"] == "mia"
    # twice: the second click changes nothing and does not raise
    again = review_undo(item=item, by="mia", decided_at=out.item.resolved_at)
    assert not again.undone and CartEvent.objects.count() == 2
    # the item can be decided again; its history keeps the undone decision
    out2 = review_resolve(item=item, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia")
    assert out2.item.resolution["undone"][0]["undone_by"] == "mia"
    assert review_undo(item=item, by="mia", decided_at=out.item.resolved_at).undone is False  # stale button


def test_undo_after_the_window_is_refused_with_the_reason(w):
    item = _item(w)
    out = held_decision(w, item, hold_s=5)
    later = out.item.undo_until + timedelta(seconds=3)
    with pytest.raises(ReviewError, match=r"too late to undo: a decision can be undone for 10 s and this one "
                                          r"became final 3 s ago"):
        review_undo(item=item, by="mia", decided_at=out.item.resolved_at, now=later)
    assert CartEvent.objects.count() == 1 and ReviewItem.objects.get(pk=item.pk).status == "resolved"
    final = _item(w)
    out = review_resolve(item=final, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia")  # no hold
    with pytest.raises(ReviewError, match="too late"):
        review_undo(item=final, by="mia")


def test_a_held_decision_bills_the_visit_only_after_the_window(w):
    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.UNDER_REVIEW, exited_at=w.now)
    item = _item(w)
    out = held_decision(w, item, hold_s=30)
    assert out.checkouts == {}
    assert Visit.objects.get(pk=w.visit.pk).state == "under_review"
    assert review_open_for(visit=w.visit) == [ReviewItem.objects.get(pk=item.pk)]  # held: still waits
    assert review_holds_release() == {}  # not due yet
    released = review_holds_release(now=timezone.now() + timedelta(seconds=31))
    assert list(released) == [w.visit.pk]  # checked out: a receipt (ann has no card here: payment_failed)
    assert Visit.objects.get(pk=w.visit.pk).state in ("billed", "payment_failed")
    assert review_holds_release(now=timezone.now() + timedelta(seconds=60)) == {}  # idempotent
    with pytest.raises(ReviewError, match="too late"):
        review_undo(item=item, by="mia")


def test_sentences_name_shoppers_by_account_and_say_grams_and_products(w):
    from decimal import Decimal

    Product.objects.create(store=w.store, barcode="0003", name="ICE Ginger Lime", price=Decimal("1.50"),
                           unit_weight_g=509.0)
    bob_visit = Visit.objects.create(store=w.store, shopper=w.bob, state=Visit.State.SHOPPING, entered_at=w.now)
    item = _item(w, delta_g=-509.0, hyps=[{"barcode": "0003", "quantity": 1, "likelihood": 0.97},
                                           {"barcode": "0002", "quantity": 3, "likelihood": 0.01}],
                 candidates=[{"visit": w.visit.pk, "track_id": "1002", "distance_m": 0.0, "posterior": 0.55,
                              "hand_xyz": [0.2, 0.1, 1.0]},
                             {"visit": bob_visit.pk, "track_id": "1003", "distance_m": 0.24, "posterior": 0.4,
                              "hand_xyz": None}])
    c = review_console(item)
    assert c.sentences[0] == "Shopper A (ann)'s hand was at this plate when 509 g left it; that is one ICE Ginger Lime."
    assert c.sentences[1] == "Shopper B (bob)'s hand came within 24 cm of this plate when 509 g left it."
    assert "1002" not in " ".join(c.sentences) and "confidence" not in c.why
    assert c.why.startswith("2 shoppers were at the plate")
    first = c.likely[0]
    assert (first.label, first.amount_display) == ("Shopper A took one ICE Ginger Lime", "$1.50")
    assert first.confirm == "Charge ann $1.50 for one ICE Ginger Lime?"
    assert all(a.p >= c.threshold for a in c.likely) and all(a.p < c.threshold for a in c.other)
    assert any(a.label == "Shopper B took three Chips" for a in c.other)  # p = 0.4 × 0.01: behind "other"
    assert 'data-bin="1-2-3"' in c.plan_svg and 'data-candidate="A"' in c.plan_svg
    assert 'data-candidate="B"' not in c.plan_svg  # B's hand was not seen: not drawn
    assert "<polyline" in c.weight_svg and "not measured samples" in c.weight_note
    assert units_text(12, "Cola") == "12 × Cola" and units_text(-2, "Cola") == "two Cola"


def test_the_weight_trace_uses_the_kept_raw_samples(w, settings, tmp_path):
    from sensors.models import ShelfController
    from sensors.storage import RawSampleStore

    settings.WALKOUT = {**settings.WALKOUT, "RAW_SAMPLES_DIR": str(tmp_path)}
    ShelfController.objects.create(store=w.store, name="c1", api_key_hash="x" * 64, bin_codes=["1-2-3"], rate_hz=50)
    se = shelf_event(w, delta_g=-150, seconds_ago=120, hypotheses=[])
    t0 = se.t_start.timestamp()
    t = np.arange(t0 - 5, t0 + 5, 0.02)
    grams = np.where(t < t0 + 0.4, 1000.0, 850.0)[:, None]
    raw = RawSampleStore(tmp_path, retention_h=48)
    raw.append(store=w.store.code, controller="c1", bin_codes=("1-2-3",), t=t, grams=grams, rate_hz=50)
    raw.flush()
    svg, note = weight_trace_svg(se)
    assert note.startswith("Measured: ") and "samples" in note
    assert svg.count(",") > 100 and "stroke-dasharray" not in svg


def _plan_box(svg: str) -> tuple[int, int, float]:
    """(viewBox width, viewBox height, the lowest caption baseline) of a shelf plan."""
    import re

    vw, vh = map(int, re.search(r'viewBox="0 0 (\d+) (\d+)"', svg).groups())
    assert f'height="{vh}"' in svg  # the height attribute is the viewBox's
    caption_ys = [float(y) for y in re.findall(r'<tspan x="10" y="([\d.]+)"', svg)]
    assert caption_ys, "the plan has a caption"
    return vw, vh, max(caption_ys)


def test_the_shelf_plan_is_sized_from_its_shelves_and_its_caption_lies_inside(w):
    """One shelf on a 2 m gondola is one row tall (it was drawn at 500 px a metre: over 1000 px high, the caption
    cut off); each further shelf adds one row; the caption is wrapped to the width and lies inside the viewBox."""
    item = _item(w)
    c = review_console(item)
    vw, one_h, caption_y = _plan_box(c.plan_svg)
    assert vw == 520 and one_h < 200, one_h
    assert caption_y + 4 <= one_h  # the last caption line's descenders fit
    lines = c.plan_svg.count("<tspan")
    assert lines >= 2 and all(len(t) <= 82 for t in __import__("re").findall(r"<tspan[^>]*>([^<]*)<", c.plan_svg))
    gondola = w.bin.shelf.gondola
    for k, z in enumerate((0.3, 0.6, 1.4), start=3):
        shelf = Shelf.objects.create(gondola=gondola, number=k, z=z)
        Bin.objects.create(shelf=shelf, store=w.store, number=1, code=f"1-{k}-1", x=0.2, y=0.1, z=z, width_m=0.3,
                           depth_m=0.4)
    four = shelf_plan_svg(item.shelf_event, c.people)
    _, four_h, four_caption_y = _plan_box(four)
    assert four_h == one_h + 3 * PLAN_ROW_PX and four_caption_y + 4 <= four_h
    assert four.count('class="bin') == 4 and 'data-candidate="A"' in four


def test_console_views_check_the_manager(w):
    item = _item(w)
    assert client_for(w.ann).get(f"/manage/reviews/{item.pk}/").status_code == 403
    assert client_for(w.ann).post(f"/manage/reviews/{item.pk}/undo/").status_code == 403
    assert client_for(w.ann).get(f"/manage/reviews/{item.pk}/clip/cam/0000.jpg").status_code == 403
    assert client_for(None).get(f"/manage/reviews/{item.pk}/").status_code == 302
    mia = client_for(w.mia)
    assert mia.get(f"/manage/reviews/{item.pk}/").status_code == 200
    assert mia.get(f"/manage/reviews/{item.pk}/clip/cam/0000.jpg").status_code == 404
    assert mia.get(f"/manage/reviews/{item.pk}/clip/cam/..%2F..%2Fx.jpg").status_code == 404


# ---------------------------------------------------------------------------------------------- clips
def test_the_frame_ring_is_bounded_and_a_clip_is_written_read_and_pruned(tmp_path):
    ring = FrameRing(seconds=4.0, fps=5.0, width_px=160)
    img = np.full((240, 320, 3), 120, np.uint8)
    for i in range(100):  # 10 s at 10 fps: half are dropped by the rate, the old ones by the length
        ring.add(1000.0 + i * 0.1, img, keys=["cam:live:1"], boxes=[[10, 20, 100, 200]],
                 wrists_px=[[[50, 60], [np.nan, np.nan]]])
    assert len(ring) <= 21 and ring.frames[0].t >= ring.t_last - 4.0
    assert ring.frames[-1].scale == 0.5 and ring.frames[-1].boxes[0].tolist() == [5, 10, 50, 100]
    store = ClipStore(tmp_path, retention_h=1)
    req = ClipRequest(review=7, t0=1008.0, t1=1008.5, bin_code="1-2-3", bin_xyz=(0, 0, 1),
                      labels={"cam:live:1": "Shopper A"})
    folder = store.write(req, "aisle", ring.between(1007.0, 1009.5), bin_px_full=np.array([160.0, 120.0]),
                         now=5000.0)
    (clip,) = store.clips(7, now=5000.0)
    assert folder.is_dir() and clip["camera"] == "aisle" and len(clip["frames"]) >= 10
    assert store.frame_path(7, "aisle", clip["frames"][0]["file"]).stat().st_size > 500
    assert store.frame_path(7, "aisle", "../x.jpg") is None
    assert store.clips(7, now=5000.0 + 3601) == []  # past retention: not shown, even before it is deleted
    assert store.prune(now=5000.0 + 1800) == 0 and store.prune(now=5000.0 + 3601) == 1
    assert store.clips(7) == [] and not (tmp_path / "7").exists()


def test_the_clip_writer_deletes_clips_past_retention_without_beat(tmp_path):
    """The embedded profile runs no beat: the writer itself prunes, at most once an hour."""
    ring = FrameRing(seconds=2, fps=5, width_px=64)
    ring.add(10.0, np.full((48, 64, 3), 100, np.uint8))
    store = ClipStore(tmp_path, retention_h=1)

    def req(n):
        return ClipRequest(review=n, t0=10.0, t1=10.0, bin_code="b", bin_xyz=(0, 0, 0))

    store.write(req(1), "cam", ring.between(0, 20), now=0.0)
    store.write(req(2), "cam", ring.between(0, 20), now=1800.0)   # within the hour: no prune yet
    assert (tmp_path / "1").exists()
    store.write(req(3), "cam", ring.between(0, 20), now=3700.0)   # an hour on: review 1 is past retention
    assert not (tmp_path / "1").exists() and (tmp_path / "2").exists() and (tmp_path / "3").exists()


def test_the_camera_worker_writes_a_clip_when_an_event_goes_to_review(tmp_path):
    from types import SimpleNamespace

    from test_vision_web import aisle_camera

    cam = aisle_camera()
    bin_xyz = (float(cam.C[0]) + 0.0, float(cam.C[1]) + 0.0, 0.0)
    # a floor point the camera sees: the floor point under the image centre
    centre = cam.image_to_floor(np.array([[cam.width / 2, cam.height / 2]]))[0] if cam.has_floor else None
    if centre is not None:
        bin_xyz = (float(centre[0]), float(centre[1]), 0.0)
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    rng = np.random.default_rng(1)
    for i in range(60):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(30, 220, (cam.height, cam.width, 3), dtype=np.uint8))

    class Tracker:
        camera, session = cam, "live"

        def step(self, frame):
            return FrameTracks(camera="aisle", session="live", frame=frame.index, t=frame.t,
                               key=np.array(["aisle:live:1"], dtype=object), raw_id=np.array([1]),
                               xyxy=np.array([[100.0, 100.0, 300.0, 500.0]]), confidence=np.array([0.9]),
                               floor_xy=np.array([[np.nan, np.nan]]), wrists_xyz=np.full((1, 2, 3), np.nan),
                               wrist_score=np.zeros((1, 2)))

        def start_session(self, session):
            pass

    asked = []

    def requests():
        if asked:
            return []
        asked.append(1)
        return [ClipRequest(review=3, t0=1_700_000_002.0, t1=1_700_000_002.5, bin_code="1-1-1", bin_xyz=bin_xyz,
                            labels={"aisle:live:1": "Shopper A"})]

    row = SimpleNamespace(name="aisle", source=str(folder), fps=10.0, store_id=1, store=None)
    store = ClipStore(tmp_path / "clips", retention_h=1)
    worker = CameraWorker(row, Tracker(), publish=lambda *a: None, t0=1_700_000_000.0, clips=store,
                          clip_requests=requests, ring=FrameRing(seconds=10, fps=5, width_px=320), pre_s=1, post_s=1)
    stats = worker.run(once=True)
    assert stats.frames == 60 and stats.clips == 1, stats.problems
    (clip,) = store.clips(3)
    times = [f["t"] for f in clip["frames"]]
    assert min(times) >= 1_700_000_001.0 - 1e-6 and max(times) <= 1_700_000_003.5 + 1e-6 and len(times) >= 10


def test_prune_review_clips_command_and_task_remove_old_clips(settings, tmp_path):
    from django.core.management import call_command

    from carts.tasks import review_clips_prune_task

    settings.WALKOUT = {**settings.WALKOUT, "REVIEW_CLIPS_DIR": str(tmp_path), "REVIEW_CLIP_RETENTION_H": 1.0}
    ring = FrameRing(seconds=2, fps=5, width_px=64)
    ring.add(10.0, np.full((48, 64, 3), 100, np.uint8))
    req = ClipRequest(review=1, t0=10.0, t1=10.0, bin_code="b", bin_xyz=(0, 0, 0))
    store = ClipStore(tmp_path, retention_h=1)
    store.write(ClipRequest(review=2, t0=10.0, t1=10.0, bin_code="b", bin_xyz=(0, 0, 0)), "cam", ring.between(0, 20))
    store.write(req, "cam", ring.between(0, 20), now=0.0)  # dated long ago (the writer pruned an instant before)
    assert (tmp_path / "1").exists()
    call_command("prune_review_clips")
    assert store.clips(1) == [] and len(store.clips(2)) == 1
    assert review_clips_prune_task() == 0
