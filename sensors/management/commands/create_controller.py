"""``python manage.py create_controller STORE NAME (--bins CODES | --gondola N) [--rate 60] [--clock-offset 0]``:
register a shelf controller and print its API key once."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors.ingest import weights_topic
from sensors.services import ControllerInputError, controller_create
from store.layout.models import Bin, Store


class Command(BaseCommand):
    help = ("Register a shelf controller for a store and print its API key (shown only now; the database keeps a "
            "SHA-256). The controller publishes to walkout/<store>/shelf/<name>/weights with the key in the "
            "payload, or POSTs to /sensors/api/weights/ with 'Authorization: Controller <key>'.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("store_code")
        parser.add_argument("name", help="letters, digits, - and _; the MQTT topic level")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--bins", help="comma-separated bin codes in the controller's column order")
        group.add_argument("--gondola", type=int, help="every bin of this gondola, by shelf then bin number")
        parser.add_argument("--rate", type=float, default=60.0, help="sample rate, Hz")
        parser.add_argument("--clock-offset", type=float, default=0.0, help="seconds added to its times")

    def handle(self, *args, store_code: str, name: str, bins: str | None, gondola: int | None, rate: float,
               clock_offset: float, **options) -> None:
        store = Store.objects.filter(code=store_code).first()
        if store is None:
            raise CommandError(f"no store with the code {store_code!r}")
        if gondola is not None:
            codes = list(Bin.objects.filter(store=store, shelf__gondola__number=gondola)
                         .order_by("shelf__number", "number").values_list("code", flat=True))
            if not codes:
                raise CommandError(f"store {store.code} has no bins on gondola {gondola}")
        else:
            codes = [c.strip() for c in bins.split(",") if c.strip()]
        try:
            controller, key = controller_create(store=store, name=name, bin_codes=codes, rate_hz=rate,
                                                clock_offset_s=clock_offset)
        except ControllerInputError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"controller {controller} ({len(codes)} bins at {rate:g} Hz) created; topic "
                          f"{weights_topic(store.code, name)}; its API key, shown only now:")
        self.stdout.write(key)
