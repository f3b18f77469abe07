"""Speed and memory of the untrained StyleGAN generators (issue 4).

    python benchmarks/bench_stylegan.py --resolution 128 --n 64
    python benchmarks/bench_stylegan.py --device cuda --resolution 256 --n 4096 --batch-sizes 64,256

Prints, per variant and batch size: images/s over `n` images of one network (after a warm-up
batch), the time to build one network's weights (paid once per 400 images), and peak memory
(process max RSS on CPU, torch.cuda.max_memory_allocated on GPU).
"""

from __future__ import annotations

import argparse
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
                           compute_dtype=args.dtype)
    seed = 0
    t0 = time.perf_counter()
    gen._network(seed, 7, dev)  # one network's weights, as paid every images_per_network images
    _sync(dev)
    net_s = time.perf_counter() - t0
    gen.generate(range(batch_size), seed=seed, device=dev, batch_size=batch_size)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t0 = time.perf_counter()
    start = batch_size  # same network (indices < 400 when n + batch_size <= 400)
    gen.generate(range(start, start + args.n), seed=seed, device=dev, batch_size=batch_size)
    _sync(dev)
    dt = time.perf_counter() - t0
    if dev.type == "cuda":
        mem = f"peak GPU {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB"
    else:
        mem = f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    return (f"{name:18s} res {args.resolution} width {args.width} batch {batch_size:4d} "
            f"{args.dtype}: {args.n / dt:8.2f} img/s, network build {net_s:.2f} s, {mem}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=64, help="images timed per variant")
    ap.add_argument("--batch-sizes", default="16", help="comma-separated batch sizes")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
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
