"""The core imports no framework and does nothing on import (issue #16).

import-linter (`make lint`) checks the import graph; this checks what importing actually does in a fresh
interpreter: no Django, Celery or ultralytics module loaded, no environment variable set, no folder created.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CORE = [
    "carts.chunks", "carts.fusion", "carts.fusion_activity", "carts.fusion_products", "carts.loop", "carts.reach_look",
    "carts.fusion_config", "carts.fusion_hands", "carts.fusion_options",
    "carts.loop_billing", "carts.loop_binding", "carts.loop_config", "carts.loop_shelves", "carts.loop_sink",
    "carts.loop_state", "carts.loop_window", "carts.offline.steps",
    "store.billing.senses", "store.billing.provider_interface", "store.checks",
    "sensors.weight", "sensors.rfid", "vision.identity", "vision.identity_frames", "vision.identity_kernels",
    "vision.geometry", "vision.association",
    "vision.activity", "vision.zones", "store.recording",
    "sensors.ingest", "sensors.ingest_stream", "carts.records", "carts.offline.rfid_simulation",
]
FRAMEWORKS = ("django", "celery", "kombu", "channels", "rest_framework", "ultralytics", "torch", "stripe", "redis")

PROBE = """
import json, os, sys
before = dict(os.environ)
import importlib
importlib.import_module(sys.argv[1])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))
changed = sorted(k for k in os.environ if before.get(k) != os.environ[k])
print(json.dumps({"loaded": loaded, "env": changed}))
"""


@pytest.mark.parametrize("module", CORE)
def test_importing_a_core_module_loads_no_framework_and_changes_nothing(module, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE, module, ",".join(FRAMEWORKS)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == [], f"importing {module} loaded {seen['loaded']}"
    assert seen["env"] == [], f"importing {module} set {seen['env']}"
    assert list(tmp_path.iterdir()) == [], f"importing {module} wrote {list(tmp_path.iterdir())}"


def test_the_celery_app_is_loaded_with_django():
    """Tasks sent from any Django process (web, store worker, commands) go through the project's app."""
    from celery import current_app

    assert current_app.main == "walkout"
    assert current_app.conf.task_always_eager is not None
