"""Celery tasks of the vision app: one camera's stream processed in chunks (route them to a queue per camera,
``vision.<camera id>``, so one worker process holds that camera's tracker state).

A task loads the camera by id, tracks ``n_frames`` frames from ``start_frame`` in streaming mode, and writes only
compact outputs: per-camera track intervals (:class:`vision.models.CameraTrack`) and the live map positions.
Tracker state is kept per (camera id) in the worker process and reset when the session changes, so ids never
continue from one recording into the next; keys include camera and session, so two cameras in one worker never
share ids.
"""
from __future__ import annotations

import logging
import threading

from celery import shared_task

from .detector import PersonDetector
from .config import vision_settings
from .services import camera_model_for, camera_tracks_record, store_map_publish
from .tracking import CameraTracker, FrameSource, SourceError, TrackSummary
from .models import Camera
from store.inventory.selectors import product_photo_gallery
from store.layout.models import Store
from .product_service import GalleryEmpty, build_product_gallery, embedder, product_gallery, tuning_config
from .product_embedder import ModelUnavailable

log = logging.getLogger(__name__)

#: camera id → CameraTracker of this worker process (one tracker state per camera).
_TRACKERS: dict[int, object] = {}


def camera_tracker_for(camera, session: str):
    """This process's :class:`vision.tracking.CameraTracker` for ``camera`` (a Camera row), created on first use
    and reset when ``session`` changes (or the camera's calibration changed)."""
    model = camera_model_for(camera=camera)
    tracker = _TRACKERS.get(camera.pk)
    if tracker is None:
        cfg = vision_settings()
        det = PersonDetector(cfg["MODEL"], imgsz=cfg["IMGSZ"], conf=float(cfg["CONF"]), tracker=cfg["TRACKER"],
                             pose=cfg.get("POSE_MODEL"))
        tracker = _TRACKERS[camera.pk] = CameraTracker(model, det, session)
    elif tracker.session != session:
        tracker.start_session(session)
    tracker.camera = model
    return tracker


@shared_task(acks_late=True)
def track_camera_chunk(camera_id: int, session: str, start_frame: int = 0, n_frames: int = 250,
                       t0: float = 0.0) -> dict:
    """Track frames ``[start_frame, start_frame + n_frames)`` of camera ``camera_id``'s source in ``session``
    (``t0``: s UTC of frame 0 for files). Returns ``{"camera", "session", "frames", "tracks", "problems"}``.

    Bad input is logged and reported in ``problems``; a source that cannot be opened returns with a problem
    instead of raising (the next chunk retries). Idempotent for the stored intervals.
    """

    camera = Camera.objects.select_related("store").get(pk=camera_id)
    tracker = camera_tracker_for(camera, session)
    try:
        src = FrameSource(camera.source, t0=t0, start_frame=start_frame, max_frames=n_frames, name=camera.name)
    except SourceError as exc:
        log.warning("%s", exc)
        return {"camera": camera.name, "session": session, "frames": 0, "tracks": 0, "problems": [str(exc)]}
    summary = TrackSummary()
    last = None
    for ft in tracker.run(src):
        summary.add(ft)
        last = ft
    if last is not None and len(last):
        ok = [i for i in range(len(last)) if (last.floor_xy[i] == last.floor_xy[i]).all()]
        store_map_publish(store_code=camera.store.code, t=last.t,
                          positions={str(last.key[i]): tuple(last.floor_xy[i]) for i in ok})
    n = camera_tracks_record(store=camera.store, session=session, intervals=summary.intervals.values(),
                             camera=camera)
    return {"camera": camera.name, "session": session, "frames": summary.frames, "tracks": n,
            "problems": src.problems + tracker.problems}


@shared_task(acks_late=True, time_limit=600)
def product_gallery_rebuild_task(store_code: str) -> int | None:
    """Rebuild the product recogniser's gallery (``vision.product_service.build_product_gallery``) from the photos
    managers uploaded for store ``store_code`` (``store.inventory.selectors.product_photo_gallery``); photos embedded
    before come from the cache. Returns the number of products in the gallery, or None when there is nothing to
    build (unknown store, no photos, the vision extra not installed: logged)."""
    store = Store.objects.filter(code=store_code).first()
    if store is None:
        log.warning("product gallery: no store %r", store_code)
        return None
    photos = {barcode: [str(p) for p in paths] for barcode, paths in product_photo_gallery(store=store).items()}
    if not photos:
        log.info("product gallery of %s: no photos", store_code)
        return None
    try:
        gallery, rejected, where = build_product_gallery(photos)
    except (ModelUnavailable, GalleryEmpty) as exc:
        log.warning("product gallery of %s not rebuilt: %s", store_code, exc)
        return None
    for src, reason in rejected.items:
        log.warning("product gallery of %s: photo %s left out: %s", store_code, src, reason)
    return len(gallery.labels)


def on_product_photos_changed(sender, *, store, **kwargs) -> None:
    """``store.inventory.signals.product_photos_changed`` → queue :func:`product_gallery_rebuild_task` (setting
    ``WALKOUT["GALLERY_REBUILD_ON_UPLOAD"]``, after ``GALLERY_REBUILD_DELAY_S``). A broker that does not take it is
    logged: the gallery is rebuilt at the next change or by ``manage.py build_product_gallery --store``."""
    from django.conf import settings

    if not settings.WALKOUT.get("GALLERY_REBUILD_ON_UPLOAD", True):
        return
    _queue_gallery_rebuild(store.code, float(settings.WALKOUT.get("GALLERY_REBUILD_DELAY_S", 10.0)))


def _queue_gallery_rebuild(store_code: str, delay_s: float) -> None:
    """:func:`product_gallery_rebuild_task` for ``store_code`` in ``delay_s`` seconds: through the broker, or with
    none (tasks eager, the embedded profile) in a timer thread of this process (:func:`gallery_rebuild_later`)."""
    from django.conf import settings

    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        # No broker (the embedded profile): never in the manager's request, whose upload page waited for the
        # embedding model to load and run (over 15 s on a busy machine); a timer thread of this process instead.
        gallery_rebuild_later(store_code, delay_s=delay_s)
        return
    try:
        product_gallery_rebuild_task.apply_async(args=[store_code], countdown=delay_s)
    except Exception as exc:  # the broker down: the photo is stored; the gallery waits for the next rebuild
        log.error("product gallery of %s: rebuild not queued (%s: %s)", store_code, type(exc).__name__, exc)


def product_gallery_refresh(store_code: str) -> bool:
    """Queue a rebuild of ``store_code``'s product gallery (at once, as :func:`_queue_gallery_rebuild` does) when the
    saved one cannot be used as it is: made by another embedder (``vision.products.GalleryMismatch``: the backbone or
    its settings changed since it was built, e.g. an upgrade that changed ``vision.product_embedder.DEFAULT_MODEL``)
    or not a readable gallery; or a linear-head gallery built without the photos' centre crops the embedder now adds
    (``EmbedderConfig.zooms``: the same vectors, fewer of them; 2.4 points of top-1 at 6 photos); or a linear-head
    gallery whose tuned tail disagrees with ``PRODUCT_TUNING`` (untuned while tuning is on and it has enough
    products, :mod:`vision.product_tuning`; tuned while it is off). Its vectors are never scored against the new embedder's nor mixed with them (the
    embedding cache is keyed by the embedder's name: every photo is embedded anew once). The store worker calls it
    when it starts (``carts.runtime``); until the rebuild is saved the recogniser counts "gallery unreadable" and
    decisions stand on weight and hands. Returns True when a rebuild was queued; False when the gallery is usable or
    there is none (a store without photos has nothing to build)."""
    try:
        g = product_gallery()
    except ValueError as exc:  # GalleryMismatch is a ValueError, as is a damaged file
        log.warning("product gallery of %s unusable, rebuilding it: %s", store_code, exc)
        _queue_gallery_rebuild(store_code, 0.0)
        return True
    if g is not None and g.head is not None and tuple(g.zooms) != tuple(embedder().config.zooms):
        log.warning("product gallery of %s built without the photos' centre crops %s, rebuilding it", store_code,
                    embedder().config.zooms)
        _queue_gallery_rebuild(store_code, 0.0)
        return True
    tuning = tuning_config()
    if g is not None and g.head is not None and (g.tail is not None) != (
            tuning.enabled and int((g.photos_per_product() > 0).sum()) >= tuning.min_products):
        log.warning("product gallery of %s %s, rebuilding it", store_code,
                    "tuned but tuning is off (PRODUCT_TUNING)" if g.tail is not None
                    else "not fine-tuned on its photos (vision.product_tuning)")
        _queue_gallery_rebuild(store_code, 0.0)
        return True
    return False


#: store code → this process's pending in-process gallery rebuild (:func:`gallery_rebuild_later`).
_REBUILDS: dict[str, threading.Timer] = {}
_REBUILDS_LOCK = threading.Lock()


def gallery_rebuild_later(store_code: str, *, delay_s: float) -> threading.Timer:
    """Rebuild ``store_code``'s product gallery in a daemon thread of this process ``delay_s`` seconds from now
    (:func:`product_gallery_rebuild_task` run directly; failures logged). A rebuild of the same store still waiting
    is cancelled: a batch of uploads makes one rebuild. Returns the timer (:func:`gallery_rebuilds_wait` joins them)."""
    def run() -> None:
        from django.db import close_old_connections

        try:
            product_gallery_rebuild_task(store_code)
        except Exception:  # logged; the next change or manage.py build_product_gallery rebuilds it
            log.exception("product gallery of %s: rebuild failed", store_code)
        finally:
            close_old_connections()

    timer = threading.Timer(max(0.0, delay_s), run)
    timer.daemon = True
    timer.name = f"gallery-rebuild-{store_code}"
    with _REBUILDS_LOCK:
        previous = _REBUILDS.get(store_code)
        if previous is not None:
            previous.cancel()
        _REBUILDS[store_code] = timer
    timer.start()
    return timer


def gallery_rebuilds_wait(timeout_s: float = 120.0) -> bool:
    """Wait until this process's in-process gallery rebuilds (:func:`gallery_rebuild_later`) have run; True when all
    finished within ``timeout_s`` seconds (tests, and a process about to stop)."""
    import time

    deadline = time.monotonic() + timeout_s
    with _REBUILDS_LOCK:
        timers = list(_REBUILDS.values())
    for timer in timers:
        timer.join(max(0.0, deadline - time.monotonic()))
    with _REBUILDS_LOCK:
        for code, timer in list(_REBUILDS.items()):
            if not timer.is_alive():
                _REBUILDS.pop(code, None)
    return not any(t.is_alive() for t in timers)
