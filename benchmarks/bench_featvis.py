"""Feature visualisation speed (images/s, peak memory) and the objective against the steps.

    PYTHONPATH=src python benchmarks/bench_featvis.py [--device cpu|cuda] [--images 4]
        [--batch-size 4] [--steps 64] [--resolution 128] [--curve] [--determinism] [--threads 1]

Renders `featvis_random` (a random-init ResNet-50, its pooled 2048 units, one or two units per
image) at the paper's small-scale side. ``--curve`` prints the mean objective of the optimised
units of at most 64 images after 16, 32, 64, 96 and 128 Adam steps (each the mean over the last
8 steps' random views), the measurement behind the family's default of 64 steps.
``--determinism`` renders the same images twice, and in another position of the batch, and
prints whether the bytes agree.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from noisevision import create_generator, featvis
from noisevision.generators.featvis import draw_units, random_network
from noisevision.rng import ImageRandom


def peak_memory(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB (CUDA allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (max RSS)"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def speed(args, dev: torch.device) -> None:
    gen = create_generator("featvis_random", resolution=args.resolution, steps=args.steps)
    bs = args.batch_size or gen.default_batch_size(dev)
    warm = create_generator("featvis_random", resolution=args.resolution, steps=2)
    # warm-up: the same (process-wide cached) network is built outside the timing
    warm.images(torch.arange(bs, device=dev), 0, batch_size=bs)
    sync(dev)
    t0 = time.perf_counter()
    gen.images(torch.arange(args.images, device=dev), 0, batch_size=bs)
    sync(dev)
    dt = time.perf_counter() - t0
    rate = args.images / dt
    print(f"featvis_random resnet50 {args.resolution}px {args.steps} steps batch {bs} on "
          f"{dev.type}: {rate:.2f} img/s ({args.images} images in {dt:.1f} s; "
          f"{rate * args.steps:.0f} image-steps/s); peak memory {peak_memory(dev)}")
    print(f"105,000 images at this rate: {105_000 / rate / 60:.1f} min")


def curve(args, dev: torch.device) -> None:
    model = random_network("resnet50", 0, 0, dev)
    _, module, channels = featvis.resolve_layer(model, "avgpool")
    idx = torch.arange(min(args.images, 64), device=dev)
    rnd = ImageRandom(0, idx, "featvis/image")
    units = draw_units(rnd.child("units"), channels, 0.98)
    spec = featvis.initial_spectrum(rnd.child("init"), args.resolution)
    views = featvis.draw_transforms(rnd.child("views"), 128)
    record: list[torch.Tensor] = []
    objective = featvis.Objective(model, module, units)
    with torch.enable_grad():
        featvis.optimise(objective, spec, views, autocast=dev.type == "cuda", record=record)
    values = torch.stack(record)  # (128, B)
    start = float(values[0].mean())
    parts = [f"step 0: {start:.3f}"]
    for s in (16, 32, 64, 96, 128):
        v = float(values[s - 8:s].mean())
        parts.append(f"{s}: {v:.3f} ({v / float(values[120:128].mean()):.0%} of 128)")
    print(f"objective (mean over {idx.numel()} images, 8-step windows): " + ", ".join(parts))


def determinism(args, dev: torch.device) -> None:
    gen = create_generator("featvis_random", resolution=args.resolution, steps=8)
    bs = args.batch_size or gen.default_batch_size(dev)
    a = gen.images(torch.arange(8, device=dev), 0, batch_size=bs, dtype=torch.uint8)
    b = gen.images(torch.arange(8, device=dev), 0, batch_size=bs, dtype=torch.uint8)
    c = gen.images(torch.arange(7, -1, -1, device=dev), 0, batch_size=bs,
                   dtype=torch.uint8).flip(0)
    print(f"determinism ({dev.type}, batch {bs}, 8 steps): same bytes twice "
          f"{bool(torch.equal(a, b))}; reversed order {bool(torch.equal(a, c))}; "
          f"max difference {int((a.int() - c.int()).abs().max())} levels")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--curve", action="store_true")
    p.add_argument("--determinism", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (default 1: the fast choice on a shared CPU)")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    if not args.no_speed:
        speed(args, dev)
    if args.curve:
        curve(args, dev)
    if args.determinism:
        determinism(args, dev)


if __name__ == "__main__":
    main()
