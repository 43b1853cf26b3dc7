"""The live store's cross-camera join: a store with two cameras whose workers publish their tracked frames (``cam``
records, ``run_camera --join``); the store worker joins them into shoppers (``vision.shoppers.ShopperStream``) before
the loop sees them.

BENCHMARK-1's real shopper and shelves: two ceiling cameras both see his feet (each places them a few centimetres
off the other, as two calibrations do); the first sees him from the gate on, the second from a moment later, and
only the second sees his wrists (the first sees his back). Published per camera as observations (before the join),
the scan binds the first camera's track and the take the second camera's wrist made goes to nobody; joined, one
shopper. Published as each
camera's worker publishes, 0.2 s of frames a record, with the shelf controllers' sample blocks and the gate's entry
scan on the same bus. Checked: the loop holds one shopper, the scan binds him, the take his second-camera wrist made
lands in his visit's cart; a worker killed after a checkpoint and restarted decides the same; a malformed ``cam``
record is counted and dropped; a camera that goes silent is declared down, the join goes on with the other, and it
rejoins when it sends again.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from carts.models import CartEvent, ReviewItem, StoreAlert
from carts.bus import MemoryBus
from carts.camera_join import CAMERAS_JOINED, cam_record, decode_cam
from carts.records import gate_record, obs_record, shelf_record
from carts.runtime import StoreWorker
from sensors.models import ShelfEvent
from store.gates.models import Visit
from store.inventory.services import catalogue_load
from store.layout.services import layout_load
from store.recording import TrackObservations, read_recording
from vision.models import Camera
from vision.tracking import FrameTracks
from vision.worker import CameraWorker, VideoCamera

pytestmark = pytest.mark.django_db

STEP_S = 0.2  # seconds of frames and samples per record, as a camera worker batches them (CameraWorker.batch_s)
CAMERAS = ("ceiling-a", "ceiling-b")
AFTER_S = 8.0  # the devices go on after the recording (idle plates, empty frames): the join's lag and fusion's pad


@pytest.fixture(scope="module")
def recording(benchmark1_recording):
    return read_recording(benchmark1_recording)


def load(recording, code: str):
    """BENCHMARK-1's store under ``code`` (layout, catalogue, its two cameras) and a shopper's visit."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    data = {**recording.store, "store": {**recording.store["store"], "code": code}}
    store = layout_load(data=data)
    catalogue_load(store=store, products=recording.store["products"], facings=recording.store["facings"])
    for name in CAMERAS:
        Camera.objects.create(store=store, name=name, source=f"rtsp://{name}.invalid/stream")
    user, _ = get_user_model().objects.get_or_create(username="ann", defaults={"email": "ann@walkout.test"})
    visit = Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())
    return store, visit


#: s. Camera b (over the shelves) first sees the shopper this long after camera a (over the gate) did.
B_FROM_S = 1.5


def camera_frames(recording) -> dict[str, list[FrameTracks]]:
    """Each camera's frames of the shopper: at every time his neck was seen, camera a 10 ms before camera b (one
    moment), floor points ±4 cm apart around the neck's; camera b from :data:`B_FROM_S` after his first sighting
    (he walks into its view), and only camera b sees his wrists (the recording's within 50 ms)."""
    obs = recording.tracks
    neck = obs.keypoint == "neck"
    order = np.argsort(obs.t[neck])
    ts, xy = obs.t[neck][order], obs.xyz[neck][order][:, :2]
    wrists = {side: (obs.t[obs.keypoint == name], obs.xyz[obs.keypoint == name])
              for side, name in ((0, "l_wrist"), (1, "r_wrist"))}
    out: dict[str, list[FrameTracks]] = {c: [] for c in CAMERAS}
    for k, (t, p) in enumerate(zip(ts, xy)):
        w = np.full((1, 2, 3), np.nan)
        for side, (wt, wxyz) in wrists.items():
            near = np.abs(wt - t) <= 0.05
            if near.any():
                w[0, side] = wxyz[near][np.argmin(np.abs(wt[near] - t))]
        for cam, dt, dx, wr in ((CAMERAS[0], -0.01, 0.04, np.full((1, 2, 3), np.nan)), (CAMERAS[1], 0.0, -0.04, w)):
            if cam == CAMERAS[1] and t < ts[0] + B_FROM_S:
                continue
            out[cam].append(FrameTracks(
                camera=cam, session="live.x", frame=k, t=float(t + dt), key=np.array([f"{cam}:live.x:7"], dtype=object),
                raw_id=np.array([7]), xyxy=np.zeros((1, 4), np.float32), confidence=np.array([0.9]),
                floor_xy=(p + [dx, 0.0])[None], wrists_xyz=wr, wrist_score=np.where(np.isfinite(wr[..., 0]), 0.8, 0.0),
                hands_source="pose"))
    return out


def timeline(recording, visit: int, *, silent: tuple[str, float, float] | None = None) -> list[list[tuple[str, dict]]]:
    """The records every device publishes, per step of STEP_S: shelf blocks per controller, a ``cam`` record per
    camera (its frames of the step, up to the step's end; empty frames after the recording), the gate's entry scan.
    ``silent``: (camera, t0, t1) s after the start while which that camera sends nothing."""
    frames = camera_frames(recording)
    t0 = recording.t_start
    t_end = max(recording.t_end, max(s.t[-1] for s in recording.shelves)) + AFTER_S
    scan = recording.gates[0]
    steps, t = [], t0
    k = 0
    while t < t_end:
        a, b = t, t + STEP_S
        out: list[tuple[str, dict]] = []
        for g, block in enumerate(recording.shelves):
            keep = (block.t >= a) & (block.t < b)
            if b > block.t[-1]:  # the controller goes on sampling its idle plates
                extra = np.arange(max(a, block.t[-1] + 1 / 60), b, 1 / 60)
                t_s = np.concatenate([block.t[keep], extra])
                grams = np.vstack([block.grams[keep], np.repeat(block.grams[-1:], len(extra), axis=0)])
            else:
                t_s, grams = block.t[keep], block.grams[keep]
            if len(t_s):
                out.append(("shelf", shelf_record(controller=f"g{g}", bin_codes=block.bin_codes, t=t_s, grams=grams,
                                                  rate_hz=60.0)))
        if a <= scan.t < b:
            out.append(("gate", gate_record(event="entry", visit=visit, t=scan.t)))
        for cam in CAMERAS:
            if silent and silent[0] == cam and silent[1] <= a - t0 < silent[2]:
                continue
            fts = [ft for ft in frames[cam] if a <= ft.t < b]
            if not fts and a > recording.t_end:  # nobody left in view: empty frames, as a live camera sends
                fts = [FrameTracks(camera=cam, session="live.x", frame=10_000 + k, t=a, key=np.array([], dtype=object),
                                   raw_id=np.zeros(0, int), xyxy=np.zeros((0, 4)), confidence=np.zeros(0),
                                   floor_xy=np.zeros((0, 2)), wrists_xyz=np.zeros((0, 2, 3)),
                                   wrist_score=np.zeros((0, 2)))]
            out.append(("cam", cam_record(camera=cam, frames=fts, t_last=max([b - 1e-3] + [ft.t for ft in fts]))))
        steps.append(out)
        t, k = b, k + 1
    return steps


def play(worker: StoreWorker, bus: MemoryBus, steps, *, fed: list | None = None, pause_s: float = 0.0) -> None:
    """Publish each step's records and let the worker read them (``fed``: the joined observations the loop got)."""
    for records in steps:
        for kind, rec in records:
            bus.publish(worker.store.code, kind, rec)
        worker.step(block_ms=0)
        if fed is not None and worker.join is not None and not hasattr(worker, "_fed_hook"):
            loop = worker.pipeline.loop
            inner = loop.on_observations

            def record(obs, inner=inner):
                fed.append(obs)
                inner(obs)

            loop.on_observations = record
            worker._fed_hook = True
        if pause_s:
            time.sleep(pause_s)


def decisions(store, visit) -> dict:
    return {"events": sorted((round(e.t_start.timestamp(), 2), tuple(e.bin_codes))
                             for e in ShelfEvent.objects.filter(store=store)),
            "cart": sorted((e.product.barcode, e.quantity) for e in CartEvent.objects.filter(visit=visit)),
            "review": ReviewItem.objects.filter(shelf_event__store=store).count()}


def test_two_cameras_of_one_shopper_are_one_track_bound_by_the_scan_and_the_take_lands_in_his_cart(recording):
    store, visit = load(recording, "join-a")
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    fed: list = []
    play(worker, bus, timeline(recording, visit.pk), fed=fed)
    ids = {str(x) for obs in fed for x in obs.track_id}
    assert len(ids) == 1, ids  # one person, two cameras: one shopper
    (shopper,) = ids
    visit.refresh_from_db()
    assert visit.track_id == shopper  # the scan bound him
    truth = recording.truth[0].lines[0]
    assert decisions(store, visit)["cart"] == [(truth.barcode, truth.quantity)]  # camera b's wrist made the take
    assert worker.stats.bad_records == 0
    assert set(worker.sources) >= {CAMERAS_JOINED, *(f"cam:{c}" for c in CAMERAS)} and not worker.down
    assert worker.join.late == 0
    # the product-image evidence reads the shopper's hand crops under each camera's own track key
    keys = worker.cameras.camera_tracks(shopper)
    assert keys == [f"{cam}:live.x:7" for cam in CAMERAS], keys
    assert worker.pipeline.sink.images.tracks(shopper) == keys


def test_a_worker_killed_after_a_checkpoint_decides_what_an_uninterrupted_one_does(recording):
    straight_store, straight_visit = load(recording, "join-b")
    bus = MemoryBus()
    worker = StoreWorker(straight_store.code, bus_=bus)
    straight_fed: list = []
    play(worker, bus, timeline(recording, straight_visit.pk), fed=straight_fed)
    straight = decisions(straight_store, straight_visit)

    store, visit = load(recording, "join-c")
    steps = timeline(recording, visit.pk)
    cut = len(steps) // 2  # mid-walk: before the take
    bus = MemoryBus()
    first = StoreWorker(store.code, bus_=bus)
    play(first, bus, steps[:cut - 5])
    first.checkpoint()
    joined_at_checkpoint = first.join.t_written
    play(first, bus, steps[cut - 5:cut])  # applied, never checkpointed: the worker is killed here (kill -9)
    second = StoreWorker(store.code, bus_=bus)
    play(second, bus, steps[cut:])
    assert second.stats.restored and second.join is not first.join
    assert second.join.t_written > joined_at_checkpoint
    assert decisions(store, visit)["cart"] == straight["cart"] == [(recording.truth[0].lines[0].barcode, 1)]
    assert decisions(store, visit)["review"] == straight["review"]
    assert decisions(store, visit)["events"] == straight["events"]


def test_a_malformed_cam_record_is_counted_and_dropped_and_nothing_else_is_lost(recording):
    store, visit = load(recording, "join-d")
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    good = cam_record(camera=CAMERAS[0], frames=camera_frames(recording)[CAMERAS[0]][:2], t_last=recording.t_start + 1)
    bad_sizes = {**good, "frames": [{**good["frames"][0], "n": 3}]}
    no_camera = {k: v for k, v in good.items() if k != "camera"}
    out_of_order = {**good, "frames": good["frames"][::-1]}
    for rec in (bad_sizes, no_camera, out_of_order, {**good, "t_last": "soon"}, good):
        bus.publish(store.code, "cam", rec)
    worker.step(block_ms=0)
    assert worker.stats.bad_records == 4 and worker.stats.records["cam"] == 5
    assert worker.offsets["cam"] == "5-0"
    # the good one went through: both frames in the join, the camera's clock moved
    assert worker.sources[f"cam:{CAMERAS[0]}"][0] == pytest.approx(recording.t_start + 1)
    assert len(worker.join._queues[CAMERAS[0]]) == 2
    for rec in (bad_sizes, no_camera, out_of_order):
        with pytest.raises(ValueError):
            decode_cam(rec)
    with pytest.raises(ValueError, match="in order"):
        cam_record(camera=CAMERAS[0], frames=camera_frames(recording)[CAMERAS[0]][1::-1], t_last=recording.t_start + 1)


def test_a_camera_sending_its_own_tracks_while_the_others_are_joined_is_refused_alerted_and_cleared_on_join(recording):
    """Camera b runs ``--no-join`` (its tracks as shoppers on ``obs``) while camera a's frames are joined: the same
    person would be two shoppers, so its records are refused and counted, the manager is alerted once, the worker
    stops waiting for it, and the alert is settled when it sends frames to the join."""
    store, visit = load(recording, "join-mixed")
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus)
    frames = camera_frames(recording)
    t0 = recording.t_start
    bus.publish(store.code, "cam", cam_record(camera=CAMERAS[0], frames=frames[CAMERAS[0]][:2], t_last=t0 + 1))
    worker.step(block_ms=0)  # the join exists from camera a's first record on
    obs = TrackObservations(np.array([f"{CAMERAS[1]}:s:7"], dtype=object), np.array([t0 + 0.5]),
                            np.array(["floor"], dtype=object), np.array([[1.0, 1.0, 0.0]]), np.array([0.9]))
    for _ in range(3):
        bus.publish(store.code, "obs", obs_record(source=f"camera:{CAMERAS[1]}", obs=obs, t_last=t0 + 1))
    worker.step(block_ms=0)
    assert worker.stats.unjoined_records == 3 and worker.stats.bad_records == 0
    assert len(worker.pipeline.loop.hands) == 0 and f"obs:camera:{CAMERAS[1]}" not in worker.sources
    (alert,) = StoreAlert.objects.filter(store=store, kind=StoreAlert.Kind.WORKER)
    assert alert.key == f"unjoined:camera:{CAMERAS[1]}" and "--join" in alert.message and alert.resolved_at is None
    bus.publish(store.code, "cam", cam_record(camera=CAMERAS[1], frames=frames[CAMERAS[1]][:2],
                                              t_last=frames[CAMERAS[1]][1].t))
    worker.step(block_ms=0)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_silent_camera_is_declared_down_and_the_join_goes_on_with_the_other(recording):
    store, visit = load(recording, "join-e")
    bus = MemoryBus()
    worker = StoreWorker(store.code, bus_=bus, source_down_s=0.3)
    steps = timeline(recording, visit.pk, silent=(CAMERAS[0], 4.0, 6.0))
    play(worker, bus, steps[:20], pause_s=0.02)  # 4 s of store time, both cameras sending
    assert worker.join.waiting_for == sorted(CAMERAS)
    written = worker.join.t_written
    play(worker, bus, steps[20:30], pause_s=0.05)  # camera a silent for 0.5 s of wall time: down
    assert f"cam:{CAMERAS[0]}" in worker.down and worker.join.waiting_for == [CAMERAS[1]]
    alert = StoreAlert.objects.get(store=store, kind=StoreAlert.Kind.SOURCE_DOWN, key=f"cam:{CAMERAS[0]}")
    assert alert.resolved_at is None
    assert worker.join.t_written > written + 1.0  # the join went on with camera b
    play(worker, bus, steps[30:40], pause_s=0.0)  # from 6 s camera a sends again and rejoins
    alert.refresh_from_db()
    assert alert.resolved_at is not None and worker.join.waiting_for == sorted(CAMERAS)
    assert f"cam:{CAMERAS[0]}" not in worker.down


def test_a_camera_worker_in_join_mode_publishes_its_tracked_frames_not_observations(tmp_path):
    """``CameraWorker(join=True)`` (``run_camera --join``): each batch of tracked frames, boxes dropped, goes to
    ``publish_frames`` with the batch's last frame time; nothing goes out as per-camera observations. The frames come
    back whole through a ``cam`` record."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(40, 200, (48, 64, 3), dtype=np.uint8))
    rays = np.full((1, 2, 6), np.nan)
    rays[0, 1] = [1.0, 2.0, 2.6, 0.0, 0.6, -0.8]

    class Tracker:  # what the worker needs of vision.tracking.CameraTracker, without a model
        session = "live"

        def start_session(self, session):
            self.session = session

        def step(self, frame):
            return FrameTracks(camera="aisle", session=self.session, frame=frame.index, t=frame.t,
                               key=np.array([f"aisle:{self.session}:1"], dtype=object), raw_id=np.array([1]),
                               xyxy=np.array([[5.0, 5.0, 20.0, 40.0]]), confidence=np.array([0.8]),
                               floor_xy=np.array([[1.0 + 0.1 * frame.index, 2.0]]),
                               wrists_xyz=np.array([[[np.nan] * 3, [1.2, 2.3, 1.1]]]),
                               wrist_score=np.array([[0.0, 0.7]]), hands_source="pose", wrist_rays=rays)

    sent, observations = [], []
    worker = CameraWorker(VideoCamera("aisle", str(folder), fps=10.0), Tracker(), t0=1_700_000_000.0, join=True,
                          publish=lambda obs, t_last: observations.append(obs),
                          publish_frames=lambda frames, t_last: sent.append((frames, t_last)), frame_every_s=None)
    stats = worker.run(once=True)
    assert observations == [] and stats.records == len(sent) >= 2
    frames = [ft for batch, _ in sent for ft in batch]
    assert len(frames) == 6 and all(t_last == batch[-1].t for batch, t_last in sent)
    assert all(not ft.xyxy.any() for ft in frames)  # boxes are not sent
    camera, back, t_last = decode_cam(cam_record(camera="aisle", frames=sent[0][0], t_last=sent[0][1]))
    assert camera == "aisle" and t_last == sent[0][1] and len(back) == len(sent[0][0])
    for a, b in zip(sent[0][0], back):
        assert (a.session, a.frame, a.t, list(a.key), a.hands_source) == (b.session, b.frame, b.t, list(b.key),
                                                                          b.hands_source)
        for name in ("raw_id", "confidence", "floor_xy", "wrists_xyz", "wrist_score", "wrist_rays"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
