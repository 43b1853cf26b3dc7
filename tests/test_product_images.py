"""The product in the taking hand, live (issue #14): a camera worker cuts crops around the tracked wrists into the
shared hand-crop store; when the store loop decides a take, the store worker's sink reads the taking hand's crops,
embeds them and scores them against the product gallery, and the right product's option gains over a same-weight
look-alike. Frames are generated: a real grocery-store photo (../shared/datasets/grocery-store; skipped, naming the
file, where absent) held at the wrist's projected pixel in front of a shelf. Without the model the store decides
on weight and hands alone, the reason counted."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.core.cache.backends.locmem import LocMemCache

from carts.fusion_products import with_product_evidence
from carts.loop_config import LoopConfig
from carts.product_images import HandImageEvidence
from vision import product_embedder as pe
from vision import products as vp
from vision.geometry import CameraModel
from vision.hand_crops import HandCrop, HandCropStore
from vision.tracking import FrameTracks
from vision.worker import CameraWorker
from conftest import shared_file
from test_fusion_decide import BINS, decide, event, reach

GROCERY = "datasets/grocery-store/dataset/classes.csv"
# barcode in the test planogram (test_fusion_decide: P and Q weigh 300 g and face neighbouring bins) → class name;
# the rest of the gallery are other cartons and cups of the dataset
PRODUCTS = {"P": "Bravo-Apple-Juice", "Q": "Bravo-Orange-Juice", "R": "Tropicana-Apple-Juice",
            "9001": "God-Morgon-Orange-Juice", "9002": "Arla-Standard-Milk", "9003": "Oatly-Oat-Milk",
            "9004": "Alpro-Fresh-Soy-Milk", "9005": "Yoggi-Vanilla-Yoghurt"}
W, H = 1280, 720
SIDES_SEEN = 4  # the held item turns in the hand: each frame shows one of its first 4 test photos
T_END = 3.0  # the look-alike take's event (test_fusion_decide.event): 2.0–3.0 s


def shelf_camera() -> CameraModel:
    """A 720p camera 2.6 m in front of the shelf (bins at y = 0.2 m), 1.6 m up, looking along +y 10° down."""
    s, c = math.sin(math.radians(10)), math.cos(math.radians(10))
    z, x = np.array([0.0, c, -s]), np.array([1.0, 0.0, 0.0])
    K = np.array([[700.0, 0, W / 2], [0, 700.0, H / 2], [0, 0, 1]])
    return CameraModel(name="shelfcam", width=W, height=H, K=K, R=np.column_stack([x, np.cross(z, x), z]),
                       C=np.array([1.15, -2.4, 1.6]))


def wrists(t: float) -> np.ndarray:
    """(2, 3) metres: the left hand hangs at the hip; the right one is at the B|C seam until the event's end and
    then comes back out of the shelf with the item."""
    k = float(np.clip((t - T_END) / 1.5, 0.0, 1.0))
    return np.array([[0.9, -0.5, 0.9], [1.15, -0.1 - 0.35 * k, 1.1 - 0.1 * k]])


def grocery_root() -> Path:
    return shared_file(GROCERY).parent


def class_photos(name: str) -> tuple[list[Path], list[Path]]:
    """(gallery photos: the iconic one and the 5 extra ones, test photos) of class ``name``."""
    root = grocery_root()
    rows = [ln.split(",") for ln in (root / "classes.csv").read_text().splitlines()[1:]]
    row = next(r for r in rows if r[0] == name)
    cid = row[1].strip()
    extra = [root / ln.split(",")[0] for ln in (root / "train5.txt").read_text().splitlines()
             if ln.split(",")[1].strip() == cid]
    test = [root / ln.split(",")[0] for ln in (root / "test.txt").read_text().splitlines()
            if ln.split(",")[1].strip() == cid]
    return [root / row[4].strip().lstrip("/"), *extra], test


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("torch", reason="needs the vision extra: pip install -e '.[vision]'")
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch (vision extra)")
    pkg = pe.MODELS[pe.DEFAULT_MODEL][0]
    pytest.importorskip(pkg, reason=f"needs {pkg.replace('_', '-')} (the weights of {pe.DEFAULT_MODEL}; vision extra)")
    return pe.Embedder(pe.EmbedderConfig(threads=1))


@pytest.fixture(scope="module")
def gallery(embedder):
    grocery_root()
    return vp.build_gallery(embedder, {code: class_photos(name)[0] for code, name in PRODUCTS.items()})


def frames_with_item(folder: Path, photos: list[Path], camera: CameraModel, t0: float, n: int, fps: float) -> None:
    """``n`` frames from ``t0`` at ``fps``: a shelf of coloured facings, a shopper, and the held item pasted centred
    on the right wrist's projected pixel at its real size (a 0.3 m field of view): frame i shows ``photos[i %
    len(photos)]``, the item turning in the hand (the dataset's photos of one product from other sides)."""
    rng = np.random.default_rng(14)
    shelf = np.full((H, W, 3), 200, np.uint8)
    for k in range(0, W, 90):  # facings of other products behind
        shelf[120:600, k + 5:k + 85] = rng.integers(40, 220, 3)
    shelf = cv2.GaussianBlur(shelf, (0, 0), 2) + rng.integers(0, 12, (H, W, 3), dtype=np.uint8)
    items = [cv2.imread(str(p)) for p in photos]
    for i in range(n):
        item = items[i % len(items)]
        t = t0 + i / fps
        img = shelf.copy()
        box = person_box(camera)
        cv2.rectangle(img, tuple(int(v) for v in box[:2]), tuple(int(v) for v in box[2:]), (60, 50, 40), -1)
        u, v = camera.project(wrists(t)[1:])[0]
        side = int(round(700.0 * 0.3 / depth(camera, wrists(t)[1])))
        scale = side / max(item.shape[:2])
        small = cv2.resize(item, (round(item.shape[1] * scale), round(item.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
        y0, x0 = int(v) - small.shape[0] // 2, int(u) - small.shape[1] // 2
        img[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        cv2.putText(img, f"{t:010.3f}", (20, H - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)  # overlay
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])


def depth(camera: CameraModel, xyz: np.ndarray) -> float:
    return float((np.asarray(xyz) - camera.C) @ camera.R[:, 2])


def person_box(camera: CameraModel) -> np.ndarray:
    feet, head = camera.project(np.array([[1.15, -0.5, 0.0], [1.15, -0.5, 1.75]]))
    half = 0.25 * (feet[1] - head[1])
    return np.array([feet[0] - half, head[1], feet[0] + half, feet[1]])


class HandTracker:
    """What the camera worker needs of ``vision.tracking.CameraTracker``: one shopper, track "a", whose wrists
    are where :func:`wrists` says (the pose model's job, not under test here)."""

    def __init__(self, camera: CameraModel):
        self.camera, self.session = camera, "live"

    def start_session(self, session):
        self.session = session

    def step(self, frame):
        n = 1
        return FrameTracks(camera="shelfcam", session=self.session, frame=frame.index, t=frame.t,
                           key=np.array(["a"], dtype=object), raw_id=np.array([1]),
                           xyxy=person_box(self.camera)[None], confidence=np.array([0.9]),
                           floor_xy=np.array([[1.15, -0.5]]), wrists_xyz=wrists(frame.t)[None],
                           wrist_score=np.full((n, 2), 0.8))


class Row:  # the Camera row's fields the worker reads
    def __init__(self, source: str):
        self.name, self.source, self.fps, self.width, self.height, self.pk = "shelfcam", source, 5.0, W, H, None


def crops_of_a_take(tmp_path: Path, photos: list[Path]) -> tuple[HandCropStore, CameraWorker]:
    folder = tmp_path / "frames"
    folder.mkdir()
    camera = shelf_camera()
    t0, fps, n = T_END - 1.4, 5.0, 15          # 1.6 s … 4.4 s
    frames_with_item(folder, photos, camera, t0, n, fps)
    crops = HandCropStore("lookalike-shop", cache=LocMemCache(f"handcrops-{tmp_path.name}", {}))
    worker = CameraWorker(Row(str(folder)), HandTracker(camera), publish=lambda *a: None, t0=t0, hand_crops=crops,
                          frame_every_s=None)
    worker.run(once=True)
    return crops, worker


@pytest.mark.parametrize("held, other", [("P", "Q"), ("Q", "P")])
def test_the_taking_hand_s_crops_split_same_weight_lookalikes(tmp_path, gallery, embedder, held, other):
    photos = class_photos(PRODUCTS[held])[1][:SIDES_SEEN]  # photos of the product never shown to the gallery
    crops, worker = crops_of_a_take(tmp_path, photos)
    assert worker.stats.frames == 15 and worker.stats.hand_crops == 30 and not worker.stats.problems
    stored = crops.between("a", T_END - 1.5, T_END + 1.5)
    assert {c.side for c in stored} == {0, 1} and all(c.camera == "shelfcam" for c in stored)

    d = decide(event(["B", "C"], -301.0), reach("a", 1.15))  # lifted off the B|C seam: weight and hand can't tell
    before = {o.barcode: o.posterior for o in d.options if o.quantity == 1}
    assert d.review and abs(before["P"] - before["Q"]) < 0.25 * max(before.values())

    images = HandImageEvidence(crops, BINS, gallery=lambda: gallery, embedder=lambda: embedder)
    likelihood = images(event(["B", "C"], -301.0), d)
    assert images.counts == {"used": 1} and set(likelihood) == set(PRODUCTS)
    assert max(likelihood, key=likelihood.get) == held
    out = with_product_evidence(d, likelihood, mix=LoopConfig.image_mix)  # as the store loop applies it
    after = {o.barcode: o.posterior for o in out.options if o.quantity == 1}
    assert out.barcode == held and after[held] > 2 * after[other]
    assert after[held] / after[other] > before[held] / before[other]
    assert out.product_image[0][0] == held and "image of the held item" in out.reason


def crop(track="a", side=1, t=T_END, xyz=(1.15, -0.1, 1.1), jpeg=b"") -> HandCrop:
    if not jpeg:
        ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
        jpeg = buf.tobytes()
    return HandCrop("shelfcam", track, side, t, xyz, jpeg)


class NoTorch:
    """An embedder in a process without torch (``vision.product_embedder.Embedder`` raises this on first use)."""

    calls = 0

    def embed_arrays(self, images, flip=False):
        NoTorch.calls += 1
        raise pe.ModelUnavailable("needs torch and efficientnet-lite-pytorch (No module named 'torch')")


class TinyGallery:
    labels = np.array(["P", "Q"], dtype=object)

    def check_embedder(self, embedder):  # made by the embedder it is asked with
        pass

    def embedder_for(self, embedder):  # untuned (vision.products.Gallery.embedder_for)
        return embedder


def test_without_a_model_gallery_crops_or_a_take_there_is_no_image_evidence_and_the_reason_is_counted():
    store = HandCropStore("shop", cache=LocMemCache("handcrops-none", {}))
    store.put([crop(t=T_END + 0.2 * k) for k in range(5)] + [crop(track="far", xyz=(3.0, -2.0, 1.0))])
    ev = event(["B", "C"], -301.0)
    take = decide(ev, reach("a", 1.15))
    images = HandImageEvidence(store, BINS, gallery=lambda: TinyGallery(), embedder=NoTorch)
    assert images(ev, take) is None and images(ev, take) is None
    assert images.counts["model unavailable"] == 2 and NoTorch.calls == 1 and "torch" in images.unavailable
    images = HandImageEvidence(store, BINS, gallery=lambda: None, embedder=NoTorch)
    assert images(ev, take) is None and images.counts == {"no gallery": 1}
    far = decide(ev, reach("far", 1.15))
    assert far.track_id == "far" and images(ev, far) is None and images.counts["no hand near the bins"] == 1
    nobody = decide(ev, reach("gone", 1.15))
    assert images(ev, nobody) is None and images.counts["no crops"] == 1
    put_back = decide(event(["A"], 301.0), reach("a", 1.0), carts={"a": {"P": 1}})
    assert put_back.quantity < 0 and images(event(["A"], 301.0), put_back) is None
    assert images.counts["not one take"] == 1


def test_a_shopper_joined_from_two_cameras_finds_the_crops_each_camera_filed_under_its_own_track():
    """The store worker joins camera tracks "cam1:5" and "cam2:9" into shopper "j1-S1"; fusion names "j1-S1", and
    the crops are read under the cameras' own keys (before, none were found: "no crops")."""
    store = HandCropStore("shop", cache=LocMemCache("handcrops-joined", {}))
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    store.put([HandCrop("cam1", "cam1:5", 1, T_END + 0.2 * k, (1.15, -0.1, 1.1), buf.tobytes()) for k in range(3)]
              + [HandCrop("cam2", "cam2:9", 0, T_END + 0.1, (1.6, -0.6, 1.0), buf.tobytes())])
    ev = event(["B", "C"], -301.0)
    take = decide(ev, reach("j1-S1", 1.15))
    assert take.track_id == "j1-S1"
    alone = HandImageEvidence(store, BINS, gallery=lambda: TinyGallery(), embedder=NoTorch)
    assert alone(ev, take) is None and alone.counts == {"no crops": 1}
    joined = {"j1-S1": ["cam1:5", "cam2:9"]}
    images = HandImageEvidence(store, BINS, tracks=lambda t: joined.get(t, []), gallery=lambda: TinyGallery(),
                               embedder=NoTorch)
    chosen = images._taking_hand(ev, store.between("cam1:5", 0, T_END + 2) + store.between("cam2:9", 0, T_END + 2))
    assert {(c.camera, c.side) for c in chosen} == {("cam1", 1)}  # the wrist at the bins, of either camera
    assert images(ev, take) is None and images.counts == {"model unavailable": 1}  # crops found: the model is next


def test_a_gallery_of_another_backbone_gives_no_evidence_and_is_counted(gallery):
    store = HandCropStore("shop", cache=LocMemCache("handcrops-other-model", {}))
    store.put([crop(t=T_END + 0.2 * k) for k in range(3)])
    ev = event(["B", "C"], -301.0)
    other = next(m for m in sorted(pe.MODELS) if m != pe.DEFAULT_MODEL)
    images = HandImageEvidence(store, BINS, gallery=lambda: gallery,
                               embedder=lambda: pe.Embedder(pe.EmbedderConfig(model=other)))
    assert images(ev, decide(ev, reach("a", 1.15))) is None and images.counts == {"gallery unreadable": 1}


def test_the_crop_store_is_bounded_and_reads_a_track_s_window_across_seconds():
    store = HandCropStore("shop", cache=LocMemCache("handcrops-bounds", {}), max_per_bucket=3)
    assert store.put([crop(t=10.0 + 0.1 * k) for k in range(10)]) == 10
    got = store.between("a", 9.0, 12.0)
    assert [round(c.t, 1) for c in got] == [10.7, 10.8, 10.9]  # the newest 3 of that second
    store.put([crop(t=11.05), crop(t=11.5, side=0), crop(track="b", t=11.2)])
    assert [(round(c.t, 2), c.side) for c in store.between("a", 10.85, 11.5)] == [(10.9, 1), (11.05, 1), (11.5, 0)]
    assert store.between("a", 20.0, 21.0) == [] and len(store.between("b", 11.0, 11.9)) == 1
    assert store.between("a", 11.0, 11.9)[0].rgb().shape == (64, 64, 3)
    with pytest.raises(ValueError):
        store.between("a", 0.0, 3600.0)
    with pytest.raises(pe.BadImage):
        crop(jpeg=b"not a jpeg").rgb()


@pytest.mark.django_db
def test_the_live_store_worker_s_sink_asks_the_hand_crops(benchmark1_recording, settings):
    from carts.bus import MemoryBus
    from carts.runtime import StoreWorker
    from store.layout.services import layout_load
    from store.recording import read_recording

    store = layout_load(data=read_recording(benchmark1_recording).store)
    worker = StoreWorker(store.code, bus_=MemoryBus())
    worker.step(block_ms=0)
    sink = worker.pipeline.sink
    assert isinstance(sink.images, HandImageEvidence) and sink.images.crops.store_code == store.code
    assert sink.images.bins.codes == worker.pipeline.loop.bins.codes
    ev = event(["B", "C"], -301.0)
    take = decide(ev, reach("a", 1.15))
    assert sink.product_likelihood(ev, take) is None and sink.images.counts == {"no crops": 1}
    settings.WALKOUT = {**settings.WALKOUT, "PRODUCT_IMAGES": False}
    off = StoreWorker(store.code, bus_=MemoryBus())
    off.step(block_ms=0)
    assert off.pipeline.sink.images is None and off.pipeline.sink.product_likelihood(ev, take) is None
