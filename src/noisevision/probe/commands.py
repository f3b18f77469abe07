"""Arguments and handlers of `noisevision probe` and `noisevision demo` (registered in cli.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from noisevision.argtypes import loader_workers_int, positive_int, seed_int
from noisevision.errors import UsageError


def _temperature(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"temperature must be > 0 or 'none', got {text!r}") \
            from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"temperature must be > 0 or 'none', got {value}")
    return value


def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", action="append", required=True, metavar="RUN",
                   help="pretraining run folder, its encoder.pt, or a released .pth file "
                        "(repeat to compare several)")
    p.add_argument("--data", required=True, metavar="NAME|DIR",
                   help="fashion-mnist, photo-crops, an ImageFolder DIR (train/, val/) or a "
                        "folder of such task folders (a VTAB-like suite)")
    p.add_argument("--method", choices=("linear", "knn", "both"), default="linear")
    p.add_argument("--mode", choices=("cached", "augmented"), default="cached",
                   help="linear probe: cached = features once, no augmentation (fast); "
                        "augmented = the paper's recipe, crops re-encoded every epoch")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="linear probe epochs (default 100, lr drops at 60%% and 80%%)")
    p.add_argument("--k", type=positive_int, default=20, help="kNN neighbours (default 20)")
    p.add_argument("--temperature", type=_temperature, default=0.07,
                   help="kNN vote temperature, or 'none' for a majority vote (default 0.07)")
    p.add_argument("--arch", choices=("small_alexnet", "resnet50"), default=None,
                   help="expected architecture (an encoder of another one is an error)")
    p.add_argument("--baselines", action="store_true",
                   help="also probe mean colour, raw pixels and a random-init encoder of the "
                        "first encoder's architecture")
    p.add_argument("--max-per-split", type=positive_int, default=None,
                   help="cap images per split (suites default to 20000 as the paper)")
    p.add_argument("--fashion-train", type=positive_int, default=None,
                   help="Fashion-MNIST: class-balanced training subset size (default all 60000)")
    p.add_argument("--fashion-val", type=positive_int, default=None,
                   help="Fashion-MNIST: test subset size (default all 10000)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="feature extraction batch")
    p.add_argument("--workers", type=loader_workers_int, default=0,
                   help="DataLoader worker processes (default 0: load in the main process)")
    p.add_argument("--out", default=None, help="folder for results.json and results.md")
    p.add_argument("--quiet", action="store_true")


def run_probe(args: argparse.Namespace) -> int:
    from noisevision.device import resolve_device
    from noisevision.probe.baselines import MeanColour, RawPixels, arch_of, random_init_encoder
    from noisevision.probe.datasets import load_tasks
    from noisevision.probe.evaluate import (
        KnnConfig,
        check_results_folder,
        evaluate,
        results_markdown,
        write_results,
    )
    from noisevision.probe.linear import recipe_for
    from noisevision.probe.load import load_probe_encoder

    if args.out:  # checked before minutes of work, written only at the end
        check_results_folder(args.out)
    device = resolve_device(args.device)
    encoders, metas = {}, {}
    for spec in args.encoder:
        model, meta = load_probe_encoder(spec, arch=args.arch, device=device)
        name = Path(spec).name if Path(spec).name != "encoder.pt" else Path(spec).parent.name
        while name in encoders:
            name += "'"
        encoders[name], metas[name] = model, meta
    first = next(iter(encoders.values()))
    arch = arch_of(first)
    if args.baselines:
        size = int(first.arch_kwargs.get("input_size", 64)) if arch == "small_alexnet" else 224
        encoders.update({"mean colour": MeanColour(size), "raw pixels": RawPixels(size),
                         f"random-init {arch}": random_init_encoder(arch, first.arch_kwargs,
                                                                    seed=args.seed)})
    tasks = load_tasks(args.data, max_per_split=args.max_per_split, seed=args.seed,
                       fashion_n_train=args.fashion_train, fashion_n_val=args.fashion_val)
    methods = ("linear", "knn") if args.method == "both" else (args.method,)
    linear = recipe_for(arch, args.mode, args.epochs)
    log = None if args.quiet else print
    t0 = time.perf_counter()
    rows = evaluate(encoders, tasks, methods=methods, linear=linear,
                    knn=KnnConfig(args.k, args.temperature), device=device,
                    batch_size=args.batch_size, num_workers=args.workers, log=log)
    title = f"probe on {args.data}"
    print(results_markdown(rows, title))
    if args.out:
        meta = {"command": "probe", "data": str(args.data), "encoders": metas,
                "tasks": [t.summary() for t in tasks], "device": str(device),
                "seconds": round(time.perf_counter() - t0, 1)}
        out = write_results(args.out, rows, meta, title)
        print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    from noisevision.probe.demo import BUDGETS

    p.add_argument("--out", default="noisevision-demo", help="report folder "
                   "(default ./noisevision-demo)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--budget", choices=("auto", *BUDGETS), default="auto",
                   help="auto = small on a CPU, large on a GPU; tiny = a smoke test (~1 min)")
    p.add_argument("--families", default=None,
                   help="comma-separated generators to pretrain on, one encoder each; a+b "
                   "(or a:2+b) pretrains one encoder on a weighted mixture (default: the "
                   "budget's)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument("--quiet", action="store_true")


def run_demo(args: argparse.Namespace) -> int:
    from noisevision.probe.demo import run_demo as demo

    families = [f.strip() for f in args.families.split(",") if f.strip()] \
        if args.families else None
    if args.families is not None and not families:
        raise UsageError("--families is empty (give generator names, e.g. dead_leaves_shapes)")
    report = demo(args.out, device=args.device, budget=args.budget, families=families,
                  seed=args.seed, overwrite=args.overwrite, quiet=args.quiet)
    print(f"report: {report / 'report.md'}")
    return 0
