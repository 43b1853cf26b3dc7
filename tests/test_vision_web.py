"""Vision's Django shell: store map and camera snapshot pages, admin/service calibration, the chunked camera task,
and a replay whose shopper positions come from real video instead of recorded keypoints."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import include, path

import store.urls
from carts.offline.replay import replay_recording
from store.accounts.demo import demo_shopper_ensure
from store.layout.models import Store
from store.recording import read_recording
from tests.conftest import shared_file
from vision.geometry import CameraModel
from vision.models import Camera, CameraTrack, ShopperTrack
from carts.offline.video import apply_video, track_recording
from vision.services import camera_calibrate, store_map_publish, store_map_publish_observations
from vision.tasks import track_camera_chunk

urlpatterns = store.urls.urlpatterns + [path("manage/vision/", include("vision.urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def needs_ultralytics() -> None:
    """Skip (naming the extra to install) where ultralytics is not installed."""
    pytest.importorskip("ultralytics", reason="needs the vision extra: pip install -e '.[vision]'")


def aisle_camera(name="aisle") -> CameraModel:
    """An *assumed* pose for the aisle clip (no survey exists for it): 2.6 m up, looking 50° down along +x.
    Enough to place its shoppers on a store floor for the plumbing tests; not a measured calibration."""
    s, c = math.sin(math.radians(50)), math.cos(math.radians(50))
    z, x = np.array([c, 0, -s]), np.array([0.0, -1.0, 0.0])
    R = np.column_stack([x, np.cross(z, x), z])
    K = np.array([[500.0, 0, 384], [0, 500.0, 216], [0, 0, 1]])
    return CameraModel(name=name, width=768, height=432, K=K, R=R, C=np.array([1.0, -0.5, 2.6]))


@pytest.fixture
def manager(client):
    user = get_user_model().objects.create_user("boss@walkout.test", password="x", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def shop():
    return Store.objects.create(code="test-shop", name="Test shop")


def test_store_map_json_and_page(client, manager, shop):
    store_map_publish(store_code=shop.code, t=100.0, positions={"S1": (1.0, 2.0)})
    store_map_publish(store_code=shop.code, t=101.0, positions={"S2": (3.0, 0.5)})
    data = client.get(f"/manage/vision/map/{shop.code}.json").json()
    assert [(s["id"], s["x"], s["y"]) for s in data["shoppers"]] == [("S1", 1.0, 2.0), ("S2", 3.0, 0.5)]
    page = client.get(f"/manage/vision/map/{shop.code}/")
    assert page.status_code == 200 and f"/manage/vision/map/{shop.code}.json".encode() in page.content


def test_store_map_is_for_managers_only(client, shop):
    assert client.get(f"/manage/vision/map/{shop.code}.json").status_code == 302
    client.force_login(get_user_model().objects.create_user("s@walkout.test", password="x"))
    assert client.get(f"/manage/vision/map/{shop.code}.json").status_code == 403


def test_camera_snapshot_png_and_unreadable_source(client, manager, shop, tmp_path):
    needs_ultralytics()
    shutil.copy(shared_file("datasets/autocheckout/camera_stills/camera_2.png"), tmp_path / "000001.png")
    cal = json.loads(shared_file("datasets/autocheckout/store_meta/calibration.json").read_text())
    cm = CameraModel.from_autocheckout("2", cal["cameras"]["2"], width=640, height=360)
    cam = Camera.objects.create(store=shop, name="cam-2", source=str(tmp_path), intrinsics=cm.K.tolist(),
                                distortion=cm.dist.tolist(), rotation=cm.R.tolist(), centre=cm.C.tolist())
    with override_settings(VISION={"MODEL": str(shared_file("models/yolo11n_int8.onnx"))}):
        resp = client.get(f"/manage/vision/cameras/{cam.pk}/snapshot.png")
        assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
        assert resp.content[:8] == b"\x89PNG\r\n\x1a\n"
        cam.source = str(tmp_path / "gone.mp4")
        cam.save()
        resp = client.get(f"/manage/vision/cameras/{cam.pk}/snapshot.png")
        assert resp.status_code == 503 and b"does not exist" in resp.content


def test_camera_calibration_service(shop):
    cm = aisle_camera()
    floor = np.array([[2.5, -1.5], [5.0, -1.5], [5.0, 0.5], [2.5, 0.5], [3.5, -0.5]])
    px = cm.floor_to_image(floor)
    cam = Camera.objects.create(store=shop, name="aisle", source="x.mp4",
                                calibration_points=[{"u": u, "v": v, "x": x, "y": y}
                                                    for (u, v), (x, y) in zip(px, floor)])
    cal = camera_calibrate(camera=cam)
    cam.refresh_from_db()
    assert cal.inliers.all() and cam.calibration_error_px < 0.01 and cam.calibration_error_cm < 0.01
    assert np.allclose(np.asarray(cam.homography), cm.H / cm.H[2, 2], atol=1e-6)


def test_camera_chunk_task_keeps_tracker_state_per_camera_and_session(shop):
    needs_ultralytics()

    clip = str(shared_file("media/store_aisle_overhead.mp4"))
    cm = aisle_camera()
    cam = Camera.objects.create(store=shop, name="aisle", source=clip, intrinsics=cm.K.tolist(),
                                rotation=cm.R.tolist(), centre=cm.C.tolist())
    with override_settings(VISION={"MODEL": str(shared_file("models/yolo11n_int8.onnx"))}):
        a = track_camera_chunk(cam.pk, "live-1", 0, 12, 1000.0)
        b = track_camera_chunk(cam.pk, "live-1", 12, 12, 1000.0)
        c = track_camera_chunk(cam.pk, "live-2", 0, 12, 2000.0)
    assert a["frames"] == b["frames"] == c["frames"] == 12
    rows = CameraTrack.objects.filter(store=shop, session="live-1")
    longest = max(rows, key=lambda r: r.frames)
    assert longest.frames > 12  # the same track continued from chunk 1 into chunk 2 (tracker state kept)
    assert all(r.key.startswith("aisle:live-1:") for r in rows)
    assert all(r.key.startswith("aisle:live-2:") for r in CameraTrack.objects.filter(session="live-2"))


@pytest.fixture
def video_recording(benchmark1_recording, tmp_path):
    """BENCHMARK-1's store and shelves with the recorded keypoints and gate scans removed, and one camera: the
    real store CCTV clip (referenced by path, not copied) with the assumed aisle pose."""
    dest = tmp_path / "video-rec"
    shutil.copytree(benchmark1_recording, dest)
    (dest / "tracks.csv").unlink()
    (dest / "gates.csv").unlink()
    t0 = json.loads((dest / "recording.json").read_text())["t_start"]
    cam = {"name": "aisle", "video": str(shared_file("media/store_aisle_overhead.mp4")), "t_start": t0,
           "calibration": aisle_camera().to_dict()}
    (dest / "cameras.json").write_text(json.dumps({"cameras": [cam]}))
    return dest


def test_tracks_from_video_feed_the_replay(video_recording):
    needs_ultralytics()
    rec = read_recording(video_recording)
    assert len(rec.tracks) == 0 and [c.name for c in rec.cameras] == ["aisle"]
    result = track_recording(rec, stride=4, max_frames=60)
    obs = result.observations
    assert obs.track_ids() and all(s.startswith("S") for s in obs.track_ids())
    floor = obs[obs.keypoint == "floor"]
    assert len(floor) > 30 and np.isfinite(floor.xyz).all() and (floor.xyz[:, 2] == 0).all()
    assert len(obs.hands()) > 0 and result.hands_source in {"blazepose", "blazepose+approx-box", "approx-box"}
    assert (obs.t >= rec.t_start).all() and (obs.t <= rec.t_start + 23).all()

    video_rec = apply_video(rec, stride=4, max_frames=60)
    assert {g.kind for g in video_rec.gates} == {"entry", "exit"}
    assert {g.track for g in video_rec.gates} == set(video_rec.tracks.track_ids())
    replayed = replay_recording(video_rec, shopper_factory=demo_shopper_ensure)
    assert set(replayed.visits) == set(video_rec.tracks.track_ids())
    stored = set(ShopperTrack.objects.filter(session=replayed.session).values_list("track_id", flat=True))
    assert stored == set(video_rec.tracks.track_ids())


def test_replay_observations_reach_the_live_map(client, manager, benchmark1_recording):
    rec = read_recording(benchmark1_recording)
    shop = Store.objects.create(code="aifi-map", name="map test")
    block = rec.tracks.between(rec.t_start, rec.t_start + 1.0)
    assert store_map_publish_observations(store_code=shop.code, obs=block) == 1
    (s,) = client.get(f"/manage/vision/map/{shop.code}.json").json()["shoppers"]
    neck = block[(block.keypoint == "neck")]
    last = neck[neck.t == neck.t.max()]
    assert s["id"] == "3325379692103139202" and (s["x"], s["y"]) == pytest.approx(tuple(last.xyz[0, :2]), abs=1e-3)
