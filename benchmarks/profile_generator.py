"""Where one batch of a generator spends its time: torch.profiler's top operators.

    python benchmarks/profile_generator.py dead_leaves_shapes --device cuda --resolution 128 \\
        --batch 512 [--set KEY=VALUE ...]

Renders one warm-up batch, then profiles one batch and prints the operators sorted by device
time (CUDA) or CPU time, the batch's wall time and the host CPU time spent launching it.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from noisevision.cli import parse_set
from noisevision.device import resolve_device
from noisevision.generators import create_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    gen = create_generator(args.name, **{**parse_set(args.set), "resolution": args.resolution})
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen.generate(range(args.batch), seed=0, device=dev, batch_size=args.batch)  # warm-up
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        gen.generate(range(args.batch, 2 * args.batch), seed=0, device=dev,
                     batch_size=args.batch)
        sync()
    dt = time.perf_counter() - t0
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=44))
    print(f"{args.name} {args.resolution} px batch {args.batch} on {dev}: {dt * 1e3:.1f} ms "
          f"under the profiler ({args.batch / dt:.0f} img/s with profiling overhead)")


if __name__ == "__main__":
    main()
