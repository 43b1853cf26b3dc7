"""The manager's camera page (a recent frame the camera worker kept, with its tracks drawn, or an honest "no live
view") and the store map naming shoppers by visit and gondolas by number."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from store.gates.models import Visit
from store.layout.models import Bin, Gondola, Shelf, Store
from vision.models import Camera
from vision.services import camera_frame_draw, camera_frame_publish, camera_frame_recent, store_map_publish
from vision.tracking import Frame, FrameTracks
from vision.worker import CameraWorker

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client):
    user = get_user_model().objects.create_user("boss@walkout.test", password="x", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def shop():
    store = Store.objects.create(code="cam-shop", name="Cam shop")
    g = Gondola.objects.create(store=store, number=3, x=0, y=0, width_m=1, depth_m=.5, height_m=2)
    sh = Shelf.objects.create(gondola=g, number=1, z=1)
    Bin.objects.create(shelf=sh, store=store, number=1, code="3-1-1", x=1, y=1, z=1, width_m=.5, depth_m=.4)
    return store


def tracks(n: int = 2, t: float = 1000.0) -> FrameTracks:
    return FrameTracks(camera="cam1", session="live", frame=5, t=t, key=np.array([f"cam1:{i}" for i in range(n)], object),
                       raw_id=np.arange(n, dtype=np.int64), xyxy=np.array([[10, 10, 60, 120], [100, 20, 150, 130]][:n], float),
                       confidence=np.full(n, 0.9), floor_xy=np.full((n, 2), np.nan), wrists_xyz=np.full((n, 2, 3), np.nan),
                       wrist_score=np.zeros((n, 2)))


def test_frame_is_drawn_kept_and_shown(client, manager, shop):
    cam = Camera.objects.create(store=shop, name="cam1", source="/nowhere.mp4")
    image = np.full((240, 1920, 3), 90, np.uint8)
    drawn = camera_frame_draw(image, tracks())
    assert (drawn != image).any() and (image == 90).all()  # boxes drawn on a copy
    # a 1920 px frame is kept 960 px wide; each person's label is drawn after scaling, on a dark band 18 px tall
    # (drawn before scaling, the track key and score shrank to half their size, 0.25 of OpenCV's font scale)
    big = np.full((480, 1920, 3), 200, np.uint8)
    t2 = tracks()
    t2.xyxy[:] = [[200, 100, 400, 460], [1000, 120, 1200, 470]]
    cam0 = Camera.objects.create(store=shop, name="cam0", source="/nowhere.mp4")
    camera_frame_publish(camera_id=cam0.pk, image=big, tracks=t2, t=1000.0)
    import cv2

    kept = cv2.imdecode(np.frombuffer(camera_frame_recent(camera_id=cam0.pk)["jpeg"], np.uint8), cv2.IMREAD_COLOR)
    band = kept[50 - 18 + 2:50 - 2, 100 + 2:100 + 40].mean(axis=2)  # above the first box, at half scale (100, 50)
    assert band.mean() < 90, band.mean()  # the dark label band, full height at the kept size
    size = camera_frame_publish(camera_id=cam.pk, image=image, tracks=tracks(), t=1000.0)
    recent = camera_frame_recent(camera_id=cam.pk)
    assert recent["tracks"] == 2 and len(recent["jpeg"]) == size and recent["jpeg"][:2] == b"\xff\xd8"
    import cv2

    assert cv2.imdecode(np.frombuffer(recent["jpeg"], np.uint8), cv2.IMREAD_COLOR).shape[1] == 960  # scaled down
    page = client.get(f"/manage/vision/cameras/{cam.pk}/").content.decode()
    assert "Recent frame from the camera worker" in page and "2 people it followed" in page
    jpeg = client.get(f"/manage/vision/cameras/{cam.pk}/recent.jpg")
    assert jpeg.status_code == 200 and jpeg["Content-Type"] == "image/jpeg"


def test_without_a_worker_the_page_says_so(client, manager, shop):
    cam = Camera.objects.create(store=shop, name="cam2", source="/nowhere.mp4")
    page = client.get(f"/manage/vision/cameras/{cam.pk}/").content.decode()
    assert "No live view:" in page and "recent-frame" not in page and "run_camera cam-shop:cam2" in page
    assert client.get(f"/manage/vision/cameras/{cam.pk}/recent.jpg").status_code == 404
    assert "not what the camera sees now" in client.get(f"/manage/vision/cameras/{cam.pk}/?still=1").content.decode()


def test_camera_pages_are_for_managers_only(client, shop):
    cam = Camera.objects.create(store=shop, name="cam3", source="/nowhere.mp4")
    for url in (f"/manage/vision/cameras/{cam.pk}/", f"/manage/vision/cameras/{cam.pk}/recent.jpg"):
        assert client.get(url).status_code == 302
    client.force_login(get_user_model().objects.create_user("s@walkout.test", password="x"))
    for url in (f"/manage/vision/cameras/{cam.pk}/", f"/manage/vision/cameras/{cam.pk}/recent.jpg"):
        assert client.get(url).status_code == 403


def test_worker_keeps_a_frame_every_few_seconds(shop):
    cam = Camera.objects.create(store=shop, name="cam4", source="/nowhere.mp4")
    worker = CameraWorker(cam, tracker=None, publish=lambda obs, t: None, frame_every_s=60)
    frame = Frame(index=0, t=5.0, image=np.full((100, 200, 3), 80, np.uint8))
    worker._keep_recent_frame(frame, tracks(1, t=5.0))
    first = camera_frame_recent(camera_id=cam.pk)
    assert first is not None and first["t"] == 5.0
    worker._keep_recent_frame(frame, tracks(1, t=6.0))  # within frame_every_s: not kept again
    assert camera_frame_recent(camera_id=cam.pk)["t"] == 5.0


def test_store_map_names_shoppers_by_visit_and_labels_gondolas(client, manager, shop):
    ann = get_user_model().objects.create_user("ann@walkout.test", password="x")
    v = Visit.objects.create(store=shop, shopper=ann, state=Visit.State.SHOPPING, entered_at=timezone.now(),
                             track_id="1002")
    Visit.objects.create(store=shop, shopper=ann, state=Visit.State.BILLED, entered_at=timezone.now(), track_id="7")
    store_map_publish(store_code=shop.code, t=100.0, positions={"1002": (1.0, 2.0), "7": (2.0, 2.0)})
    data = client.get(f"/manage/vision/map/{shop.code}.json").json()
    assert [(s["id"], s["visit"], s["label"]) for s in data["shoppers"]] == [
        ("1002", v.pk, f"Visit {v.pk} · ann"), ("7", None, "not checked in")]
    assert data["gondola_labels"] == [{"number": 3, "x": 1.0, "y": 1.0}]
