"""Pretraining throughput: images/s of one training step (an image = two views).

Measures, for the `small` recipe (SmallAlexNet, Alignment + Uniformity, 64 px crops):
  * compute ceiling: random views, forward + backward + SGD step;
  * augmentation alone: two views of a cached uint8 batch of 128 px images;
  * full step from a cached uint8 set (augmentation + step), as in the fixed-dataset regime;
and optionally (--moco) one MoCo v2 ResNet-50 step at --moco-crop px.
On CUDA it also runs bf16 autocast + channels_last. Peak memory: torch.cuda.max_memory_allocated
on CUDA, ru_maxrss of the process on CPU.

    python benchmarks/bench_pretrain.py --device cpu --batch 64 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch

from noisevision.ssl.augment import TwoViewAugment, moco_augment, small_augment
from noisevision.ssl.encoders import build_encoder
from noisevision.ssl.losses import align_uniform_loss
from noisevision.ssl.moco import MoCo


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _rate(fn, batch: int, steps: int, dev: torch.device) -> float:
    fn()  # warm-up
    _sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(dev)
    return batch * steps / (time.perf_counter() - t)


def bench_small(dev, batch, steps, bf16, channels_last):
    torch.manual_seed(0)
    model = build_encoder("small_alexnet").to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.36, momentum=0.9, weight_decay=1e-4)
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    aug = TwoViewAugment(small_augment(64), 0)
    cache = torch.randint(0, 256, (batch, 3, 128, 128), dtype=torch.uint8, device=dev)
    views = torch.randn(2 * batch, 3, 64, 64, device=dev)
    if channels_last:
        views = views.contiguous(memory_format=torch.channels_last)

    def step(x):
        with ctx:
            z = model(x)
            loss, _ = align_uniform_loss(z[:batch], z[batch:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def full():
        v1, v2 = aug(cache)
        x = torch.cat([v1, v2])
        step(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

    return {"compute": _rate(lambda: step(views), batch, steps, dev),
            "augment": _rate(lambda: aug(cache), batch, steps, dev),
            "full_from_cache": _rate(full, batch, steps, dev)}


def bench_moco(dev, batch, steps, crop, bf16, channels_last):
    torch.manual_seed(0)
    model = MoCo(build_encoder("resnet50")).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03,
                          momentum=0.9, weight_decay=1e-4)
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    aug = TwoViewAugment(moco_augment(crop), 0)
    cache = torch.randint(0, 256, (batch, 3, crop * 8 // 7, crop * 8 // 7), dtype=torch.uint8,
                          device=dev)

    def full():
        v1, v2 = aug(cache)
        with ctx:
            loss, _ = model(v1, v2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {"moco_full_step": _rate(full, batch, steps, dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=768)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--moco", action="store_true")
    ap.add_argument("--moco-batch", type=int, default=256)
    ap.add_argument("--moco-crop", type=int, default=224)
    args = ap.parse_args()
    dev = torch.device(args.device)
    modes = [("fp32", False, False)]
    if dev.type == "cuda":
        modes.append(("bf16+channels_last", True, True))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    for label, bf16, cl in modes:
        r = bench_small(dev, args.batch, args.steps, bf16, cl)
        print(f"small  {label:20s} batch {args.batch}: " +
              ", ".join(f"{k} {v:,.1f} img/s" for k, v in r.items()))
        if args.moco:
            r = bench_moco(dev, args.moco_batch, args.steps, args.moco_crop, bf16, cl)
            print(f"moco   {label:20s} batch {args.moco_batch} crop {args.moco_crop}: " +
                  ", ".join(f"{k} {v:,.1f} img/s" for k, v in r.items()))
    if dev.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
