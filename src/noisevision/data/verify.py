"""Regenerate sampled images of a dataset from its manifest and compare them with the files."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from noisevision.data.encode import decode, encode, to_uint8
from noisevision.data.layout import image_path, scan_images
from noisevision.data.manifest import Manifest
from noisevision.device import one_cpu_thread, resolve_device
from noisevision.errors import UsageError
from noisevision.generators.base import create_generator

# JPEG files are compared after re-encoding the regenerated image with the manifest's quality and
# decoding both: identical libjpeg builds give identical pixels; these bounds absorb differences
# between libjpeg versions (a wrong image differs by tens of levels on average).
JPEG_MAX_MEAN_ABS = 1.0   # mean absolute difference, in 0..255 levels
JPEG_MAX_ABS = 16         # largest single-pixel difference


@dataclass
class VerifyResult:
    checked: list[int]
    mismatched: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)   # indices of the manifest's range absent
    damaged: list[int] = field(default_factory=list)   # present but truncated, empty or a link
    total_present: int = 0
    expected: int = 0                                   # the manifest's count

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing and not self.damaged


def verify_dataset(root: str | Path, sample: int = 16, *, seed: int = 0,
                   device: str | None = None, indices: list[int] | None = None) -> VerifyResult:
    """Check every index of the manifest's range is present and complete, and `sample` random
    present indices (or the given `indices`) against regeneration."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"dataset folder {root} does not exist")
    m = Manifest.read(root)
    if sample < 1:
        raise UsageError(f"--sample must be >= 1, got {sample}")
    gen = create_generator(m.generator, **m.config)
    present, damaged = scan_images(root, m.format)
    in_range = sorted(i for i in present if m.start <= i < m.stop)
    if indices is not None:
        outside = [i for i in indices if not m.start <= i < m.stop]
        if outside:
            raise UsageError(f"--indices {outside[0]} lies outside the dataset's range "
                             f"{m.start}..{m.stop - 1}")
    elif not in_range:
        raise UsageError(f"{root} holds no images yet (expected indices "
                         f"{m.start}..{m.stop - 1}); rerun the `generate` command")
    else:
        indices = sorted(random.Random(seed).sample(in_range, min(sample, len(in_range))))
    checked = [i for i in indices if i in present]
    missing = [i for i in range(m.start, m.stop) if i not in present and i not in damaged]
    dev = resolve_device(device or m.device)
    result = VerifyResult(checked=checked, missing=missing,
                          damaged=sorted(i for i in damaged if m.start <= i < m.stop),
                          total_present=len(in_range), expected=m.count)
    bs = (m.batch_size if dev.type == "cuda" and m.batch_size else gen.default_batch_size(dev))
    for b in range(0, len(checked), bs):
        part = checked[b:b + bs]
        with one_cpu_thread(dev):
            fresh = to_uint8(gen.images(torch.tensor(part, device=dev), m.seed, batch_size=bs,
                                        dtype=torch.uint8))
        for i, arr in zip(part, fresh, strict=True):
            if not _matches(image_path(root, i, m.format), arr, m):
                result.mismatched.append(i)
    return result


def _matches(path: Path, fresh: np.ndarray, m: Manifest) -> bool:
    try:
        stored = decode(path)
    except UsageError:
        return False
    if stored.shape != fresh.shape:
        return False
    if m.format == "png":
        return bool(np.array_equal(stored, fresh))
    import io

    from PIL import Image

    ref = np.asarray(Image.open(io.BytesIO(encode(fresh, "jpg", m.jpeg_quality or 95,
                                                  m.jpeg_subsampling or "4:4:4"))))
    diff = np.abs(stored.astype(np.int16) - ref.astype(np.int16))
    return bool(diff.mean() <= JPEG_MAX_MEAN_ABS and diff.max() <= JPEG_MAX_ABS)
