"""What one-thread rendering of the thread-sensitive families costs in one process on the CPU.

A family whose CPU kernels round with torch's thread count (`Generator.thread_sensitive`: the
statistical models, the textured dead leaves, feature visualisations) renders through
`images()` with one intra-op thread, so that image i is the same bytes on any machine. Before,
`images()` ran with torch's threads (faster in one process, other bytes per thread count). This
prints both rates, after a warm-up, and whether the bytes agreed:

    python benchmarks/bench_render_threads.py                  # 128 px, 2 threads, batch 32
    python benchmarks/bench_render_threads.py --threads 4 --names stat_spectrum

Dataset writing is not affected: `generate` and `verify` always rendered on one-thread worker
processes (`--workers`, one per core), which is also how to get all cores' speed in a script.
"""

from __future__ import annotations

import argparse
import time

import torch


def rate(fn, n: int, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = 0.0, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best, out


def main() -> None:
    from noisevision.generators.base import GENERATORS, create_generator, list_generators

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="*", default=None,
                        help="default: every thread-sensitive family but the feature "
                             "visualisations (minutes each)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    names = args.names or [n for n in list_generators()
                           if GENERATORS.get(n).factory[0].thread_sensitive
                           and not n.startswith("featvis")]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.resolution} px, "
          f"batch {args.batch}, best of {args.repeats}")
    print(f"{'generator':26s} {'render, N threads':>18s} {'images(), 1 thread':>19s} "
          f"{'ratio':>6s}  same bytes")
    for name in names:
        gen = create_generator(name, resolution=args.resolution)
        idx = torch.arange(args.batch)
        gen.images(idx[:2], 0)  # warm-up (and the textured pool's first textures)
        with torch.no_grad():
            before, a = rate(lambda g=gen, i=idx: g.render_batch(i, 0, args.batch).clamp(0, 1),
                             args.batch, args.repeats)
        now, b = rate(lambda g=gen, i=idx: g.images(i, 0, batch_size=args.batch), args.batch,
                      args.repeats)
        same = torch.equal((a * 255).round(), (b * 255).round())
        print(f"{name:26s} {before:14.1f} img/s {now:15.1f} img/s {now / before:6.2f}  {same}")


if __name__ == "__main__":
    main()
