"""A pretraining run folder: what `pretrain` may find in --out (new, started, checkpointed),
what --resume may change, and cleaning up after a kill (only pretrain's own files)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from noisevision.data.encode import write_atomic
from noisevision.errors import UsageError
from noisevision.ssl.checkpoint import load_checkpoint
from noisevision.ssl.config import RECIPE_ONLY, PretrainConfig
from noisevision.ssl.sources import parse_data_spec, source_kind

# Files a run folder may hold: all written by `pretrain`; the ``*.tmp`` names are temporaries of
# earlier versions (today's are hidden write_atomic temporaries, see `_is_temporary`).
RUN_FILES = ("config.json", "config.json.tmp", "log.jsonl", "log.jsonl.tmp", "checkpoint.pt",
             "checkpoint.pt.tmp", "encoder.pt", "encoder.pt.tmp", "tensorboard")
# Fields that `--resume` may change: they do not change what the finished run computes, except
# `epochs`, whose new value also stretches or shortens the learning-rate schedule.
RESUME_CHANGEABLE = ("epochs", "device", "quiet", "workers", "checkpoint_every", "log_every",
                     "tensorboard", "compile")
LEGACY_FIELDS = ("stop_after",)  # config keys of earlier versions, ignored when read


def config_from_dict(d: dict) -> PretrainConfig:
    """A PretrainConfig from stored JSON (TypeError for unknown fields). Fields of the other
    recipe that earlier versions stored (and ignored) read as their defaults."""
    d = {k: v for k, v in d.items() if k not in LEGACY_FIELDS}
    other = [n for r, names in RECIPE_ONLY.items() if r != d.get("recipe", "small")
             for n in names]
    defaults = {f.name: f.default for f in dataclasses.fields(PretrainConfig)}
    return PretrainConfig(**{k: defaults[k] if k in other else v for k, v in d.items()})


def _run_folder_state(run: Path) -> str:
    """'new' (absent or empty), 'started' (ours, no checkpoint yet) or 'checkpoint'."""
    if run.is_symlink() and not run.exists():
        raise UsageError(f"run folder {str(run)!r} is a broken symbolic link")
    if run.exists() and not run.is_dir():
        raise UsageError(f"run folder {str(run)!r} is a file (allowed: a new, empty or "
                         "run folder)")
    if not run.exists():
        return "new"
    entries = sorted(os.listdir(run))
    if not entries:
        return "new"
    if (run / "checkpoint.pt").is_file():
        # a run to continue: files beside it (a probe's results.json, notes) stay untouched
        return "checkpoint"
    foreign = [e for e in entries if not is_run_file(e)]
    if foreign:
        raise UsageError(f"{str(run)!r} holds files that `pretrain` did not write "
                         f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): "
                         "choose a new or empty --out")
    return "started"


def _is_temporary(name: str) -> bool:
    """A write_atomic temporary of a run file (`.checkpoint.pt.1234.tmp`), left by a kill."""
    parts = name.split(".")
    return (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4
            and ".".join(parts[1:-2]) in RUN_FILES and parts[-2].isdigit())


def is_run_file(name: str) -> bool:
    """Whether `name` (an entry of a run folder) is one `pretrain` writes, or its temporary."""
    return name in RUN_FILES or _is_temporary(name)


def stored_config(run: Path) -> dict | None:
    """The config of RUN/config.json when it is readable (a started run without checkpoint)."""
    try:
        data = json.loads((run / "config.json").read_text())
        cfg = data["config"]
        config_from_dict(cfg)
        return {k: v for k, v in cfg.items() if k not in LEGACY_FIELDS}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _normalise(field: str, value: Any) -> Any:
    if field == "data" and isinstance(value, str):
        out = []
        for s in parse_data_spec(value):
            src = s.source
            if source_kind(src) != "generator":
                src = str(Path(src).resolve())
            out.append((src, float(s.weight)))
        return out
    if field == "out":
        return str(Path(value).resolve())
    return value


def resume_config(stored: PretrainConfig, given: PretrainConfig, explicit: set[str],
                  epochs_done: int) -> tuple[PretrainConfig, list[str]]:
    """The config of a resumed run: the stored one, with the changeable `explicit` fields.

    A field in `explicit` that cannot change on resume must equal the stored value, else
    UsageError names it. Returns the config and a description of each honoured change.
    """
    changes, updates = [], {}
    for name in sorted(explicit):
        new, old = getattr(given, name), getattr(stored, name)
        if new is None or _normalise(name, new) == _normalise(name, old):
            continue
        if name == "out":  # the folder was moved or copied: the run is where it is now
            updates[name] = new
            changes.append(f"run folder {old!r} -> {new!r} (moved or copied)")
            continue
        if name not in RESUME_CHANGEABLE:
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"--resume cannot change {name} ({old!r} in the run, {new!r} given {flag}): "
                f"it would change what the run computes; drop {flag} or start a new run "
                "(another --out). Changeable on resume: "
                + ", ".join("--" + c.replace("_", "-") for c in RESUME_CHANGEABLE))
        if name == "epochs" and new < epochs_done:
            raise UsageError(f"--epochs {new} is below the {epochs_done} epochs this run has "
                             "completed (allowed: >= the completed epochs)")
        updates[name] = new
        changes.append(f"{name} {old!r} -> {new!r}"
                       + (" (learning-rate schedule recomputed for the new length)"
                          if name == "epochs" else ""))
    return dataclasses.replace(stored, **updates), changes


def _explicit_fields(config: PretrainConfig) -> set[str]:
    """Library calls: the fields that differ from PretrainConfig's defaults (and data/out)."""
    defaults = {f.name: f.default for f in dataclasses.fields(PretrainConfig)}
    return {k for k, v in dataclasses.asdict(config).items()
            if k in ("data", "out") or v != defaults.get(k)}


def prepare_run_folder(config: PretrainConfig, resume: bool,
                        explicit: set[str] | None) -> tuple[PretrainConfig, dict | None, str]:
    """(config to train, checkpoint state or None, a note for the user) for RUN's state.

    * new folder: train `config` from step 0;
    * started (our files, no checkpoint yet: killed or failed before the first save): train
      from step 0, with or without --resume; --resume takes the stored config and the given
      flags over it (nothing was trained, so any flag may change);
    * checkpoint: --resume continues it (see resume_config); a plain rerun is refused.
    """
    run = Path(config.out)
    state = _run_folder_state(run)
    explicit = _explicit_fields(config) if explicit is None else set(explicit) | {"out"}
    if state == "checkpoint":
        if not resume:
            raise UsageError(f"run folder {str(run)!r} holds a checkpoint: pass --resume to "
                             "continue it, or choose another --out")
        ckpt = load_checkpoint(run / "checkpoint.pt")
        try:
            stored = config_from_dict(ckpt["config"])
        except TypeError as exc:
            raise UsageError(f"checkpoint {str(run / 'checkpoint.pt')!r} holds a config this "
                             f"version cannot read ({exc})") from None
        cfg, changes = resume_config(stored, config, explicit, int(ckpt["epoch"]))
        note = (f"resuming {run} at epoch {ckpt['epoch']} step {ckpt['step']}"
                + (f"; changed: {'; '.join(changes)}" if changes else ""))
        return cfg, ckpt, note
    if state == "started":
        stored = stored_config(run) if resume else None
        if stored is not None:
            given = {k: getattr(config, k) for k in explicit if getattr(config, k) is not None}
            config = PretrainConfig(**{**stored, **given, "out": config.out})
        elif resume and "data" not in explicit:
            raise UsageError(f"run folder {str(run)!r} has no readable config.json and no "
                             "checkpoint: give --data (and the other flags) to start it again")
        return config.resolved(), None, (f"{run} has no checkpoint yet: starting from step 0"
                                         + (" with its stored config" if stored else ""))
    if resume and "data" not in explicit:
        raise UsageError(f"no run in {str(run)!r} to resume: give --data (and the other "
                         "flags) to start one")
    return config.resolved(), None, ""


def reset_started_run(run: Path) -> None:
    """Remove what a run killed before its first checkpoint left (only our own files)."""
    for name in ("log.jsonl", "checkpoint.pt.tmp", "encoder.pt.tmp", "encoder.pt"):
        (run / name).unlink(missing_ok=True)
    for name in os.listdir(run):
        if _is_temporary(name):
            (run / name).unlink(missing_ok=True)


def trim_log(path: Path, done: int) -> None:
    """Drop log lines past the checkpoint (they are logged again) and a half-written last line."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("global_step", 0) <= done:
            keep.append(line)
    write_atomic(path, "".join(k + "\n" for k in keep).encode())
