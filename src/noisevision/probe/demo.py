"""`noisevision demo`: the whole paper in miniature, on whatever machine runs it.

1. renders a labelled contact sheet of every registered generator (samples/),
2. pretrains small encoders on a few noise families on the fly (the ``small`` Alignment +
   Uniformity recipe of Sec. 8.1, with a budget-sized width, crop and number of steps),
3. probes them on the offline real tasks (photo-crops, Fashion-MNIST) against the paper's
   baselines (mean colour, raw pixels, the same architecture with random weights), with a linear
   probe on cached fc6 features and kNN,
4. writes report.md, results.md and results.json (every row: task, features, method, accuracy)
   into the report folder, with the timings of every stage.

Budgets: ``tiny`` is a smoke test (about a minute on 2 CPU cores), ``small`` the CPU default
(sized for about 10 minutes on 2 CPU cores), ``large`` the GPU default (the reference width and
64 px crops, more steps, all of Fashion-MNIST).

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

from noisevision.device import cpu_threads
from noisevision.errors import UsageError


@dataclass(frozen=True)
class DemoBudget:
    """How much work each stage of the demo does."""

    families: tuple[str, ...]   # generators (or a+b equal-weight mixtures) to pretrain on
    width: float                # SmallAlexNet channel multiplier (1.0 = the reference)
    crop: int                   # pretraining crop and probe input side, px (64 in the reference)
    image_size: int             # rendered image side, px (128 in the reference)
    images: int                 # fixed index set per family (105,000 in the reference)
    epochs: int                 # passes over it
    batch_size: int             # pretraining batch (768 in the reference)
    lr: float | None            # None: the recipe's 0.12 x batch / 256
    sample_images: int          # images per generator contact sheet
    sample_resolution: int      # their side, px
    photo_train: int            # photo-crops: train crops per photograph
    photo_val: int              # photo-crops: val crops per photograph
    fashion_train: int          # Fashion-MNIST: class-balanced train subset
    fashion_val: int            # Fashion-MNIST: test subset
    probe_epochs: int           # linear head epochs (lr x0.2 at 60% and 80%)
    cheap_samples: bool = True  # sample sheets use a family's declared cheap settings
    sample_families: tuple[str, ...] | None = None  # sheets of these only (None: all)
    photo_limit: int | None = None  # use only the first N packaged photographs (None: all)
    threads: int | None = None  # CPU only: torch intra-op threads for the demo (None: torch's)
    channels_last: bool | None = None  # pretraining memory format (None: the trainer's default)


BUDGETS: dict[str, DemoBudget] = {
    "tiny": DemoBudget(families=("dead_leaves_shapes",), width=0.125, crop=32, image_size=48,
                       images=64, epochs=1, batch_size=32, lr=None, sample_images=4,
                       sample_resolution=64, photo_train=8, photo_val=4, fashion_train=200,
                       fashion_val=100, probe_epochs=5, sample_families=("dead_leaves_shapes",),
                       photo_limit=10),
    "small": DemoBudget(families=("stylegan_oriented",), width=0.25,
                        crop=32, image_size=64, images=1024, epochs=96, batch_size=128, lr=0.2,
                        sample_images=8, sample_resolution=64, photo_train=20, photo_val=10,
                        fashion_train=2000, fashion_val=1000, probe_epochs=30, threads=1,
                        channels_last=True),
    "large": DemoBudget(families=("dead_leaves_shapes", "stat_spectrum_color_wmm",
                                  "stylegan_oriented"), width=1.0, crop=64, image_size=128,
                        images=20000, epochs=20, batch_size=256, lr=None, sample_images=16,
                        sample_resolution=128, photo_train=100, photo_val=40,
                        fashion_train=60000, fashion_val=10000, probe_epochs=100,
                        cheap_samples=False),
}


class _Log:
    def __init__(self, quiet: bool) -> None:
        self.quiet, self.t0 = quiet, time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[demo {time.perf_counter() - self.t0:6.0f}s] {message}", flush=True)


def pick_budget(budget: str, device: torch.device) -> tuple[str, DemoBudget]:
    if budget == "auto":
        budget = "large" if device.type == "cuda" else "small"
    if budget not in BUDGETS:
        raise UsageError(f"unknown budget {budget!r} (allowed: auto, {', '.join(BUDGETS)})")
    return budget, BUDGETS[budget]


REPORT_MARKER = ".noisevision-report.json"
_REPORT_FILES = (REPORT_MARKER, "report.md", "results.json", "results.md", "results.json.tmp",
                 "results.md.tmp")


def _is_report_entry(rel: str, is_dir: bool) -> bool:
    """Whether `rel` is a path `noisevision demo` writes in its report folder."""
    from noisevision.ssl.train import is_run_file

    parts = rel.split("/")
    if len(parts) == 1:
        if is_dir:
            return parts[0] in ("samples", "runs")
        name = parts[0]
        return name in _REPORT_FILES or (  # a write_atomic temporary of a killed demo
            name.startswith(".") and name.endswith(".tmp")
            and name[1:].split(".tmp")[0].rsplit(".", 1)[0] in _REPORT_FILES)
    if parts[0] == "samples":
        return len(parts) == 2 and not is_dir and parts[1].endswith(".png")
    if parts[0] == "runs":
        if len(parts) == 2:
            return is_dir
        if len(parts) == 3:
            return is_run_file(parts[2]) and is_dir == (parts[2] == "tensorboard")
        return parts[2] == "tensorboard"
    return False


def _is_report_folder(out: Path) -> bool:
    """A folder `noisevision demo` wrote: its marker, or (older reports) its results.json."""
    if (out / REPORT_MARKER).is_file() and not (out / REPORT_MARKER).is_symlink():
        return True
    try:
        meta = json.loads((out / "results.json").read_text()).get("meta", {})
        return isinstance(meta, dict) and meta.get("command") == "demo"
    except (OSError, ValueError, AttributeError):
        return False


def _prepare_out(out: Path, overwrite: bool) -> None:
    """A new or empty folder, or (with --overwrite) an earlier report, emptied of its own files.

    --overwrite removes only the files a demo writes (report, results, samples, runs) and only
    in a folder marked as a demo report; anything else there, or a symbolic link, is refused
    before a single file is removed.
    """
    from noisevision.safety import check_output_dir, remove_owned, scan_owned

    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"report folder {out} is not empty (pass --overwrite to replace an "
                             "earlier demo report, or choose another --out)")
        if not _is_report_folder(out):
            raise UsageError(f"{out} is not a report folder written by `noisevision demo` (no "
                             f"{REPORT_MARKER}): --overwrite only replaces such a folder; "
                             "choose a new or empty --out")
        remove_owned(out, scan_owned(out, _is_report_entry, "demo report folder"))
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MARKER).write_text(json.dumps(
        {"kind": "noisevision-demo-report", "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        + "\n")


def render_samples(out: Path, b: DemoBudget, device: torch.device, seed: int, log) -> dict:
    """One contact sheet per registered generator; a failing family is reported, not fatal."""
    from noisevision.data.sheet import contact_sheet
    from noisevision.errors import ConfigError
    from noisevision.generators.base import create_generator, list_generators

    (out / "samples").mkdir(exist_ok=True)
    done = {}
    for name in b.sample_families or list_generators():
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
            cls = type(gen)
            cheap = cls.cheap_settings if b.cheap_samples else {}
            if cheap:  # e.g. a smaller texture pool: the family's own cheap settings
                gen = create_generator(name, **{"resolution": gen.resolution, **cheap})
            images = gen.generate(b.sample_images, seed=seed, device=device).cpu()
            note = "  " + " ".join(f"{k}={v}" for k, v in cheap.items()) if cheap else ""
            sheet = contact_sheet(images, [str(i) for i in range(b.sample_images)],
                                  title=f"{name}  seed {seed}  {gen.resolution}px{note}")
            sheet.save(out / "samples" / f"{name}.png")
            done[name] = {"sheet": f"samples/{name}.png",
                          "seconds": round(time.perf_counter() - t0, 2)}
        except Exception as exc:  # noqa: BLE001  (a demo shows every family it can)
            first = " ".join(str(exc).split())
            done[name] = {"error": f"{type(exc).__name__}: {first}"}
        log(f"samples {name}: {done[name].get('sheet') or done[name]['error']}")
    return done


def family_members(family: str) -> list[str]:
    """'a+b' -> ['a', 'b'] (a mixture); 'a:2+b' -> ['a', 'b']; 'a' -> ['a']."""
    return [m.split(":", 1)[0].strip() for m in family.split("+") if m.strip()]


def family_data_spec(family: str) -> str:
    """The pretraining --data spec of a demo entry: 'a:2+b' -> 'a:2,b:1'."""
    items = [m.strip() for m in family.split("+") if m.strip()]
    return ",".join(m if ":" in m else f"{m}:1" for m in items)


def pretrain_family(out: Path, family: str, b: DemoBudget, device: torch.device,
                    seed: int, quiet: bool = True) -> Path:
    """The small recipe (Alignment + Uniformity, SmallAlexNet) at the budget's size."""
    from noisevision.ssl.train import PretrainConfig, pretrain

    data = family_data_spec(family)
    cfg = PretrainConfig(data=data, out=str(out / "runs" / family), recipe="small",
                         images=b.images, image_size=b.image_size, epochs=b.epochs,
                         batch_size=b.batch_size, lr=b.lr, crop=b.crop, width=b.width,
                         seed=seed, device=str(device), quiet=quiet, workers=0,
                         channels_last=b.channels_last,
                         log_every=max(1, b.images // b.batch_size))
    return pretrain(cfg)


def run_demo(out: str | Path = "noisevision-demo", *, device: str = "auto",
             budget: str = "auto", families: list[str] | None = None, seed: int = 0,
             overwrite: bool = False, quiet: bool = False) -> Path:
    """Run every stage; returns the report folder."""
    from noisevision.device import resolve_device
    from noisevision.generators.base import list_generators
    from noisevision.safety import check_output_dir
    from noisevision.ssl.sources import parse_data_spec

    t_start = time.perf_counter()
    check_output_dir(out)
    if Path(out).is_dir() and any(Path(out).iterdir()) and not overwrite:
        raise UsageError(f"report folder {out} is not empty (pass --overwrite to replace an "
                         "earlier demo report, or choose another --out)")
    dev = resolve_device(device)
    name, b = pick_budget(budget, dev)
    if families:
        unknown = [m for f in families for m in family_members(f) or [f]
                   if m not in list_generators()]
        if unknown:
            raise UsageError(f"unknown generator(s) {', '.join(unknown)} in --families "
                             f"(allowed: {', '.join(list_generators())})")
        for f in families:  # bad weights fail here, before anything is written
            parse_data_spec(family_data_spec(f))
        b = dataclasses.replace(b, families=tuple(families))
    with cpu_threads(b.threads, dev):
        return _run(out, dev, name, b, seed, overwrite, quiet, t_start)


def _run(out, dev, name, b, seed, overwrite, quiet, t_start) -> Path:
    from noisevision.probe.baselines import MeanColour, RawPixels, random_init_encoder
    from noisevision.probe.datasets import PHOTO_FILES, load_fashion_mnist, load_photo_crops
    from noisevision.probe.evaluate import KnnConfig, evaluate, results_markdown, write_results
    from noisevision.probe.linear import recipe_for
    from noisevision.probe.load import load_probe_encoder

    log = _Log(quiet)
    # Real data first: a missing package stops the demo before anything is written.
    timings = {}
    t0 = time.perf_counter()
    photos = PHOTO_FILES[:b.photo_limit] if b.photo_limit else PHOTO_FILES
    tasks = [load_photo_crops(b.photo_train, b.photo_val, size=b.crop, seed=seed, files=photos),
             load_fashion_mnist(b.fashion_train, b.fashion_val)]
    timings["load_tasks"] = time.perf_counter() - t0
    out = Path(out)
    _prepare_out(out, overwrite)
    log(f"budget {name} on {dev}; tasks: "
        + ", ".join(f"{t.name} ({len(t.train)}/{len(t.val)})" for t in tasks))

    t0 = time.perf_counter()
    samples = render_samples(out, b, dev, seed, log)
    timings["samples"] = time.perf_counter() - t0

    encoders, runs = {}, {}
    for fam in b.families:
        t0 = time.perf_counter()
        log(f"pretraining on {fam} ({b.epochs} epochs of {b.images} images)")
        run = pretrain_family(out, fam, b, dev, seed, quiet=quiet)  # a live progress bar
        model, meta = load_probe_encoder(run, device=dev)
        encoders[f"noise: {fam}"] = model
        runs[fam] = {"run": str(run.relative_to(out)),
                     "seconds": round(time.perf_counter() - t0, 1)}
        timings[f"pretrain {fam}"] = time.perf_counter() - t0
        log(f"pretrained on {fam} in {runs[fam]['seconds']} s ({b.epochs} epochs of "
            f"{b.images} images)")
    arch_kwargs = {"width": b.width, "input_size": b.crop}
    encoders["random-init small_alexnet"] = random_init_encoder("small_alexnet", arch_kwargs,
                                                                seed=seed)
    encoders["raw pixels"] = RawPixels(b.crop, side=min(32, b.crop))
    encoders["mean colour"] = MeanColour(b.crop)

    t0 = time.perf_counter()
    rows = evaluate(encoders, tasks, methods=("linear", "knn"),
                    linear=recipe_for("small_alexnet", "cached", b.probe_epochs),
                    knn=KnnConfig(), device=dev, log=log)
    timings["probe"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    meta = {"command": "demo", "budget": name, "budget_settings": dataclasses.asdict(b),
            "device": str(dev), "seed": seed, "runs": runs, "samples": samples,
            "tasks": [t.summary() for t in tasks],
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "torch": torch.__version__}
    write_results(out, rows, meta, f"demo ({name} budget, {dev})")
    (out / "report.md").write_text(_report(rows, meta, results_markdown(rows)))
    log(f"done in {timings['total']:.0f} s; report {out / 'report.md'}")
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


def _report(rows: list[dict], meta: dict, table: str) -> str:
    b = meta["budget_settings"]
    lines = [f"# noisevision demo ({meta['budget']} budget, {meta['device']})", "",
             "Encoders pretrained on procedural noise with the small recipe (Alignment + "
             f"Uniformity, SmallAlexNet width {b['width']}, {b['crop']} px crops, "
             f"{b['epochs']} epochs of {b['images']} images), probed on real images with a "
             f"linear head on cached fc6 features ({b['probe_epochs']} epochs, Adam 1e-3) and "
             "kNN (k 20, T 0.07), against the paper's baselines. Accuracy in %, val split.", "",
             table, "## Noise pretraining vs the same network with random weights (linear)", ""]
    for a in acceptance(rows):
        verdict = "beats" if a["beats_random_init"] else "does NOT beat"
        lines.append(f"- {a['task']}: {a['encoder']} {100 * a['noise']:.1f}% {verdict} "
                     f"random init {100 * a['random_init']:.1f}%")
    lines += ["", "## Tasks", ""]
    for t in meta["tasks"]:
        lines.append(f"- {t['task']}: {t['classes']} classes, {t['train']} train / {t['val']} "
                     f"val; {t['description']}")
    lines += ["", "## Samples", ""]
    for n, s in meta["samples"].items():
        lines.append(f"- {n}: " + (f"![{n}]({s['sheet']})" if "sheet" in s else s["error"]))
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {v}" for k, v in meta["timings_s"].items()]
    return "\n".join(lines) + "\n"


def load_results(out: str | Path) -> dict:
    return json.loads((Path(out) / "results.json").read_text())
