"""``manage.py load_store REC``: load a store's layout, catalogue and planogram from a recording's store.json."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from store.inventory.services import catalogue_load
from store.layout.models import Bin
from store.layout.services import layout_load
from store.recording import STORE, RecordingError, read_store


class Command(BaseCommand):
    help = ("Create or update a store (gondolas, shelves, bins in metres; products; facings) from a store.json, "
            "or from the store.json of a recording folder. See docs/recording-format.md.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="a recording folder or a store.json file")

    def handle(self, *args, path, **options):
        p = Path(path)
        p = p / STORE if p.is_dir() else p
        try:
            data = read_store(p)
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        store = layout_load(data=data)
        n = catalogue_load(store=store, products=data["products"], facings=data["facings"])
        self.stdout.write(f"store {store.code}: {Bin.objects.filter(store=store).count()} bins, {n} products, "
                          f"{len(data['facings'])} facings")
