"""Write a generated dataset to an image folder: resumable, shardable, never half-written.

On CPU, `workers` single-threaded processes each render and write whole batches (one intra-op
thread per process scales with the cores and stays fast on a busy machine, where two intra-op
threads wait on each other). On a GPU, the main process renders and a pool of threads encodes
and writes (PIL's encoders release the GIL). Every file is written under a temporary name and
renamed, so a killed run leaves only complete images, and rerunning the same command skips them.
Image i is a pure function of (config, seed, i), so neither path changes a byte.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
from collections import deque
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
from noisevision.device import one_cpu_thread, resolve_device
from noisevision.errors import UsageError
from noisevision.generators.base import Generator, generator_from_description

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
                  batch_size: int | None = None, overwrite: bool = False,
                  progress: bool = True) -> WriteResult:
    """Render images [start, start + n) of `generator` (this shard's block) into `out`.

    `workers`: CPU rendering processes (CPU device) or encoder threads (GPU device); default the
    number of CPU cores.
    """
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

    bs = batch_size or generator.default_batch_size(dev)
    manifest = Manifest.create(generator=generator.name, config=generator.describe()["config"],
                               seed=seed, start=start, count=n, resolution=generator.resolution,
                               format=fmt, jpeg_quality=jpeg_quality if fmt == "jpg" else None,
                               device=dev.type, batch_size=bs if dev.type == "cuda" else None)
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

    nworkers = workers or max(1, os.cpu_count() or 1)
    batches = [todo[b:b + bs] for b in range(0, len(todo), bs)]
    job = _Job(out=out, seed=seed, fmt=fmt, jpeg_quality=jpeg_quality)
    bar = tqdm(total=hi - lo, initial=skipped, unit="img", disable=not progress,
               desc=generator.name, smoothing=0.05, dynamic_ncols=True)
    try:
        if dev.type == "cpu" and nworkers > 1 and len(batches) > 1:
            written = _write_processes(generator, job, batches, nworkers, bar)
        else:
            written = _write_threads(generator, job, batches, dev, nworkers, bar, bs)
    finally:
        bar.close()
    return WriteResult(out=out, written=written, skipped=skipped, indices=(lo, hi))


@dataclass(frozen=True)
class _Job:
    out: Path
    seed: int
    fmt: str
    jpeg_quality: int

    def save(self, indices: list[int], arrays) -> int:
        for i, arr in zip(indices, arrays, strict=True):
            data = encode(arr, self.fmt, self.jpeg_quality)
            write_atomic(image_path(self.out, i, self.fmt), data)
        return len(indices)


def _write_threads(generator: Generator, job: _Job, batches: list[list[int]],
                   dev: torch.device, nthreads: int, bar: tqdm, bs: int) -> int:
    """Render in this process (any device); encode and write on a thread pool."""
    pending: deque[Future] = deque()
    written = 0
    with ThreadPoolExecutor(nthreads) as pool, one_cpu_thread(dev):
        try:
            for batch in batches:
                idx = torch.tensor(batch, dtype=torch.int64, device=dev)
                with torch.no_grad():
                    arrays = to_uint8(generator.render_batch(idx, job.seed, bs))
                pending.append(pool.submit(job.save, batch, arrays))
                while len(pending) > 2 * nthreads or (pending and pending[0].done()):
                    k = pending.popleft().result()
                    written += k
                    bar.update(k)
            while pending:
                k = pending.popleft().result()
                written += k
                bar.update(k)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return written


def _worker(desc: dict, job: _Job, tasks, results) -> None:
    """A CPU rendering process: one intra-op thread, whole batches rendered and written."""
    torch.set_num_threads(1)
    try:
        generator = generator_from_description(desc)
        while (batch := tasks.get()) is not None:
            with torch.no_grad():
                arrays = to_uint8(generator.render(torch.tensor(batch, dtype=torch.int64),
                                                   job.seed))
            results.put(("done", job.save(batch, arrays)))
    except UsageError as exc:
        results.put(("error", str(exc)))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # report, so the parent can stop with the cause
        results.put(("crash", f"{type(exc).__name__}: {exc}"))
    results.put(("exit", None))


def _write_processes(generator: Generator, job: _Job, batches: list[list[int]],
                     nworkers: int, bar: tqdm) -> int:
    """Render and write on `nworkers` single-threaded CPU processes pulling batches."""
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for batch in batches:
        tasks.put(batch)
    nworkers = min(nworkers, len(batches))
    for _ in range(nworkers):
        tasks.put(None)
    desc = generator.describe()
    procs = [ctx.Process(target=_worker, args=(desc, job, tasks, results), daemon=True)
             for _ in range(nworkers)]
    for p in procs:
        p.start()
    written = exited = 0
    try:
        while exited < nworkers:
            try:
                kind, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a generation worker died (exit code "
                                       f"{dead[0].exitcode}); rerun the same command to resume"
                                       ) from None
                continue
            if kind == "done":
                written += value
                bar.update(value)
            elif kind == "error":
                raise UsageError(value)
            elif kind == "crash":
                raise RuntimeError(f"generation worker failed: {value}")
            else:
                exited += 1
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
    return written
