"""Memory per image on the CPU: the estimates of ssl/guards.py and probe/features.py against
the peak RSS a batch really adds (the calibration of their factors 1.3 and 5).

    python benchmarks/bench_memory_per_image.py --arch resnet50 --side 224 --batch 8
    python benchmarks/bench_memory_per_image.py --arch small_alexnet --side 64 --batch 64

Each measurement runs in a fresh process (peak RSS only grows): `train` is one forward and
backward of the encoder, `encode` one forward under inference mode.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
from torch import nn


def _estimates(arch: str, side: int) -> dict:
    from noisevision.ssl.encoders import build_encoder
    from noisevision.ssl.guards import _activation_bytes

    kwargs = {"width": 1.0, "input_size": side} if arch == "small_alexnet" else {}
    model = build_encoder(arch, **kwargs)
    largest = [0]

    def hook(module, inputs, output) -> None:
        largest[0] = max(largest[0], output[:1].numel() * 4)
    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    with torch.no_grad():
        model.eval()
        model.features(torch.zeros(2, 3, side, side))
    for h in hooks:
        h.remove()
    return {"train_estimate_mib": _activation_bytes(model, side) / 2**20,
            "encode_estimate_mib": 5 * largest[0] / 2**20}


def _measure(arch: str, side: int, batch: int, mode: str) -> float:
    """MiB of peak RSS one batch adds (run in this process: call it in a fresh one)."""
    from noisevision.ssl.encoders import build_encoder

    kwargs = {"width": 1.0, "input_size": side} if arch == "small_alexnet" else {}
    model = build_encoder(arch, **kwargs)
    x = torch.rand(batch, 3, side, side)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "train":
        model.train()
        model.features(x).float().sum().backward()
    else:
        model.eval()
        with torch.inference_mode():
            model.features(x)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet50", choices=("resnet50", "small_alexnet"))
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--measure", choices=("train", "encode"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.arch, args.side, args.batch, args.measure)))
        return
    torch.set_num_threads(1)
    est = _estimates(args.arch, args.side)
    for mode, key, factor in (("train", "train_estimate_mib", 1.3),
                              ("encode", "encode_estimate_mib", 1.0)):
        out = subprocess.run([sys.executable, __file__, "--arch", args.arch, "--side",
                              str(args.side), "--batch", str(args.batch), "--measure", mode],
                             capture_output=True, text=True, check=True).stdout
        per = float(out) / args.batch
        print(f"{args.arch} {args.side} px, {mode}: measured {per:.1f} MiB per image (batch "
              f"{args.batch}), guard's estimate {factor * est[key]:.1f} MiB "
              f"(ratio {per / (factor * est[key]):.2f})")


if __name__ == "__main__":
    main()
