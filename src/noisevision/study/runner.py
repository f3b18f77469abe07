"""`noisevision study`: the paper's experiment as one resumable command.

For every family: pretrain on the fly, probe every task (linear and kNN), measure the family's
properties against every task's training images; the baselines once per task; then
results.json, results.md and report.html (see report.py). Everything is checked before the
first file is written; every step is written atomically and skipped when done, so a killed
study rerun with the same command continues, and a family added later runs alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from noisevision.errors import UsageError
from noisevision.locks import FolderLock
from noisevision.study import folder
from noisevision.study.budgets import (
    BUDGETS,
    StudyBudget,
    check_budget_fits,
    cpu_pretrain_hours,
    resolve_budget,
)
from noisevision.study.families import (
    BUILTIN_TASKS,
    check_family,
    check_resolution,
    check_task,
    slug,
)
from noisevision.study.steps import (
    FamilyContext,
    StudyTask,
    baselines_step,
    load_study_tasks,
    run_family,
)


@dataclass
class StudyRequest:
    """What a user asked for; None: not given (the stored value on --resume, else a default)."""

    out: str
    families: list[str] | None = None
    tasks: list[str] | None = None
    budget: str | None = None
    recipe: str | None = None
    seed: int | None = None
    overrides: dict = field(default_factory=dict)   # flag name -> value (budgets.OVERRIDES)
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    parallel: int = 1
    gpus_per_family: int = 1
    quiet: bool = False
    command: str = "study"                          # "demo" for the demo preset
    extra_samples: Callable | None = None           # demo: (out, device, log) -> sheets dict
    argv: list[str] | None = None
    budget_settings: StudyBudget | None = None      # a preset's own budget (the demo's)


class Log:
    def __init__(self, quiet: bool, name: str = "study") -> None:
        self.quiet, self.name, self.t0 = quiet, name, time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.name} {time.perf_counter() - self.t0:6.0f}s] {message}", flush=True)


def _wanted_settings(req: StudyRequest, dev: torch.device) -> dict | None:
    """The settings the request stands for (None entries: not given, for --resume; there,
    overrides apply to the stored budget, so the refusal names just the flags that differ)."""
    stored = (folder.read_marker(Path(req.out)) or {}).get("settings") if req.resume else None
    if req.budget_settings is not None:
        b, name = req.budget_settings, req.budget
    elif req.budget is None and not req.overrides and req.resume:
        b, name = None, None
    elif req.budget is None and stored:
        b = dataclasses.replace(StudyBudget(**stored["budget_settings"]),
                                **_override_fields(req.overrides))
        name = stored["budget"]
    else:
        name = req.budget or ("paper" if dev.type == "cuda" else "small")
        b = resolve_budget(name, req.overrides)
        if req.overrides and any(v is not None for v in req.overrides.values()):
            name = name if name == "custom" else f"{name}+overrides"
    tasks = None if req.tasks is None else [  # folders by absolute path: rerun from anywhere
        t if t in BUILTIN_TASKS else str(Path(t).resolve()) for t in req.tasks]
    return {"budget": name, "budget_settings": dataclasses.asdict(b) if b else None,
            "tasks": tasks if tasks is not None else (
                None if req.resume else list(("photo-crops", "fashion-mnist"))),
            "recipe": req.recipe if req.recipe is not None else (None if req.resume else "small"),
            "seed": req.seed if req.seed is not None else (None if req.resume else 0)}


def run_study(req: StudyRequest) -> Path:
    """Run (or continue) a study; returns its folder. One process at a time in a folder (its
    own workers, `--worker`, run the families' steps under it)."""
    lock = FolderLock(req.out, "study folder", "wait for that study to end (or stop it), or "
                      "choose another --out")
    try:
        return _run_study(req, lock)
    finally:
        lock.release()


def _run_study(req: StudyRequest, lock: FolderLock) -> Path:
    from noisevision.device import cpu_threads, resolve_device

    t_start = time.perf_counter()
    out = Path(req.out)
    dev = resolve_device(req.device)
    families = _dedupe(req.families or [])
    for f in families:
        check_family(f)
    for t in req.tasks or []:
        check_task(t)
    if req.recipe not in (None, "small", "moco"):
        raise UsageError(f"unknown recipe {req.recipe!r} (allowed: small, moco)")
    lock.acquire()  # an existing folder: before its state is read
    wanted = _wanted_settings(req, dev)
    settings, families, state = folder.prepare(out, wanted, families, resume=req.resume,
                                               overwrite=req.overwrite, command=req.command)
    if not families:
        raise UsageError("--families is empty: give generator names, a+b mixtures or image "
                         "folders, separated by commas")
    b = StudyBudget(**settings["budget_settings"])
    check_budget_fits(b, dev)
    _check_before_writing(out, families, settings, b, dev, req)
    for f in families:
        check_resolution(f, b.image_size)
        if state == "continue":
            _check_unchanged(out, f, b.image_size)
    slugs = {}
    for f in families:
        if slug(f) in slugs.values():
            raise UsageError(f"two families share the folder name {slug(f)!r}; rename one")
        slugs[f] = slug(f)
    log = Log(req.quiet, req.command)
    with cpu_threads(b.threads, dev):
        tasks = load_study_tasks(settings["tasks"], b, settings["seed"])  # missing data: refused
        _check_weights(b, dev)
        if state == "overwrite":
            folder.wipe(out)
        folder.write_marker(out, settings, families, req.command)
        lock.acquire()  # a new folder: as soon as it exists
        log(f"study in {out} ({state}); budget {settings['budget']} on {dev}; "
            f"{len(families)} families; tasks: "
            + ", ".join(f"{t.name} ({len(t.task.train)}/{len(t.task.val)})" for t in tasks))
        if dev.type == "cpu":
            hours = cpu_pretrain_hours(b, os.cpu_count() or 1)
            if hours > 2:
                log(f"note: this budget's pretraining needs roughly {hours:,.0f} hours a family "
                    "on this CPU (a rough estimate); --budget small is sized for a CPU, paper "
                    "for a GPU")
        timings = {"load_tasks": round(time.perf_counter() - t_start, 1)}
        for st in tasks:
            rec = baselines_step(out, st, settings["recipe"], b, settings["seed"], dev)
            log(f"baselines on {st.name}: done ({rec['seconds']:.0f} s)")
        extra = _render_extra_samples(out, req, b, dev, log)
        _run_families(out, families, tasks, settings, b, dev, req, log)
        timings["total"] = round(time.perf_counter() - t_start, 1)
        from noisevision.study.report import write_reports

        write_reports(out, families, tasks, settings, req, dev, timings, extra, log)
    return out


def _check_before_writing(out: Path, families: list[str], settings: dict, b: StudyBudget,
                          dev: torch.device, req: StudyRequest) -> None:
    """What would fail every family is refused now, before the folder is written: each
    family's pretraining config (its ranges, recipe constraints) and the worker slots."""
    from noisevision.study.schedule import plan_slots
    from noisevision.study.steps import pretrain_config

    for f in families:
        pretrain_config(FamilyContext(out, f, settings["recipe"], b, settings["seed"], dev, []))
    if req.parallel != 1 or req.gpus_per_family > 1:
        gpus = list(range(torch.cuda.device_count())) if dev.type == "cuda" else []
        plan_slots(req.parallel, gpus, req.gpus_per_family, len(families))


def _override_fields(overrides: dict) -> dict:
    from noisevision.study.budgets import OVERRIDES

    out = {OVERRIDES[k]: v for k, v in overrides.items() if k in OVERRIDES and v is not None}
    if overrides.get("metrics") is not None:
        out["metrics"] = tuple(overrides["metrics"])
    return out


def _check_unchanged(out: Path, family: str, side: int) -> None:
    """A family pretrained earlier in this folder must still render the same images."""
    from noisevision.study.families import family_identity, identity_changes

    done = folder.read_step(out, slug(family), "pretrain") if out.is_dir() else None
    if not done or not done.get("identity"):
        return
    now = json.loads(json.dumps(family_identity(family, side) or {}))  # tuples as stored
    changes = identity_changes(done["identity"], now)
    if changes:
        raise UsageError(f"{family} renders other images than when this study pretrained on it "
                         f"({'; '.join(changes[:3])}{'; ...' if len(changes) > 3 else ''}): "
                         "a newer noisevision changed it; pass --overwrite to redo the study, "
                         "or choose another --out")


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def _check_weights(b: StudyBudget, dev: torch.device) -> None:
    """The analysis weights load (a missing package is one line, before any work)."""
    if any(m in b.metrics for m in ("fid", "kid", "prc", "volume")):
        from noisevision.stats.features import InceptionFeatures

        InceptionFeatures(dev)


def _run_families(out: Path, families: list[str], tasks: list[StudyTask], settings: dict,
                  b: StudyBudget, dev: torch.device, req: StudyRequest, log) -> None:
    from noisevision.study.schedule import plan_slots, run_workers

    todo = [f for f in families if not _family_done(out, f, tasks)]
    for f in families:
        if f not in todo:
            log(f"{f}: every step done earlier (kept)")
    gpus = list(range(torch.cuda.device_count())) if dev.type == "cuda" else []
    parallel = req.parallel
    if dev.type == "cuda" and parallel <= 1 and len(gpus) > 1 and len(todo) > 1:
        parallel = 0  # every GPU slot
    if not todo:
        return
    if parallel == 1 and req.gpus_per_family <= 1:
        refs: dict = {}
        for f in todo:
            ctx = FamilyContext(out, f, settings["recipe"], b, settings["seed"], dev, tasks,
                                quiet=req.quiet, log=log, references=refs)
            run_family(ctx)
        return
    slots = plan_slots(parallel, gpus, req.gpus_per_family, len(todo))
    log(f"running {len(todo)} families on {len(slots)} worker slot(s)")
    status = run_workers(out, todo, slots, req.device if not gpus else "cuda",
                         req.gpus_per_family, log)
    for f, code in status.items():
        if code != 0 and folder.read_failure(out, slug(f)) is None:
            folder.write_failure(out, slug(f), "worker", f"worker exited with status {code}")


def _family_done(out: Path, family: str, tasks: list[StudyTask]) -> bool:
    from noisevision.study.steps import family_steps

    ctx = FamilyContext(out, family, "small", BUDGETS["tiny"], 0, torch.device("cpu"), tasks)
    return all(folder.read_step(out, slug(family), s) is not None for s in family_steps(ctx))


def run_worker(out: str, family: str, device: str, gpus_per_family: int, quiet: bool) -> int:
    """One family's steps in this process (a worker of `run_workers`)."""
    from noisevision.device import cpu_threads, resolve_device

    out_p = Path(out)
    marker = folder.read_marker(out_p)
    if not marker or not marker.get("settings"):
        raise UsageError(f"{out} holds no study to work on")
    settings = marker["settings"]
    b = StudyBudget(**settings["budget_settings"])
    dev = resolve_device(device)
    log = Log(False, "worker")
    with cpu_threads(b.threads, dev):
        tasks = load_study_tasks(settings["tasks"], b, settings["seed"])
        ctx = FamilyContext(out_p, family, settings["recipe"], b, settings["seed"], dev, tasks,
                            quiet=True, log=log, torchrun_gpus=gpus_per_family, references={})
        ok = run_family(ctx)
    sys.stdout.flush()
    return 0 if ok else 1


def _render_extra_samples(out: Path, req: StudyRequest, b: StudyBudget, dev, log) -> dict:
    """A preset's extra sheets (the demo: every generator, samples/generators/<name>.png)."""
    return req.extra_samples(out, dev, log) if req.extra_samples is not None else {}
