"""What a study shows: results.json (every number, the command, versions, git sha),
results.md, and report.html, a single self-contained page (figures and contact sheets embedded
as data: URIs; no script, no stylesheet or font from elsewhere, so it opens offline).

Figures (matplotlib, the `report` extra), after the paper:

* Figure 3, per task: the families sorted by linear accuracy (95% Wilson intervals as error
  bars), the baselines (mean colour, raw pixels, random init) as dashed lines;
* Figure 4: the mean linear accuracy over each group of tasks (a suite folder is a group; a
  single task is its own group), families sorted by the mean over all tasks;
* Figures 6 and 7, per task: accuracy against the measured properties
  (`noisevision.analysis.draw_figures`), with Pearson r in the titles; and the table of
  Pearson/Spearman r with 95% bootstrap intervals (needs at least 3 families).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from noisevision.study import folder
from noisevision.study.families import slug

# Paper Table 1 (ResNet-50, MoCo v2, 1.3M images): linear top-1 on ImageNet-100, %. Only these
# three of the study's default families appear there; the paper places StyleGAN-Random
# ("StyleGAN default") outside the natural spectrum range (Sec. 5.1, Fig. 6b).
PAPER_TABLE1_I100 = {"stylegan_oriented": 58.70, "stat_spectrum_color_wmm": 56.04,
                     "dead_leaves_shapes": 38.34}
BASELINES = ("mean colour", "raw pixels")
TIMING_KEYS = ("seconds", "feature_seconds", "probe_seconds", "timings_s", "images_per_s")


def wilson(acc: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion `acc` measured on n items."""
    if n <= 0:
        return [math.nan, math.nan]
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


# --------------------------------------------------------------------------- collect


def collect(out: Path, families: list[str], tasks, settings: dict) -> dict:
    """Every finished step's numbers, in the order of the families and tasks."""
    rows, fams, props = [], {}, {t.name: [] for t in tasks}
    for st in tasks:
        base = folder.read_step(out, folder.BASELINES, f"probe-{slug(st.name)}")
        rows += base["rows"] if base else []
    for f in families:
        key = slug(f)
        entry: dict = {"slug": key, "status": "done"}
        pre = folder.read_step(out, key, "pretrain")
        if pre:
            entry["pretrain"] = {k: pre.get(k) for k in ("run", "data", "images_per_s",
                                                         "seconds", "epochs", "images",
                                                         "batch_size", "device")}
        sheet = folder.read_step(out, key, "sheet")
        if sheet:
            entry["sheet"] = sheet["sheet"]
        for st in tasks:
            rec = folder.read_step(out, key, f"probe-{slug(st.name)}")
            rows += rec["rows"] if rec else []
        p = folder.read_step(out, key, "properties")
        if p:
            for st in tasks:
                if st.name in p["properties"]:
                    props[st.name].append(p["properties"][st.name])
        fail = folder.read_failure(out, key)
        missing = [s for s in _steps(f, tasks) if folder.read_step(out, key, s) is None]
        if fail:
            entry.update(status="failed", failed_step=fail.get("step"), error=fail.get("error"))
        elif missing:
            entry.update(status="incomplete", missing_steps=missing)
        fams[f] = entry
    for r in rows:
        r["val_acc_ci95"] = wilson(r["val_acc"], r["val_images"])
    return {"rows": rows, "families": fams, "properties": props}


def _steps(family: str, tasks) -> list[str]:
    return ["pretrain", "sheet", *[f"probe-{slug(t.name)}" for t in tasks], "properties"]


def _linear(rows, task: str) -> dict[str, dict]:
    return {r["encoder"]: r for r in rows if r["task"] == task and r["method"] == "linear"}


def family_accuracy(rows, family: str, task: str, method: str = "linear") -> float | None:
    for r in rows:
        if r["task"] == task and r["method"] == method and r["encoder"] == f"noise: {family}":
            return r["val_acc"]
    return None


def correlations(data: dict, families: list[str], tasks, boot: int = 2000) -> dict:
    """Per task: the table of (family, accuracy, properties) and Pearson/Spearman r of every
    numeric property with linear accuracy (>= 3 families with both and a spread)."""
    import numpy as np

    from noisevision.analysis import PAPER_R, partial_correlation, pearson_spearman

    out = {}
    for st in tasks:
        table = []
        for p in data["properties"][st.name]:
            acc = family_accuracy(data["rows"], p["family"], st.name)
            if acc is not None:
                table.append({"source": p["family"], **{k: v for k, v in p.items()
                                                        if k not in ("family", "task")},
                              "accuracy": acc})
        corr, extra = {}, {}
        skip = ("source", "accuracy", "n", "n_inception", "reference_n",
                "reference_n_inception")
        if len(table) >= 3:
            cols = [c for c in table[0] if c not in skip
                    and all(isinstance(r.get(c), (int, float)) for r in table)]
            y = np.array([r["accuracy"] for r in table], float)
            for c in cols:
                x = np.array([r[c] for r in table], float)
                if np.all(np.isfinite(x)) and np.ptp(x) > 0 and np.ptp(y) > 0:
                    corr[c] = {**pearson_spearman(x, y, boot), "paper_r": PAPER_R.get(c)}
            p_, r_ = "precision_inception", "recall_inception"
            if p_ in cols and r_ in cols:
                v = {k: np.array([row[k] for row in table], float) for k in (p_, r_)}
                if np.ptp(v[r_]) > 0:
                    extra["precision_vs_accuracy_given_recall"] = partial_correlation(
                        v[p_], y, v[r_])
        note = None if len(table) >= 3 else (
            f"{len(table)} families with both an accuracy and properties: a correlation "
            "needs at least 3")
        out[st.name] = {"table": table, "correlations": corr, "extra": extra, "note": note}
    return out


def paper_comparison(rows, families: list[str], tasks) -> dict:
    """Our ranking (mean linear accuracy over the tasks) beside the paper's Table 1."""
    from scipy import stats

    means = {}
    for f in families:
        accs = [family_accuracy(rows, f, t.name) for t in tasks]
        if accs and all(a is not None for a in accs):
            means[f] = sum(accs) / len(accs)
    ranking = sorted(means, key=lambda f: -means[f])
    common = [f for f in ranking if f in PAPER_TABLE1_I100]
    out = {"ranking": ranking, "mean_linear_accuracy": means,
           "paper_order": sorted(PAPER_TABLE1_I100, key=lambda f: -PAPER_TABLE1_I100[f]),
           "paper_table1_i100": PAPER_TABLE1_I100, "common": common}
    per_task = {}
    for t in tasks:
        fams = [f for f in common if family_accuracy(rows, f, t.name) is not None]
        if len(fams) >= 2:
            r = stats.spearmanr([family_accuracy(rows, f, t.name) for f in fams],
                                [PAPER_TABLE1_I100[f] for f in fams])[0]
            per_task[t.name] = {"n": len(fams), "spearman": float(r)}
    out["spearman_per_task"] = per_task
    if len(common) >= 2:
        out["spearman_mean"] = float(stats.spearmanr([means[f] for f in common],
                                                     [PAPER_TABLE1_I100[f] for f in common])[0])
    return out


# --------------------------------------------------------------------------- figures


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from noisevision.errors import UsageError

        raise UsageError("the report's figures need matplotlib: pip install "
                         "'noisevision[report]'") from None
    return plt


def _save(fig, path: Path) -> str:
    from noisevision.data.encode import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        write_atomic(path.with_suffix("." + ext), buf.getvalue())
    return str(path.with_suffix(".png"))


def figure3(rows, families, st, arch: str, path: Path) -> str | None:
    """Families sorted by linear accuracy with 95% intervals; baselines as dashed lines."""
    lin = _linear(rows, st.name)
    fams = [f for f in families if f"noise: {f}" in lin]
    if not fams and not lin:
        return None
    plt = _plt()
    fams.sort(key=lambda f: lin[f"noise: {f}"]["val_acc"])
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(fams) + 2.5), 3.6), dpi=110)
    acc = [100 * lin[f"noise: {f}"]["val_acc"] for f in fams]
    ci = [[100 * x for x in lin[f"noise: {f}"]["val_acc_ci95"]] for f in fams]
    err = [[a - c[0] for a, c in zip(acc, ci, strict=True)],
           [c[1] - a for a, c in zip(acc, ci, strict=True)]]
    ax.bar(range(len(fams)), acc, color="#4C72B0", yerr=err, capsize=3)
    styles = {"mean colour": "#C44E52", "raw pixels": "#8172B2",
              f"random-init {arch}": "#55A868"}
    for name, colour in styles.items():
        if name in lin:
            v = 100 * lin[name]["val_acc"]
            ax.axhline(v, ls="--", color=colour, lw=1.2, label=f"{name} {v:.1f}%")
    chance = 100 * next(iter(lin.values()))["chance"]
    ax.axhline(chance, ls=":", color="grey", lw=1, label=f"chance {chance:.1f}%")
    ax.set_xticks(range(len(fams)))
    ax.set_xticklabels(fams, rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("linear top-1 accuracy (%)")
    ax.set_title(f"Figure 3: {st.name} (val {lin[next(iter(lin))]['val_images']} images)",
                 fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    p = _save(fig, path)
    plt.close(fig)
    return p


def figure4(rows, families, tasks, path: Path) -> str | None:
    """Mean linear accuracy per task group, families sorted by the mean over every task."""
    groups = list(dict.fromkeys(t.group for t in tasks))
    means = {}
    for f in families:
        accs = {t.name: family_accuracy(rows, f, t.name) for t in tasks}
        if all(a is not None for a in accs.values()):
            means[f] = {g: 100 * sum(accs[t.name] for t in tasks if t.group == g)
                        / sum(1 for t in tasks if t.group == g) for g in groups}
            means[f]["all tasks"] = 100 * sum(accs.values()) / len(accs)
    if not means:
        return None
    plt = _plt()
    order = sorted(means, key=lambda f: means[f]["all tasks"])
    panels = [*groups, "all tasks"] if len(groups) > 1 else groups
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.4), dpi=110,
                             squeeze=False)
    for ax, g in zip(axes[0], panels, strict=True):
        ax.bar(range(len(order)), [means[f][g] for f in order], color="#4C72B0")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=30, ha="right", fontsize=6)
        n = sum(1 for t in tasks if t.group == g) if g != "all tasks" else len(tasks)
        ax.set_title(f"{g} ({n} task{'s' if n != 1 else ''})", fontsize=8)
    axes[0][0].set_ylabel("mean linear accuracy (%)")
    fig.suptitle("Figure 4: average accuracy per task group", fontsize=9)
    fig.tight_layout()
    p = _save(fig, path)
    plt.close(fig)
    return p


def figures67(corr: dict, task: str, folder_: Path) -> list[str]:
    """The paper's Figures 6 (a-c) and 7 (a-c) for one task (analysis.draw_figures)."""
    from noisevision.analysis import draw_figures

    if len(corr["table"]) < 2:
        return []
    folder_.mkdir(parents=True, exist_ok=True)
    names = draw_figures({"table": corr["table"], "correlations": corr["correlations"]},
                         folder_)
    return [str(folder_ / n) for n in names if n.endswith(".png")]


# --------------------------------------------------------------------------- write


def write_reports(out: Path, families: list[str], tasks, settings: dict, req, dev, timings: dict,
                  extra_samples: dict, log) -> dict:
    """results.json, results.md, the figures and report.html (all rewritten every run)."""
    from noisevision.data.encode import write_atomic
    from noisevision.provenance import provenance
    from noisevision.study.budgets import StudyBudget
    from noisevision.study.steps import arch_settings

    data = collect(out, families, tasks, settings)
    corr = correlations(data, families, tasks)
    arch = arch_settings(settings["recipe"], StudyBudget(**settings["budget_settings"]))[0]
    comparison = paper_comparison(data["rows"], families, tasks)
    meta = {"command": req.command, "argv": req.argv, "out": str(out),
            "budget": settings["budget"], "budget_settings": settings["budget_settings"],
            "recipe": settings["recipe"], "seed": settings["seed"], "device": str(dev),
            "tasks": [{**t.task.summary(), "spec": t.spec, "group": t.group} for t in tasks],
            "families": families, "timings_s": timings, **provenance(dev)}
    result = {"meta": meta, "rows": data["rows"], "families": data["families"],
              "properties": data["properties"], "correlations": corr,
              "paper_comparison": comparison, "samples": extra_samples}
    figs = {"fig3": {}, "fig67": {}}
    for st in tasks:
        p = figure3(data["rows"], families, st, arch, out / "figures" / f"fig3-{slug(st.name)}")
        if p:
            figs["fig3"][st.name] = p
        figs["fig67"][st.name] = figures67(corr[st.name], st.name,
                                           out / "figures" / slug(st.name))
    figs["fig4"] = figure4(data["rows"], families, tasks, out / "figures" / "fig4")
    write_atomic(out / "results.json", json.dumps(result, indent=2, default=str).encode())
    md = results_markdown(result, tasks)
    write_atomic(out / "results.md", md.encode())
    write_atomic(out / "report.html", report_html(result, tasks, figs, out, arch).encode())
    failed = [f for f, e in data["families"].items() if e["status"] != "done"]
    log(f"wrote {out / 'results.json'}, results.md and report.html"
        + (f"; {len(failed)} famil{'y' if len(failed) == 1 else 'ies'} not complete: "
           + ", ".join(failed) if failed else ""))
    return result


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def accuracy_table(rows, tasks, with_ci: bool = True) -> str:
    """Markdown: one line per feature extractor, columns (task, method): accuracy [95% CI]."""
    cols = [(t.name, m) for t in tasks for m in ("linear", "knn")]
    encs = list(dict.fromkeys(r["encoder"] for r in rows))
    by = {(r["encoder"], r["task"], r["method"]): r for r in rows}
    lines = ["| features | " + " | ".join(f"{t} {m}" for t, m in cols) + " |",
             "| --- |" + " ---: |" * len(cols)]
    for e in encs:
        cells = []
        for t, m in cols:
            r = by.get((e, t, m))
            if r is None:
                cells.append("")
            elif with_ci:
                lo, hi = r["val_acc_ci95"]
                cells.append(f"{100 * r['val_acc']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
            else:
                cells.append(f"{100 * r['val_acc']:.1f}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    chance = {r["task"]: r["chance"] for r in rows}
    lines.append("| *chance* | " + " | ".join(_pct(chance.get(t)) for t, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _corr_lines(c: dict) -> list[str]:
    lines = ["| property | n | Pearson r [95% CI] | Spearman r [95% CI] | paper r |",
             "| --- | ---: | --- | --- | ---: |"]
    for k, v in c["correlations"].items():
        pr = v.get("paper_r")
        lines.append(f"| {k} | {v['n']} | {v['pearson']:.2f} [{v['pearson_ci'][0]:.2f}, "
                     f"{v['pearson_ci'][1]:.2f}] | {v['spearman']:.2f} "
                     f"[{v['spearman_ci'][0]:.2f}, {v['spearman_ci'][1]:.2f}] | "
                     f"{'' if pr is None else pr} |")
    return lines


def results_markdown(result: dict, tasks) -> str:
    meta = result["meta"]
    lines = [f"# noisevision {meta['command']}: "
             f"{_count(len(meta['families']), 'family', 'families')}, "
             f"{_count(len(tasks), 'task', 'tasks')} ({meta['budget']} budget, {meta['device']})",
             "",
             "Accuracy in % on the val split, [95% Wilson interval].", "",
             accuracy_table(result["rows"], tasks), "## Families", "",
             "| family | status | pretraining img/s | pretraining s |",
             "| --- | --- | ---: | ---: |"]
    for f, e in result["families"].items():
        pre = e.get("pretrain") or {}
        status = e["status"] + (f" at {e['failed_step']}: {e['error']}" if e.get("error") else "")
        lines.append(f"| {f} | {status} | {_fmt(pre.get('images_per_s'))} | "
                     f"{_fmt(pre.get('seconds'))} |")
    cmp_ = result["paper_comparison"]
    lines += ["", "## Ranking beside the paper (Table 1, ImageNet-100 linear %)", "",
              "- ours (mean linear accuracy over the tasks): "
              + " > ".join(f"{f} {100 * cmp_['mean_linear_accuracy'][f]:.1f}"
                           for f in cmp_["ranking"]),
              "- paper: " + " > ".join(f"{f} {cmp_['paper_table1_i100'][f]:.2f}"
                                        for f in cmp_["paper_order"])]
    if "spearman_mean" in cmp_:
        lines.append(f"- Spearman r over the {len(cmp_['common'])} families in both: "
                     f"{cmp_['spearman_mean']:.2f}"
                     + "".join(f"; {t}: {v['spearman']:.2f}"
                               for t, v in cmp_["spearman_per_task"].items()))
    for st in tasks:
        props = result["properties"][st.name]
        if props:
            cols = [c for c in dict.fromkeys(k for r in props for k in r)
                    if c not in ("family", "task")]
            lines += ["", f"## Properties against {st.name} (train images)", "",
                      "| family | " + " | ".join(cols) + " |",
                      "| --- |" + " ---: |" * len(cols)]
            lines += [f"| {r['family']} | " + " | ".join(_fmt(r.get(c)) for c in cols) + " |"
                      for r in props]
        c = result["correlations"][st.name]
        lines += ["", f"## Accuracy on {st.name} against the properties", ""]
        lines += [c["note"]] if c["note"] else _corr_lines(c)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- html

_CSS = """body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;
padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.failed{color:#b00}.fig{display:inline-block;
margin:4px;vertical-align:top}code{background:#f4f4f4;padding:1px 3px}
.wide{overflow-x:auto}"""


def _img(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _md_table_html(md: str) -> str:
    """A markdown table (as the functions above write) -> an HTML table."""
    rows = [r for r in md.strip().splitlines() if r.startswith("|")]
    out = ['<div class="wide"><table>']
    for i, r in enumerate(rows):
        if i == 1:
            continue
        cells = [c.strip() for c in r.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells)
                   + "</tr>")
    return "\n".join(out + ["</table></div>"])


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def report_html(result: dict, tasks, figs: dict, out: Path, arch: str) -> str:
    meta = result["meta"]
    e = html.escape
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>noisevision {e(meta['command'])} report</title>", f"<style>{_CSS}</style>",
         "</head><body>",
         f"<h1>noisevision {e(meta['command'])}: "
         f"{_count(len(meta['families']), 'family', 'families')}, "
         f"{_count(len(tasks), 'task', 'tasks')}</h1>",
         f"<p>Budget <b>{e(str(meta['budget']))}</b>, recipe {e(str(meta['recipe']))} "
         f"({e(arch)}), seed {meta['seed']}, device {e(meta['device'])}; "
         f"noisevision {e(str(meta.get('noisevision')))}, torch {e(str(meta.get('torch')))}, "
         f"git {e(str(meta.get('git_sha')))}; total {meta['timings_s'].get('total')} s.</p>",
         f"<p>Command: <code>{e(' '.join(meta['argv'] or []))}</code></p>",
         "<h2>Accuracy</h2><p>Top-1 on the val split in %, [95% Wilson interval]; linear probe "
         "on cached penultimate features and kNN (k 20, T 0.07).</p>",
         _md_table_html(accuracy_table(result["rows"], tasks)), "<h2>Families</h2><table>",
         "<tr><th>family</th><th>status</th><th>pretraining img/s</th><th>s</th></tr>"]
    for f, fe in result["families"].items():
        pre = fe.get("pretrain") or {}
        cls = "" if fe["status"] == "done" else ' class="failed"'
        status = fe["status"] + (f" at {fe['failed_step']}: {fe['error']}" if fe.get("error")
                                 else "") + (f" (missing: {', '.join(fe['missing_steps'])})"
                                             if fe.get("missing_steps") else "")
        h.append(f"<tr><td>{e(f)}</td><td{cls}>{e(status)}</td>"
                 f"<td>{e(_fmt(pre.get('images_per_s')))}</td>"
                 f"<td>{e(_fmt(pre.get('seconds')))}</td></tr>")
    h.append("</table><h2>Figure 3: families sorted by accuracy, per task</h2>")
    h += [f'<div class="fig">{_img(p, "Figure 3 " + t)}</div>' for t, p in figs["fig3"].items()]
    h.append("<h2>Figure 4: average accuracy per task group</h2>")
    h.append(_img(figs["fig4"], "Figure 4") if figs["fig4"] else "<p>No family finished.</p>")
    cmp_ = result["paper_comparison"]
    h.append("<h2>Ranking beside the paper</h2><p>Ours (mean linear accuracy over the tasks): "
             + e(" > ".join(f"{f} {100 * cmp_['mean_linear_accuracy'][f]:.1f}%"
                            for f in cmp_["ranking"]))
             + ".<br>Paper, Table 1 (ImageNet-100 linear, ResNet-50 MoCo v2): "
             + e(" > ".join(f"{f} {cmp_['paper_table1_i100'][f]:.2f}%"
                            for f in cmp_["paper_order"]))
             + "; StyleGAN-Random's spectrum lies outside the natural range (Sec. 5.1)."
             + (f"<br>Spearman r over the {len(cmp_['common'])} families in both: "
                f"{cmp_['spearman_mean']:.2f}" if "spearman_mean" in cmp_ else "") + "</p>")
    for st in tasks:
        c = result["correlations"][st.name]
        h.append(f"<h2>Figures 6 and 7: accuracy on {e(st.name)} against the properties</h2>")
        h += [f'<div class="fig">{_img(p, Path(p).stem + " " + st.name)}</div>'
              for p in figs["fig67"].get(st.name, [])]
        h.append(f"<p>{e(c['note'])}</p>" if c["note"]
                 else _md_table_html("\n".join(_corr_lines(c))))
        props = result["properties"][st.name]
        if props:
            cols = [k for k in dict.fromkeys(k for r in props for k in r)
                    if k not in ("family", "task")]
            md = ["| family | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 1)]
            md += [f"| {r['family']} | " + " | ".join(_fmt(r.get(k)) for k in cols) + " |"
                   for r in props]
            h.append(f"<h3>Properties against {e(st.name)} (train images)</h3>")
            h.append(_md_table_html("\n".join(md)))
    h.append("<h2>Contact sheets</h2>")
    for f, fe in result["families"].items():
        if fe.get("sheet") and (out / fe["sheet"]).is_file():
            h.append(f'<div class="fig"><p>{e(f)}</p>{_img(out / fe["sheet"], f)}</div>')
    for name, s in (result.get("samples") or {}).items():
        if s.get("sheet") and (out / s["sheet"]).is_file():
            h.append(f'<div class="fig"><p>{e(name)}</p>{_img(out / s["sheet"], name)}</div>')
    h.append("<h2>Tasks</h2><ul>")
    h += [f"<li>{e(t['task'])}: {t['classes']} classes, {t['train']} train / {t['val']} val; "
          f"{e(str(t.get('description', '')))}</li>" for t in meta["tasks"]]
    h.append("</ul></body></html>")
    return "\n".join(h) + "\n"
