"""Regenerate sampled images of a dataset from its manifest and compare them with the files."""

from __future__ import annotations

import io
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
    # shards layout: one line per damaged shard, "shard-000003.tar (indices a..b): why"
    bad_shards: list[str] = field(default_factory=list)

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
    if m.layout == "shards":
        return _verify_shards(root, m, gen, sample, seed, device, indices)
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
    stored = {i: image_path(root, i, m.format) for i in checked}
    _compare(gen, m, dev, stored, result)
    return result


def _compare(gen, m: Manifest, dev: torch.device, stored: dict, result: VerifyResult) -> None:
    """Regenerate the indices of `stored` (index -> file path or image bytes) and compare."""
    checked = sorted(stored)
    bs = (m.batch_size if dev.type == "cuda" and m.batch_size else gen.default_batch_size(dev))
    for b in range(0, len(checked), bs):
        part = checked[b:b + bs]
        with one_cpu_thread(dev):
            fresh = to_uint8(gen.images(torch.tensor(part, device=dev), m.seed, batch_size=bs,
                                        dtype=torch.uint8))
        for i, arr in zip(part, fresh, strict=True):
            if not _matches(stored[i], arr, m):
                result.mismatched.append(i)
    result.mismatched.sort()


def _verify_shards(root: Path, m: Manifest, gen, sample: int, seed: int, device: str | None,
                   indices: list[int] | None) -> VerifyResult:
    """Shards: every shard present and ending in the tar end blocks, each shard's first sample
    of this dataset; the shards holding `sample` random indices read whole (every member checked
    against its index range) and those images regenerated."""
    from noisevision.data.shards import (
        ShardDamaged,
        ShardPlan,
        dataset_hash,
        first_sample_meta,
        read_shard,
        scan_shards,
        shard_name,
        tail_ok,
    )

    plan = ShardPlan.of(m)
    found, foreign = scan_shards(root)
    extra = [shard_name(k) for k in sorted(found) if k >= plan.num]
    if foreign or extra:
        raise UsageError(f"{root} holds shards of two different datasets: {(foreign + extra)[0]}"
                         f" is not one of the {plan.num} shards of its manifest; keep one "
                         "dataset per folder")
    bad: dict[int, str] = {}
    want = dataset_hash(m)
    for k in sorted(found):
        if not tail_ok(found[k]):
            bad[k] = "truncated (no tar end-of-archive blocks)"
            continue
        try:
            meta = first_sample_meta(found[k], plan, k, m.format)
        except UsageError:
            bad[k] = "its first sample cannot be read"
            continue
        if meta.get("dataset") != want or meta.get("index") != plan.bounds(k)[0]:
            bad[k] = "written for another dataset"
    good = [k for k in sorted(found) if k not in bad]
    total = sum(plan.length(k) for k in good)
    if indices is not None:
        outside = [i for i in indices if not m.start <= i < m.stop]
        if outside:
            raise UsageError(f"--indices {outside[0]} lies outside the dataset's range "
                             f"{m.start}..{m.stop - 1}")
    elif not total:
        raise UsageError(f"{root} holds no complete shard yet (expected {plan.num} shards, "
                         f"indices {m.start}..{m.stop - 1}); rerun the `generate` command")
    else:
        offsets = [plan.bounds(k)[0] for k in good]
        lengths = [plan.length(k) for k in good]
        picks = random.Random(seed).sample(range(total), min(sample, total))
        starts = np.cumsum([0, *lengths])
        indices = sorted(int(offsets[j] + p - starts[j])
                         for p in picks for j in [int(np.searchsorted(starts, p, "right")) - 1])
    stored: dict[int, bytes] = {}
    by_shard: dict[int, set[int]] = {}
    for i in indices:
        by_shard.setdefault((i - m.start) // plan.size, set()).add(i)
    for k, want_idx in sorted(by_shard.items()):
        if k not in found or k in bad:
            continue
        try:
            for i, _, data in read_shard(found[k], plan, k, m.format, want_idx):
                stored[i] = data
        except ShardDamaged as exc:
            bad[k] = exc.why
    missing = [i for k in range(plan.num) if k not in found for i in range(*plan.bounds(k))]
    result = VerifyResult(
        checked=sorted(stored), missing=missing,
        damaged=[i for k in sorted(bad) for i in range(*plan.bounds(k))],
        total_present=sum(plan.length(k) for k in good if k not in bad), expected=m.count,
        bad_shards=[f"{shard_name(k)} (indices {plan.bounds(k)[0]}..{plan.bounds(k)[1] - 1}): "
                    f"{why}" for k, why in sorted(bad.items())])
    _compare(gen, m, resolve_device(device or m.device), stored, result)
    return result


def _matches(path: Path | bytes, fresh: np.ndarray, m: Manifest) -> bool:
    try:
        stored = decode(io.BytesIO(path) if isinstance(path, bytes) else path)
    except UsageError:
        return False
    if stored.shape != fresh.shape:
        return False
    if m.format == "png":
        return bool(np.array_equal(stored, fresh))
    from PIL import Image

    ref = np.asarray(Image.open(io.BytesIO(encode(fresh, "jpg", m.jpeg_quality or 95,
                                                  m.jpeg_subsampling or "4:4:4"))))
    diff = np.abs(stored.astype(np.int16) - ref.astype(np.int16))
    return bool(diff.mean() <= JPEG_MAX_MEAN_ABS and diff.max() <= JPEG_MAX_ABS)
