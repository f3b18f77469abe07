"""How much work a study does: pretraining, probing, analysis and sheet sizes per budget.

* ``tiny``: a smoke test (a couple of minutes for two families on 2 CPU cores);
* ``small``: this CPU, about 5-10 minutes a family: the demo's CPU budget (SmallAlexNet width
  0.25, 32 px crops of 64 px images, 96 epochs of 1,024 images, SGD lr 0.2, one torch thread,
  channels-last) with 1,000 images per family for the image metrics and 256 for Inception;
* ``paper``: the paper's small-scale setting (Sec. 4, reference Sec. 8.1): 105,000 images at
  128 px, resized to 96 px, 64 px crops, 200 epochs, batch 768, the Alignment + Uniformity
  hyper-parameters (lr 0.12 x batch / 256), full-width SmallAlexNet; the linear probe's 100
  epochs; meant for a GPU;
* ``custom``: the ``small`` sizes as a base for explicit overrides (``--epochs``, ``--images``...).

Every budget takes explicit overrides; the resolved budget is stored in the study folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from noisevision.errors import UsageError

ALL_METRICS = ("colour", "spectrum", "coherence", "fid", "kid", "prc", "volume")


@dataclass(frozen=True)
class StudyBudget:
    """The sizes of every stage of a study (one resolved value per field)."""

    width: float = 0.25           # SmallAlexNet channel multiplier (1.0 = the reference)
    crop: int = 32                # pretraining crop = probe input side, px (64 in the paper)
    image_size: int = 64          # rendered image side, px (128 in the paper)
    pre_resize: int | None = None  # resize before cropping, px (paper text: 96; None: none)
    images: int = 1024            # fixed index set per family (105,000 in the paper)
    epochs: int = 96              # passes over it (200 in the paper)
    batch_size: int = 128         # pretraining batch (768 in the paper)
    lr: float | None = 0.2        # None: the recipe's 0.12 x batch / 256
    threads: int | None = 1       # CPU: torch intra-op threads (None: torch's default)
    channels_last: bool | None = True  # pretraining memory format (None: the trainer's)
    photo_train: int = 20         # photo-crops: train crops per photograph
    photo_val: int = 10           # photo-crops: val crops per photograph
    photo_limit: int | None = None  # photo-crops: only the first N photographs (None: all)
    fashion_train: int | None = 2000  # Fashion-MNIST: class-balanced train subset (None: all)
    fashion_val: int | None = 1000    # Fashion-MNIST: test subset (None: all)
    max_per_split: int = 20000    # folder tasks: images per split (the paper's VTAB cap)
    probe_epochs: int = 30        # linear head epochs on cached features (paper: 100)
    sample_images: int = 8        # contact sheet images per family
    analysis_n: int = 1000        # images per family / task for the image metrics
    analysis_n_inception: int = 256  # images per family / task for the Inception metrics
    metrics: tuple[str, ...] = ALL_METRICS

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        for name in ("crop", "image_size", "images", "epochs", "batch_size", "photo_train",
                     "photo_val", "max_per_split", "probe_epochs", "sample_images",
                     "analysis_n", "analysis_n_inception"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise UsageError(f"budget field {name} must be a positive integer, got {v!r}")
        if self.crop > (self.pre_resize or self.image_size):
            raise UsageError(f"--crop {self.crop} is larger than the "
                             f"{self.pre_resize or self.image_size} px images it is cut from "
                             "(allowed: --crop <= --resolution)")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be >= 2 (the uniformity loss compares pairs)")
        if self.batch_size > self.images:
            raise UsageError(f"an epoch of {self.images:,} images holds no full batch of "
                             f"{self.batch_size:,} (lower --batch-size or raise --images)")


BUDGETS: dict[str, StudyBudget] = {
    "tiny": StudyBudget(width=0.125, crop=32, image_size=64, images=64, epochs=1, batch_size=32,
                        lr=None, photo_train=8, photo_val=4, photo_limit=10, fashion_train=200,
                        fashion_val=100, probe_epochs=5, sample_images=4, analysis_n=32,
                        analysis_n_inception=16),
    "small": StudyBudget(),
    "paper": StudyBudget(width=1.0, crop=64, image_size=128, pre_resize=96, images=105_000,
                         epochs=200, batch_size=768, lr=None, threads=None, channels_last=None,
                         photo_train=40, photo_val=20, fashion_train=None, fashion_val=None,
                         probe_epochs=100, sample_images=16, analysis_n=2000,
                         analysis_n_inception=2000),
}
BUDGET_NAMES = (*BUDGETS, "custom")
# Explicit overrides: CLI flag -> budget field.
OVERRIDES = {"epochs": "epochs", "images": "images", "batch_size": "batch_size", "lr": "lr",
             "width": "width", "crop": "crop", "resolution": "image_size",
             "probe_epochs": "probe_epochs", "n": "analysis_n",
             "n_inception": "analysis_n_inception"}


def resolve_budget(name: str, overrides: dict | None = None) -> StudyBudget:
    """The named budget with the given overrides (None values ignored)."""
    if name not in BUDGET_NAMES:
        import difflib

        close = difflib.get_close_matches(name, BUDGET_NAMES, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"unknown budget {name!r} (allowed: {', '.join(BUDGET_NAMES)}){hint}")
    base = BUDGETS["small" if name == "custom" else name]
    changes = {OVERRIDES[k]: v for k, v in (overrides or {}).items()
               if k in OVERRIDES and v is not None}
    if "metrics" in (overrides or {}) and overrides["metrics"] is not None:
        changes["metrics"] = tuple(overrides["metrics"])
    if changes.get("image_size") and "crop" not in changes:
        changes["crop"] = min(base.crop, changes["image_size"])
    return dataclasses.replace(base, **changes)


# Pretraining pairs per second on the 2-core VM (BENCHMARKS.md): the `small` budget's 560-710
# (width 0.25, 32 px crops); 64 px crops ran 3.8x slower, width 0.5 a further 2.7x.
CPU_PAIRS_PER_S = 700.0


def cpu_pretrain_hours(b: StudyBudget, cores: int = 2) -> float:
    """A rough CPU estimate of one family's pretraining in hours (rate ~ width^-1.5 and
    crop^-2 from the measured runs, linear in the cores); a warning, never a limit."""
    rate = CPU_PAIRS_PER_S * (0.25 / b.width) ** 1.5 * (32 / b.crop) ** 2 * max(cores, 1) / 2
    return b.images * b.epochs / rate / 3600


def check_budget_fits(b: StudyBudget, device: torch.device) -> None:
    """The cached index set of one family must fit the device (80% of its free memory), as
    pretraining checks; refused before anything is written, naming the largest that fits."""
    from noisevision.safety import available_memory

    free = available_memory(device)
    per_image = 3 * b.image_size ** 2
    need = b.images * per_image
    if free is None or need <= 0.8 * free:
        return
    largest = int(0.8 * free // per_image)
    raise UsageError(f"the budget's cached set of {b.images:,} images at {b.image_size} px needs "
                     f"{need / 2**30:.1f} GiB, more than the {0.8 * free / 2**30:.1f} GiB this "
                     f"{device.type} can spare: the largest that fits is --images {largest:,} "
                     "(or a smaller --resolution, or --budget small)")
