"""`list`, `preview`, `generate` and `verify`: generators and their datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from noisevision.argtypes import (
    MAX_INDEX,
    count_int,
    index_int,
    quality_int,
    resolution_int,
    seed_int,
    workers_int,
)
from noisevision.cli.common import (
    _add_set,
    bounded_count,
    format_indices,
    generator_options,
    parse_indices,
    refuse_inapplicable,
)
from noisevision.errors import UsageError


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


MAX_PREVIEW = 256  # images on one contact sheet


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
    refuse_inapplicable(args, [("n", not args.indices, "a sheet without --indices")])
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
    jpeg = encoding["format"] == "jpg"
    refuse_inapplicable(args, [("jpeg_quality", jpeg, "--format jpg"),
                               ("jpeg_subsampling", jpeg, "--format jpg")])
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

    refuse_inapplicable(args, [("sample", not args.indices, "a random sample (no --indices)"),
                               ("seed", not args.indices, "a random sample (no --indices)")])
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
