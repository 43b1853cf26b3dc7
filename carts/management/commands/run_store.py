"""``python manage.py run_store STORE_CODE``: the store worker, the one consumer of a store's streams.

Runs :class:`carts.runtime.StoreWorker` until SIGTERM/SIGINT: waits for the store's lease (a second instance
stands by and takes over within the lease time when the active one dies), resumes from the last checkpoint,
feeds shelf blocks, observations and gate scans to the store loop, and writes shelf events, cart events, review
items and checkouts to the database. Needs ``WALKOUT_STORE_LOOP=on`` in the producers (the production default).
In the embedded profile the streams live in one process's memory (``carts.bus.MemoryBus``): it warns that nothing
reaches it from other processes (the embedded server runs its own worker thread instead).
"""
from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from carts.runtime import StoreWorker
from store.layout.models import Store

#: Said at start in the embedded profile, whose bus is in process memory: a run_store there reads only what it
#: publishes itself (nothing: it has no devices), which looks like a worker that runs and does nothing.
EMBEDDED_WARNING = ("warning: embedded profile: the store's streams are in this process's memory, so nothing "
                    "another process publishes (runserver, emulate_store, the ingestors) reaches this worker; "
                    "WALKOUT_PROFILE=production (with REDIS_URL) puts them on Redis Streams")


class Command(BaseCommand):
    help = "Run the live store loop of one store (until SIGTERM); one active per store, others stand by."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("store_code", help="the store's code (Store.code)")
        parser.add_argument("--checkpoint-every", type=float, default=2.0, metavar="S",
                            help="wall seconds between checkpoints (default 2; longer when one takes over 3 %% of that)")
        parser.add_argument("--lease", type=float, default=5.0, metavar="S",
                            help="lease time to live: a standby takes over this long after the active one died")
        parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long (tests)")

    def handle(self, *args, store_code: str, checkpoint_every: float, lease: float, max_seconds: float | None,
               **options) -> None:
        if not Store.objects.filter(code=store_code).exists():
            raise CommandError(f"no store with the code {store_code!r}")
        if not (checkpoint_every > 0 and lease > 0):
            raise CommandError("--checkpoint-every and --lease must be > 0")
        if not getattr(settings, "PRODUCTION", False):  # carts.bus: MemoryBus, this process's own
            self.stderr.write(EMBEDDED_WARNING)
        worker = StoreWorker(store_code, checkpoint_every_s=checkpoint_every, lease_s=lease)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop.set())
        self.stderr.write(f"store {store_code}: worker {worker.owner} waiting for the lease")
        stats = worker.run(max_seconds=max_seconds, background_pushes=True)  # its pushes off its step
        self.stderr.write(f"store {store_code}: stopped; records {stats.records}, bad {stats.bad_records}, "
                          f"checkpoints {stats.checkpoints}")
        images = getattr(worker.pipeline.sink, "images", None) if worker.pipeline is not None else None
        if images is not None:  # the product in the hand: how often it spoke, and why not otherwise
            self.stderr.write(f"store {store_code}: product image evidence: "
                              + (", ".join(f"{k} {v}" for k, v in images.counts.most_common()) or "no take asked"))
