"""Write a generated dataset to an image folder: resumable, shardable, never half-written.

Images are rendered in batches on the chosen device; encoding and writing run on a pool of
threads (PIL's encoders release the GIL). Every file is written under a temporary name and renamed,
so a killed run leaves only complete images, and rerunning the same command skips them.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from noisevision.data.encode import FORMATS, encode, to_uint8, write_atomic
from noisevision.data.layout import (
    chunk_dirs,
    chunk_name,
    existing_indices,
    image_path,
    remove_stale_temporaries,
)
from noisevision.data.manifest import MANIFEST, Manifest
from noisevision.device import resolve_device
from noisevision.errors import UsageError
from noisevision.generators.base import Generator

SCALES = {  # the paper's dataset sizes (reference-implementation.md §1)
    "small": {"n": 105_000, "resolution": 128},
    "large": {"n": 1_300_000, "resolution": 256},
}


@dataclass(frozen=True)
class Shard:
    """Shard k of N (0-based k): a contiguous block of the index range."""

    k: int = 0
    n: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        if not text:
            return cls()
        try:
            k, n = (int(p) for p in text.split("/"))
        except ValueError:
            raise UsageError(_bad_shard(text)) from None
        if n < 1 or not 0 <= k < n:
            raise UsageError(_bad_shard(text))
        return cls(k, n)

    def bounds(self, start: int, count: int) -> tuple[int, int]:
        return start + self.k * count // self.n, start + (self.k + 1) * count // self.n


def _bad_shard(text: str) -> str:
    return f"bad shard {text!r} (expected K/N with 0 <= K < N, e.g. 0/4)"


@dataclass
class WriteResult:
    out: Path
    written: int
    skipped: int
    indices: tuple[int, int]


def prepare_folder(out: Path, manifest: Manifest, overwrite: bool) -> None:
    """Create `out` or check that an existing dataset there agrees with `manifest`."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} is a file, not a folder")
    if out.is_dir() and (out / MANIFEST).exists():
        old = Manifest.read(out)
        diff = manifest.differences(old)
        if diff and not overwrite:
            shown = ", ".join(f"{k}: {getattr(old, k)!r} -> {getattr(manifest, k)!r}"
                              for k in diff[:3])
            raise UsageError(f"{out} already holds a different dataset ({shown}); use another "
                             "folder or pass --overwrite to replace it")
        if diff:
            _clear_dataset(out)
    elif out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"{out} exists, is not empty and holds no {MANIFEST}; use an empty "
                             "or new folder (or --overwrite to write into it anyway)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"output folder {out} is not writable: {exc.strerror}") from None
    manifest.write(out)


def _clear_dataset(out: Path) -> None:
    for chunk in chunk_dirs(out):
        shutil.rmtree(chunk)
    (out / MANIFEST).unlink(missing_ok=True)


def write_dataset(generator: Generator, out: str | Path, n: int, *, seed: int = 0,
                  start: int = 0, fmt: str = "png", jpeg_quality: int = 95,
                  workers: int | None = None,
                  device: str | torch.device = "cpu", shard: Shard | None = None,
                  batch_size: int | None = None, overwrite: bool = False, progress: bool = True,
                  on_batch: Callable[[int], None] | None = None) -> WriteResult:
    """Render images [start, start + n) of `generator` (this shard's block) into `out`."""
    if not isinstance(n, int) or n <= 0:
        raise UsageError(f"number of images must be a positive integer, got {n!r}")
    if start < 0:
        raise UsageError(f"start index must be >= 0, got {start}")
    if fmt not in FORMATS:
        raise UsageError(f"unknown image format {fmt!r} (allowed: {', '.join(FORMATS)})")
    if fmt == "jpg" and not 1 <= jpeg_quality <= 100:
        raise UsageError(f"JPEG quality must be in 1..100, got {jpeg_quality}")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    dev = resolve_device(device)
    shard = shard or Shard()
    out = Path(out)

    manifest = Manifest.create(generator=generator.name, config=generator.describe()["config"],
                               seed=seed, start=start, count=n, resolution=generator.resolution,
                               format=fmt, jpeg_quality=jpeg_quality if fmt == "jpg" else None,
                               device=dev.type)
    prepare_folder(out, manifest, overwrite)
    remove_stale_temporaries(out)

    lo, hi = shard.bounds(start, n)
    done = existing_indices(out, fmt)
    todo = [i for i in range(lo, hi) if i not in done]
    skipped = (hi - lo) - len(todo)
    try:
        for name in sorted({chunk_name(i) for i in todo}):
            (out / name).mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create chunk folders in {out}: {exc.strerror}") from None

    bs = batch_size or generator.default_batch_size(dev)
    nworkers = workers or max(1, os.cpu_count() or 1)
    bar = tqdm(total=hi - lo, initial=skipped, unit="img", disable=not progress,
               desc=generator.name, smoothing=0.05, dynamic_ncols=True)
    pending: deque[Future] = deque()
    written = 0

    def save(batch_idx: list[int], arrays) -> int:
        for i, arr in zip(batch_idx, arrays, strict=True):
            write_atomic(image_path(out, i, fmt), encode(arr, fmt, jpeg_quality))
        return len(batch_idx)

    with ThreadPoolExecutor(nworkers) as pool:
        try:
            for b in range(0, len(todo), bs):
                batch_idx = todo[b:b + bs]
                idx = torch.tensor(batch_idx, dtype=torch.int64, device=dev)
                with torch.no_grad():
                    arrays = to_uint8(generator.render(idx, seed))
                pending.append(pool.submit(save, batch_idx, arrays))
                while len(pending) > 2 * nworkers or (pending and pending[0].done()):
                    k = pending.popleft().result()
                    written += k
                    bar.update(k)
                    if on_batch:
                        on_batch(written)
            while pending:
                k = pending.popleft().result()
                written += k
                bar.update(k)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            bar.close()
    return WriteResult(out=out, written=written, skipped=skipped, indices=(lo, hi))
