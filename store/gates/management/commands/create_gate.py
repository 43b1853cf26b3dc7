"""``python manage.py create_gate STORE_CODE NAME``: register a gate device and print its API key once."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from store.gates.models import Gate
from store.gates.services import gate_create
from store.layout.models import Store


class Command(BaseCommand):
    help = (
        "Register a gate device (QR scanner or door tablet) for a store and print its API key. The key is shown "
        "only this once (the database keeps a SHA-256 hash); the device sends it as 'Authorization: Gate <key>'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("store_code", help="the store's code (Store.code)")
        parser.add_argument("name", help="the gate's name, unique in the store, e.g. 'door-1'")

    def handle(self, *args, store_code: str, name: str, **options) -> None:
        name = name.strip()
        if not name or len(name) > Gate._meta.get_field("name").max_length:
            raise CommandError("NAME must be 1 to 64 characters")
        store = Store.objects.filter(code=store_code).first()
        if store is None:
            known = ", ".join(Store.objects.order_by("code").values_list("code", flat=True)[:20]) or "none"
            raise CommandError(f"no store with the code {store_code!r} (known: {known})")
        if Gate.objects.filter(store=store, name=name).exists():
            raise CommandError(f"store {store.code} already has a gate named {name!r}; rotate its key in the admin")
        try:
            gate, api_key = gate_create(store=store, name=name)
        except IntegrityError:
            raise CommandError(f"store {store.code} already has a gate named {name!r}") from None
        self.stderr.write(f"gate {gate.pk} ({gate}) created; its API key, shown only now:")
        self.stdout.write(api_key)
