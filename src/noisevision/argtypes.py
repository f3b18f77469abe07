"""argparse value types shared by the subcommands: integers and numbers in documented ranges.

The ranges are the library's own: seeds are 64-bit (noisevision.rng.seed_words), image indices
lie in [0, 2**40) (noisevision.rng.MAX_INDEX), resolutions in [16, MAX_RESOLUTION].
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_SEED = 2**64 - 1
MAX_INDEX = 2**40          # image indices lie in [0, MAX_INDEX) (the RNG's index space)
MAX_RESOLUTION = 4096      # image side; larger images do not fit a batch in memory
MAX_COUNT = MAX_INDEX      # images of one dataset or run


def bounded_int(minimum: int, what: str, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse `type` accepting integers in [minimum, maximum]; the error names the range."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def bounded_float(what: str, low: float, high: float = math.inf,
                  low_open: bool = True) -> Callable[[str], float]:
    """A finite float in (low, high] (or [low, high] when not low_open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and value <= high and (value > low if low_open
                                                          else value >= low)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


positive_int = bounded_int(1, "a positive integer")
nonnegative_int = bounded_int(0, "an integer >= 0")
count_int = bounded_int(1, "a positive integer (at most 2**40)", MAX_COUNT)
seed_int = bounded_int(0, "a seed: an integer in 0..2**64-1", MAX_SEED)
index_int = bounded_int(0, f"an image index: an integer in 0..{MAX_INDEX - 1}", MAX_INDEX - 1)
resolution_int = bounded_int(16, f"a resolution: an integer >= 16 and <= {MAX_RESOLUTION}",
                             MAX_RESOLUTION)
quality_int = bounded_int(1, "a JPEG quality: an integer in 1..100", 100)
workers_int = bounded_int(1, "a number of processes: an integer in 1..256", 256)
loader_workers_int = bounded_int(0, "a number of loader processes: an integer in 0..256", 256)
positive_float = bounded_float("a finite number > 0", 0.0)
nonnegative_float = bounded_float("a finite number >= 0", 0.0, low_open=False)
