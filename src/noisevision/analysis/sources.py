"""The image sources of `noisevision analyze`, read the same way everywhere (`open_source`):
generators rendered on the fly, dataset folders and shards, image folders and the photo crops."""


from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisevision.errors import UsageError

PHOTOS = "photos"


@dataclass
class ImageSource:
    """A named stream of same-size images: `batches(n, batch)` yields uint8 (B, 3, H, W)."""

    spec: str                     # what the user wrote
    kind: str                     # "generator" | "dataset" | "folder" | "photos"
    identity: dict[str, Any]      # what the images are (keys the feature cache)
    available: int | None         # how many images it holds (None: unbounded)
    resolution: int | None = None
    _files: list[str] = field(default_factory=list, repr=False)
    _generator: Any = field(default=None, repr=False)
    _device: torch.device = field(default_factory=lambda: torch.device("cpu"), repr=False)
    _shards: Any = field(default=None, repr=False)  # a data.shards.ShardSet
    _read: Callable[[Any], np.ndarray] | None = field(default=None, repr=False)  # not files
    workers: int = 1              # CPU processes rendering a generator, or threads decoding files

    def check_count(self, n: int, what: str) -> None:
        if self.available is not None and self.available < n:
            raise UsageError(f"{self.spec} holds {self.available} images, fewer than the {n} "
                             f"that {what} needs (lower --n)")

    def batches(self, n: int, batch: int = 64) -> Iterator[torch.Tensor]:
        """The first n images as uint8 (B, 3, H, W) batches."""
        self.check_count(n, "the analysis")
        if self.kind == "generator":
            starts = list(range(0, n, batch))
            if self._device.type == "cpu" and self.workers > 1 and len(starts) > 1:
                from noisevision.generators.parallel import render_in_processes

                yield from render_in_processes(
                    self._generator, [range(i, min(n, i + batch)) for i in starts], 0,
                    self.workers)
                return
            for i in starts:  # on a GPU the images stay there (the metrics run there too)
                idx = torch.arange(i, min(n, i + batch), device=self._device)
                yield self._generator.images(idx, 0, dtype=torch.uint8)
            return
        if self.kind == "photos":
            yield from _photo_batches(n, self.resolution or 128, batch)
            return
        if self._shards is not None:
            from noisevision.data.shards import index_batches

            yield from index_batches(self._shards, n, batch, self.workers)
            return
        shape = None
        gpu = self.identity.get("decoder") == "nvjpeg"
        files = self._files[:n]
        batches = (_gpu_decoded_batches(files, batch, self.workers, self._device)
                   if gpu else _decoded_batches(files, batch, self.workers, self._read))
        for i, arrays in batches:
            for f, a in zip(files[i:i + batch], arrays, strict=True):
                hw = tuple(a.shape[-2:]) if gpu else tuple(a.shape[:2])
                if shape is None:
                    shape = hw
                elif hw != shape:
                    raise UsageError(
                        f"{self.spec}: images of different sizes ({f} is {hw[1]}x{hw[0]}, the "
                        f"first was {shape[1]}x{shape[0]}); analyze needs one size per source")
            if gpu:
                yield torch.stack(arrays)
            else:
                yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def key(self, n: int) -> dict[str, Any]:
        return {**self.identity, "n": n}


def _read_ahead(files: list[str], batch: int, workers: int,
                read: Callable[[str], Any]) -> Iterator[tuple[int, list]]:
    """(start, [read(f) for f in the batch]) per batch of `files`, in order; with workers > 1
    read by that many threads (PIL decoding and file reads release the interpreter lock) with
    the next batch read ahead."""
    from concurrent.futures import ThreadPoolExecutor

    starts = list(range(0, len(files), batch))
    if workers <= 1:
        for i in starts:
            yield i, [read(f) for f in files[i:i + batch]]
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = [pool.map(read, files[i:i + batch]) for i in starts[:2]]
        for k, i in enumerate(starts):
            items = list(pending.pop(0))
            if k + 2 < len(starts):
                j = starts[k + 2]
                pending.append(pool.map(read, files[j:j + batch]))
            yield i, items


def _decoded_batches(files: list, batch: int, workers: int,
                     read: Callable[[Any], np.ndarray] | None = None
                     ) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(start, decoded (H, W, 3) arrays) per batch of `files` (or of shard members with their
    `read`), decoded by `workers` threads."""
    from noisevision.data.encode import read_rgb

    return _read_ahead(files, batch, workers, read or read_rgb)


JPEG_SUFFIXES = (".jpg", ".jpeg")


def _jpeg_bytes(path: str) -> torch.Tensor:
    """A JPEG file's bytes, after the header check of every decode (a bomb or a non-image is
    refused with one line, as `read_rgb` does)."""
    from noisevision.data.encode import image_size

    image_size(path)
    return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)


def decode_jpegs(files: list[str], datas: list[torch.Tensor],
                 device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes -> (3, H, W) uint8 RGB tensors on `device` (nvJPEG on CUDA, batched); a file
    the batched decoder rejects is read again by the checked CPU decoder, which names it."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    def dec(data):
        with warnings.catch_warnings():  # torchvision >= 0.29: "deprecated, see TorchCodec"
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)

    try:
        return list(dec(datas))
    except RuntimeError:
        from noisevision.data.encode import read_rgb

        out = []
        for f, d in zip(files, datas, strict=True):
            try:
                out.append(dec(d))
            except RuntimeError:
                read_rgb(f)  # raises the one-line UsageError naming the file
                raise UsageError(f"cannot decode JPEG {f} on {device}") from None
        return out


def _gpu_decoded_batches(files: list[str], batch: int, workers: int,
                         device: torch.device) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """(start, (3, H, W) uint8 tensors on `device`) per batch of JPEG `files`: bytes read by
    `workers` threads (the next batch read ahead), decoded on the GPU."""
    for i, datas in _read_ahead(files, batch, max(2, workers), _jpeg_bytes):
        yield i, decode_jpegs(files[i:i + batch], datas, device)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_source(spec: str, *, device: torch.device | str = "cpu",
                resolution: int | None = None, workers: int = 1) -> ImageSource:
    """A generator name, a dataset folder, an image folder or `photos` -> ImageSource."""
    from noisevision.generators.base import create_generator

    if spec == PHOTOS:
        from noisevision.probe.datasets import PHOTO_HINT, available_photos

        photos = available_photos()
        if not photos:
            raise UsageError(f"the packaged photographs are missing; {PHOTO_HINT}")
        res = resolution or 128
        return ImageSource(spec, "photos", {"kind": "photos", "photos": len(photos),
                                            "resolution": res, "version": 1}, None, res)
    path = Path(spec)
    if path.is_dir():
        from noisevision.data.shards import is_shards_folder
        from noisevision.data.wds import is_foreign_shards

        if is_foreign_shards(str(path)):
            return _foreign_shards(spec, path, device, workers)
        if is_shards_folder(path):
            from noisevision.data.shards import open_shards

            sh = open_shards(path, complete=False)  # the present shards, in index order
            present = sum(sh.plan.length(k) for k in sh.paths)
            ident = {"kind": "dataset", "identity": sh.manifest.identity(), "present": present}
            return ImageSource(spec, "dataset", ident, present, sh.manifest.resolution,
                               _shards=sh, workers=workers)
        if (path / "manifest.json").is_file():
            from noisevision.data.layout import scan_images
            from noisevision.data.manifest import Manifest

            m = Manifest.read(path)
            present, _ = scan_images(path, m.format)
            from noisevision.data.layout import image_path

            files = [str(image_path(path, i, m.format)) for i in sorted(present)]
            ident = {"kind": "dataset", "identity": m.identity(), "present": len(files),
                     **_decoder(files, device)}
            return ImageSource(spec, "dataset", ident, len(files), m.resolution, files,
                               _device=torch.device(device), workers=workers)
        from noisevision.ssl.sources import scan_folder

        files = scan_folder(path)  # recursive, sorted, hidden files skipped, none: UsageError
        stats = [(f, os.stat(f).st_size, int(os.stat(f).st_mtime)) for f in files]
        ident = {"kind": "folder", "path": str(path.resolve()), "files": _digest(stats),
                 **_decoder(files, device)}
        return ImageSource(spec, "folder", ident, len(files), None, files,
                           _device=torch.device(device), workers=workers)
    if path.exists():
        raise UsageError(f"source {spec!r} is a file (allowed: a generator name, a folder of "
                         f"images or {PHOTOS!r})")
    if "/" not in spec and not spec.startswith("."):
        gen = create_generator(spec, resolution=resolution)  # unknown names: close suggestions
        dev = torch.device(device)
        ident = {"kind": "generator", **gen.describe(), "seed": 0, "device": dev.type}
        return ImageSource(spec, "generator", ident, None, gen.resolution, _generator=gen,
                           _device=dev, workers=workers)
    raise UsageError(f"source folder {spec!r} does not exist (allowed: a generator name, a "
                     f"folder of images or {PHOTOS!r})")


def _foreign_shards(spec: str, path: Path, device: torch.device | str,
                    workers: int) -> ImageSource:
    """A folder of WebDataset shards that `generate` did not write (real images kept as
    shards, e.g. a FID reference set): every sample's image, in shard-name then tar order."""
    from noisevision.data.wds import folder_items, read_item

    members = folder_items(str(path))
    stats = [(p.name, p.stat().st_size, int(p.stat().st_mtime))
             for p in sorted(path.glob("*.tar"))]
    ident = {"kind": "folder", "format": "shards", "path": str(path.resolve()),
             "files": _digest(stats)}
    return ImageSource(spec, "folder", ident, len(members), None, members,
                       _device=torch.device(device), workers=workers, _read=read_item)


def _decoder(files: list[str], device: torch.device | str) -> dict[str, str]:
    """{"decoder": "nvjpeg"} where a folder of JPEGs is decoded on a CUDA device (nvJPEG's
    pixels may differ from libjpeg's by a level: part of the feature cache key), else {}."""
    if (torch.device(device).type == "cuda" and files
            and all(f.lower().endswith(JPEG_SUFFIXES) for f in files)):
        try:
            import torchvision.io as tvio
        except ImportError:
            return {}
        if hasattr(tvio, "decode_jpeg"):  # deprecated in torchvision 0.29 for TorchCodec
            return {"decoder": "nvjpeg"}
    return {}


def _photo_batches(n: int, size: int, batch: int) -> Iterator[torch.Tensor]:
    """n square crops (20-45% of the short side) of the packaged photographs, cycling through
    them, resized to size x size: a deterministic, seeded stand-in for natural images."""
    from PIL import Image

    from noisevision.probe.datasets import _open_photo, available_photos

    photos = available_photos()
    rng = np.random.default_rng(0)
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in range(n):
        j = i % len(photos)
        if j not in cache:
            if len(cache) > 8:
                cache.clear()
            cache[j] = _open_photo(photos[j], 4 * size)
        photo = cache[j]
        h, w = photo.shape[:2]
        side = max(8, int(rng.uniform(0.2, 0.45) * min(h, w)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BICUBIC)
        out.append(np.asarray(crop))
        if len(out) == batch or i == n - 1:
            yield torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()
            out = []
