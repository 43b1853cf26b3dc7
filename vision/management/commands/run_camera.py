"""``python manage.py run_camera STORE:NAME [--realtime] [--join|--no-join]``: the camera worker of one camera
(``vision.worker``), until SIGTERM: reads its stream, tracks people, and publishes for ``run_store`` either its
tracked frames on the store's ``cam`` stream (``--join``: the store worker joins every camera's frames into
shoppers) or its tracks' floor positions and wrists on the store's ``obs`` stream (``--no-join``: each track a
shopper). Default: join when the store has more than one enabled camera (a person two cameras see must be one
shopper, and only the store worker sees every camera), not with one (nothing to join; its tracks reach the loop
without the join's lag, ``vision.shoppers.LIVE_LAG_S``). Every camera of a store must run the same way (the store
worker refuses a ``--no-join`` camera's tracks while it joins others, and alerts the manager). Run one per
camera, on the machine nearest the camera if you like (it needs the database for the camera's row and Redis for the
stream)."""
from __future__ import annotations

import argparse
import signal

from django.core.management.base import BaseCommand, CommandError

from vision.models import Camera
from vision.tasks import camera_tracker_for
from vision.worker import CameraWorker
from vision.clips import FrameRing, clip_store
from vision.hand_crops import HandCropStore


class Command(BaseCommand):
    help = ("Run one camera's worker: detection, tracking, wrists, projection → the store loop (its frames joined "
            "across the store's cameras by the store worker, or with one camera its tracks as shoppers).")

    def add_arguments(self, parser):
        parser.add_argument("camera", help="STORE:NAME of a vision Camera row")
        parser.add_argument("--realtime", action="store_true",
                            help="play a video file at its frame rate, as a live camera would send it")
        parser.add_argument("--once", action="store_true", help="read a file once, then stop (default: reopen)")
        parser.add_argument("--session", default="live", help="track-key session (default live)")
        parser.add_argument("--join", action=argparse.BooleanOptionalAction, default=None,
                            help="publish tracked frames for the store worker to join across cameras (--join) or "
                                 "this camera's tracks as shoppers (--no-join); default: join when the store has "
                                 "more than one enabled camera. Run every camera of a store the same way")

    def handle(self, *args, camera: str, realtime: bool, once: bool, session: str, join: bool | None = None,
               **options):
        store_code, _, name = camera.partition(":")
        row = Camera.objects.select_related("store").filter(store__code=store_code, name=name, enabled=True).first()
        if row is None:
            raise CommandError(f"no enabled camera {name!r} in store {store_code!r} (give STORE:NAME)")
        from django.conf import settings

        cfg = settings.WALKOUT
        if join is None:
            join = Camera.objects.filter(store=row.store, enabled=True).count() > 1
        hands = HandCropStore(row.store.code) if cfg.get("PRODUCT_IMAGES", True) else None
        worker = CameraWorker(row, camera_tracker_for(row, session), realtime=realtime, clips=clip_store(),
                              hand_crops=hands,
                              ring=FrameRing(seconds=cfg.get("CLIP_RING_S", 30.0), fps=cfg.get("CLIP_FPS", 5.0),
                                             width_px=cfg.get("CLIP_WIDTH_PX", 640)),
                              pre_s=cfg.get("REVIEW_CLIP_PRE_S", 3.0), post_s=cfg.get("REVIEW_CLIP_POST_S", 3.0),
                              join=join)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop.set())
        self.stderr.write(f"camera {row}: reading {row.source}; publishing "
                          f"{'frames for the store worker to join' if join else 'its tracks as shoppers'}")
        stats = worker.run(once=once)
        self.stderr.write(f"camera {row}: stopped; frames {stats.frames}, skipped {stats.skipped}, black {stats.black}, "
                          f"frozen {stats.frozen}, reconnects {stats.reconnects}, records {stats.records}, "
                          f"sessions {', '.join(stats.sessions)}")
