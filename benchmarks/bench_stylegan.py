"""Speed and memory of the untrained StyleGAN generators (issue 4).

    python benchmarks/bench_stylegan.py --resolution 128 --n 64
    python benchmarks/bench_stylegan.py --device cuda --resolution 256 --n 4096 --batch-sizes 64,256

Prints, per variant and batch size: images/s over `n` images of one network (after a warm-up
batch, with the network's noise dictionary already drawn), the time to build one network (its
weights and, for High-freq/Sparse, all its per-layer pink-noise dictionary maps; paid once per
400 images), the amortized rate over a whole network's 400 images, and peak memory (process max
RSS on CPU, torch.cuda.max_memory_allocated on GPU). The 1-minute load average is printed with
each line: other jobs on a shared machine slow these figures down (try --threads 1 there).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from noisevision.device import resolve_device
from noisevision.generators import create_generator

VARIANTS = ("stylegan_random", "stylegan_highfreq", "stylegan_sparse", "stylegan_oriented")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench(name: str, args: argparse.Namespace, dev: torch.device, batch_size: int) -> str:
    gen = create_generator(name, resolution=args.resolution, width=args.width,
                           compute_dtype=args.dtype, conv_algorithm=args.conv_algorithm)
    seed = 0
    per_net = gen.config.images_per_network
    t0 = time.perf_counter()
    # one network's weights and noise dictionary, as paid every images_per_network images
    gen.build_network(seed, 0, dev)
    _sync(dev)
    net_s = time.perf_counter() - t0
    gen.generate(range(batch_size), seed=seed, device=dev, batch_size=batch_size)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t0 = time.perf_counter()
    start = batch_size  # same network (indices < 400 when n + batch_size <= 400)
    done = 0
    while done < args.n:  # in steps of a few batches, stopping early after --max-seconds
        k = min(args.n - done, 4 * batch_size)
        gen.generate(range(start + done, start + done + k), seed=seed, device=dev,
                     batch_size=batch_size)
        done += k
        if args.max_seconds and time.perf_counter() - t0 > args.max_seconds:
            _sync(dev)
            break
    _sync(dev)
    dt = time.perf_counter() - t0
    if args.profile:
        profile(gen, dev, batch_size, start + done)
    if dev.type == "cuda":
        mem = f"peak GPU {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB"
    else:
        mem = f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    rate = done / dt
    amortized = 1.0 / (1.0 / rate + net_s / per_net)
    return (f"{name:18s} res {args.resolution} width {args.width} batch {batch_size:4d} "
            f"{args.dtype} {args.conv_algorithm}: {rate:8.2f} img/s, network build {net_s:.2f} s, "
            f"{amortized:8.2f} img/s over {per_net}, {mem}, load {os.getloadavg()[0]:.1f}")


def profile(gen, dev: torch.device, batch_size: int, start: int) -> None:
    """Top operators of one batch by device (or CPU) time, from torch.profiler."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        gen.generate(range(start, start + batch_size), seed=0, device=dev, batch_size=batch_size)
        _sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=48))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=64, help="images timed per variant")
    ap.add_argument("--batch-sizes", default="16", help="comma-separated batch sizes")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="compute_dtype (default auto: the generator's default)")
    ap.add_argument("--conv-algorithm", default="auto", choices=("auto", "winograd", "direct"),
                    help="StyleGAN-Random's stride-1 convolutions (Winograd or direct)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--max-seconds", type=float, default=0.0,
                    help="stop timing a configuration after this long (0: time all n images)")
    ap.add_argument("--profile", action="store_true", help="print a profile of one batch")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.variants.split(","):
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            print(bench(name, args, dev, bs), flush=True)


if __name__ == "__main__":
    main()
