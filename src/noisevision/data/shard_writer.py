"""Render a block of shards (data/shards.py) and write each one whole: resumable by shard.

The unit of work is a shard. On a CPU, `workers` single-threaded processes each render, encode
and write whole shards. On a GPU, this process renders every shard (batch after batch) into a
shared-memory buffer, and `workers` processes encode and write them (PNG encoding is the CPU's
share: processes, not threads, so the interpreter lock never serialises it). With one worker
everything runs here. Image i is a pure function of (config, seed, i), so no path changes a byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from noisevision.data.encode import encode, to_uint8
from noisevision.data.manifest import Manifest
from noisevision.data.pool import run_pool, serve
from noisevision.data.shards import (
    ShardPlan,
    complete_shards,
    remove_stale_temporaries,
    shard_name,
    write_shard,
)
from noisevision.device import one_cpu_thread
from noisevision.generators.base import Generator, generator_from_description


@dataclass(frozen=True)
class ShardJob:
    """What every process needs to write shard k: the folder, the manifest, the batch."""

    out: Path
    manifest: Manifest
    batch_size: int

    @property
    def plan(self) -> ShardPlan:
        return ShardPlan.of(self.manifest)

    def encode_all(self, arrays, pool: ThreadPoolExecutor | None = None) -> list[bytes]:
        m = self.manifest
        args = (m.format, m.jpeg_quality or 95, m.jpeg_subsampling or "4:4:4")
        if pool is None:
            return [encode(a, *args) for a in arrays]
        return list(pool.map(lambda a: encode(a, *args), arrays))

    def render_encoded(self, gen: Generator, k: int, dev: torch.device,
                       pool: ThreadPoolExecutor | None = None) -> list[bytes]:
        """Shard k's images, encoded: each batch of `batch_size` rendered and encoded at once
        (the batch still in the cache; the shard never held as one array)."""
        lo, hi = self.plan.bounds(k)
        out: list[bytes] = []
        for b in range(lo, hi, self.batch_size):
            idx = torch.arange(b, min(hi, b + self.batch_size), dtype=torch.int64, device=dev)
            out.extend(self.encode_all(to_uint8(gen.images(
                idx, self.manifest.seed, batch_size=self.batch_size, dtype=torch.uint8)), pool))
        return out

    def write(self, k: int, data: list[bytes]) -> int:
        """Write shard k from its encoded images."""
        lo, hi = self.plan.bounds(k)
        write_shard(self.out / shard_name(k), self.manifest, list(range(lo, hi)), data)
        return hi - lo


@dataclass
class ShardWriteResult:
    written: int
    skipped: int
    shards: range          # this process's block of shards
    indices: tuple[int, int]
    damaged: int           # truncated shard files found and written again


def write_shards(gen: Generator, job: ShardJob, block: range, dev: torch.device, workers: int,
                 progress: Callable[[int], None], note: Callable[[str], None]
                 ) -> ShardWriteResult:
    """Write the missing shards of `block`; complete ones are skipped, truncated ones redone."""
    plan, out = job.plan, job.out
    remove_stale_temporaries(out, set(block))
    done, damaged = complete_shards(out, plan)
    todo = [k for k in block if k not in done]
    redo = [k for k in todo if k in damaged]
    if redo:
        note(f"{len(redo)} truncated shard file(s) in {out} are written again")
    skipped = sum(plan.length(k) for k in block if k in done)
    progress(0)
    written = 0
    if dev.type == "cpu" and workers > 1 and len(todo) > 1:
        written = _pool(job, iter([(k, None) for k in todo]), generator_desc=gen.describe(),
                        workers=min(workers, len(todo)), progress=progress)
    elif dev.type == "cuda" and workers > 1 and len(todo) > 1:
        written = _pool(job, _rendered(gen, job, todo, dev), generator_desc=None,
                        workers=workers, progress=progress)
    else:
        with ThreadPoolExecutor(max(1, workers)) as pool, one_cpu_thread(dev):
            for k in todo:
                n = job.write(k, job.render_encoded(gen, k, dev, pool))
                written += n
                progress(n)
    lo = plan.bounds(block[0])[0] if len(block) else plan.start
    hi = plan.bounds(block[-1])[1] if len(block) else plan.start
    return ShardWriteResult(written, skipped, block, (lo, hi), len(redo))


def _rendered(gen: Generator, job: ShardJob, todo: list[int],
              dev: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """(k, shard images in shared memory) for every shard, rendered here (on the GPU) in full
    batches that run across shard boundaries (a short shard is never padded to a batch)."""
    r, plan, bs = gen.resolution, job.plan, job.batch_size
    shards = iter(todo)
    k, buf, filled = None, None, 0

    def batches() -> Iterator[list[int]]:
        batch: list[int] = []
        for j in todo:
            for i in range(*plan.bounds(j)):
                batch.append(i)
                if len(batch) == bs:
                    yield batch
                    batch = []
        if batch:
            yield batch

    for batch in batches():
        x = gen.images(torch.tensor(batch, device=dev), job.manifest.seed, batch_size=bs,
                       dtype=torch.uint8).permute(0, 2, 3, 1)  # (n, H, W, 3)
        pos = 0
        while pos < len(batch):
            if buf is None:
                k = next(shards)
                buf, filled = torch.empty((plan.length(k), r, r, 3),
                                          dtype=torch.uint8).share_memory_(), 0
            take = min(len(batch) - pos, buf.shape[0] - filled)
            buf[filled:filled + take].copy_(x[pos:pos + take])
            pos, filled = pos + take, filled + take
            if filled == buf.shape[0]:
                yield k, buf
                buf = None


def _worker(desc: dict | None, job: ShardJob, tasks, results, parent: int) -> None:
    """One shard at a time: render it (CPU, `desc` given) or take its images, encode, write
    (data/pool.serve)."""
    def work(gen: Generator | None, task: tuple[int, torch.Tensor | None]) -> int:
        k, images = task
        return job.write(k, job.render_encoded(gen, k, torch.device("cpu")) if images is None
                         else job.encode_all(images.numpy()))

    serve(parent, tasks, results,
          lambda: generator_from_description(desc) if desc is not None else None, work)


def _pool(job: ShardJob, tasks_iter: Iterator, *, generator_desc: dict | None, workers: int,
          progress: Callable[[int], None]) -> int:
    """Run the shards of `tasks_iter` on `workers` processes, at most two queued per worker."""
    written = 0

    def done(count: int) -> None:
        nonlocal written
        written += count
        progress(count)

    run_pool(_worker, generator_desc, job, tasks_iter, workers, done, "shard writer")
    return written
