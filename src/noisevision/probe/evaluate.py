"""Probe several frozen encoders on several tasks; one results table (JSON + markdown).

Features are extracted once per (encoder, task) and shared by the cached linear probe and kNN;
the augmented (paper) linear probe re-encodes the training set every epoch. Every row records the
task, the feature extractor, the method, the accuracy, chance level and timings.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from noisevision.errors import UsageError
from noisevision.probe.datasets import EvalTask
from noisevision.probe.features import check_unchanged, weights_snapshot
from noisevision.probe.knn import knn_accuracy
from noisevision.probe.linear import LinearProbeConfig, cached_features, linear_probe
from noisevision.probe.progress import PROGRESS, ProbeProgress, model_digest, strip

METHODS = ("linear", "knn")


@dataclasses.dataclass(frozen=True)
class KnnConfig:
    k: int = 20                        # neighbours (Wu et al. 2018 use 200 on ImageNet)
    temperature: float | None = 0.07   # vote weight exp(sim / T); None: majority vote


def evaluate(encoders: dict[str, nn.Module], tasks: Sequence[EvalTask], *,
             methods: Sequence[str] = ("linear",), linear: LinearProbeConfig | None = None,
             knn: KnnConfig | None = None, device: torch.device | str = "cpu",
             batch_size: int = 256, num_workers: int = 0, log=None,
             progress: ProbeProgress | None = None) -> list[dict]:
    """Rows {task, encoder, method, val_acc, ...} for every encoder x task x method.

    With `progress` (loaded), rows it holds for the same weights and task are reused and every
    new row is recorded there as it finishes."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UsageError(f"unknown probe method {bad or methods} (allowed: {', '.join(METHODS)})")
    linear, knn = linear or LinearProbeConfig(), knn or KnnConfig()
    device = torch.device(device)
    digests = {name: model_digest(m) for name, m in encoders.items()} if progress else {}
    rows = []
    for task in tasks:
        summary = task.summary()
        for name, model in encoders.items():
            done = progress.done(summary, name, digests[name]) if progress else {}
            todo = [m for m in methods if m not in done]
            model.to(device).eval()
            before = weights_snapshot(model)
            feats, t_feat = None, 0.0
            if "knn" in todo or ("linear" in todo and linear.mode == "cached"):
                t0 = time.perf_counter()
                feats = cached_features(model, task, device=device, batch_size=batch_size,
                                        num_workers=num_workers)
                t_feat = time.perf_counter() - t0
            base = {"task": task.name, "encoder": name, "classes": task.num_classes,
                    "chance": 1.0 / task.num_classes, "train_images": len(task.train),
                    "val_images": len(task.val),
                    "feature_dim": int(getattr(model, "feature_dim", 0)),
                    "feature_seconds": round(t_feat, 2)}
            for method in methods:
                if method in done:
                    row = strip([done[method]])[0]
                    rows.append(row)
                    if log:
                        log(f"{task.name:>14} {name:>28} {method:>6}: "
                            f"{100 * row['val_acc']:.1f}% (done before: {PROGRESS})")
                    continue
                t0 = time.perf_counter()
                if method == "linear":
                    r = linear_probe(model, task, linear, device=device, batch_size=batch_size,
                                     num_workers=num_workers,
                                     features=feats if linear.mode == "cached" else None)
                    extra = {"mode": linear.mode, "epochs": linear.epochs,
                             "seed": linear.seed, "train_acc": r.get("train_acc")}
                else:
                    r = knn_accuracy(*feats, task.num_classes, k=knn.k,
                                     temperature=knn.temperature)
                    extra = {"k": knn.k, "temperature": knn.temperature}
                row = {**base, "method": method, "val_acc": r["val_acc"], **extra,
                       "probe_seconds": round(time.perf_counter() - t0, 2)}
                rows.append(row)
                if progress:
                    progress.add(row, summary, digests[name])
                if log:
                    log(f"{task.name:>14} {name:>28} {method:>6}: {100 * row['val_acc']:.1f}% "
                        f"(chance {100 * row['chance']:.1f}%)")
            check_unchanged(before, model)
    return rows


def results_markdown(rows: Sequence[dict], title: str | None = None) -> str:
    """A table: one line per feature extractor, one column per (task, method), accuracy in %."""
    cols = list(dict.fromkeys((r["task"], r["method"]) for r in rows))
    encs = list(dict.fromkeys(r["encoder"] for r in rows))
    acc = {(r["encoder"], r["task"], r["method"]): r["val_acc"] for r in rows}
    chance = {r["task"]: r["chance"] for r in rows}
    lines = [f"## {title}", ""] if title else []
    lines.append("| features | " + " | ".join(f"{t} {m}" for t, m in cols) + " |")
    lines.append("| --- |" + " ---: |" * len(cols))
    for e in encs:
        cells = [f"{100 * acc[(e, t, m)]:.1f}" if (e, t, m) in acc else "" for t, m in cols]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines.append("| *chance* | " + " | ".join(f"{100 * chance[t]:.1f}" for t, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def _is_results_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and set(data) == {"meta", "rows"}


def check_results_folder(out: str | Path) -> Path:
    """Before any work: `out` can hold results.json/.md without replacing a foreign file."""
    from noisevision.safety import check_output_dir

    out = check_output_dir(out)
    rj, rm = out / "results.json", out / "results.md"
    for p in (rj, rm, out / PROGRESS):
        if p.is_symlink() or p.is_dir():
            raise UsageError(f"{p} is a link or a folder: noisevision will not replace it; "
                             "choose another --out")
    if rj.exists() and not _is_results_file(rj):
        raise UsageError(f"{rj} exists and is not a noisevision results file: it will not be "
                         "replaced; choose another --out")
    if rm.exists() and not rj.exists():
        raise UsageError(f"{rm} exists without a noisevision results.json beside it: it will "
                         "not be replaced; choose another --out")
    return out


def write_results(out: str | Path, rows: Sequence[dict], meta: dict, title: str) -> Path:
    """RESULTS: out/results.json ({meta, rows}) and out/results.md (the table), atomically."""
    from noisevision.data.encode import write_atomic

    out = check_results_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "results.json", json.dumps({"meta": meta, "rows": list(rows)},
                                                      indent=2, default=str).encode())
        write_atomic(out / "results.md", results_markdown(rows, title).encode())
    except OSError as exc:
        raise UsageError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return out
