"""``python manage.py create_reader STORE NAME --antenna PORT:shelf:BIN --antenna PORT:exit:LANE [--clock-offset 0]``:
register an RFID reader with its antennas and print its API key once."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors.rfid import reads_topic
from sensors.rfid_live import ReaderInputError, reader_create
from store.layout.models import Store


class Command(BaseCommand):
    help = ("Register an RFID reader and print its API key (shown only now). The reader publishes to "
            "walkout/<store>/rfid/<name>/reads with the key in the payload, or POSTs to /sensors/api/reads/ with "
            "'Authorization: Reader <key>'.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("store_code")
        parser.add_argument("name", help="letters, digits, - and _; the MQTT topic level")
        parser.add_argument("--antenna", action="append", required=True,
                            help="PORT:shelf:BIN_CODE or PORT:exit:LANE (repeat for each antenna)")
        parser.add_argument("--clock-offset", type=float, default=0.0, help="seconds added to its times")

    def handle(self, *args, store_code: str, name: str, antenna: list[str], clock_offset: float, **options) -> None:
        store = Store.objects.filter(code=store_code).first()
        if store is None:
            raise CommandError(f"no store with the code {store_code!r}")
        specs = []
        for text in antenna:
            port, _, rest = text.partition(":")
            kind, _, where = rest.partition(":")
            if not port.isdigit() or not where:
                raise CommandError(f"antenna {text!r} must be PORT:shelf:BIN or PORT:exit:LANE")
            specs.append({"port": int(port), "kind": kind, "bin" if kind == "shelf" else "lane": where})
        try:
            reader, key = reader_create(store=store, name=name, antennas=specs, clock_offset_s=clock_offset)
        except ReaderInputError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"reader {reader} ({len(specs)} antennas) created; topic {reads_topic(store.code, name)}; "
                          f"its API key, shown only now:")
        self.stdout.write(key)
