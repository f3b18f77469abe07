"""The generator contract, the generator registry and the factory.

A generator turns image indices into images: ``gen.generate(indices, seed)`` returns float32
``(B, 3, H, W)`` in [0, 1]. Image i is a pure function of (config, seed, i): the same bytes on one
device whatever the batch size, the other members of the batch, or the order of generation.
Families implement ``render(indices, seed)`` and draw every random number through
:class:`noisevision.rng.ImageRandom` keyed by the image indices.

>>> from noisevision import create_generator
>>> gen = create_generator("dead_leaves_squares", resolution=32)
>>> images = gen.generate([0, 1, 2], seed=0)
>>> tuple(images.shape), images.dtype
((3, 3, 32, 32), torch.float32)
>>> bool(images.equal(torch.cat([gen.generate([i], seed=0) for i in (0, 1, 2)])))
True

Families register named presets, each only setting config fields (like timm's variant
functions); this is how dead_leaves.py registers one of its presets:

>>> from noisevision.generators.dead_leaves import DeadLeaves
>>> register_generator("doc_squares", DeadLeaves, "dead leaves, axis-aligned squares",
...                    shapes=("square",))
>>> create_generator("doc_squares", resolution=32).config.shapes
('square',)
>>> GENERATORS.unregister("doc_squares")
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch

from noisevision.device import one_cpu_thread, resolve_device
from noisevision.errors import ConfigError, UsageError, check
from noisevision.registry import Registry
from noisevision.rng import as_index_tensor

GENERATORS = Registry("generator")


def check_resolution(resolution: Any, allowed: Sequence[int] | None = None) -> None:
    """Every family's resolution check: an integer >= 16 (and in `allowed` when given)."""
    check(isinstance(resolution, int) and not isinstance(resolution, bool) and resolution >= 16,
          f"resolution must be an integer >= 16, got {resolution!r}")
    if allowed is not None:
        check(resolution in allowed,
              f"resolution {resolution} is not supported by this generator "
              f"(allowed: {', '.join(map(str, allowed))})")


class Generator(abc.ABC):
    """Base class of every image generator. Subclasses set `config_cls` and implement `render`.

    The contract a family implements:

    * `config_cls`: a frozen dataclass of options that validates itself;
    * `render(indices, seed)`: float32 images (B, 3, H, W) in [0, 1] for int64 `indices` on the
      target device, image i a pure function of (config, seed, i);
    * `default_batch_size(device)` (optional): a batch that keeps memory modest there;
    * `cheap_settings` (optional): config fields that make the family fast enough to render a
      handful of images for tests and contact sheets in seconds (e.g. a small texture pool or a
      narrow network), applied by the contract test, `noisevision demo` and `preview --cheap`;
    * `thread_sensitive` (optional): True for a family whose CPU kernels round differently with
      the number of torch intra-op threads (FFTs, iterated projections, optimisation): `images`
      renders it with one thread on the CPU, so that image i is the same bytes on any machine
      (the contract test compares 1, 2 and 3 threads for every family).

    Callers never call `render` directly: `images` is the one entry point (batches, the CUDA
    fixed-shape padding, the [0, 1] clamp, float or uint8 output).
    """

    config_cls: ClassVar[type]
    cheap_settings: ClassVar[dict[str, Any]] = {}
    thread_sensitive: ClassVar[bool] = False

    def __init__(self, config: Any, name: str | None = None) -> None:
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} needs a {self.config_cls.__name__}")
        self.config = config
        self.name = name or type(self).__name__

    @property
    def resolution(self) -> int:
        return int(self.config.resolution)

    def default_batch_size(self, device: torch.device) -> int:
        """A batch size that keeps memory modest on this device (families may override)."""
        return 256 if device.type == "cuda" else 32

    @abc.abstractmethod
    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        """Images for int64 `indices` (on the target device) -> float32 (B, 3, H, W) in [0, 1]."""

    @torch.no_grad()
    def images(self, indices: Iterable[int] | torch.Tensor | int, seed: int = 0, *,
               device: str | torch.device | None = None, batch_size: int | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """THE render entry point: images of `indices` (an int n means range(n)), (N, 3, H, W).

        Renders in batches of `batch_size` (default: `default_batch_size`) through
        `render_batch` (on CUDA a short batch is padded to the batch shape), clamps to [0, 1] and
        returns float32, or with dtype=torch.uint8 the values rounded to 0..255 (what datasets
        store and training caches hold). `device`: where to render (default: the device of an
        index tensor, else the CPU).
        """
        if dtype not in (torch.float32, torch.uint8):
            raise ValueError(f"images(): dtype must be torch.float32 or torch.uint8, got {dtype}")
        if device is None:
            dev = indices.device if isinstance(indices, torch.Tensor) else torch.device("cpu")
        else:
            dev = resolve_device(device)
        if isinstance(indices, int):
            indices = range(indices)
        idx = as_index_tensor(list(indices) if not isinstance(indices, torch.Tensor) else indices,
                              device=dev)
        bs = batch_size or self.default_batch_size(dev)
        with one_cpu_thread(dev) if self.thread_sensitive else contextlib.nullcontext():
            if 0 < idx.numel() <= bs:  # one batch (training, the writer): no copy into `out`
                x = self.render_batch(idx, seed, bs).clamp_(0.0, 1.0)
                return x.float() if dtype == torch.float32 else to_uint8_tensor(x)
            r = self.resolution
            out = torch.empty(idx.numel(), 3, r, r, dtype=dtype, device=dev)
            for i in range(0, idx.numel(), bs):
                x = self.render_batch(idx[i:i + bs], seed, bs).clamp_(0.0, 1.0)
                out[i:i + bs] = x if dtype == torch.float32 else to_uint8_tensor(x)
            return out

    def generate(self, indices: Iterable[int] | torch.Tensor | int, seed: int = 0,
                 device: str | torch.device = "cpu",
                 batch_size: int | None = None) -> torch.Tensor:
        """`images(indices, seed, device=device, batch_size=batch_size)`: float32 in [0, 1]."""
        return self.images(indices, seed, device=device, batch_size=batch_size)

    def render_batch(self, indices: torch.Tensor, seed: int, batch_size: int) -> torch.Tensor:
        """`render(indices)` for up to `batch_size` indices; on CUDA always in that shape.

        On CPU every family renders an image bit-identically in any batch. GPU libraries
        (cuFFT, cuBLAS, cuDNN) choose kernels by problem size, so on CUDA a short batch is padded
        to `batch_size` by repeating its last index: an image's bytes then depend on the batch
        size only, never on which other images share the batch or on the batch's length
        (datasets record the batch size; `verify` renders with it).
        """
        n = indices.numel()
        if not fixed_shapes(indices.device) or n >= batch_size or n == 0:
            return self.render(indices, seed)
        pad = indices[-1:].expand(batch_size - n)
        return self.render(torch.cat([indices, pad]), seed)[:n]

    def pinned(self, device: torch.device) -> Generator:
        """This generator with every option whose "auto" depends on the machine (not only on
        the device type) fixed to what this machine chooses; a dataset's manifest records the
        pinned config, so another machine renders its images with the same arithmetic. Families
        without such options return self."""
        return self

    def pinned_as(self, config: dict[str, Any]) -> Generator:
        """This generator with its machine-dependent "auto" options set as a stored config
        (a dataset's manifest) has them: continuing a dataset keeps its arithmetic, on any
        machine. Families without such options return self."""
        return self

    def describe(self) -> dict[str, Any]:
        """Name, family and the full resolved config (for manifests and run folders)."""
        return {"name": self.name, "family": type(self).__name__,
                "config": dataclasses.asdict(self.config)}


def to_uint8_tensor(images: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] -> uint8 0..255, rounded to nearest (the stored value of a pixel)."""
    return images.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)


def cheap_generator(name: str, **overrides: Any) -> Generator:
    """`create_generator(name)` with the family's `cheap_settings` (then `overrides`) applied."""
    _ensure_families_loaded()
    generator_cls, _ = GENERATORS.get(name).factory
    return create_generator(name, **{**generator_cls.cheap_settings, **overrides})


def fixed_shapes(device: torch.device) -> bool:
    """Whether rendering on `device` keeps every batch in its batch-size shape (CUDA)."""
    return device.type == "cuda"


def register_generator(name: str, generator_cls: type[Generator], description: str,
                       **preset: Any) -> None:
    """Register a named preset of a family: `preset` sets fields of its config dataclass."""
    fields = {f.name for f in dataclasses.fields(generator_cls.config_cls)}
    bad = set(preset) - fields
    if bad:
        raise ValueError(f"preset {name!r} sets unknown fields {sorted(bad)}")
    GENERATORS.register(name, (generator_cls, dict(preset)), description)


def config_fields(name: str) -> list[str]:
    generator_cls, _ = GENERATORS.get(name).factory
    return [f.name for f in dataclasses.fields(generator_cls.config_cls)]


def create_generator(name: str, **overrides: Any) -> Generator:
    """Build the registered generator `name`; overrides that are None are ignored.

    Raises UsageError for an unknown name (with close suggestions) or an unknown field, and
    ConfigError (a UsageError) for a bad value.
    """
    _ensure_families_loaded()
    generator_cls, preset = GENERATORS.get(name).factory
    fields = {f.name for f in dataclasses.fields(generator_cls.config_cls)}
    given = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(given) - fields)
    if bad:
        raise UsageError(f"generator {name!r} has no option {', '.join(bad)} "
                         f"(allowed: {', '.join(sorted(fields))})")
    for f in dataclasses.fields(generator_cls.config_cls):
        if f.name in given:
            check_option_type(name, f.name, f.type, given[f.name])
    try:
        config = generator_cls.config_cls(**{**preset, **given})
    except TypeError as exc:  # wrong types that dataclass construction itself rejects
        raise ConfigError(f"bad options for {name!r}: {exc}") from None
    except (ValueError, OverflowError) as exc:
        raise ConfigError(f"bad options for {name!r}: {exc}") from None
    return generator_cls(config, name=name)


def check_option_type(generator: str, option: str, annotation: Any, value: Any) -> None:
    """ConfigError unless `value` has the type the config field declares (int, float, bool,
    str, tuple), with finite numbers; options of other annotations are checked by the family."""
    import math

    kind = str(annotation).split("[")[0].split("|")[0].strip()

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": number,
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "tuple": lambda v: isinstance(v, (list, tuple)) and all(
            number(x) or isinstance(x, str) for x in v),
    }.get(kind)
    if ok is not None and not ok(value):
        expected = {"int": "an integer", "float": "a finite number", "bool": "true or false",
                    "str": "a string", "tuple": "a list such as [0.5, 2]"}[kind]
        raise ConfigError(f"option {option} of {generator!r} must be {expected}, got "
                          f"{value!r}")


def generator_from_description(desc: dict[str, Any]) -> Generator:
    """Rebuild a generator from `Generator.describe()` output (as stored in manifests).

    A config field added after the description was written takes the value its family's config
    class lists in `LEGACY_DEFAULTS` (what the older code did), not today's default, so a
    dataset written before a default changed still regenerates (and verifies) byte for byte.
    """
    return create_generator(desc["name"], **complete_config(desc["name"], desc["config"]))


def complete_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A stored config of generator `name` with the fields added since it was written set to
    the values its family's config class lists in `LEGACY_DEFAULTS` (what the older code did).
    An unknown name returns the config unchanged (creating the generator reports it)."""
    _ensure_families_loaded()
    if name not in GENERATORS.names():
        return dict(config)
    generator_cls, _ = GENERATORS.get(name).factory
    legacy = getattr(generator_cls.config_cls, "LEGACY_DEFAULTS", {})
    return {**legacy, **config}


def list_generators(pattern: str | None = None) -> list[str]:
    """Registered generator names, optionally filtered by a glob pattern like 'dead_leaves*'."""
    _ensure_families_loaded()
    return GENERATORS.names(pattern)


def describe_generator(name: str) -> str:
    _ensure_families_loaded()
    return GENERATORS.get(name).description


def _ensure_families_loaded() -> None:
    import noisevision.generators  # noqa: F401  (importing the package registers every family)
