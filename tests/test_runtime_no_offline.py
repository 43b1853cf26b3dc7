"""The running store does not load the offline tooling: the pages, consumers and store worker import neither
``carts.offline`` nor its simulators; the demo and throwaway accounts they need are the accounts app's
(``store.accounts.demo``). Only what a manager starts from the dashboard (a recording's live replay) loads it, when
started."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUNTIME = ["carts.dashboard", "carts.selectors_dashboard", "carts.selectors_visit", "carts.live", "carts.views",
           "carts.consumers", "carts.runtime", "carts.runtime_publish", "carts.pipeline", "carts.tasks", "store.urls", "store.asgi"]

PROBE = """
import json, sys
import django
django.setup()
import importlib
for name in sys.argv[1].split(","):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("carts.offline"))))
"""


def test_the_running_store_loads_no_offline_module(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": "store.settings"}
    out = subprocess.run([sys.executable, "-c", PROBE, ",".join(RUNTIME)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
