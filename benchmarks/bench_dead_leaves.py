"""Dead-leaves generation speed: images/s per variant and resolution, peak memory.

    python benchmarks/bench_dead_leaves.py                      # 128 and 256 px on CPU
    python benchmarks/bench_dead_leaves.py --device cuda --batch-size 512

Times `generate()` (render + clamp, no image encoding) after one warm-up batch: wall-clock images/s
and images per CPU-second of this process (the latter is robust to other load on a shared
machine; with T threads fully used, wall images/s is at most T times it). Prints the
reference implementation's figures (reference study section 12: one process on a 2-core VM,
including its JPEG write) beside ours.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from noisevision import create_generator
from noisevision.device import resolve_device

VARIANTS = ("dead_leaves_squares", "dead_leaves_oriented", "dead_leaves_shapes")
REFERENCE = {("dead_leaves_squares", 128): 1.66, ("dead_leaves_oriented", 128): 1.44,
             ("dead_leaves_shapes", 128): 1.25, ("dead_leaves_shapes", 256): 0.36}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench(name: str, resolution: int, device: torch.device, batch_size: int | None,
          n_images: int, seed: int, chunk_leaves: int | None = None) -> dict:
    gen = create_generator(name, resolution=resolution, chunk_leaves=chunk_leaves)
    bs = batch_size or gen.default_batch_size(device)
    gen.generate(range(min(bs, n_images)), seed=seed + 1, device=device, batch_size=bs)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    x = gen.generate(range(n_images), seed=seed, device=device, batch_size=bs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"name": name, "resolution": resolution, "batch": bs, "images": x.shape[0],
           "seconds": dt, "images_per_s": x.shape[0] / dt,
           "images_per_cpu_s": x.shape[0] / cpu, "peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--resolutions", nargs="+", type=int, default=[128, 256])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the family's default")
    ap.add_argument("--images", type=int, default=None,
                    help="images per measurement (default: 256 at 128 px on CPU, scaled)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-leaves", type=int, default=None, help="override chunk_leaves")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({card}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'generator':22s} {'res':>4s} {'batch':>5s} {'images':>6s} {'img/s':>9s} "
          f"{'img/cpu-s':>9s} {'reference':>9s} {'peak RSS MiB':>12s} {'peak GPU MiB':>12s}")
    for res in args.resolutions:
        for name in args.variants:
            scale = (128 / res) ** 2
            n = args.images or max(32, int((2048 if device.type == "cuda" else 256) * scale))
            r = bench(name, res, device, args.batch_size, n, args.seed, args.chunk_leaves)
            ref = REFERENCE.get((name, res))
            gpu = f"{r['peak_gpu_mib']:12.0f}" if "peak_gpu_mib" in r else f"{'-':>12s}"
            print(f"{name:22s} {res:4d} {r['batch']:5d} {r['images']:6d} "
                  f"{r['images_per_s']:9.1f} {r['images_per_cpu_s']:9.1f} {ref if ref else '-':>9} "
                  f"{r['peak_rss_mib']:12.0f} {gpu}", flush=True)


if __name__ == "__main__":
    main()
