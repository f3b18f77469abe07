"""The paper's fixed numbers, defined once (Baradad et al. 2021, Sec. 4; reference-implementation.md
Sec. 1): its datasets are 105,000 images at 128 px (small scale, the AlexNet experiments) and
1,300,000 images at 256 px (large scale, ImageNet-sized, the ResNet-50 experiments)."""

from __future__ import annotations

DATASET_SCALES: dict[str, dict[str, int]] = {
    "small": {"n": 105_000, "resolution": 128},
    "large": {"n": 1_300_000, "resolution": 256},
}


def released_encoding(generator: str) -> dict[str, object]:
    """How the paper's released datasets of `generator` are encoded (reference-implementation.md
    sec. 1): JPEG with 4:2:0 chroma everywhere (the writers' defaults: MATLAB imwrite, OpenCV
    imwrite, PIL save), quality 75 for the statistical models (MATLAB's default), 95 otherwise."""
    quality = 75 if generator.startswith("stat_") else 95
    return {"format": "jpg", "jpeg_quality": quality, "jpeg_subsampling": "4:2:0"}
