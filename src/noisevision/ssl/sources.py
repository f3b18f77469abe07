"""Training data: generators rendered on the fly, image folders, and weighted mixtures of both.

A data spec names one or more sources with weights, e.g.
``dead_leaves_shapes:1,stat_spectrum_color_wmm:1,/data/stylegan_oriented:2``. Each source is a
registered generator name or a folder (one written by ``noisevision generate``, any ImageFolder
tree or a plain folder of images, searched recursively, or the WebDataset tar shards of
``generate --layout shards``, read in order by data/shard_stream.py).

Generators run in one of two regimes (Baradad et al. 2021, Sec. 4 and Table 1):
* ``cached``: a fixed index set (the paper's 105k / 1.3M datasets) rendered once on the training
  device and kept there as uint8 (105k images at 128 px are 5 GB);
* ``continuous``: fresh indices every epoch, rendered every step (the paper's 38.94% experiment).

Every epoch has ``images`` slots in all, shared between the sources in proportion to their
weights (a generator's fixed index set holds exactly its share). Under DDP each rank owns a
disjoint shard of every source (indices r, r + W, r + 2W, ...), renders or reads only that shard,
and draws its batches from it. The order of an epoch is a pure function of (seed, epoch, rank),
so a run resumes from (epoch, step) without any saved sampler state.

All sources deliver square images of one side ``image_size`` (folders are resized on decoding
when their images differ, with PIL's antialiased bilinear filter).
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisevision.data.wds import folder_items, is_foreign_shards
from noisevision.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
GENERATOR_MODES = ("cached", "continuous")


@dataclass(frozen=True)
class SourceSpec:
    source: str   # generator name or folder path
    weight: float  # relative share of every epoch


def parse_data_spec(spec: str) -> list[SourceSpec]:
    """'a:1,b:2,/folder' -> [SourceSpec]; weights default to 1 and must be finite and > 0.

    An existing path is taken whole, so a folder whose name holds ':' or ',' needs no quoting
    (the whole spec, or one entry). A source listed twice is refused: its weight says how much.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("--data is empty (give a generator name, a folder, or NAME:WEIGHT,...)")
    if os.path.exists(spec.strip()):
        return [SourceSpec(spec.strip(), 1.0)]
    out: list[SourceSpec] = []
    seen: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"empty entry in --data {spec!r} (format: SOURCE[:WEIGHT],...)")
        source, weight = item, 1.0
        if ":" in item and not os.path.exists(item):
            source, text = item.rsplit(":", 1)
            try:
                weight = float(text)
            except ValueError:
                raise UsageError(f"bad weight {text!r} for {source!r} in --data "
                                 "(allowed: a positive number, e.g. name:2)") from None
            if not (math.isfinite(weight) and weight > 0):
                raise UsageError(f"bad weight {text!r} for {source!r} in --data "
                                 "(allowed: a positive finite number)")
        source = source.strip()
        key = os.path.realpath(source) if os.path.exists(source) else source
        if key in seen:
            raise UsageError(f"{source!r} is listed twice in --data {spec!r} (give it once; a "
                             f"weight sets its share, e.g. {seen[key]}:2)")
        seen[key] = source
        out.append(SourceSpec(source, weight))
    return out


def source_kind(source: str) -> str:
    """"generator" for a registered name, "folder" for a path; UsageError for neither."""
    from noisevision.generators.base import GENERATORS, _ensure_families_loaded
    _ensure_families_loaded()
    if source in GENERATORS:
        return "generator"
    if os.sep in source or source.startswith(".") or os.path.exists(source):
        return "folder"
    raise UsageError(f"{GENERATORS.unknown_message(source)}; or give an existing folder "
                     "of images")


def _seed_for(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


# ---------------------------------------------------------------- components

class GeneratorComponent:
    """A registered generator on the training device (cached index set or continuous)."""

    def __init__(self, name: str, *, image_size: int, seed: int, mode: str,
                 render_batch: int | None = None) -> None:
        from noisevision.generators.base import create_generator
        if mode not in GENERATOR_MODES:
            raise UsageError(f"unknown generator mode {mode!r} "
                             f"(allowed: {', '.join(GENERATOR_MODES)})")
        self.name, self.mode, self.seed = name, mode, int(seed)
        self.generator = create_generator(name, resolution=image_size)
        self.render_batch = render_batch
        self.cache: torch.Tensor | None = None
        self.images = 0  # the whole index set (all ranks): set by prepare()

    def describe(self) -> dict:
        return {"kind": "generator", "mode": self.mode, "images": self.images,
                **self.generator.describe()}

    def prepare(self, images: int, device: torch.device, rank: int, world: int,
                progress: bool) -> None:
        self.images, self.device, self.rank, self.world = images, device, rank, world
        if self.mode == "cached":
            self.cache = self._render_shard(progress)

    def shard_size(self) -> int | None:
        """Distinct items this rank owns (None: unbounded, fresh every epoch)."""
        return None if self.mode == "continuous" else len(range(self.rank, self.images,
                                                                  self.world))

    def _render_shard(self, progress: bool) -> torch.Tensor:
        from tqdm import tqdm
        idx = torch.arange(self.rank, self.images, self.world, device=self.device)
        bs = self.render_batch or self.generator.default_batch_size(self.device)
        s = self.generator.resolution
        cache = torch.empty(idx.numel(), 3, s, s, dtype=torch.uint8, device=self.device)
        bar = tqdm(total=idx.numel(), desc=f"render {self.name}", unit="img",
                   disable=not progress, leave=False)
        for i in range(0, idx.numel(), bs):
            part = idx[i:i + bs]
            cache[i:i + bs] = self.generator.images(part, self.seed, batch_size=bs,
                                                    dtype=torch.uint8)
            bar.update(part.numel())
        bar.close()
        return cache

    @torch.no_grad()
    def fetch(self, epoch: int, ids: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[ids.to(self.device)]
        # Fresh indices: epoch e owns [e * images, (e + 1) * images), rank r every W-th of them.
        idx = epoch * self.images + self.rank + self.world * ids.to(self.device)
        return self.generator.images(idx, self.seed, batch_size=idx.numel())

    def batches(self, epoch: int, id_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        for ids in id_batches:
            yield self.fetch(epoch, ids)


class _FolderDataset(torch.utils.data.Dataset):
    def __init__(self, files: list[str], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        from noisevision.data.wds import read_item

        try:
            arr = read_item(self.files[i])
            if arr.shape[:2] != (self.size, self.size):
                im = Image.fromarray(arr).resize((self.size, self.size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
            arr = arr.copy()
        except UsageError as exc:  # reported in the main process, one line
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(exc)
        return torch.from_numpy(arr).permute(2, 0, 1), ""


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([x for x, _ in items]), [e for _, e in items if e]


def scan_folder(path: str | os.PathLike) -> list[str]:
    """Image files under `path`, recursively, sorted; hidden and temporary files skipped.

    A dataset that `generate` wrote (a folder with its manifest.json, at the top or below)
    contributes exactly its images, in index order: not its contact sheet `sheet.png` nor
    anything else put there; an incomplete one is refused rather than read in part."""
    root = Path(path)
    if not root.exists():
        raise UsageError(f"data folder {str(root)!r} does not exist "
                         "(give a folder of images or a registered generator name)")
    if not root.is_dir():
        raise UsageError(f"data source {str(root)!r} is not a folder")
    top = dataset_files(root)
    if top is not None:
        return top
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        inner = dataset_files(Path(dirpath)) if "manifest.json" in filenames else None
        if inner is not None:
            files += inner
            dirnames[:] = []
            continue
        files += [os.path.join(dirpath, f) for f in filenames
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise UsageError(f"data folder {str(root)!r} holds no images "
                         f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    return sorted(files)


def dataset_files(root: Path) -> list[str] | None:
    """The image files of the folder-layout dataset in `root` in index order, or None where
    `root` holds no noisevision manifest (someone else's manifest.json, a shards dataset)."""
    import json

    from noisevision.data.layout import image_path, scan_images
    from noisevision.data.manifest import FORMAT_TAG, MANIFEST, Manifest

    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format_tag") != FORMAT_TAG:
        return None
    m = Manifest.read(root)  # ours: a damaged field is one line
    if m.layout != "folder":
        return None
    found, _ = scan_images(root, m.format)
    missing = [i for i in range(m.start, m.stop) if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise UsageError(f"dataset {str(root)!r} is incomplete: {len(missing):,} of "
                         f"{m.count:,} images are missing or damaged (indices {shown}); "
                         "rerun the `noisevision generate` command that wrote it to finish it")
    return [str(image_path(root, i, m.format)) for i in range(m.start, m.stop)]


class FolderComponent:
    """A folder of images read by DataLoader workers (PIL decoding) and sent to the device."""

    def __init__(self, path: str, *, image_size: int, workers: int = 4) -> None:
        self.path, self.image_size, self.workers = path, image_size, workers
        self.shards = is_foreign_shards(path)  # real images as WebDataset shards: samples
        self.files = folder_items(path)        # read by seeking (data/wds.py)
        if not self.shards:
            from noisevision.data.encode import image_size

            for f in self.files:  # header check of every file: cheap, catches most corrupt
                image_size(f)     # files and refuses decompression bombs before any decoding
        self.images = len(self.files)

    def describe(self) -> dict:
        return {"kind": "folder", "path": str(Path(self.path).resolve()), "images": self.images,
                **({"format": "shards"} if self.shards else {})}

    def prepare(self, images: int, device: torch.device, rank: int, world: int,
                progress: bool) -> None:
        del images, progress  # a folder's size is its own
        self.device = device
        self.shard = self.files[rank::world]
        if not self.shard:
            raise UsageError(f"data folder {self.path!r} has fewer images ({len(self.files)}) "
                             f"than processes ({world})")

    def shard_size(self) -> int | None:
        return len(self.shard)

    def batches(self, epoch: int, id_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        del epoch
        loader = torch.utils.data.DataLoader(
            _FolderDataset(self.shard, self.image_size),
            batch_sampler=[ids.tolist() for ids in id_batches], num_workers=self.workers,
            collate_fn=_collate, pin_memory=self.device.type == "cuda",
            persistent_workers=False)
        for images, errors in loader:
            if errors:
                raise UsageError(errors[0])
            yield images.to(self.device, non_blocking=True)


class ShardsComponent:
    """A shards dataset (generate --layout shards) streamed by DataLoader workers: rank r reads
    its own slice of every epoch, shard by shard (data/shard_stream.py for the order)."""

    streaming = True  # delivers its own epoch order: the plan gives stream positions

    def __init__(self, path: str, *, image_size: int, seed: int, workers: int = 4) -> None:
        from noisevision.data.shards import open_shards

        self.path, self.image_size, self.seed, self.workers = path, image_size, seed, workers
        self.shards = open_shards(path)  # every shard present, complete and of this dataset
        self.images = self.shards.count

    def describe(self) -> dict:
        from noisevision.data.shards import dataset_hash

        m = self.shards.manifest
        return {"kind": "shards", "path": str(Path(self.path).resolve()), "images": self.images,
                "shards": self.shards.plan.num, "shard_size": m.shard_size,
                "generator": m.generator, "dataset": dataset_hash(m)}

    def prepare(self, images: int, device: torch.device, rank: int, world: int,
                progress: bool) -> None:
        del progress
        self.device, self.rank, self.world = device, rank, world
        self.count = images // world  # this rank's images of an epoch (DataSource.counts)
        if self.images // world < 1:
            raise UsageError(f"shards folder {self.path!r} holds {self.images} images, fewer "
                             f"than the {world} processes")

    def shard_size(self) -> int | None:
        return None

    def batches(self, epoch: int, id_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        from noisevision.data import shard_stream

        if not id_batches:
            return
        start = int(id_batches[0][0])  # stream positions: consecutive from here
        windows = shard_stream.epoch_windows(self.shards, self.seed, epoch, self.rank,
                                             self.world, self.count)
        chunks = shard_stream.stream(self.shards, shard_stream.skip(windows, start),
                                     self.image_size, self.workers,
                                     pin_memory=self.device.type == "cuda")
        for images in shard_stream.batches(chunks, [ids.numel() for ids in id_batches]):
            yield images.to(self.device, non_blocking=True)


def is_shards_source(source: str) -> bool:
    """A shards dataset that `generate --layout shards` wrote (its manifest missing: refused
    by open_shards with one line)."""
    from noisevision.data.shards import is_shards_folder

    return is_shards_folder(source) and not is_foreign_shards(source)


def source_image_side(source: str) -> int:
    """The image side of a folder source: the manifest's resolution for shards, else the side
    of its first image."""
    from noisevision.data.encode import image_size

    if is_shards_source(source):
        from noisevision.data.shards import open_shards

        return open_shards(source).manifest.resolution
    if is_foreign_shards(source):  # the first sample of the first shard: one shard indexed
        from noisevision.data.wds import index_shard, read_item

        shard = sorted(Path(source).glob("*.tar"))[0]
        first = index_shard(shard, labels_needed=False)[0]
        if not first:
            raise UsageError(f"shard {shard} holds no samples")
        return int(min(read_item(first[0]).shape[:2]))
    return int(min(image_size(scan_folder(source)[0])))


# ---------------------------------------------------------------- the mixture and its plan

class DataSource:
    """Weighted mixture of components; yields this rank's batches of one epoch."""

    def __init__(self, spec: str, *, image_size: int, images: int | None, seed: int,
                 generator_mode: str = "cached", workers: int = 4,
                 render_batch: int | None = None) -> None:
        self.specs = parse_data_spec(spec)
        self.seed = int(seed)
        self.components: list[GeneratorComponent | FolderComponent | ShardsComponent] = []
        for i, s in enumerate(self.specs):
            if source_kind(s.source) == "generator":
                self.components.append(GeneratorComponent(
                    s.source, image_size=image_size, seed=seed, mode=generator_mode,
                    render_batch=render_batch))
            elif is_shards_source(s.source):
                self.components.append(ShardsComponent(s.source, image_size=image_size,
                                                       seed=_seed_for(seed, "shards", i),
                                                       workers=workers))
            else:
                self.components.append(FolderComponent(s.source, image_size=image_size,
                                                       workers=workers))
        if images is None:
            if any(isinstance(c, GeneratorComponent) for c in self.components):
                raise UsageError("--images is needed when --data names a generator")
            images = sum(c.images for c in self.components)
        if not (isinstance(images, int) and images >= 1):
            raise UsageError(f"--images must be a positive integer, got {images!r}")
        total_w = sum(s.weight for s in self.specs)
        shares = [int(round(images * s.weight / total_w)) for s in self.specs]
        shares[-1] = images - sum(shares[:-1])
        if min(shares) < 1:
            raise UsageError(f"--images {images} is too small for {len(shares)} weighted sources")
        self.images, self.shares, self.image_size = images, shares, image_size

    def describe(self) -> list[dict]:
        return [{"weight": s.weight, "share": n, **c.describe()}
                for s, n, c in zip(self.specs, self.shares, self.components, strict=True)]

    def prepare(self, device: torch.device, rank: int = 0, world: int = 1,
                progress: bool = True) -> None:
        self.rank, self.world = rank, world
        for n, c in zip(self.shares, self.components, strict=True):
            c.prepare(n, device, rank, world, progress)
        # Slots of one epoch on this rank, per component (the same on every rank).
        self.counts = [n // world for n in self.shares]

    def steps_per_epoch(self, batch_size: int) -> int:
        return sum(self.counts) // batch_size

    def plan(self, epoch: int, batch_size: int) -> list[list[torch.Tensor]]:
        """plan[step][component] = this rank's item ids (CPU int64) for that step."""
        per_comp = []
        for i, (c, n) in enumerate(zip(self.components, self.counts, strict=True)):
            size = c.shard_size()
            if size is None:  # continuous generators, shards: positions in their own stream
                per_comp.append(torch.arange(n))
                continue
            g = torch.Generator().manual_seed(_seed_for(self.seed, epoch, self.rank, i))
            reps = [torch.randperm(size, generator=g) for _ in range(-(-n // size))]
            per_comp.append(torch.cat(reps)[:n])
        g = torch.Generator().manual_seed(_seed_for(self.seed, epoch, self.rank, "mix"))
        owner = torch.cat([torch.full((n,), i) for i, n in enumerate(self.counts)])
        owner = owner[torch.randperm(owner.numel(), generator=g)]
        steps = owner.numel() // batch_size
        owner = owner[:steps * batch_size].view(steps, batch_size)
        out: list[list[torch.Tensor]] = [[] for _ in range(steps)]
        for i, ids in enumerate(per_comp):
            used = (owner == i).sum(dim=1).tolist()
            start = 0
            for s in range(steps):
                out[s].append(ids[start:start + used[s]])
                start += used[s]
        return out

    def epoch_batches(self, epoch: int, batch_size: int,
                      start_step: int = 0) -> Iterator[torch.Tensor]:
        """This rank's image batches (b, 3, S, S) of `epoch`, from `start_step` on."""
        plan = self.plan(epoch, batch_size)[start_step:]
        iters = [c.batches(epoch, [p[i] for p in plan if p[i].numel()])
                 for i, c in enumerate(self.components)]
        for step in plan:
            parts = [next(iters[i]) for i, ids in enumerate(step) if ids.numel()]
            if any(p.dtype != torch.uint8 for p in parts) and len(parts) > 1:
                parts = [p.float() / 255.0 if p.dtype == torch.uint8 else p for p in parts]
            yield parts[0] if len(parts) == 1 else torch.cat(parts)
