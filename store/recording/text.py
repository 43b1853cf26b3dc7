"""Text readers shared by a recording's files: JSON with a :class:`~store.recording.RecordingError` naming the file,
finite numbers, and CSV rows with their line numbers (a malformed row is reported, not fatal).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable


from .contract import RecordingError

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------------ reading
def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing file") from None
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise RecordingError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot be read ({exc.strerror})") from None


def _finite(value: Any, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RecordingError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise RecordingError(f"{where}: {value!r} is not finite")
    return x


def _rows(path: Path, columns: tuple[str, ...], problems: list[str]) -> Iterable[tuple[int, list[str]]]:
    """Yield (line number, fields) of a recording CSV file whose header must start with ``columns``.

    Recording CSVs hold plain fields (codes, numbers, e-mails) and never quote, so a line is split on commas as it
    is: a stray quote cannot swallow the lines after it and line numbers stay exact. A line that is not UTF-8 is
    skipped and reported in ``problems``. Raises RecordingError if the file is missing or its header is wrong.
    """
    try:
        f = path.open(encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot be read ({exc.strerror})") from None
    with f:
        header = [h.strip() for h in f.readline().rstrip("\r\n").split(",")]
        if tuple(header[: len(columns)]) != columns:
            raise RecordingError(f"{path}:1: header must be {','.join(columns)}, got {','.join(header)!r}")
        for line_no, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\ufffd" in line:
                problems.append(f"{path}:{line_no}: not UTF-8 text; row skipped")
                continue
            yield line_no, line.split(",")
