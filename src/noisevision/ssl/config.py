"""PretrainConfig: everything a pretraining run computes from, one field per `pretrain` flag
(one default, one help text, one range: noisevision.cli builds the parser from it), the recipes'
defaults (reference Sec. 8.1 / 8.3) and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from noisevision import argtypes
from noisevision.errors import check
from noisevision.paper import DATASET_SCALES
from noisevision.ssl.mixing import MIX_MODES, SHADERS21K_COUNT
from noisevision.ssl.sources import GENERATOR_MODES, parse_data_spec, source_image_side, source_kind

RECIPES = ("small", "moco")
# Per-recipe defaults for the fields left None in PretrainConfig (reference Sec. 8.1 / 8.3).
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "small": {"epochs": 200, "batch_size": 768, "lr_per_256": 0.12, "crop": 64,
              "image_size": DATASET_SCALES["small"]["resolution"],
              "images": DATASET_SCALES["small"]["n"]},
    "moco": {"epochs": 200, "batch_size": 256, "lr_per_256": 0.03, "crop": 224,
             "image_size": DATASET_SCALES["large"]["resolution"],
             "images": DATASET_SCALES["large"]["n"]},
}
SMALL_MILESTONES = (155 / 200, 170 / 200, 185 / 200)  # fractions of the run; x0.1 at each
# Fields that only one recipe reads: set for the other recipe they would be ignored in silence.
RECIPE_ONLY: dict[str, tuple[str, ...]] = {
    "small": ("width", "align_alpha", "unif_t", "pre_resize"),
    "moco": ("moco_dim", "moco_queue", "moco_momentum", "moco_temperature", "moco_mlp",
             "moco_bn"),
}


def _opt(default: Any, help: str, flag: str | None = None, **argparse_kwargs: Any) -> Any:
    """A config field that is also a `pretrain` flag: one default and one help text.

    `flag`: the option name ("--resolution"; default: the field name with dashes, "" for a
    field without a flag); `argparse_kwargs`: type, choices or action for argparse.
    """
    return field(default=default, metadata={"help": help, "flag": flag,
                                            "argparse": argparse_kwargs})


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a pretraining run computes from. Fields with a help text are `pretrain` flags
    (noisevision.cli builds the parser from them); None means the recipe's default."""

    data: str = _opt("", "SOURCE[:WEIGHT],... generator names and/or image folders (needed "
                     "unless --resume finds the run's config)")
    out: str = _opt("", "run folder", flag="")
    recipe: str = _opt("small", "small = SmallAlexNet + Alignment/Uniformity, moco = MoCo v2 "
                       "ResNet-50", choices=("small", "moco"))
    images: int | None = _opt(None, "images per epoch (generators: the index set size; "
                              "default 105,000 small / 1,300,000 moco; folders: their size)",
                              type="count")
    generator_mode: str = _opt("cached", "generators: cached = a fixed index set rendered "
                               "once; continuous = fresh indices every epoch",
                               flag="--generator-mode", choices=("cached", "continuous"))
    image_size: int | None = _opt(None, "source image side (default 128 small / 256 moco; "
                                  "folders: their side)", flag="--resolution",
                                  type="resolution")
    epochs: int | None = _opt(None, "epochs (default 200)", type="positive")
    batch_size: int | None = _opt(None, "global batch over all processes (default 768 small / "
                                  "256 moco)", type="positive")
    lr: float | None = _opt(None, "learning rate (default 0.12 small / 0.03 moco x batch / 256)",
                            type="positive_float")
    momentum: float = _opt(0.9, "SGD momentum", type="momentum")
    weight_decay: float = _opt(1e-4, "SGD weight decay", type="nonnegative_float")
    crop: int | None = _opt(None, "crop side, at most the image side (default 64 small / 224 "
                            "moco)", type="positive")
    pre_resize: int | None = _opt(None, "small: resize to this side before cropping (paper "
                                  "text: 96; reference: none)", type="resolution")
    mix: str = _opt("none", "mix each image with --mix-count - 1 others of its batch before the "
                    "two views are drawn (Shaders21k): mixup, cutmix or mixup+cutmix",
                    choices=MIX_MODES)
    mix_count: int = _opt(SHADERS21K_COUNT, "images per mix, the image itself included "
                          "(Shaders21k: 6)", flag="--mix-count", type="positive")
    width: float = _opt(1.0, "small: SmallAlexNet channel multiplier (1 = reference)",
                        type="positive_float")
    align_alpha: float = _opt(2.0, "small: alignment exponent", type="positive_float")
    unif_t: float = _opt(2.0, "small: uniformity temperature", type="positive_float")
    moco_dim: int = _opt(128, "moco: embedding size", type="positive")
    moco_queue: int = _opt(65536, "moco: queue length K", type="positive")
    moco_momentum: float = _opt(0.999, "moco: key-encoder EMA momentum", type="ema")
    moco_temperature: float = _opt(0.2, "moco: InfoNCE temperature", type="positive_float")
    moco_mlp: bool = _opt(True, "moco: 2-layer MLP head (MoCo v2)", flag="")
    moco_bn: str = _opt("shuffle", "moco: batch-norm of the keys",
                        choices=("shuffle", "sync", "none"))
    seed: int = _opt(0, "model init, data order and augmentation draws", type="seed")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _opt("auto", "auto = bf16 on CUDA, fp32 on CPU",
                          choices=("auto", "fp32", "bf16"))
    channels_last: bool | None = _opt(None, "channels-last activations (default: on for CUDA)",
                                      flag="")
    compile: bool = _opt(False, "torch.compile the model", action="store_true")
    workers: int = _opt(4, "loader processes for folders", type="loader_workers")
    render_batch: int | None = _opt(None, "generator render batch of the cached set", flag="")
    checkpoint_every: int | None = _opt(None, "steps between checkpoints (default: every "
                                        "epoch)", type="positive")
    log_every: int = _opt(20, "steps between log lines (and non-finite checks)",
                          type="positive")
    tensorboard: bool = _opt(False, "also write TensorBoard logs (needs tensorboard)",
                             action="store_true")
    quiet: bool = _opt(False, "no progress bar", action="store_true")

    def __post_init__(self) -> None:
        check(self.recipe in RECIPES, f"unknown recipe {self.recipe!r} "
              f"(allowed: {', '.join(RECIPES)})")
        check(self.generator_mode in GENERATOR_MODES, f"unknown generator mode "
              f"{self.generator_mode!r} (allowed: {', '.join(GENERATOR_MODES)})")
        check(self.precision in ("auto", "fp32", "bf16"),
              f"unknown precision {self.precision!r} (allowed: auto, fp32, bf16)")
        for f in dataclasses.fields(self):  # every flag's range, also for configs made in code
            kind = f.metadata.get("argparse", {}).get("type")  # or read from a run's config.json
            v = getattr(self, f.name)
            if kind is not None and v is not None:
                parse = argtypes.BY_NAME[kind]
                check(parse.accepts(v), f"{f.name} must be {parse.__name__}, got {v!r}")
        if self.recipe == "moco":
            batch = self.batch_size or RECIPE_DEFAULTS["moco"]["batch_size"]
            check(self.moco_queue >= batch, f"moco_queue ({self.moco_queue}) must hold at least "
                  f"one global batch ({batch}): each step enqueues every key of the batch")
        for name in self.inapplicable():
            f = next(f for f in dataclasses.fields(self) if f.name == name)
            flag = f.metadata.get("flag")
            flag = flag if flag else "--" + name.replace("_", "-")
            owner = next(r for r, names in RECIPE_ONLY.items() if name in names)
            check(False, f"{flag} ({name}={getattr(self, name)!r}) applies to --recipe {owner} "
                  f"only; this run's recipe is {self.recipe}: drop {flag}")
        check(self.mix in MIX_MODES, f"unknown mix {self.mix!r} (allowed: "
              f"{', '.join(MIX_MODES)})")
        check(isinstance(self.mix_count, int) and self.mix_count >= 2,
              f"mix_count must be an integer >= 2, got {self.mix_count!r}")

    def inapplicable(self) -> list[str]:
        """Fields of the other recipe set away from their defaults (they would be ignored)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return [name for recipe, names in RECIPE_ONLY.items() if recipe != self.recipe
                for name in names if getattr(self, name) != defaults[name]]

    def resolved(self) -> PretrainConfig:
        """Fill the recipe defaults in (the config written to RUN/config.json)."""
        d = RECIPE_DEFAULTS[self.recipe]
        image_size = self.image_size
        if image_size is None:
            image_size = _folder_only_size(self.data) or d["image_size"]
        batch = self.batch_size or d["batch_size"]
        return dataclasses.replace(
            self, epochs=self.epochs or d["epochs"], batch_size=batch,
            lr=self.lr or d["lr_per_256"] * batch / 256, crop=self.crop or d["crop"],
            image_size=image_size, images=self.images if self.images or not has_generator(
                self.data) else d["images"])


def has_generator(spec: str) -> bool:
    """Whether --data names at least one generator."""
    return any(source_kind(s.source) == "generator" for s in parse_data_spec(spec))


def _folder_only_size(spec: str) -> int | None:
    """Side of the first folder's images when --data is folders only (so they are not
    resized); a shards folder's from its manifest."""
    if has_generator(spec):
        return None
    return source_image_side(parse_data_spec(spec)[0].source)


def learning_rate(cfg: PretrainConfig, epoch: int) -> float:
    """The schedule, a pure function of the epoch (nothing to save beyond the config)."""
    if cfg.recipe == "small":
        drops = sum(epoch >= round(f * cfg.epochs) for f in SMALL_MILESTONES)
        return cfg.lr * 0.1 ** drops
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
