"""`noisevision demo`: the whole paper in miniature, on whatever machine runs it: a preset of
`noisevision study` (one pipeline, one report format).

1. renders a labelled contact sheet of every registered generator (samples/generators/),
2. pretrains small encoders on a few noise families on the fly (the ``small`` Alignment +
   Uniformity recipe of Sec. 8.1, with a budget-sized width, crop and number of steps),
3. probes them on the offline real tasks (photo-crops, Fashion-MNIST) against the paper's
   baselines (mean colour, raw pixels, the same architecture with random weights), with a linear
   probe on cached fc6 features and kNN,
4. measures each family's properties against the tasks' training images (`noisevision
   analyze`'s metrics),
5. writes report.md, results.md, results.json and report.html (the study's report, with the
   figures) into the report folder, with the timings of every stage.

Budgets: ``tiny`` is a smoke test (about a minute on 2 CPU cores), ``small`` the CPU default
(the study's ``small`` budget), ``large`` the GPU default (the reference width and 64 px crops,
more steps, all of Fashion-MNIST).

A pretraining entry of ``families`` is one generator or a mixture written with ``+`` and
optional weights (``stylegan_oriented:2+dead_leaves_shapes``; unweighted members weigh 1), the
paper's mixing of families on a small scale.
On a CPU the demo runs with ``threads`` intra-op threads (1 on the small budget: on the shared
2-core machine one thread trained 2x faster and rendered dead leaves 30x faster than two) and
channels-last activations (35% faster SmallAlexNet steps on that CPU).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from noisevision.errors import UsageError
from noisevision.study.budgets import BUDGETS as STUDY_BUDGETS
from noisevision.study.budgets import StudyBudget
from noisevision.study.families import family_data_spec, family_members  # noqa: F401 (API)

TASKS = ("photo-crops", "fashion-mnist")


@dataclass(frozen=True)
class DemoBudget:
    """A demo preset: the families, the study budget, and the sheets of every generator."""

    families: tuple[str, ...]     # generators (or a+b mixtures) to pretrain on
    study: StudyBudget            # the sizes of every stage (noisevision.study.budgets)
    sample_images: int = 8        # images per generator contact sheet
    sample_resolution: int = 64   # their side, px
    cheap_samples: bool = True    # sheets use a family's declared cheap settings
    sample_families: tuple[str, ...] | None = None  # sheets of these only (None: all)


BUDGETS: dict[str, DemoBudget] = {
    "tiny": DemoBudget(families=("dead_leaves_shapes",), study=STUDY_BUDGETS["tiny"],
                       sample_images=4, sample_families=("dead_leaves_shapes",)),
    "small": DemoBudget(families=("stylegan_oriented",), study=STUDY_BUDGETS["small"]),
    "large": DemoBudget(families=("dead_leaves_shapes", "stat_spectrum_color_wmm",
                                  "stylegan_oriented"),
                        study=StudyBudget(width=1.0, crop=64, image_size=128, images=20000,
                                          epochs=20, batch_size=256, lr=None, threads=None,
                                          channels_last=None, photo_train=100, photo_val=40,
                                          fashion_train=60000, fashion_val=10000,
                                          probe_epochs=100, sample_images=16, analysis_n=2000,
                                          analysis_n_inception=2000),
                        sample_images=16, sample_resolution=128, cheap_samples=False),
}


def pick_budget(budget: str, device: torch.device) -> tuple[str, DemoBudget]:
    if budget == "auto":
        budget = "large" if device.type == "cuda" else "small"
    if budget not in BUDGETS:
        raise UsageError(f"unknown budget {budget!r} (allowed: auto, {', '.join(BUDGETS)})")
    return budget, BUDGETS[budget]


def _prepare_out(out: Path, overwrite: bool) -> None:
    """The demo's report folder before a fresh start: a new or empty folder, or (with
    --overwrite) an earlier report emptied of its own files, then marked. The same checks and
    removal as `noisevision study` (noisevision.study.folder): only files a study or demo
    wrote, only in a folder marked as one; anything else, or a link, is refused first."""
    from noisevision.study import folder

    out = Path(out)
    _, _, state = folder.prepare(out, {}, [], resume=False, overwrite=overwrite,
                                 command="demo")
    if state == "overwrite":
        folder.wipe(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / folder.LEGACY_DEMO_MARKER).write_text(json.dumps(
        {"kind": "noisevision-demo-report", "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        + "\n")


def render_samples(out: Path, b: DemoBudget, device: torch.device, seed: int, log) -> dict:
    """One contact sheet per registered generator (samples/generators/<name>.png, kept when
    there from an earlier run); a failing family is reported, not fatal."""
    from noisevision.data.encode import write_atomic
    from noisevision.data.sheet import contact_sheet
    from noisevision.errors import ConfigError
    from noisevision.generators.base import create_generator, list_generators

    (out / "samples" / "generators").mkdir(parents=True, exist_ok=True)
    done = {}
    for name in b.sample_families or list_generators():
        rel = f"samples/generators/{name}.png"
        if (out / rel).is_file():
            done[name] = {"sheet": rel}
            continue
        t0 = time.perf_counter()
        try:
            gen = None
            for res in (b.sample_resolution, 64, None):  # a family may allow only some sizes
                try:
                    gen = create_generator(name, resolution=res)
                    break
                except ConfigError:
                    if res is None:
                        raise
            cheap = type(gen).cheap_settings if b.cheap_samples else {}
            if cheap:  # e.g. a smaller texture pool: the family's own cheap settings
                gen = create_generator(name, **{"resolution": gen.resolution, **cheap})
            images = gen.generate(b.sample_images, seed=seed, device=device).cpu()
            note = "  " + " ".join(f"{k}={v}" for k, v in cheap.items()) if cheap else ""
            sheet = contact_sheet(images, [str(i) for i in range(b.sample_images)],
                                  title=f"{name}  seed {seed}  {gen.resolution}px{note}")
            import io

            buf = io.BytesIO()
            sheet.save(buf, format="PNG")
            write_atomic(out / rel, buf.getvalue())
            done[name] = {"sheet": rel, "seconds": round(time.perf_counter() - t0, 2)}
        except Exception as exc:  # noqa: BLE001  (a demo shows every family it can)
            first = " ".join(str(exc).split())
            done[name] = {"error": f"{type(exc).__name__}: {first}"}
        log(f"samples {name}: {done[name].get('sheet') or done[name]['error']}")
    return done


def run_demo(out: str | Path = "noisevision-demo", *, device: str = "auto",
             budget: str = "auto", families: list[str] | None = None, seed: int = 0,
             overwrite: bool = False, quiet: bool = False) -> Path:
    """The study preset: one family (or the given ones), the budget, the offline tasks;
    returns the report folder."""
    from noisevision.device import resolve_device
    from noisevision.study.families import check_family
    from noisevision.study.runner import StudyRequest, run_study

    dev = resolve_device(device)
    name, b = pick_budget(budget, dev)
    if families:
        for f in families:  # unknown names and bad weights fail here, before any write
            check_family(f)
        b = dataclasses.replace(b, families=tuple(families))
    t0 = time.perf_counter()
    req = StudyRequest(out=str(out), families=list(b.families), tasks=list(TASKS), budget=name,
                       recipe="small", seed=seed, device=device, overwrite=overwrite,
                       quiet=quiet, command="demo", budget_settings=b.study,
                       argv=["noisevision", "demo", "--out", str(out), "--budget", name,
                             "--seed", str(seed), "--families", ",".join(b.families)],
                       extra_samples=lambda o, d, log: render_samples(o, b, d, seed, log))
    out = run_study(req)
    results = load_results(out)
    results["meta"]["timings_s"]["demo_total"] = round(time.perf_counter() - t0, 1)
    from noisevision.data.encode import write_atomic

    write_atomic(out / "report.md", _report(results).encode())  # never half written
    return out


def acceptance(rows: list[dict]) -> list[dict]:
    """Per task and noise encoder: linear accuracy vs the random-init same architecture."""
    lin = {(r["task"], r["encoder"]): r["val_acc"] for r in rows if r["method"] == "linear"}
    out = []
    for (task, enc), acc in lin.items():
        if enc.startswith("noise: "):
            rnd = lin.get((task, "random-init small_alexnet"))
            if rnd is not None:
                out.append({"task": task, "encoder": enc, "noise": acc, "random_init": rnd,
                            "beats_random_init": acc > rnd})
    return out


def _report(results: dict) -> str:
    from noisevision.probe.evaluate import results_markdown

    meta, rows = results["meta"], results["rows"]
    b = meta["budget_settings"]
    lines = [f"# noisevision demo ({meta['budget']} budget, {meta['device']})", "",
             "Encoders pretrained on procedural noise with the small recipe (Alignment + "
             f"Uniformity, SmallAlexNet width {b['width']}, {b['crop']} px crops, "
             f"{b['epochs']} epochs of {b['images']} images), probed on real images with a "
             f"linear head on cached fc6 features ({b['probe_epochs']} epochs, Adam 1e-3) and "
             "kNN (k 20, T 0.07), against the paper's baselines. Accuracy in %, val split. "
             "Figures, intervals and the measured properties: report.html.", "",
             results_markdown(rows),
             "## Noise pretraining vs the same network with random weights (linear)", ""]
    for a in acceptance(rows):
        verdict = "beats" if a["beats_random_init"] else "does NOT beat"
        lines.append(f"- {a['task']}: {a['encoder']} {100 * a['noise']:.1f}% {verdict} "
                     f"random init {100 * a['random_init']:.1f}%")
    lines += ["", "## Families", ""]
    for f, e in results["families"].items():
        lines.append(f"- {f}: {e['status']}" + (f" ({e.get('error')})" if e.get("error")
                                                 else ""))
    lines += ["", "## Tasks", ""]
    for t in meta["tasks"]:
        lines.append(f"- {t['task']}: {t['classes']} classes, {t['train']} train / {t['val']} "
                     f"val; {t['description']}")
    lines += ["", "## Samples", ""]
    for n, s in (results.get("samples") or {}).items():
        lines.append(f"- {n}: " + (f"![{n}]({s['sheet']})" if "sheet" in s else s["error"]))
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {v}" for k, v in meta["timings_s"].items()]
    return "\n".join(lines) + "\n"


def load_results(out: str | Path) -> dict:
    return json.loads((Path(out) / "results.json").read_text())
