"""``python manage.py run_camera STORE:NAME [--realtime]``: the camera worker of one camera (``vision.worker``), until
SIGTERM: reads its stream, tracks people, publishes their floor positions and wrists on the store's ``obs`` stream
for ``run_store``. Run one per camera, on the machine nearest the camera if you like (it needs the database for the
camera's row and Redis for the stream)."""
from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError

from vision.models import Camera
from vision.tasks import camera_tracker_for
from vision.worker import CameraWorker


class Command(BaseCommand):
    help = "Run one camera's worker: detection, tracking, wrists, projection → the store loop's observation stream."

    def add_arguments(self, parser):
        parser.add_argument("camera", help="STORE:NAME of a vision Camera row")
        parser.add_argument("--realtime", action="store_true",
                            help="play a video file at its frame rate, as a live camera would send it")
        parser.add_argument("--once", action="store_true", help="read a file once, then stop (default: reopen)")
        parser.add_argument("--session", default="live", help="track-key session (default live)")

    def handle(self, *args, camera: str, realtime: bool, once: bool, session: str, **options):
        store_code, _, name = camera.partition(":")
        row = Camera.objects.select_related("store").filter(store__code=store_code, name=name, enabled=True).first()
        if row is None:
            raise CommandError(f"no enabled camera {name!r} in store {store_code!r} (give STORE:NAME)")
        from django.conf import settings

        from vision.clips import FrameRing, clip_store

        from vision.hand_crops import HandCropStore

        cfg = settings.WALKOUT
        hands = HandCropStore(row.store.code) if cfg.get("PRODUCT_IMAGES", True) else None
        worker = CameraWorker(row, camera_tracker_for(row, session), realtime=realtime, clips=clip_store(),
                              hand_crops=hands,
                              ring=FrameRing(seconds=cfg.get("CLIP_RING_S", 30.0), fps=cfg.get("CLIP_FPS", 5.0),
                                             width_px=cfg.get("CLIP_WIDTH_PX", 640)),
                              pre_s=cfg.get("REVIEW_CLIP_PRE_S", 3.0), post_s=cfg.get("REVIEW_CLIP_POST_S", 3.0))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop.set())
        self.stderr.write(f"camera {row}: reading {row.source}")
        stats = worker.run(once=once)
        self.stderr.write(f"camera {row}: stopped; frames {stats.frames}, skipped {stats.skipped}, black {stats.black}, "
                          f"frozen {stats.frozen}, reconnects {stats.reconnects}, records {stats.records}, "
                          f"sessions {', '.join(stats.sessions)}")
