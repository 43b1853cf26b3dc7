"""``make lint``'s import contracts hold on the tree and fail on a planted cycle (issue #16): the tree's packages
copied to a folder of their own, ``lint-imports`` passes there, then an upward import (``store`` → ``carts``, while
``carts`` imports ``store``) is planted and it fails, naming the import."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT)], cwd=folder, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)},
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_fail_on_a_planted_cycle(tmp_path):
    if not LINT.exists():
        pytest.skip(f"{LINT} is not installed (make install)")
    for package in ("carts", "sensors", "store", "vision"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = _lint(tmp_path)
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-2000:]
    hooks = tmp_path / "store" / "gates" / "hooks.py"
    hooks.write_text(hooks.read_text() + "\nfrom carts import selectors  # planted: store -> carts\n")
    planted = _lint(tmp_path)
    assert planted.returncode != 0
    assert "store.gates.hooks -> carts.selectors" in planted.stdout
