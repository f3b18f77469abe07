"""Write a generated dataset to an image folder or tar shards: resumable, never half-written.

`layout="shards"` hands the work to data/shard_writer.py (WebDataset tar shards, one file per
fixed index range); under torchrun (`Ranks.from_env`) every rank writes its own contiguous block
of shards (or of indices, for a folder) on its own GPU, and rank 0 alone prepares the folder.

On CPU, `workers` single-threaded processes each render and write whole batches (one intra-op
thread per process scales with the cores and stays fast on a busy machine, where two intra-op
threads wait on each other). On a GPU, the main process renders and a pool of threads encodes
and writes (PIL's encoders release the GIL). Every file is written under a temporary name and
renamed, so a killed run leaves only complete images, and rerunning the same command skips them.
Image i is a pure function of (config, seed, i), so neither path changes a byte.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from noisevision.argtypes import MAX_INDEX
from noisevision.data.encode import FORMATS, JPEG_SUBSAMPLING, encode, to_uint8, write_atomic
from noisevision.data.layout import (
    chunk_dirs,
    image_path,
    is_dataset_entry,
    remove_stale_temporaries,
    scan_images,
)
from noisevision.data.manifest import MANIFEST, Manifest, normalise
from noisevision.data.pool import run_pool, serve
from noisevision.device import one_cpu_thread, resolve_device
from noisevision.errors import UsageError
from noisevision.generators.base import Generator, generator_from_description
from noisevision.paper import DATASET_SCALES
from noisevision.safety import check_fits

SCALES = DATASET_SCALES  # the paper's dataset sizes, `generate --scale small|large`


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
    damaged: int = 0  # files (or shards) found truncated or empty and rendered again
    shards: range | None = None  # shards layout: the block of shards this process owns


@dataclass(frozen=True)
class Ranks:
    """This process's place under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE);
    one process (0 of 1) otherwise. `generate` needs no collective work except agreeing that
    rank 0 has prepared the folder, done over a gloo group (it exists on CPU-only nodes too)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Ranks:
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return cls(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")),
                   int(env.get("LOCAL_WORLD_SIZE", "1")))

    def device(self, spec: str) -> str:
        """auto or cuda under torchrun: this rank's own GPU (cuda:LOCAL_RANK)."""
        if self.world > 1 and spec in ("auto", "cuda") and torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise UsageError(f"local rank {self.local_rank} has no GPU of its own "
                                 f"({torch.cuda.device_count()} visible): lower "
                                 "--nproc-per-node to the GPUs of a node")
            return f"cuda:{self.local_rank}"
        return spec

    def default_workers(self) -> int:
        """The node's cores shared between its ranks."""
        return max(1, (os.cpu_count() or 1) // max(1, self.local_world))

    def agree(self, error: str | None) -> None:
        """Every rank stops with the first rank's error (one line each), or all go on."""
        if self.world > 1:
            import torch.distributed as dist

            errors: list[str | None] = [None] * self.world
            dist.all_gather_object(errors, error)
            error = next((e for e in errors if e), None)
        if error:
            raise UsageError(error)

    def close(self) -> None:
        import torch.distributed as dist

        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def prepare_folder(out: Path, manifest: Manifest, overwrite: bool) -> bool:
    """Create `out` or check that an existing dataset there agrees with `manifest`.

    Returns whether `out` was new or empty (so a run that fails before writing an image can
    remove what it created). --overwrite replaces a different dataset by removing only the
    files `generate` wrote (manifest, chunk folders of image files, sheet); a folder holding
    anything else, or a symbolic link, is refused before anything is removed. A non-empty
    folder that holds no manifest is never written into.
    """
    from noisevision.safety import check_output_dir, remove_owned, scan_owned

    check_output_dir(out)
    fresh = not out.is_dir() or not any(out.iterdir())
    if out.is_dir() and (out / MANIFEST).exists():
        old = Manifest.read(out)
        diff = blocking_differences(old, manifest)
        if diff and not overwrite:
            shown = ", ".join(_difference(k, getattr(old, k), getattr(manifest, k))
                              for k in diff[:3])
            raise UsageError(f"{out} already holds a different dataset ({shown}); use another "
                             "folder or pass --overwrite to replace it")
        if diff:
            entries = scan_owned(out, is_dataset_entry, "dataset folder")
            remove_owned(out, entries)
            fresh = True
    elif not fresh:
        raise UsageError(f"{out} exists, is not empty and holds no {MANIFEST}: noisevision "
                         "writes datasets only into a new or empty folder or one of its own "
                         "datasets (--overwrite never replaces other files)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"output folder {out} cannot be created: {exc.strerror}") from None
    manifest.write(out)
    return fresh


def blocking_differences(old: Manifest, new: Manifest) -> list[str]:
    """The manifest fields that make `new` another dataset than the one in the folder. A folder
    dataset with more images after the present ones is the same dataset grown (image i depends
    on config, seed and i alone); shards never grow (each sample's JSON names its dataset by a
    hash of the manifest's identity, count included)."""
    diff = new.differences(old)
    grows = (diff == ["count"] and new.layout == old.layout == "folder"
             and new.start == old.start and new.count > old.count)
    return [] if grows else diff


def _rollback(out: Path, created_parents: list[Path]) -> None:
    """Remove what a failed run created in a folder that was new: our files only."""
    from noisevision.safety import remove_owned, scan_owned

    try:
        remove_owned(out, scan_owned(out, is_dataset_entry, "dataset folder"))
        for p in [out, *created_parents]:
            p.rmdir()
    except (OSError, UsageError):
        pass


def _any_image(out: Path, fmt: str) -> bool:
    try:
        return bool(scan_images(out, fmt, check=False)[0])
    except (OSError, UsageError):
        return True


def _todo_batches(lo: int, hi: int, done: set[int], bs: int) -> Iterator[list[int]]:
    """Batches of the missing indices of [lo, hi), built lazily (constant memory in n)."""
    batch: list[int] = []
    for i in range(lo, hi):
        if i in done:
            continue
        batch.append(i)
        if len(batch) == bs:
            yield batch
            batch = []
    if batch:
        yield batch


def write_dataset(generator: Generator, out: str | Path, n: int, *, seed: int = 0,
                  start: int = 0, fmt: str = "png", jpeg_quality: int = 95,
                  jpeg_subsampling: str = "4:4:4",
                  workers: int | None = None,
                  device: str | torch.device = "cpu", shard: Shard | None = None,
                  batch_size: int | None = None, overwrite: bool = False,
                  progress: bool = True, layout: str = "folder",
                  shard_size: int | None = None, ranks: Ranks | None = None) -> WriteResult:
    """Render images [start, start + n) of `generator` (this shard's block) into `out`.

    `workers`: CPU rendering processes (CPU device) or encoder threads (GPU device; processes
    for shards); default the number of CPU cores. `layout`: "folder" (one file per image) or
    "shards" (WebDataset tar shards of `shard_size` images, data/shards.py). `ranks`: this
    process's place under torchrun; each rank writes its own block (`shard` must then be None).
    Every argument is checked before anything is written; a run that fails before its first
    image leaves a new folder as it found it (absent).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise UsageError(f"number of images must be a positive integer, got {n!r}")
    if not isinstance(start, int) or start < 0 or start + n > MAX_INDEX:
        raise UsageError(f"indices [start, start + n) must lie in 0..2**40-1, got start {start}"
                         f" and n {n}")
    if not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise UsageError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    if fmt not in FORMATS:
        raise UsageError(f"unknown image format {fmt!r} (allowed: {', '.join(FORMATS)})")
    if fmt == "jpg" and not 1 <= jpeg_quality <= 100:
        raise UsageError(f"JPEG quality must be in 1..100, got {jpeg_quality}")
    if jpeg_subsampling not in JPEG_SUBSAMPLING:
        raise UsageError(f"unknown JPEG subsampling {jpeg_subsampling!r} (allowed: "
                         f"{', '.join(JPEG_SUBSAMPLING)})")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    from noisevision.data.manifest import LAYOUTS
    from noisevision.data.shards import DEFAULT_SHARD_SIZE, webdataset

    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r} (allowed: {', '.join(LAYOUTS)})")
    if shard_size is not None and layout != "shards":
        raise UsageError("--shard-size applies to --layout shards only")
    if layout == "shards":
        shard_size = shard_size or DEFAULT_SHARD_SIZE
        if not 1 <= shard_size <= 1_000_000:
            raise UsageError(f"shard size must be in 1..1000000, got {shard_size}")
        webdataset()  # the `shards` extra, checked before anything is written
    ranks = ranks or Ranks()
    if ranks.world > 1 and shard is not None and shard.n > 1:
        raise UsageError("--shard and torchrun both split the work: under torchrun each rank "
                         "takes its own block, so drop --shard")
    if shard is None or shard.n == 1:
        shard = Shard(ranks.rank, ranks.world) if ranks.world > 1 else Shard()
    dev = resolve_device(device)
    out = Path(out)

    bs = batch_size or generator.default_batch_size(dev)
    r = generator.resolution
    check_fits(bs * 3 * r * r * 4 * 8, f"a batch of {bs} images at {r} px",
               "lower --batch-size or --resolution", dev if dev.type == "cuda" else None)

    def manifest_of(g: Generator) -> Manifest:
        return Manifest.create(generator=g.name, config=g.describe()["config"], seed=seed,
                               start=start, count=n, resolution=g.resolution, format=fmt,
                               jpeg_quality=jpeg_quality if fmt == "jpg" else None,
                               jpeg_subsampling=jpeg_subsampling if fmt == "jpg" else None,
                               device=dev.type, batch_size=bs if dev.type == "cuda" else None,
                               layout=layout, shard_size=shard_size)

    generator, manifest = _pinned(generator, dev, out, manifest_of)
    parents = [p for p in out.absolute().parents if not p.exists()]
    # a failed run removes a folder it created only when no other rank writes into it
    fresh = _prepare_ranked(out, manifest, overwrite, ranks) and ranks.world == 1
    if layout == "shards":
        return _write_shard_block(generator, out, manifest, shard, dev, bs, workers, progress,
                                  fresh, parents)
    written = 0
    try:
        lo, hi = shard.bounds(start, n)
        done, damaged = scan_images(out, fmt)
        done = {i for i in done if lo <= i < hi}
        damaged = {i for i in damaged if lo <= i < hi}
        skipped = len(done)
        if damaged and progress:
            print(f"noisevision: {len(damaged)} truncated or empty image file(s) in {out} are "
                  "rendered again", file=sys.stderr)
        nworkers = workers or max(1, os.cpu_count() or 1)
        job = _Job(out=out, seed=seed, fmt=fmt, jpeg_quality=jpeg_quality,
                   jpeg_subsampling=jpeg_subsampling)
        bar = tqdm(total=hi - lo, initial=skipped, unit="img", disable=not progress,
                   desc=generator.name, smoothing=0.05, dynamic_ncols=True)
        batches = _todo_batches(lo, hi, done, bs)
        counter = _Counter(bar, out, fmt, (hi - lo) - skipped)
        try:
            if dev.type == "cpu" and nworkers > 1 and (hi - lo) - skipped > bs:
                _write_processes(generator, job, batches, nworkers, counter)
            else:
                _write_threads(generator, job, batches, dev, nworkers, counter, bs)
        finally:
            written = counter.n
            bar.close()
    except BaseException:
        if fresh and not _any_image(out, fmt):  # nothing to resume: leave no trace
            _rollback(out, parents)
        raise
    return WriteResult(out=out, written=written, skipped=skipped, indices=(lo, hi),
                       damaged=len(damaged))


def _pinned(generator: Generator, dev: torch.device, out: Path,
            manifest_of: Callable[[Generator], Manifest]) -> tuple[Generator, Manifest]:
    """The generator with its machine-dependent "auto" options fixed and its manifest: as the
    dataset already in `out` has them (made on another machine, or before such options were
    pinned: its manifest says "auto") when it is otherwise this dataset, else as this machine
    resolves them (Generator.pinned)."""
    if (out / MANIFEST).is_file():
        try:
            old = Manifest.read(out)
        except UsageError:
            old = None  # prepare_folder reports the unreadable manifest
        if old is not None:
            same = generator.pinned_as(old.config)
            manifest = manifest_of(same)
            if not blocking_differences(old, manifest):
                return same, manifest
    pinned = generator.pinned(dev)
    return pinned, manifest_of(pinned)


def _prepare_ranked(out: Path, manifest: Manifest, overwrite: bool, ranks: Ranks) -> bool:
    """prepare_folder on rank 0 (then on the first rank of any node that does not see its
    folder: no shared file system); the other ranks wait for it, then check its manifest."""
    error, fresh = None, False
    if ranks.rank == 0:
        try:
            fresh = prepare_folder(out, manifest, overwrite)
            if manifest.layout == "folder":  # before any rank writes (shards: by each rank)
                remove_stale_temporaries(out)
        except UsageError as exc:
            error = str(exc)
    ranks.agree(error)
    if ranks.rank != 0 and ranks.local_rank == 0 and not (out / MANIFEST).is_file():
        try:  # a node that does not share rank 0's file system: its own copy of the folder
            prepare_folder(out, manifest, overwrite)
            if manifest.layout == "folder":
                remove_stale_temporaries(out)
        except UsageError as exc:
            error = str(exc)
    ranks.agree(error)
    if ranks.rank != 0:
        diff = manifest.differences(Manifest.read(out))
        ranks_error = (f"rank {ranks.rank} would write another dataset than rank 0 "
                       f"({', '.join(diff)} differ): give every rank the same flags"
                       if diff else None)
        if ranks_error:
            raise UsageError(ranks_error)
    return fresh


def _write_shard_block(generator: Generator, out: Path, manifest: Manifest, shard: Shard,
                       dev: torch.device, bs: int, workers: int | None, progress: bool,
                       fresh: bool, parents: list[Path]) -> WriteResult:
    """This process's block of shards (data/shard_writer.py), with the folder's progress bar."""
    from noisevision.data.shard_writer import ShardJob, write_shards
    from noisevision.data.shards import ShardPlan, complete_shards

    plan = ShardPlan.of(manifest)
    block = plan.block(shard.k, shard.n)
    total = sum(plan.length(k) for k in block)
    bar = tqdm(total=total, unit="img", disable=not progress, desc=generator.name,
               smoothing=0.05, dynamic_ncols=True)
    seen = [False]

    def advance(k: int) -> None:
        if not seen[0]:  # first call: the skipped shards
            seen[0] = True
            done, _ = complete_shards(out, plan)
            bar.update(sum(plan.length(j) for j in block if j in done))
        bar.update(k)

    def note(text: str) -> None:
        if progress:
            print(f"noisevision: {text}", file=sys.stderr)

    try:
        r = write_shards(generator, ShardJob(out, manifest, bs), block, dev,
                         workers or max(1, os.cpu_count() or 1), advance, note)
    except BaseException:
        if fresh and not complete_shards(out, plan)[0]:  # nothing to resume: leave no trace
            _rollback(out, parents)
        raise
    finally:
        bar.close()
    return WriteResult(out=out, written=r.written, skipped=r.skipped, indices=r.indices,
                       damaged=r.damaged, shards=r.shards)


def _difference(field: str, old: Any, new: Any) -> str:
    """'field: old -> new'; for the generator config only the options that differ."""
    if field == "config" and isinstance(old, dict) and isinstance(new, dict):
        old, new = normalise(old), normalise(new)  # tuples and lists compare equal
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return ", ".join(f"config.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:3])
    return f"{field}: {old!r} -> {new!r}"


class _Counter:
    """Images written so far (and the progress bar); once `SPACE_SAMPLE` are written, the
    free space is checked against what the rest will take (`_check_space`)."""

    SPACE_SAMPLE = 32

    def __init__(self, bar: tqdm, out: Path | None = None, fmt: str = "png",
                 todo: int = 0) -> None:
        self.bar, self.n = bar, 0
        self.out, self.fmt, self.todo, self.checked = out, fmt, todo, out is None

    def add(self, k: int) -> None:
        self.n += k
        self.bar.update(k)
        if not self.checked and self.n >= min(self.SPACE_SAMPLE, self.todo):
            self.checked = True
            _check_space(self.out, self.fmt, self.todo - self.n)


def _check_space(out: Path, fmt: str, remaining: int) -> None:
    """Stop now, not hours later, when the images still to write will not fit on the disk: the
    mean size of the dataset's images so far times the remaining count against the free
    space. What is written stays (a rerun resumes), and the message says how much is needed."""
    import shutil

    sizes = []
    for chunk in chunk_dirs(out):
        with os.scandir(chunk) as it:
            sizes += [e.stat(follow_symlinks=False).st_size for e in it
                      if e.name.endswith(f".{fmt}") and not e.name.startswith(".")]
    if remaining <= 0 or not sizes:
        return
    mean = sum(sizes) / len(sizes)
    need, free = remaining * mean, shutil.disk_usage(out).free
    if need > free:
        raise UsageError(f"the disk at {out} fills before the end: the {remaining:,} images "
                         f"still to write need about {_size(need)} ({_size(mean)} each so far) "
                         f"and {_size(free)} are free; the images written stay: free some "
                         "space (or write JPEG: --format jpg) and rerun the same command to "
                         "resume")


def _size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1024:.1f} KiB"


@dataclass(frozen=True)
class _Job:
    out: Path
    seed: int
    fmt: str
    jpeg_quality: int
    jpeg_subsampling: str = "4:4:4"

    def save(self, indices: list[int], arrays) -> int:
        for i, arr in zip(indices, arrays, strict=True):
            data = encode(arr, self.fmt, self.jpeg_quality, self.jpeg_subsampling)
            path = image_path(self.out, i, self.fmt)
            if not path.parent.is_dir():
                try:
                    path.parent.mkdir(exist_ok=True)
                except OSError as exc:
                    raise UsageError(f"cannot create chunk folder {path.parent}: "
                                     f"{exc.strerror}") from None
            write_atomic(path, data)
        return len(indices)


def _write_threads(generator: Generator, job: _Job, batches: Iterator[list[int]],
                   dev: torch.device, nthreads: int, counter: _Counter, bs: int) -> None:
    """Render in this process (any device); encode and write on a thread pool."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(nthreads) as pool, one_cpu_thread(dev):
        try:
            for batch in batches:
                idx = torch.tensor(batch, dtype=torch.int64, device=dev)
                arrays = to_uint8(generator.images(idx, job.seed, batch_size=bs,
                                                   dtype=torch.uint8))
                pending.append(pool.submit(job.save, batch, arrays))
                while len(pending) > 2 * nthreads or (pending and pending[0].done()):
                    counter.add(pending.popleft().result())
            while pending:
                counter.add(pending.popleft().result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def _worker(desc: dict, job: _Job, tasks, results, parent: int) -> None:
    """A CPU rendering process: whole batches rendered and written (data/pool.serve)."""
    def work(generator: Generator, batch: list[int]) -> int:
        return job.save(batch, to_uint8(generator.images(
            torch.tensor(batch, dtype=torch.int64), job.seed, batch_size=len(batch),
            dtype=torch.uint8)))

    serve(parent, tasks, results, lambda: generator_from_description(desc), work)


def _write_processes(generator: Generator, job: _Job, batches: Iterator[list[int]],
                     nworkers: int, counter: _Counter) -> None:
    """Render and write on `nworkers` single-threaded CPU processes pulling batches.

    The batches are fed lazily (at most two per worker queued), so memory stays constant in
    the number of images.
    """
    run_pool(_worker, generator.describe(), job, batches, nworkers, counter.add,
             "generation worker")
