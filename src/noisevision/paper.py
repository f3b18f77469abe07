"""The paper's fixed numbers, defined once (Baradad et al. 2021, Sec. 4; reference-implementation.md
Sec. 1): its datasets are 105,000 images at 128 px (small scale, the AlexNet experiments) and
1,300,000 images at 256 px (large scale, ImageNet-sized, the ResNet-50 experiments)."""

from __future__ import annotations

DATASET_SCALES: dict[str, dict[str, int]] = {
    "small": {"n": 105_000, "resolution": 128},
    "large": {"n": 1_300_000, "resolution": 256},
}
