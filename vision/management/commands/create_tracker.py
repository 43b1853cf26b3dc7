"""``python manage.py create_tracker STORE_CODE NAME``: register an external tracker and print its API key once."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from store.layout.models import Store
from vision.services import TrackerInputError, tracker_create


class Command(BaseCommand):
    help = ("Register an external tracker (a store's own vision system sending shopper-track keypoints to "
            "POST /vision/api/observations/) and print its API key, shown only this once; the tracker sends it as "
            "'Authorization: Tracker <key>'.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("store_code", help="the store's code (Store.code)")
        parser.add_argument("name", help="the tracker's name, unique in the store (letters, digits, - and _)")

    def handle(self, *args, store_code: str, name: str, **options) -> None:
        store = Store.objects.filter(code=store_code).first()
        if store is None:
            raise CommandError(f"no store with the code {store_code!r}")
        try:
            tracker, key = tracker_create(store=store, name=name.strip())
        except TrackerInputError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"tracker {tracker.pk} ({tracker}) created; its API key, shown only now:")
        self.stdout.write(key)
