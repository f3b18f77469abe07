"""Winograd convolutions of StyleGAN-Random (stylegan/paths/winograd.py): per layer and generator.

    python benchmarks/bench_winograd.py layers [--dtype bfloat16] [--reps 5]
    python benchmarks/bench_winograd.py generate --procs 2 [--rounds 4] [--n 16] [--batch 8]
    python benchmarks/bench_winograd.py accuracy

`layers`: one image through each 3x3 conv layer of the 128 px, width 1 network (1 thread, best
of --reps), by every applicable method: "direct" (oneDNN conv2d; up layers: four parity convs,
interleave, blur: stylegan/filters.py), "F(4,3)" (`winograd_conv`; up layers: four parity kernels
with the blur folded in), "up m" (`winograd_upsample` with F(m, 2) tiles, the generator's CPU
default for up layers at >= 64 px).
`generate`: images/s of `stylegan_random` at 128 px (the bench_stylegan.py measure: one network,
after a warm-up batch), in --procs concurrent single-thread processes (the dataset writer's
setting); the total is the sum of their rates. To compare with an older version, run the same
command in a `git worktree` of it (its own `src` on PYTHONPATH), alternating the two.
`accuracy`: rms relative error per layer against float64, bfloat16 and float32.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from noisevision.generators.stylegan.filters import (
    blur_after_transpose,
    conv_transpose_stride2,
    parity_kernels,
)
from noisevision.generators.stylegan.paths import winograd as wg

# (name, c_in, c_out, input side, up) for the 128 px, width 1 network's 3x3 layers >= 16 px
LAYERS = [("conv 256 @128", 256, 256, 128, False), ("up 512->256 @64", 512, 256, 64, True),
          ("conv 512 @64", 512, 512, 64, False), ("up 512 @32", 512, 512, 32, True),
          ("conv 512 @32", 512, 512, 32, False), ("up 512 @16", 512, 512, 16, True),
          ("conv 512 @16", 512, 512, 16, False)]


def _best(f, reps: int) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def methods(c: int, o: int, h: int, up: bool, dtype: torch.dtype, gen: torch.Generator):
    """{name: callable} computing the layer on one (1, c, h, h) input, and that input."""
    x = torch.randn(1, c, h, h, generator=gen).relu().to(dtype)
    w = torch.randn(o, c, 3, 3, generator=gen)
    same = wg.plan("same", wg.WINOGRAD_TILE)
    if not up:
        wd = w.to(dtype)
        u = wg.transform_weight(w, same, dtype)
        return x, w, {"direct": lambda: F.conv2d(x, wd, padding=1),
                      "F(4,3)": lambda: wg.winograd_conv(x, u, same)}
    parts = parity_kernels(w.to(dtype))
    u4 = wg.transform_weight(wg.upsample_weight(w), same, dtype)
    out = {"direct": lambda: blur_after_transpose(conv_transpose_stride2(x, None, parts)),
           "F(4,3)": lambda: wg.winograd_conv(x, u4, same, phases=2)}
    for m in (3, 4, 5):
        um = wg.transform_up_weight(w, dtype, m)
        out[f"up {m}"] = lambda um=um: wg.winograd_upsample(x, um)
    return x, w, out


def cmd_layers(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(f"ms per image, 1 thread, {args.dtype}, best of {args.reps}, "
          f"load {os.getloadavg()[0]:.1f}")
    for name, c, o, h, up in LAYERS:
        _, _, fns = methods(c, o, h, up, dtype, gen)
        times = "  ".join(f"{k} {_best(f, args.reps):6.1f}" for k, f in fns.items())
        print(f"{name:18s} {times}", flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


def _rms(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref).square().mean().sqrt() / ref.square().mean().sqrt())


def cmd_accuracy(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    for name, c, o, h, up in LAYERS[1:5]:
        for dtype in (torch.bfloat16, torch.float32):
            x, w, fns = methods(c, o, h, up, dtype, gen)
            if up:
                ref = blur_after_transpose(conv_transpose_stride2(x.double(), w.double()))
            else:
                ref = F.conv2d(x.double(), w.double(), padding=1)
            errs = "  ".join(f"{k} {_rms(f(), ref):.2e}" for k, f in fns.items())
            print(f"{name:18s} {str(dtype)[6:]:9s} rms rel. error: {errs}", flush=True)


def cmd_generate(args: argparse.Namespace) -> None:
    if args.procs > 1:
        child = [sys.executable, __file__, "generate", "--procs", "1", "--n", str(args.n),
                 "--batch", str(args.batch), "--dtype", args.dtype, "--rounds",
                 str(args.rounds)]
        print(f"{args.procs} processes, load before {os.getloadavg()[0]:.2f}", flush=True)
        procs = [subprocess.Popen(child, stdout=subprocess.PIPE, text=True)
                 for _ in range(args.procs)]
        outs = [p.communicate()[0].strip().splitlines() for p in procs]
        for lines in outs:
            print("\n".join("  " + line for line in lines))
        per = [[float(x.split()[2]) for x in lines if x.startswith("round")] for lines in outs]
        tot = [sum(r) for r in zip(*per, strict=True)]
        print("total: " + " ".join(f"{t:.2f}" for t in tot) + " img/s per round")
        print(f"load after {os.getloadavg()[0]:.2f}")
        return
    torch.set_num_threads(1)
    from noisevision.generators import create_generator

    gen = create_generator("stylegan_random", resolution=128, width=1.0,
                           compute_dtype=args.dtype)
    gen.generate(range(args.batch), seed=0, batch_size=args.batch)  # network, weights, warm-up
    start = args.batch
    for r in range(args.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        gen.generate(range(start, start + args.n), seed=0, batch_size=args.batch)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        start += args.n
        print(f"round {r} {args.n / dt:.3f} img/s wall, {args.n / dc:.3f} img/CPU-s "
              f"({args.dtype}, batch {args.batch}, load {os.getloadavg()[0]:.2f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("layers", "generate", "accuracy"))
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1, help="generate: timed rounds")
    args = ap.parse_args()
    {"layers": cmd_layers, "generate": cmd_generate, "accuracy": cmd_accuracy}[args.what](args)


if __name__ == "__main__":
    main()
