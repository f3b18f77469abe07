"""The steps of a study, each one a pure function of the study's settings that writes one step
file: per family `pretrain` (the small or MoCo recipe on the fly, `noisevision.ssl.train`),
`sheet` (a contact sheet), `probe-<task>` (linear on cached features and kNN,
`noisevision.probe.evaluate`) and `properties` (the analysis of `noisevision.analysis` against
every task's training images); per task the baselines once (mean colour, raw pixels, the same
architecture with random weights).

A family's steps run in order and skip what is done; a failing step stops its family (the
reason is written to steps/<family>/failed.json) and the study goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from noisevision.errors import UsageError
from noisevision.study import folder
from noisevision.study.budgets import StudyBudget
from noisevision.study.families import (
    family_data_spec,
    family_identity,
    family_images,
    is_folder_family,
    is_mixture,
    slug,
    square,
)


@dataclass
class StudyTask:
    """An evaluation task of the study and the group it belongs to (Figure 4)."""

    spec: str                  # what the user wrote (fashion-mnist, photo-crops, DIR)
    task: object               # noisevision.probe.datasets.EvalTask
    group: str                 # fashion-mnist / photo-crops / a suite folder's name

    @property
    def name(self) -> str:
        return self.task.name


def load_study_tasks(specs: list[str], b: StudyBudget, seed: int) -> list[StudyTask]:
    """Every task, loaded (a missing package or folder is a UsageError before any work)."""
    from noisevision.probe.datasets import (
        PHOTO_FILES,
        is_image_folder,
        load_fashion_mnist,
        load_image_folder,
        load_photo_crops,
        load_suite,
    )

    out: list[StudyTask] = []
    for spec in specs:
        if spec == "fashion-mnist":
            tasks, group = [load_fashion_mnist(b.fashion_train, b.fashion_val)], spec
        elif spec == "photo-crops":
            photos = PHOTO_FILES[:b.photo_limit] if b.photo_limit else PHOTO_FILES
            tasks = [load_photo_crops(b.photo_train, b.photo_val, size=b.crop, seed=seed,
                                      files=photos)]
            group = spec
        elif is_image_folder(Path(spec)):
            tasks = [load_image_folder(spec, b.max_per_split, seed)]
            group = tasks[0].name
        else:
            tasks, group = load_suite(spec, b.max_per_split, seed), Path(spec).name
        for t in tasks:
            while any(s.name == t.name for s in out):
                t.name += "'"
            out.append(StudyTask(spec, t, group))
    return out


def arch_settings(recipe: str, b: StudyBudget) -> tuple[str, dict, int]:
    """(architecture, its build kwargs, probe input side) of the study's encoders."""
    if recipe == "small":
        return "small_alexnet", {"width": b.width, "input_size": b.crop}, b.crop
    return "resnet50", {}, 224


# --------------------------------------------------------------------------- baselines


def baselines_step(out: Path, st: StudyTask, recipe: str, b: StudyBudget, seed: int,
                   device: torch.device) -> dict:
    """Mean colour, raw pixels and the random-init network on one task (once per study)."""
    from noisevision.probe.baselines import MeanColour, RawPixels, random_init_encoder

    name = f"probe-{slug(st.name)}"
    done = folder.read_step(out, folder.BASELINES, name)
    if done is not None:
        return done
    arch, kwargs, size = arch_settings(recipe, b)
    encoders = {f"random-init {arch}": random_init_encoder(arch, kwargs, seed=seed),
                "raw pixels": RawPixels(size, side=min(32, size)), "mean colour": MeanColour(size)}
    t0 = time.perf_counter()
    rows = _evaluate(encoders, st, arch, b, device, seed)
    record = {"task": st.name, "rows": rows, "seconds": round(time.perf_counter() - t0, 2),
              "device": str(device)}
    folder.write_step(out, folder.BASELINES, name, record)
    return record


def _evaluate(encoders: dict, st: StudyTask, arch: str, b: StudyBudget,
              device: torch.device, seed: int) -> list[dict]:
    from noisevision.probe.evaluate import KnnConfig, evaluate
    from noisevision.probe.linear import recipe_for

    rows = evaluate(encoders, [st.task], methods=("linear", "knn"),
                    linear=recipe_for(arch, "cached", b.probe_epochs, seed=seed), knn=KnnConfig(),
                    device=device)
    return [{**r, "group": st.group} for r in rows]


# --------------------------------------------------------------------------- a family


@dataclass
class FamilyContext:
    out: Path
    family: str
    recipe: str
    budget: StudyBudget
    seed: int
    device: torch.device
    tasks: list[StudyTask]
    quiet: bool = False
    log: object = print
    torchrun_gpus: int = 1     # > 1: pretraining runs under torchrun with that many processes
    references: dict | None = None  # task name -> analysis state of its training images

    @property
    def key(self) -> str:
        return slug(self.family)


def family_steps(ctx: FamilyContext) -> list[str]:
    return ["pretrain", "sheet", *[f"probe-{slug(t.name)}" for t in ctx.tasks], "properties"]


def run_family(ctx: FamilyContext) -> bool:
    """Every missing step of one family, in order; False when one failed (recorded)."""
    for step in family_steps(ctx):
        if folder.read_step(ctx.out, ctx.key, step) is not None:
            continue
        t0 = time.perf_counter()
        try:
            record = _STEP[step.split("-", 1)[0]](ctx, step)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001  (a failing family is reported, the study goes on)
            if isinstance(exc, UsageError) and str(exc).startswith("disk full"):
                raise  # the study cannot go on: one line, exit status 2
            message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            folder.write_failure(ctx.out, ctx.key, step, message)
            ctx.log(f"{ctx.family}: {step} FAILED ({message}); the study goes on")
            return False
        record["seconds"] = round(time.perf_counter() - t0, 2)
        record["device"] = str(ctx.device)
        folder.write_step(ctx.out, ctx.key, step, record)
        ctx.log(f"{ctx.family}: {step} done in {record['seconds']:.0f} s"
                + (f" ({record['images_per_s']:.0f} img/s)" if record.get("images_per_s")
                   else ""))
    folder.step_path(ctx.out, ctx.key, "failed").unlink(missing_ok=True)
    return True


def pretrain_config(ctx: FamilyContext):
    """The family's PretrainConfig under the study's budget (checked as it is made)."""
    from noisevision.ssl.train import PretrainConfig

    b = ctx.budget
    small = ctx.recipe == "small"
    return PretrainConfig(
        data=family_data_spec(ctx.family), out=str(ctx.out / "runs" / ctx.key),
        recipe=ctx.recipe, images=b.images, image_size=b.image_size, epochs=b.epochs,
        batch_size=b.batch_size, lr=b.lr, crop=b.crop,
        pre_resize=b.pre_resize if small else None, width=b.width if small else 1.0,
        seed=ctx.seed, device=str(ctx.device), quiet=ctx.quiet, workers=0,
        channels_last=b.channels_last, log_every=max(1, min(b.images // b.batch_size, 100)))


def step_pretrain(ctx: FamilyContext, step: str) -> dict:
    from noisevision.ssl.train import pretrain

    cfg = pretrain_config(ctx)
    if ctx.torchrun_gpus > 1:
        from noisevision.study.schedule import run_torchrun_pretrain

        run = run_torchrun_pretrain(cfg, ctx.torchrun_gpus)
    else:
        run = pretrain(cfg, resume=True)
    rates = []
    for line in (run / "log.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("images_per_s"), (int, float)):
            rates.append(float(rec["images_per_s"]))
    # the training rate of the log intervals (the first interval includes warm-up)
    return {"run": str(run.relative_to(ctx.out)), "data": cfg.data,
            "identity": family_identity(ctx.family, ctx.budget.image_size),
            "images_per_s": statistics.median(rates) if rates else None,
            "epochs": ctx.budget.epochs, "images": ctx.budget.images,
            "batch_size": ctx.budget.batch_size}


def step_sheet(ctx: FamilyContext, step: str) -> dict:
    from noisevision.data.encode import write_atomic
    from noisevision.data.sheet import contact_sheet

    b = ctx.budget
    images = family_images(ctx.family, b.sample_images, b.image_size, ctx.seed, ctx.device)
    sheet = contact_sheet(images.float() / 255.0, [str(i) for i in range(images.shape[0])],
                          title=f"{ctx.family}  seed {ctx.seed}  {b.image_size}px")
    path = ctx.out / "samples" / f"{ctx.key}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_atomic(path, buf.getvalue())
    return {"sheet": str(path.relative_to(ctx.out))}


def step_probe(ctx: FamilyContext, step: str) -> dict:
    from noisevision.probe.load import load_probe_encoder

    st = next(t for t in ctx.tasks if f"probe-{slug(t.name)}" == step)
    model, _ = load_probe_encoder(ctx.out / "runs" / ctx.key, device=ctx.device)
    arch, _, _ = arch_settings(ctx.recipe, ctx.budget)
    rows = _evaluate({f"noise: {ctx.family}": model}, st, arch, ctx.budget, ctx.device,
                     ctx.seed)
    return {"task": st.name, "rows": rows}


# --------------------------------------------------------------------------- properties


class TensorSource:
    """In-memory uint8 images as an analysis source (what `analysis.source_states` reads)."""

    def __init__(self, spec: str, images: torch.Tensor, identity: dict) -> None:
        self.spec, self.images = spec, images
        digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
        self.identity = {**identity, "pixels": digest, "shape": list(images.shape)}
        self.available = images.shape[0]

    def check_count(self, n: int, what: str) -> None:
        if self.available < n:
            raise UsageError(f"{self.spec} holds {self.available} images, fewer than the {n} "
                             f"that {what} needs (lower --n or --n-inception)")

    def batches(self, n: int, batch: int = 64):
        self.check_count(n, "the analysis")
        for i in range(0, n, batch):
            yield self.images[i:min(n, i + batch)]

    def key(self, n: int) -> dict:
        return {**self.identity, "n": n}


def task_reference(st: StudyTask, b: StudyBudget) -> TensorSource:
    """The first `analysis_n` training images of a task (one size: folder tasks are centre-
    cropped and resized to the budget's image side)."""
    train = st.task.train
    n = min(len(train), b.analysis_n)
    images = getattr(train, "images", None)
    if images is not None:
        imgs = images[:n]
    else:
        imgs = torch.stack([square(train[i][0], b.image_size) for i in range(n)])
    return TensorSource(f"{st.name} (train)", imgs, {"kind": "study-task", "task": st.name})


def _analysis_config(ctx: FamilyContext, n: int, n_inc: int):
    from noisevision.analysis import AnalysisConfig

    b = ctx.budget
    return AnalysisConfig(metrics=b.metrics, n=n, n_inception=n_inc, device=str(ctx.device),
                          workers=_render_workers(),
                          progress=not ctx.quiet)


def _render_workers() -> int:
    """CPU processes rendering a generator for the analysis (as `analyze`: one per core)."""
    return max(1, os.cpu_count() or 1)


def _family_source(ctx: FamilyContext):
    from noisevision.analysis import open_source

    b = ctx.budget
    if is_mixture(ctx.family):
        n = max(b.analysis_n, b.analysis_n_inception)
        imgs = family_images(ctx.family, n, b.image_size, 0, ctx.device)
        return TensorSource(ctx.family, imgs, {"kind": "study-mixture", "family": ctx.family})
    workers = _render_workers()
    if is_folder_family(ctx.family):
        return open_source(ctx.family, device=ctx.device, workers=workers)
    return open_source(ctx.family, device=ctx.device, resolution=b.image_size, workers=workers)


def _states(ctx: FamilyContext, source, metrics, extractor):
    from noisevision.analysis import source_states

    b = ctx.budget
    avail = source.available
    n = b.analysis_n if avail is None else min(b.analysis_n, avail)
    n_inc = b.analysis_n_inception if avail is None else min(b.analysis_n_inception, avail)
    for m in metrics:
        count = n_inc if m.input == "inception" else n
        if count < m.min_images:
            raise UsageError(f"metric {m.name} needs at least {m.min_images} images of "
                             f"{source.spec}, it has {count}")
    return source_states(source, _analysis_config(ctx, n, n_inc), metrics, ctx.device,
                         extractor), {"n": n, "n_inception": n_inc}


def step_properties(ctx: FamilyContext, step: str) -> dict:
    """The family's properties against every task's training images: one pass over the
    family's images, compared with each task's (cached per process) reference state."""
    from noisevision.stats import get_metric

    metrics = [get_metric(m) for m in ctx.budget.metrics]
    extractor = None
    if any(m.input == "inception" for m in metrics):
        from noisevision.stats.features import InceptionFeatures

        extractor = InceptionFeatures(ctx.device)
    states, counts = _states(ctx, _family_source(ctx), metrics, extractor)
    refs = ctx.references if ctx.references is not None else {}
    rows = {}
    for st in ctx.tasks:
        if st.name not in refs:
            refs[st.name] = _states(ctx, task_reference(st, ctx.budget), metrics, extractor)
        ref, ref_counts = refs[st.name]
        row: dict = {"family": ctx.family, "task": st.name, **counts,
                     "reference_n": ref_counts["n"],
                     "reference_n_inception": ref_counts["n_inception"]}
        for m in metrics:
            row.update(m.compare(states[m.name], ref[m.name]))
        rows[st.name] = row
    return {"properties": rows,
            "extractor": extractor.identity() if extractor is not None else None}


_STEP = {"pretrain": step_pretrain, "sheet": step_sheet, "probe": step_probe,
         "properties": step_properties}
