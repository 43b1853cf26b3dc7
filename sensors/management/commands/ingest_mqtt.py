"""``python manage.py ingest_mqtt [--url mqtt://127.0.0.1:1883] [--client-id ID] [--max-seconds S] [--max-messages N]``:
the long-running ingestion worker (one per subscription): subscribes to every shelf controller's topic (and every RFID
reader's, ``walkout/+/rfid/+/reads``, unless ``--no-rfid``) and feeds the
store pipelines (``sensors.mqtt.MqttIngestWorker``) under a persistent MQTT session, so what controllers send while it
is down or restarting is delivered when it comes back. Stops on SIGINT/SIGTERM or the limits given."""
from __future__ import annotations

import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors.ingest import WEIGHTS_SUBSCRIPTION
from sensors.live import ShelfIngestor, walkout_setting
from sensors.rfid_live import RfidIngestor
from sensors.storage import RawSampleStore
from sensors.mqtt import SESSION_EXPIRY_S, MqttIngestWorker


class Command(BaseCommand):
    help = "Run the MQTT ingestion worker for shelf controllers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="", help="broker URL (default settings.MQTT_URL)")
        parser.add_argument("--session", default=None, help="ShelfEvent.session (default WALKOUT SENSORS_SESSION)")
        parser.add_argument("--subscription", default=WEIGHTS_SUBSCRIPTION,
                            help="topic filter (default every store: walkout/+/shelf/+/weights)")
        parser.add_argument("--raw-dir", default="", help="raw-sample folder (default WALKOUT RAW_SAMPLES_DIR)")
        parser.add_argument("--client-id", default="", help="MQTT client id naming the persistent session "
                            "(default walkout-ingest-<hash of the subscription>; keep it across restarts)")
        parser.add_argument("--session-expiry", type=int, default=SESSION_EXPIRY_S,
                            help=f"seconds the broker keeps the session while the worker is away "
                                 f"(default {SESSION_EXPIRY_S})")
        parser.add_argument("--progress", type=float, default=0.0, metavar="S",
                            help="print a line of totals to stdout every S seconds (received, handled, refused, "
                                 "errors, events, CPU seconds)")
        parser.add_argument("--max-seconds", type=float, default=None)
        parser.add_argument("--max-messages", type=int, default=None)
        parser.add_argument("--no-rfid", action="store_true",
                            help="do not subscribe to the RFID readers' topics (walkout/+/rfid/+/reads)")
        parser.add_argument("--finish", action="store_true",
                            help="at the end, flush the detectors and settle (bounded runs, tests; not live)")

    def handle(self, *args, url: str, session: str | None, subscription: str, raw_dir: str, client_id: str,
               session_expiry: int, progress: float, max_seconds: float | None, max_messages: int | None,
               finish: bool, no_rfid: bool = False, **options) -> None:
        url = url or getattr(settings, "MQTT_URL", "")
        if not url:
            raise CommandError("no broker: set MQTT_URL or pass --url mqtt://host:1883")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        raw = (RawSampleStore(raw_dir, retention_h=float(walkout_setting("RAW_RETENTION_H")), background=True)
               if raw_dir else "default")
        ingestor = ShelfIngestor(session=session, raw=raw, batch_s=1.0)
        worker = MqttIngestWorker(url=url, ingestor=ingestor, subscription=subscription, client_id=client_id or None,
                                  session_expiry_s=session_expiry, rfid=None if no_rfid else RfidIngestor())
        self.stderr.write(f"ingest_mqtt: {url}, subscription {worker.subscription}, client id {worker.client_id}, "
                          f"session {ingestor.session}")
        try:
            def line(st) -> None:
                self.stdout.write(f"progress t {time.time():.3f} received {st.received} handled {st.handled} "
                                  f"refused {st.refused} errors {st.errors} events {st.events} cpu_s {st.cpu_s:.3f} "
                                  f"busy_s {st.busy_s:.3f}")
                self.stdout.flush()

            stats = worker.run(stop=stop, max_seconds=max_seconds, max_messages=max_messages,
                               progress=line if progress > 0 else None, progress_s=progress or 1.0)
        except ConnectionError as exc:
            raise CommandError(str(exc)) from None
        if finish:
            ingestor.close(finish=True)
        self.stdout.write(f"messages {stats.handled} refused {stats.refused} samples {ingestor.stats.samples} "
                          f"events {ingestor.stats.events} problems {sum(ingestor.stats.problems.values())}")
