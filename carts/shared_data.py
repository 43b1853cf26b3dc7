"""The one-line hint a user gets when the shared data (``datasets/``, ``models/``) is not where a command looked:
commands and benches find it under ``settings.SHARED_DIR`` (``$WALKOUT_SHARED``, default ``../shared``), and a
bare "missing file" names the file but not how to point them at the right folder."""
from __future__ import annotations

from pathlib import Path


def shared_hint(shared_dir: str | Path) -> str:
    """The hint appended to a "missing" error for data looked up under ``shared_dir`` (the shared data folder):
    that WALKOUT_SHARED names the folder holding ``datasets/`` and ``models/``, and where it looked."""
    return f"set WALKOUT_SHARED to the folder that holds datasets/ and models/ (looked under {shared_dir})"
