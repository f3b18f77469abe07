"""Pretraining's reading order over a shards dataset: split by node and by worker, seeded per
epoch, exact on resume, and the same for any number of loader workers.

An epoch on rank r of W (`epoch_windows`): the shards in a seeded random order (seed, epoch),
their samples laid end to end, rank r takes the r-th of W equal contiguous slices (L = count // W
samples each: disjoint, so every index of the epoch is seen once across the ranks, and the
count // W * W-th onwards, fewer than W, by none). A slice covers whole shards except at its two
ends, so each rank reads about 1/W of the shards, front to back. The part of one shard in a
slice is a window; its samples are read in a seeded random order (a shuffle buffer of one
shard; a generator's images are independent draws, so shard order plus in-shard order mix them
fully). When a mixture asks for more than L images, further slices follow with the next seeds.

Windows are read by DataLoader workers, window w by worker w mod K; each worker reads a shard
once (webdataset's tar iterator), decodes the window's images in its order and sends them in
chunks; this process puts the chunks back in window order (a reorder buffer of about K
windows), so the image order is a pure function of (seed, epoch, rank, world) and a resumed run
starts exactly at its step, skipping whole windows without reading them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from noisevision.data.shards import ShardSet, to_batch
from noisevision.errors import UsageError

CHUNK = 256  # images a worker sends at once (12.6 MB at 128 px)


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


@dataclass(frozen=True)
class Window:
    k: int                 # the shard
    members: np.ndarray    # positions in the shard (0-based), in reading order


def epoch_windows(shards: ShardSet, seed: int, epoch: int, rank: int, world: int,
                  need: int) -> list[Window]:
    """The windows of rank `rank`'s `need` images of `epoch` (a pure function of its args)."""
    plan = shards.plan
    per = plan.count // world
    if per < 1:
        raise UsageError(f"shards folder {str(shards.root)!r} holds {plan.count} images, fewer "
                         f"than the {world} processes")
    windows: list[Window] = []
    got, j = 0, 0
    while got < need:
        order = np.random.default_rng(_seed(seed, "shards", epoch, j)).permutation(plan.num)
        a, b = rank * per, rank * per + min(per, need - got)
        pos = 0
        for k in order.tolist():
            n = plan.length(k)
            lo, hi = max(a, pos), min(b, pos + n)
            if lo < hi:
                rng = np.random.default_rng(_seed(seed, "window", epoch, j, k, lo - pos))
                windows.append(Window(k, rng.permutation(np.arange(lo - pos, hi - pos))))
            pos += n
            if pos >= b:
                break
        got += b - a
        j += 1
    return windows


def skip(windows: list[Window], start: int) -> list[Window]:
    """The windows from stream position `start` on (the first one cut), nothing read."""
    out = []
    for w in windows:
        if start >= len(w.members):
            start -= len(w.members)
            continue
        out.append(Window(w.k, w.members[start:]) if start else w)
        start = 0
    return out


class _WindowReader(torch.utils.data.IterableDataset):
    """Worker i of K reads windows i, i + K, ...: ("chunk", window, part, parts, images)."""

    def __init__(self, shards: ShardSet, windows: list[Window], size: int,
                 shared: bool = False) -> None:
        self.shards, self.windows, self.size = shards, windows, size
        self.shared = shared  # in a DataLoader worker: chunks made in shared memory

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for w in range(wid, len(self.windows), nw):
            try:
                yield from self._read(w)
            except UsageError as exc:  # reported by the main process, one line
                yield ("error", str(exc), 0, 0, None)
                return

    def _read(self, w: int):
        win, sh = self.windows[w], self.shards
        lo = sh.plan.bounds(win.k)[0]
        wanted = [lo + int(p) for p in win.members]
        data = {i: img for i, _, img in sh.read(win.k, keep=set(wanted))}
        parts = -(-len(wanted) // CHUNK)
        for c in range(parts):
            imgs = [self._sized(sh.decode(win.k, i, data.pop(i)))
                    for i in wanted[c * CHUNK:(c + 1) * CHUNK]]
            yield ("chunk", w, c, parts, to_batch(imgs, shared=self.shared))

    def _sized(self, x: np.ndarray) -> np.ndarray:
        if x.shape[:2] == (self.size, self.size):
            return x
        im = Image.fromarray(x).resize((self.size, self.size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def stream(shards: ShardSet, windows: list[Window], size: int, workers: int,
           pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """The images of `windows` in order, as uint8 (n, 3, size, size) chunks."""
    workers = min(workers, len(windows))
    reader = _WindowReader(shards, windows, size, shared=workers > 0)
    items = iter(reader) if workers == 0 else iter(torch.utils.data.DataLoader(
        reader, batch_size=None, num_workers=workers, pin_memory=pin_memory,
        persistent_workers=False))
    ready: dict[tuple[int, int], torch.Tensor] = {}
    parts: dict[int, int] = {}
    w = c = 0
    for kind, wi, ci, n, images in items:
        if kind == "error":
            raise UsageError(wi)
        ready[(wi, ci)] = images
        parts[wi] = n
        while (w, c) in ready:
            yield ready.pop((w, c))
            c += 1
            if c == parts[w]:
                w, c = w + 1, 0


def batches(chunks: Iterator[torch.Tensor], sizes: list[int]) -> Iterator[torch.Tensor]:
    """Regroup a stream of chunks into batches of the given sizes (numpy copies: one thread,
    never torch's intra-op threads, which stall each other on a busy machine)."""
    buf: list[torch.Tensor] = []
    have = 0
    for size in sizes:
        while have < size:
            x = next(chunks, None)
            if x is None:
                raise RuntimeError("the shard stream ended early")  # a bug, not bad input
            buf.append(x)
            have += x.shape[0]
        parts, need = [], size
        while need:
            x = buf[0]
            if x.shape[0] <= need:
                parts.append(buf.pop(0))
                need -= x.shape[0]
            else:
                parts.append(x[:need])
                buf[0] = x[need:]
                need = 0
        have -= size
        yield (parts[0] if len(parts) == 1
               else torch.from_numpy(np.concatenate([p.numpy() for p in parts])))
