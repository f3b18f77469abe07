"""Handlers of `noisevision probe` and `noisevision demo` (their flags: noisevision.cli)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from noisevision.errors import UsageError


def run_probe(args: argparse.Namespace) -> int:
    from noisevision.cli.common import refuse_inapplicable
    from noisevision.probe.datasets import data_kind
    from noisevision.probe.evaluate import check_results_folder
    from noisevision.probe.progress import ProbeProgress

    methods = ("linear", "knn") if args.method == "both" else (args.method,)
    kind = data_kind(args.data)
    refuse_inapplicable(args, [
        ("k", "knn" in methods, "--method knn or both"),
        ("temperature", "knn" in methods, "--method knn or both"),
        ("epochs", "linear" in methods, "--method linear or both"),
        ("mode", "linear" in methods, "--method linear or both"),
        ("fashion_train", kind == "fashion-mnist", "--data fashion-mnist"),
        ("fashion_val", kind == "fashion-mnist", "--data fashion-mnist"),
        ("max_per_split", kind == "folder", "ImageFolder, suite and shard tasks")])
    if not args.out:
        return _run(args, methods, None)
    check_results_folder(args.out)  # before minutes of work; finished rows are kept as they come
    data = Path(args.data).resolve() if Path(args.data).exists() else args.data
    settings = {"data": str(data), "seed": args.seed, "max_per_split": args.max_per_split,
                "fashion_train": args.fashion_train, "fashion_val": args.fashion_val,
                "mode": args.mode, "epochs": args.epochs, "k": args.k,
                "temperature": args.temperature}
    with ProbeProgress(args.out, settings) as progress:
        if progress.load():
            print(f"resuming: {len(progress.rows)} finished probe(s) in {progress.path}",
                  flush=True)
        return _run(args, methods, progress)


def _run(args: argparse.Namespace, methods: tuple[str, ...], progress) -> int:
    from noisevision.device import resolve_device
    from noisevision.probe.baselines import MeanColour, RawPixels, arch_of, random_init_encoder
    from noisevision.probe.datasets import load_tasks
    from noisevision.probe.evaluate import KnnConfig, evaluate, results_markdown, write_results
    from noisevision.probe.linear import recipe_for
    from noisevision.probe.load import load_probe_encoder

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
    linear = recipe_for(arch, args.mode, args.epochs, seed=args.seed)
    log = None if args.quiet else print
    t0 = time.perf_counter()
    rows = evaluate(encoders, tasks, methods=methods, linear=linear,
                    knn=KnnConfig(args.k, args.temperature), device=device,
                    batch_size=args.batch_size, num_workers=args.workers, log=log,
                    progress=progress)
    title = f"probe on {args.data}"
    print(results_markdown(rows, title))
    if args.out:
        meta = {"command": "probe", "data": str(args.data), "encoders": metas,
                "tasks": [t.summary() for t in tasks], "device": str(device),
                "seconds": round(time.perf_counter() - t0, 1)}
        out = write_results(args.out, rows, meta, title)
        progress.finish()  # the results hold every row now
        print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


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
