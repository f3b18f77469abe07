"""Speed of evaluation: frozen feature extraction, the cached linear head, kNN.

    python benchmarks/bench_probe.py [--device auto] [--n 10000] [--epochs 100] [--width 1.0]

Prints images/s of fc6 extraction (SmallAlexNet, 64 px, batch 256), seconds to train the cached
linear head (n images x 4096-D x 10 classes, the paper's Adam recipe) and seconds of a kNN pass,
with peak memory (process RSS via getrusage; CUDA max allocated on a GPU).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from noisevision.device import resolve_device
from noisevision.probe.baselines import random_init_encoder
from noisevision.probe.knn import knn_accuracy
from noisevision.probe.linear import recipe_for, train_linear_head


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=10000, help="training images for head and kNN")
    ap.add_argument("--epochs", type=int, default=100, help="linear head epochs")
    ap.add_argument("--width", type=float, default=1.0, help="SmallAlexNet width")
    ap.add_argument("--extract", type=int, default=512, help="images to extract features of")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)

    model = random_init_encoder("small_alexnet", {"width": args.width}).to(dev)
    x = torch.randn(256, 3, 64, 64, generator=g).to(dev)
    with torch.inference_mode():
        model.features(x[:32])  # warm-up
        _sync(dev)
        t0, done = time.perf_counter(), 0
        while done < args.extract:
            model.features(x)
            done += x.shape[0]
        _sync(dev)
    rate = done / (time.perf_counter() - t0)
    print(f"fc6 extraction, SmallAlexNet width {args.width}, 64 px: {rate:.1f} images/s on {dev}")

    dim = model.feature_dim
    feats = torch.randn(args.n, dim, generator=g).relu()
    labels = torch.randint(0, 10, (args.n,), generator=g)
    val = torch.randn(2000, dim, generator=g).relu()
    yv = torch.randint(0, 10, (2000,), generator=g)
    cfg = recipe_for("small_alexnet", "cached", args.epochs)
    t0 = time.perf_counter()
    train_linear_head(feats, labels, val, yv, 10, cfg, device=dev)
    _sync(dev)
    head_s = time.perf_counter() - t0
    print(f"cached linear head: {args.n} x {dim}-D, {args.epochs} epochs, batch 128: "
          f"{head_s:.1f} s ({head_s * 10000 / args.n:.1f} s per 10k images)")
    t0 = time.perf_counter()
    knn_accuracy(feats.to(dev), labels.to(dev), val.to(dev), yv.to(dev), 10, k=20)
    _sync(dev)
    print(f"kNN (k 20): {args.n} train x 2000 val x {dim}-D: {time.perf_counter() - t0:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak:.2f} GiB")
    if dev.type == "cuda":
        print(f"peak CUDA allocated {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
