"""Properties against probe accuracy: Pearson and Spearman r with bootstrap intervals, partial
correlations, the paper's Figures 6 and 7, correlation.json/.md."""


from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from noisevision.errors import UsageError


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
