"""fractal_ifs speed: images/s per preset, and the category search's share.

    python benchmarks/bench_fractal.py                          # 128 px on CPU
    python benchmarks/bench_fractal.py --device cuda --images 65536 --batch-size 1024

Two figures per preset, each after a warm-up batch: "render" times `generate()` over images
whose categories are already searched (the steady state of a dataset: one search serves 1,000
images), "with search" times the first `--with-search` indices of a fresh generator, one category
search per 1,000 images included. Reports wall images/s and images per CPU-second of this
process (robust to other load on a shared machine; with T threads fully used, wall images/s is
at most T times it), and the cost of one category search.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from noisevision import create_generator
from noisevision.device import resolve_device

PRESETS = ("fractal_ifs", "fractal_ifs_color")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def bench(name: str, resolution: int, device: torch.device, batch_size: int | None,
          n_images: int, seed: int, overrides: dict, with_search: int) -> dict:
    gen = create_generator(name, resolution=resolution, **overrides)
    bs = batch_size or gen.default_batch_size(device)
    per = gen.config.instances_per_category
    # steady state: the categories of the timed images are searched before the clock starts
    idx = torch.arange(n_images, device=device) % per + (torch.arange(n_images, device=device)
                                                          // per) * per
    cats = sorted(set(gen.category(idx.cpu()).tolist()))
    gen.systems(torch.tensor(cats, device=device), seed)
    gen.generate(idx[:bs], seed=seed, device=device, batch_size=bs)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dt, cpu = timed(lambda: gen.generate(idx, seed=seed, device=device, batch_size=bs), device)
    out = {"name": name, "resolution": resolution, "batch": bs, "images": n_images,
           "render_img_s": n_images / dt, "render_img_cpu_s": n_images / cpu,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    # one category search alone, then the first images of a fresh generator with their searches
    fresh = create_generator(name, resolution=resolution, **overrides)
    dt, _ = timed(lambda: fresh.systems(torch.arange(10**6, 10**6 + 8, device=device), seed),
                  device)
    out["search_s"] = dt / 8
    n = max(bs, with_search)
    dt, cpu = timed(lambda: fresh.generate(range(n), seed=seed + 1, device=device,
                                           batch_size=bs), device)
    out["with_search_img_s"] = n / dt
    out["with_search_images"] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--resolutions", nargs="+", type=int, default=[128])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the family's default")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--with-search", type=int, default=1000,
                    help="images of the 'with search' figure, from index 0 (default 1000: one "
                         "category at the default 1,000 instances)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="config override, e.g. --set supersample=4 (numbers only)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    overrides = {k: (float(v) if "." in v else int(v))
                 for k, v in (s.split("=", 1) for s in args.set)}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"device: {name}; torch {torch.__version__}; overrides {overrides or 'none'}")
    print(f"{'preset':20s} {'px':>4s} {'batch':>5s} {'render img/s':>12s} {'img/CPU-s':>10s} "
          f"{'search s':>8s} {'w/ search img/s':>15s} {'peak MiB':>9s}")
    for preset in args.presets:
        for res in args.resolutions:
            r = bench(preset, res, device, args.batch_size, args.images, args.seed, overrides,
                      args.with_search)
            peak = r.get("peak_gpu_mib", r["peak_rss_mib"])
            print(f"{preset:20s} {res:4d} {r['batch']:5d} {r['render_img_s']:12.1f} "
                  f"{r['render_img_cpu_s']:10.1f} {r['search_s']:8.3f} "
                  f"{r['with_search_img_s']:15.1f} {peak:9.0f}", flush=True)


if __name__ == "__main__":
    main()
