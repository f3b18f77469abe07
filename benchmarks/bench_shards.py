#!/usr/bin/env python3
"""WebDataset shards (issue 16): writing against generation alone, and reading into pretrain.

Writing, the same images three ways, each on `--workers` single-threaded processes:
  render   the generator alone (images rendered and dropped: the ceiling),
  folder   `generate` (one PNG file per image),
  shards   `generate --layout shards` (tar shards of --shard-size images).
Reading: the shards dataset through pretrain's data path (DataSource.epoch_batches: node and
worker splitting, seeded order, PIL decoding in --read-workers DataLoader processes, batches
of --batch), without training, against the folder of PNG files through the same path.

    python benchmarks/bench_shards.py --n 8000 --workers 2 --read-workers 0 1 2
    python benchmarks/bench_shards.py --device cuda --name stylegan_oriented --n 100000 \\
        --workers 15 --skip-folder --format jpg --read-workers 15  # a GPU node: gpu_issue16.sh

Figures print as one JSON line each (never pass/fail on time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch


def _render_part(name: str, resolution: int, lo: int, hi: int, batch: int) -> int:
    from noisevision.generators.base import create_generator

    torch.set_num_threads(1)
    gen = create_generator(name, resolution=resolution)
    for b in range(lo, hi, batch):
        gen.images(torch.arange(b, min(hi, b + batch)), 0, dtype=torch.uint8)
    return hi - lo


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def render_only(args) -> float:
    """img/s of the generator alone on `workers` processes (CPU) or this process (GPU)."""
    from noisevision.generators.base import create_generator

    if args.device != "cpu":
        gen = create_generator(args.name, resolution=args.resolution)
        dev = torch.device(args.device)
        bs = args.batch_size or gen.default_batch_size(dev)
        gen.images(torch.arange(bs, device=dev), 0, batch_size=bs, dtype=torch.uint8)  # warm
        torch.cuda.synchronize()
        t = time.perf_counter()
        for b in range(0, args.n, bs):
            x = gen.images(torch.arange(b, min(args.n, b + bs), device=dev), 0, batch_size=bs,
                           dtype=torch.uint8)
            x.cpu()  # the copy to the host is part of generation
        return args.n / (time.perf_counter() - t)
    parts = [(args.name, args.resolution, k * args.n // args.workers,
              (k + 1) * args.n // args.workers, args.batch_size or 16)
             for k in range(args.workers)]
    t = time.perf_counter()  # worker start-up counted, as in the two writing runs
    with mp.get_context("spawn").Pool(args.workers) as pool:
        pool.starmap(_render_part, parts)
    return args.n / (time.perf_counter() - t)


def write(args, out: Path, layout: str) -> float:
    from noisevision.data.writer import write_dataset
    from noisevision.generators.base import create_generator

    gen = create_generator(args.name, resolution=args.resolution)
    t = time.perf_counter()
    write_dataset(gen, out, args.n, workers=args.workers, device=args.device,
                  batch_size=args.batch_size, progress=False, layout=layout,
                  shard_size=args.shard_size if layout == "shards" else None,
                  fmt=args.format, jpeg_quality=args.jpeg_quality,
                  jpeg_subsampling=args.jpeg_subsampling)
    return args.n / (time.perf_counter() - t)


def read(data: Path, resolution: int, workers: int, batch: int, epochs: int) -> float:
    """img/s of pretrain's data path (no model) over `epochs` epochs of `data`."""
    from noisevision.ssl.sources import DataSource

    src = DataSource(str(data), image_size=resolution, images=None, seed=0, workers=workers)
    src.prepare(torch.device("cpu"), 0, 1, progress=False)
    n = 0
    t = time.perf_counter()
    for epoch in range(epochs):
        for x in src.epoch_batches(epoch, batch):
            n += x.shape[0]
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="dead_leaves_shapes")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="render batch")
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--format", choices=("png", "jpg"), default="png")
    ap.add_argument("--jpeg-quality", type=int, default=95)
    ap.add_argument("--jpeg-subsampling", choices=("4:4:4", "4:2:0"), default="4:4:4")
    ap.add_argument("--read-workers", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--batch", type=int, default=256, help="pretrain batch when reading")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--skip-folder", action="store_true", help="no folder-of-files run")
    ap.add_argument("--repeats", type=int, default=1, help="write measurements, alternated")
    ap.add_argument("--no-write", action="store_true",
                    help="only read the datasets a run with the same --dir left")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-shards-"))
    base = {"name": args.name, "px": args.resolution, "n": args.n, "workers": args.workers,
            "device": args.device, "cpus": os.cpu_count(), "format": args.format}

    def report(**kw) -> None:
        print(json.dumps({**base, **kw, "load": round(os.getloadavg()[0], 2)}), flush=True)

    def timed(fn, *a) -> tuple[float, float]:
        """(img/s, images per CPU-second: the idle-machine rate per core, in effect)."""
        c = cpu_seconds()
        rate = fn(*a)
        return rate, round(args.n / max(cpu_seconds() - c, 1e-9), 1)

    try:
        for rep in range(0 if args.no_write else args.repeats):
            rates = {}
            rates["render"], per_cpu = timed(render_only, args)
            report(step="render only", rep=rep, img_s=round(rates["render"], 1),
                   img_per_cpu_s=per_cpu)
            for layout in (("shards",) if args.skip_folder else ("folder", "shards")):
                shutil.rmtree(root / layout, ignore_errors=True)
                rates[layout], per_cpu = timed(write, args, root / layout, layout)
                report(step=f"write {layout}", rep=rep, img_s=round(rates[layout], 1),
                       of_render=round(rates[layout] / rates["render"], 3),
                       img_per_cpu_s=per_cpu,
                       mib=round(sum(p.stat().st_size for p in (root / layout).rglob("*")
                                     if p.is_file()) / 2**20, 1))
        for w in args.read_workers:
            for layout in (("shards",) if args.skip_folder else ("shards", "folder")):
                c = cpu_seconds()
                r = read(root / layout, args.resolution, w, args.batch, args.epochs)
                report(step=f"read {layout}", read_workers=w, batch=args.batch,
                       img_s=round(r, 1), img_per_cpu_s=round(
                           args.n * args.epochs / max(cpu_seconds() - c, 1e-9), 1))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
