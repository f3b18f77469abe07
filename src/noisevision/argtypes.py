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
    """An argparse `type` accepting integers in [minimum, maximum]; the error names the range.
    `parse.accepts(value)` says whether a parsed value (a config's) lies in that range."""

    def accepts(value: object) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and value >= minimum
                and (maximum is None or value <= maximum))

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            value = None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    parse.accepts = accepts
    return parse


def bounded_float(what: str, low: float, high: float = math.inf, low_open: bool = True,
                  high_open: bool = False) -> Callable[[str], float]:
    """A finite float between low and high: (low, high] by default, `low_open`/`high_open`
    choose each end. `parse.accepts(value)` checks a parsed value (a config's) the same way."""

    def accepts(value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        value = float(value)
        return (math.isfinite(value) and (value > low if low_open else value >= low)
                and (value < high if high_open else value <= high))

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    parse.accepts = accepts
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
# SGD momentum: 0 is plain SGD, 1 or more never decays the velocity
momentum_float = bounded_float("a number in [0, 1)", 0.0, 1.0, low_open=False, high_open=True)
# an exponential moving average's momentum (MoCo's key encoder): 1 keeps the keys fixed
ema_float = bounded_float("a number in [0, 1]", 0.0, 1.0, low_open=False)

# by name, for configs that name their fields' types (ssl/train.PretrainConfig)
BY_NAME: dict[str, Callable[[str], object]] = {
    "count": count_int, "resolution": resolution_int, "positive": positive_int,
    "positive_float": positive_float, "nonnegative_float": nonnegative_float,
    "momentum": momentum_float, "ema": ema_float, "seed": seed_int,
    "loader_workers": loader_workers_int,
}
