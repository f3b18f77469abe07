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

from noisevision.argtypes import positive_int, resolution_int, seed_int
from noisevision.errors import UsageError

Handler = Callable[[argparse.Namespace], int | None]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `noisevision: error: ...`, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"noisevision: error: {message} (see `{self.prog} --help`)\n")


def parse_indices(text: str) -> list[int]:
    """'0-9999' or '1,5,7' or '0-3,10' -> list of ints."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(x) for x in part.split("-"))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise UsageError(f"bad index list {text!r} (expected e.g. 0-15 or 1,5,7)") from None
    if not out or min(out) < 0:
        raise UsageError(f"bad index list {text!r} (expected non-negative indices, e.g. 0-15)")
    return out


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

def _add_preview(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="generator name (see `noisevision list`)")
    p.add_argument("--n", type=positive_int, default=16, help="number of images (default 16)")
    p.add_argument("--indices", default=None, help="explicit indices, e.g. 0-15 or 3,7,100")
    p.add_argument("--resolution", type=resolution_int, default=None)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--out", default="sheet.png", help="output PNG (default sheet.png)")
    _add_set(p)


def _cmd_preview(args: argparse.Namespace) -> int:
    from noisevision.data.sheet import contact_sheet
    from noisevision.generators.base import create_generator

    gen = create_generator(args.name, **{**parse_set(args.set), "resolution": args.resolution})
    indices = parse_indices(args.indices) if args.indices else list(range(args.n))
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as sheet.png")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"--out {out} must end in .png or .jpg")
    images = gen.generate(indices, seed=args.seed, device=args.device)
    sheet = contact_sheet(images, [str(i) for i in indices],
                          title=f"{args.name}  seed {args.seed}  {gen.resolution}px")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sheet.save(out)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc}") from None
    print(f"wrote {out} ({len(indices)} images of {args.name})")
    return 0


# --- generate -------------------------------------------------------------------------------

def _add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="generator name (see `noisevision list`)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=positive_int, default=None, help="number of images")
    p.add_argument("--resolution", type=resolution_int, default=None, help="image side in pixels")
    p.add_argument("--scale", choices=("small", "large"), default=None,
                   help="paper presets: small = 105,000 at 128 px, large = 1,300,000 at 256 px "
                        "(--n / --resolution override)")
    p.add_argument("--seed", type=seed_int, default=0, help="root seed (default 0)")
    p.add_argument("--start", type=int, default=0, help="first index (default 0)")
    p.add_argument("--format", choices=("png", "jpg"), default="png")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--workers", type=positive_int, default=None,
                   help="encoder/writer threads (default: number of CPU cores)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--shard", default=None, help="K/N: write only block K of N (0-based)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a different dataset already in --out")
    p.add_argument("--sheet", action="store_true",
                   help="also write DIR/sheet.png, a contact sheet of the first 16 images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p)


def _cmd_generate(args: argparse.Namespace) -> int:
    from noisevision.data.writer import SCALES, Shard, write_dataset
    from noisevision.generators.base import create_generator

    preset = SCALES.get(args.scale, {}) if args.scale else {}
    n = args.n or preset.get("n")
    if n is None:
        raise UsageError("say how many images: --n N or --scale small|large")
    opts = parse_set(args.set)
    resolution = args.resolution or opts.pop("resolution", None) or preset.get("resolution")
    gen = create_generator(args.name, **{**opts, "resolution": resolution})
    result = write_dataset(gen, args.out, n, seed=args.seed, start=args.start, fmt=args.format,
                           jpeg_quality=args.jpeg_quality, workers=args.workers,
                           device=args.device, shard=Shard.parse(args.shard),
                           batch_size=args.batch_size, overwrite=args.overwrite,
                           progress=not args.quiet)
    lo, hi = result.indices
    if args.sheet:
        from noisevision.data.sheet import contact_sheet

        shown = list(range(args.start, args.start + min(16, n)))
        images = gen.generate(shown, seed=args.seed, device=args.device)
        contact_sheet(images, [str(i) for i in shown],
                      title=f"{args.name}  seed {args.seed}  {gen.resolution}px").save(
            result.out / "sheet.png")
    print(f"{result.out}: wrote {result.written}, skipped {result.skipped} already present "
          f"(indices {lo}..{hi - 1})")
    return 0


# --- verify ---------------------------------------------------------------------------------

def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="dataset folder written by `noisevision generate`")
    p.add_argument("--sample", type=positive_int, default=16, help="indices to check (default 16)")
    p.add_argument("--indices", default=None, help="check these indices instead, e.g. 0-9")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random sample")
    p.add_argument("--device", default=None, help="default: the device type in the manifest")


def _cmd_verify(args: argparse.Namespace) -> int:
    from noisevision.data.verify import verify_dataset

    indices = parse_indices(args.indices) if args.indices else None
    r = verify_dataset(args.dir, args.sample, seed=args.seed, device=args.device, indices=indices)
    if r.ok:
        print(f"{args.dir}: {len(r.checked)} of {r.total_present} images regenerate identically")
        return 0
    if r.mismatched:
        print(f"{args.dir}: MISMATCH at indices {','.join(map(str, r.mismatched))}",
              file=sys.stderr)
    if r.missing:
        print(f"{args.dir}: MISSING indices {','.join(map(str, r.missing))}", file=sys.stderr)
    return 1


# --- pretrain -------------------------------------------------------------------------------

def _add_pretrain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=("small", "moco"), default="small",
                   help="small = SmallAlexNet + Alignment/Uniformity, moco = MoCo v2 ResNet-50")
    p.add_argument("--data", required=True,
                   help="SOURCE[:WEIGHT],... generator names and/or image folders")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue RUN/checkpoint.pt")
    p.add_argument("--images", type=positive_int, default=None,
                   help="images per epoch (generators: index set size; default 105,000 small, "
                        "1,300,000 moco; folders: their size)")
    p.add_argument("--continuous", action="store_true",
                   help="generators: fresh indices every epoch instead of a cached set")
    p.add_argument("--resolution", type=resolution_int, default=None,
                   help="source image side (default 128 small / 256 moco)")
    p.add_argument("--crop", type=positive_int, default=None,
                   help="crop side (64 small / 224 moco)")
    p.add_argument("--pre-resize", type=positive_int, default=None,
                   help="small: resize to this side before cropping (paper text: 96)")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None, help="global batch")
    p.add_argument("--lr", type=float, default=None, help="default: recipe lr x batch / 256")
    p.add_argument("--width", type=float, default=1.0,
                   help="small: SmallAlexNet channel multiplier (1 = reference)")
    p.add_argument("--moco-queue", type=positive_int, default=65536)
    p.add_argument("--moco-bn", choices=("shuffle", "sync", "none"), default="shuffle")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int, default=4, help="loader workers for folders")
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="steps between checkpoints (default: every epoch)")
    p.add_argument("--log-every", type=positive_int, default=20)
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from noisevision.ssl.train import PretrainConfig, pretrain

    cfg = PretrainConfig(
        data=args.data, out=args.out, recipe=args.recipe, images=args.images,
        generator_mode="continuous" if args.continuous else "cached",
        image_size=args.resolution, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        crop=args.crop, pre_resize=args.pre_resize, width=args.width,
        moco_queue=args.moco_queue, moco_bn=args.moco_bn, seed=args.seed, device=args.device,
        precision=args.precision, compile=args.compile, workers=args.workers,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        tensorboard=args.tensorboard, quiet=args.quiet)
    run = pretrain(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"{run}: encoder.pt written")
    return 0


# --- probe / demo (arguments and handlers: noisevision.probe.commands) ----------------------

def _add_probe(p: argparse.ArgumentParser) -> None:
    from noisevision.probe.commands import add_probe_arguments
    add_probe_arguments(p)


def _cmd_probe(args: argparse.Namespace) -> int:
    from noisevision.probe.commands import run_probe
    return run_probe(args)


def _add_demo(p: argparse.ArgumentParser) -> None:
    from noisevision.probe.commands import add_demo_arguments
    add_demo_arguments(p)


def _cmd_demo(args: argparse.Namespace) -> int:
    from noisevision.probe.commands import run_demo
    return run_demo(args)


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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UsageError as exc:
        print(f"noisevision: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("noisevision: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
