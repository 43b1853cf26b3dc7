"""``python manage.py ingest_mqtt [--url mqtt://127.0.0.1:1883] [--max-seconds S] [--max-messages N]``: the
long-running ingestion worker (one per deployment): subscribes to every shelf controller's topic and feeds the
store pipelines (``sensors.mqtt.MqttIngestWorker``). Stops on SIGINT/SIGTERM or the limits given."""
from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors.ingest import WEIGHTS_SUBSCRIPTION
from sensors.live import ShelfIngestor, walkout_setting
from sensors.storage import RawSampleStore
from sensors.mqtt import MqttIngestWorker


class Command(BaseCommand):
    help = "Run the MQTT ingestion worker for shelf controllers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="", help="broker URL (default settings.MQTT_URL)")
        parser.add_argument("--session", default=None, help="ShelfEvent.session (default WALKOUT SENSORS_SESSION)")
        parser.add_argument("--subscription", default=WEIGHTS_SUBSCRIPTION,
                            help="topic filter (default every store: walkout/+/shelf/+/weights)")
        parser.add_argument("--raw-dir", default="", help="raw-sample folder (default WALKOUT RAW_SAMPLES_DIR)")
        parser.add_argument("--max-seconds", type=float, default=None)
        parser.add_argument("--max-messages", type=int, default=None)
        parser.add_argument("--finish", action="store_true",
                            help="at the end, flush the detectors and settle (bounded runs, tests; not live)")

    def handle(self, *args, url: str, session: str | None, subscription: str, raw_dir: str,
               max_seconds: float | None, max_messages: int | None, finish: bool, **options) -> None:
        url = url or getattr(settings, "MQTT_URL", "")
        if not url:
            raise CommandError("no broker: set MQTT_URL or pass --url mqtt://host:1883")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        raw = RawSampleStore(raw_dir, retention_h=float(walkout_setting("RAW_RETENTION_H"))) if raw_dir else "default"
        ingestor = ShelfIngestor(session=session, raw=raw)
        worker = MqttIngestWorker(url=url, ingestor=ingestor, subscription=subscription)
        self.stderr.write(f"ingest_mqtt: {url}, subscription {worker.subscription}, session {ingestor.session}")
        try:
            stats = worker.run(stop=stop, max_seconds=max_seconds, max_messages=max_messages)
        except ConnectionError as exc:
            raise CommandError(str(exc)) from None
        if finish:
            ingestor.close(finish=True)
        self.stdout.write(f"messages {stats.handled} refused {stats.refused} samples {ingestor.stats.samples} "
                          f"events {ingestor.stats.events} problems {sum(ingestor.stats.problems.values())}")
