"""``manage.py simulate --shoppers N --minutes M --seed S OUT``: write a simulated store session with known truth."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from carts.offline.simulation import simulate, write_simulation
from carts.offline.simulation_config import DIFFICULTIES, SimConfig
from carts.offline.simulation_store import load_store
from carts.shared_data import shared_hint
from store.recording import SHELF_FORMS, RecordingError, destination_prepare


class Command(BaseCommand):
    help = ("Simulate a store session in the real AutoCheckout store layout (../shared/datasets/autocheckout) and "
            "write it as a recording with truth.json and truth_events.json (docs/recording-format.md). Every error "
            "source is a knob of carts.offline.simulation_config.SimConfig; --set NAME=VALUE overrides one.")

    def add_arguments(self, parser):
        parser.add_argument("out", help="recording folder to write (new or empty, unless --force)")
        parser.add_argument("--force", action="store_true", help="clear OUT first when it holds an earlier recording")
        parser.add_argument("--shoppers", type=int, default=20,
                            help="shoppers (parties of 2–3 on one account included) who visit (default 20)")
        parser.add_argument("--minutes", type=float, default=5.0,
                            help="length of the simulated session, minutes (default 5)")
        parser.add_argument("--seed", type=int, default=0,
                            help="random seed: the same seed writes the same session, each seed another one, "
                                 "starting a day later (default 0)")
        parser.add_argument("--difficulty", choices=sorted(DIFFICULTIES), default="default")
        parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                            help="override a SimConfig knob, e.g. --set hand_noise_m=0.05 (repeatable)")
        parser.add_argument("--shelves", choices=SHELF_FORMS, default="npy",
                            help="form of the shelf samples: npy (the binary folder shelves/, default) or csv "
                                 "(shelves.csv, the interchange form: about 30 bytes a plate sample, gigabytes for a "
                                 "large store; docs/recording-format.md)")
        parser.add_argument("--data", default=None,
                            help="AutoCheckout data folder (default: <shared>/datasets/autocheckout)")

    def handle(self, *args, out, shoppers, minutes, seed, difficulty, set, data, force=False, shelves="npy",
               **options):
        try:
            destination_prepare(out, force=force)  # before the minutes of simulating
        except RecordingError as exc:
            raise CommandError(str(exc)) from None
        overrides = {}
        own = {"shoppers", "minutes", "seed", "difficulty"}  # options of their own (--shoppers …)
        fields = [f for f in SimConfig.__dataclass_fields__ if f not in own]
        for item in set:
            name, _, value = item.partition("=")
            if name in own:
                raise CommandError(f"--set {item!r}: {name} has an option of its own (--{name})")
            if name not in fields or not value:
                raise CommandError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}")
            kind = type(getattr(SimConfig(), name))
            try:
                overrides[name] = kind(value)
            except ValueError:
                noun = {"int": "an integer", "float": "a number"}.get(kind.__name__, f"a {kind.__name__}")
                raise CommandError(f"--set {item!r}: {value!r} is not {noun}") from None
        root = Path(data) if data else settings.SHARED_DIR / "datasets" / "autocheckout"
        try:
            config = SimConfig.at(difficulty, shoppers=shoppers, minutes=minutes, seed=seed, **overrides)
            store = load_store(root)
        except FileNotFoundError as exc:
            raise CommandError(str(exc) if data else f"{exc}; {shared_hint(settings.SHARED_DIR)}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        sim = simulate(store, config)
        try:
            path = write_simulation(sim, out, shelves_form=shelves)
        except OSError as exc:
            raise CommandError(f"{out}: cannot write the recording there ({exc.strerror})") from None
        scen: dict[str, int] = {}
        for labels in sim.events.scenarios:
            for label in labels:
                scen[label] = scen.get(label, 0) + 1
        self.stdout.write(f"wrote {path}: {len(sim.truth)} shopper(s), {len(sim.events)} shelf interaction(s), "
                          f"{len(sim.shelves[0].t)} samples × {sum(len(s.bin_codes) for s in sim.shelves)} "
                          f"bins, {len(sim.tracks)} keypoints")
        self.stdout.write("scenarios: " + ", ".join(f"{k} {v}" for k, v in sorted(scen.items())))
