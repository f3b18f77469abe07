"""cg_scenes speed: images/s of the SDF ray marcher, and where the time goes.

    python benchmarks/bench_cg_scenes.py                        # 128 px on CPU
    python benchmarks/bench_cg_scenes.py --device cuda --images 8192 --batch-size 512

Times `generate()` after a warm-up batch: wall images/s and images per CPU-second of this
process (robust to other load on a shared machine; with T threads fully used, wall images/s is
at most T times it). With --stages, one batch is split into its stages (camera rays, marching,
shading with its shadow rays and occlusion) on the CPU clock.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import time

import torch

from noisevision import create_generator
from noisevision.device import resolve_device
from noisevision.generators import cg_scenes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(resolution: int, device: torch.device, batch_size: int | None, n_images: int,
          seed: int, overrides: dict) -> dict:
    gen = create_generator("cg_scenes", resolution=resolution, **overrides)
    bs = batch_size or gen.default_batch_size(device)
    gen.generate(range(bs), seed=seed + 1, device=device, batch_size=bs)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    gen.generate(range(n_images), seed=seed, device=device, batch_size=bs)
    _sync(device)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"resolution": resolution, "batch": bs, "images": n_images, "img_s": n_images / dt,
           "img_cpu_s": n_images / cpu,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def stages(resolution: int, batch: int, seed: int, overrides: dict) -> dict[str, float]:
    """CPU seconds per stage for one batch on the CPU (nested stages counted in their own)."""
    spent: dict[str, float] = {}
    names = ("camera_rays", "march", "normals", "soft_shadow", "ambient_occlusion", "shade")
    originals = {n: getattr(cg_scenes, n) for n in names}

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            c0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - c0
        return wrapper

    try:
        for n in names:
            setattr(cg_scenes, n, timed(n, originals[n]))
        gen = create_generator("cg_scenes", resolution=resolution, **overrides)
        c0 = time.process_time()
        gen.generate(range(batch), seed=seed, batch_size=batch)
        spent["total"] = time.process_time() - c0
    finally:
        for n, fn in originals.items():
            setattr(cg_scenes, n, fn)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolutions", nargs="+", type=int, default=[128])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the family's default")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="config override, e.g. --set march_steps=48 (integers)")
    ap.add_argument("--stages", action="store_true", help="also split one CPU batch by stage")
    args = ap.parse_args()
    device = resolve_device(args.device)
    overrides = {k: int(v) for k, v in (s.split("=", 1) for s in args.set)}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"device: {name}; torch {torch.__version__}; overrides {overrides or 'none'}")
    print(f"{'px':>4s} {'batch':>5s} {'images':>6s} {'img/s':>8s} {'img/CPU-s':>10s} "
          f"{'peak MiB':>9s}")
    for res in args.resolutions:
        r = bench(res, device, args.batch_size, args.images, args.seed, overrides)
        peak = r.get("peak_gpu_mib", r["peak_rss_mib"])
        print(f"{res:4d} {r['batch']:5d} {r['images']:6d} {r['img_s']:8.2f} "
              f"{r['img_cpu_s']:10.2f} {peak:9.0f}", flush=True)
        if args.stages:
            s = stages(res, 8, args.seed, overrides)
            print("  stages (CPU s per 8 images): " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(s.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
