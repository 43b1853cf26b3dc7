"""Command-line argument types shared by the bench scripts."""
from __future__ import annotations

import argparse


def sizes_arg(text: str) -> list[int]:
    """Comma-separated positive integers (shopper counts: ``--shoppers 10,50``), as an argparse ``type``: a bad list
    is a usage error naming it, not a traceback."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, not {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"one or more positive whole numbers, not {text!r}")
    return out
