"""The paper's analysis (Baradad et al. 2021, section 5): properties of an image source that
predict how well an encoder trained on it transfers, measured against a reference set.

Every property is a registered `Metric`. A metric consumes a stream of batches from one source
through an accumulator (memory flat in the number of images), whose `state()` summarises the
source; `compare(state, reference_state)` turns a source's and the reference's states into
named numbers (a row of the analysis table). Inputs are batches of images (float32
(B, 3, H, W) in [0, 1], `input="images"`) or of Inception features ((B, 2048) float32,
`input="inception"`, computed once per source by stats.features and cached on disk).

    from noisevision.stats import get_metric, list_metrics
    m = get_metric("colour")
    acc = m.accumulator()
    for batch in batches: acc.update(batch)
    row = m.compare(acc.state(), reference_state)

Metric modules register themselves on import (like generator families); this package imports
them all.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from noisevision.registry import Registry

METRICS = Registry("metric")
INPUTS = ("images", "inception")


class Accumulator(Protocol):
    def update(self, batch: Any) -> None:
        """Add a batch: images (B, 3, H, W) float32 in [0, 1], or features (B, D)."""

    def state(self) -> dict[str, Any]:
        """The source's summary (tensors or plain values), the input of `compare`."""


@dataclass(frozen=True)
class Metric:
    name: str                   # registered name, e.g. "colour"
    input: str                  # "images" or "inception"
    description: str            # one line for `noisevision analyze --list`
    accumulator: Callable[[], Accumulator]
    compare: Callable[[dict[str, Any], dict[str, Any]], dict[str, float]]
    min_images: int = 2         # fewer images in a source or the reference: a UsageError
    columns: tuple[str, ...] = ()  # the names `compare` returns, in table order


def register_metric(metric: Metric) -> Metric:
    if metric.input not in INPUTS:
        raise ValueError(f"metric {metric.name!r}: input must be one of {INPUTS}")
    METRICS.register(metric.name, metric, metric.description)
    return metric


def get_metric(name: str) -> Metric:
    _load()
    return METRICS.get(name).factory


def list_metrics(pattern: str | None = None) -> list[str]:
    _load()
    return METRICS.names(pattern)


_LOADED = False


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
