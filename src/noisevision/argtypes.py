"""argparse value types shared by the subcommands: integers with a lower bound."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded_int(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse `type` accepting integers >= minimum; the error names `what` was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


positive_int = bounded_int(1, "a positive integer")
seed_int = bounded_int(0, "a seed: an integer >= 0")
resolution_int = bounded_int(16, "a resolution: an integer >= 16")
