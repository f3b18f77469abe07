"""Training with the generator in the loop vs from a resident tensor (issue 17), on CUDA.

    python benchmarks/bench_overlap.py --recipe small --data stylegan_oriented
    python benchmarks/bench_overlap.py --recipe moco --data dead_leaves_shapes

One full training step as `noisevision pretrain` runs it (two-view augmentation, bf16 autocast,
channels-last, forward, backward, SGD) at the recipe's batch, image size and crop, fed four ways:
  resident    from a uint8 tensor of rendered images already on the GPU (the ceiling);
  on the fly  `DataSource(..., generator_mode="continuous").epoch_batches`, rendered in the loop;
  prefetched  the same batches through `noisevision.ssl.prefetch.prefetch` (a producer thread on
              a side CUDA stream; skipped when the package has no such module);
  generator   the batches alone, no training (the generator's rate in this setting).
Prints img/s (an image = two views), ms per step, the ratio to resident, the step's FLOPs
(torch.utils.flop_counter, forward + backward) and the fraction of a bf16 peak they reach.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from noisevision.ssl.augment import TwoViewAugment, moco_augment, small_augment
from noisevision.ssl.encoders import build_encoder
from noisevision.ssl.losses import align_uniform_loss
from noisevision.ssl.moco import MoCo
from noisevision.ssl.sources import DataSource

try:
    from noisevision.ssl.prefetch import prefetch
except ImportError:  # an older tree (the baseline)
    prefetch = None

RECIPES = {"small": {"batch": 768, "size": 128, "crop": 64},
           "moco": {"batch": 256, "size": 256, "crop": 224}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", choices=tuple(RECIPES), default="small")
    ap.add_argument("--data", default="stylegan_oriented")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--depth", type=int, default=2, help="prefetch depth")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script only")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="bf16 dense peak of the card (H100/H200 SXM datasheet: 989)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    r = RECIPES[args.recipe]
    batch, size, crop = (args.batch or r["batch"], args.size or r["size"],
                         args.crop or r["crop"])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    if args.recipe == "small":
        model = build_encoder("small_alexnet", input_size=crop).to(dev)
        aug = TwoViewAugment(small_augment(crop), 0)
        lr = 0.36
    else:
        model = MoCo(build_encoder("resnet50")).to(dev)
        aug = TwoViewAugment(moco_augment(crop), 0)
        lr = 0.03
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr,
                          momentum=0.9, weight_decay=1e-4)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16)

    def step(images: torch.Tensor) -> None:
        v1, v2 = aug(images)
        v1 = v1.contiguous(memory_format=torch.channels_last)
        v2 = v2.contiguous(memory_format=torch.channels_last)
        with autocast:
            if args.recipe == "small":
                z = model(torch.cat([v1, v2]))
                loss, _ = align_uniform_loss(z[:batch], z[batch:])
            else:
                loss, _ = model(v1, v2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n = args.warmup + args.steps
    source = DataSource(args.data, image_size=size, images=batch * n, seed=0,
                        generator_mode="continuous")
    source.prepare(dev, progress=False)

    def timed(batches, train: bool) -> float:
        it = iter(batches)
        for _ in range(args.warmup):
            x = next(it)
            if train:
                step(x)
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            x = next(it)
            if train:
                step(x)
        sync()
        return (time.perf_counter() - t) / args.steps

    # resident: the same generator's images rendered once, as uint8 on the GPU
    resident = torch.cat(list(source.epoch_batches(1, batch)))
    resident = resident.clamp(0, 1).mul(255).round_().to(torch.uint8)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    res_batches = (resident[(i % n) * batch:(i % n + 1) * batch] for i in range(10**9))
    t_res = timed(res_batches, True)
    t_fly = timed(source.epoch_batches(2, batch), True)
    t_pre = (timed(prefetch(source.epoch_batches(3, batch), dev, depth=args.depth), True)
             if prefetch is not None else None)
    t_gen = timed(source.epoch_batches(4, batch), False)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")

    flops = None
    with contextlib.suppress(Exception):
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            step(resident[:batch])
        flops = counter.get_total_flops()
    head = (f"{args.recipe} {args.data} batch {batch} ({size} px -> {crop} px crops) bf16 "
            f"channels-last on {torch.cuda.get_device_name() if cuda else 'CPU'}")
    print(head)

    def line(label: str, t: float | None) -> None:
        if t is None:
            print(f"  {label:11s} -")
            return
        extra = ""
        if flops:
            extra = (f", {flops / t / 1e12:.0f} TFLOP/s = "
                     f"{flops / t / 1e12 / args.peak_tflops:.1%} of {args.peak_tflops:.0f}")
        print(f"  {label:11s} {batch / t:9,.0f} img/s  {t * 1e3:7.2f} ms/step  "
              f"x{t_res / t:.3f} of resident{extra}")

    line("resident", t_res)
    line("on the fly", t_fly)
    line("prefetched", t_pre)
    print(f"  {'generator':11s} {batch / t_gen:9,.0f} img/s  {t_gen * 1e3:7.2f} ms/batch alone")
    if flops:
        print(f"  step FLOPs (fwd + bwd, flop counter): {flops / 1e12:.3f} TFLOP per step")
    print(f"  peak GPU memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
