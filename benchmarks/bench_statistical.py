"""Speed and peak memory of the statistical image models and the textured dead leaves.

Each (generator, resolution, batch) runs in a fresh subprocess so that its memory figures belong
to it alone: peak resident memory (resource.getrusage ru_maxrss) before the first image (torch's
own footprint) and at the end, and torch.cuda.max_memory_allocated on GPU. Throughput is images/s
of `render` after one warm-up batch, without encoding or writing, plus images per CPU-second of
the process. For dead_leaves_textured the one-off texture-pool fill is timed separately.

    python benchmarks/bench_statistical.py                      # CPU, 128 px, all five
    python benchmarks/bench_statistical.py --device cuda --batch 512 --images 8192
    python benchmarks/bench_statistical.py --names stat_spectrum --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

NAMES = ("stat_spectrum", "stat_wmm", "stat_spectrum_color", "stat_spectrum_color_wmm",
         "dead_leaves_textured")


def run_one(name: str, resolution: int, batch: int, images: int, device: str,
            threads: int | None, offset: int = 0) -> dict:
    import torch

    from noisevision.device import resolve_device
    from noisevision.generators import create_generator

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    gen = create_generator(name, resolution=resolution)
    result = {"name": name, "resolution": resolution, "batch": batch, "device": str(dev),
              "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(dev)
    result["rss_before_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    idx = torch.arange(offset, offset + images + batch, device=dev)
    with torch.no_grad():
        if name == "dead_leaves_textured":  # fill the texture pool once, timed on its own
            t0 = time.perf_counter()
            gen.texture_pool(torch.arange(gen.config.texture_pool, device=dev), 0, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            result["pool_fill_s"] = round(time.perf_counter() - t0, 2)
        gen.render(idx[:batch], 0)  # warm-up (pyramid filters, allocator)
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        for start in range(batch, batch + images, batch):
            gen.render(idx[start:start + batch], 0)
            done += min(batch, batch + images - start)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    result["images_per_s"] = round(done / elapsed, 2)
    # images per CPU-second of this process: on a machine shared with other jobs, the
    # single-thread figure estimates what one idle core gives
    result["images_per_cpu_s"] = round(done / cpu, 2)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if dev.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=list(NAMES))
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=128, help="timed images per generator")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--procs", type=int, default=1,
                        help="CPU: run this many single-thread processes at once on disjoint "
                             "indices and add their rates (how a multi-core machine is best used "
                             "when it is shared: no thread spinning on a busy core)")
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.names[0], args.resolution, args.batch, args.images,
                                 args.device, args.threads, args.offset)))
        return
    print(f"{'generator':26s} {'px':>4s} {'batch':>5s} {'img/s':>9s} {'img/cpu-s':>9s} "
          f"{'RSS MiB before/peak':>19s} {'peak CUDA MiB':>13s}  notes")
    for name in args.names:
        cmd = [sys.executable, __file__, "--one", "--names", name, "--resolution",
               str(args.resolution), "--batch", str(args.batch), "--images", str(args.images),
               "--device", args.device]
        if args.procs > 1:
            cmd += ["--threads", "1"]
        elif args.threads:
            cmd += ["--threads", str(args.threads)]
        procs = [subprocess.Popen(cmd + ["--offset", str(k * 10**6)], stdout=subprocess.PIPE,
                                  text=True) for k in range(args.procs)]
        runs = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"{name}: benchmark process failed")
            runs.append(json.loads(out.strip().splitlines()[-1]))
        r = dict(runs[0])
        r["images_per_s"] = sum(x["images_per_s"] for x in runs)
        r["images_per_cpu_s"] = sum(x["images_per_cpu_s"] for x in runs) / len(runs)
        r["peak_rss_mib"] = max(x["peak_rss_mib"] for x in runs)
        if args.procs > 1:
            r["threads"] = f"1 x {args.procs} processes"
        notes = f"{r['device']} threads={r['threads']}" + (f" {r['gpu']}" if "gpu" in r else "")
        if "pool_fill_s" in r:
            notes += f" pool fill {r['pool_fill_s']} s"
        rss = f"{r['rss_before_mib']:.0f} / {r['peak_rss_mib']:.0f}"
        print(f"{name:26s} {r['resolution']:4d} {r['batch']:5d} {r['images_per_s']:9.2f} "
              f"{r['images_per_cpu_s']:9.2f} {rss:>19s} "
              f"{r.get('peak_cuda_mib', float('nan')):13.1f}  {notes}", flush=True)


if __name__ == "__main__":
    main()
