"""The study folder: its marker and settings, the step files that make it resumable, and what
`--overwrite` may remove.

Layout (everything here is written by noisevision):

    study.json              marker: the settings (budget, tasks, recipe, seed) and the families
    steps/<family>/<step>.json   one file per finished step (pretrain, sheet, probe-<task>,
                            properties), written atomically: a step with a file is done
    steps/_baselines/probe-<task>.json   the baselines, once per task
    runs/<family>/          the pretraining run (pretrain's own resumable folder)
    samples/<family>.png    contact sheets
    figures/...             the report's figures (PNG and SVG)
    results.json, results.md, report.html (and report.md for `noisevision demo`)

A study folder is continued when its settings equal the requested ones (or with --resume,
which takes the stored ones); a folder made with other settings is refused unless --overwrite,
which removes only the entries above, and only in a folder marked as a study (or an earlier
demo report).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from noisevision.errors import UsageError

MARKER = "study.json"
LEGACY_DEMO_MARKER = ".noisevision-report.json"
TOP_FILES = (MARKER, LEGACY_DEMO_MARKER, "results.json", "results.md", "report.html",
             "report.md", "results.json.tmp", "results.md.tmp")
TOP_DIRS = ("steps", "runs", "samples", "figures")
FIGURE_SUFFIXES = (".png", ".svg")


def _is_temporary_of(name: str, names) -> bool:
    """A write_atomic temporary (`.results.json.1234.tmp`) of one of `names`."""
    parts = name.split(".")
    return (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4
            and parts[-2].isdigit() and ".".join(parts[1:-2]) in names)


def is_study_entry(rel: str, is_dir: bool) -> bool:
    """Whether `rel` (relative to the study folder) is a path a study writes."""
    from noisevision.ssl.run_folder import is_run_file

    parts = rel.split("/")
    top = parts[0]
    if len(parts) == 1:
        if is_dir:
            return top in TOP_DIRS
        return top in TOP_FILES or _is_temporary_of(top, TOP_FILES)
    leaf = parts[-1]
    if top == "steps":
        if len(parts) == 2:
            return is_dir
        return len(parts) == 3 and not is_dir and (leaf.endswith(".json")
                                                   or (leaf.startswith(".")
                                                       and leaf.endswith(".tmp")))
    if top == "samples":  # family sheets; the demo's sheet of every generator in generators/
        if len(parts) == 2 and is_dir:
            return leaf == "generators"
        if len(parts) == 3 and parts[1] != "generators":
            return False
        return len(parts) <= 3 and not is_dir and (leaf.endswith(".png") or (
            leaf.startswith(".") and leaf.endswith(".tmp")))
    if top == "figures":
        return is_dir or leaf.endswith(FIGURE_SUFFIXES)
    if top == "runs":
        if len(parts) == 2:
            return is_dir
        if len(parts) == 3:
            return is_run_file(leaf) and is_dir == (leaf == "tensorboard")
        return parts[2] == "tensorboard"
    return False


def read_marker(out: Path) -> dict | None:
    """The study's marker, or None (no study here). A legacy demo report reads as a study
    without settings (it can be overwritten, never continued)."""
    m = out / MARKER
    if m.is_file() and not m.is_symlink():
        try:
            data = json.loads(m.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("kind") == "noisevision-study":
            return data
        raise UsageError(f"{m} is not a readable study marker: remove it (or the folder) or "
                         "choose another --out")
    legacy = out / LEGACY_DEMO_MARKER
    if legacy.is_file() and not legacy.is_symlink():
        return {"kind": "noisevision-demo-report", "settings": None}
    try:
        meta = json.loads((out / "results.json").read_text()).get("meta", {})
        if isinstance(meta, dict) and meta.get("command") == "demo":
            return {"kind": "noisevision-demo-report", "settings": None}
    except (OSError, ValueError, AttributeError):
        pass
    return None


def differences(stored: dict, wanted: dict) -> list[str]:
    """'name: stored -> wanted' for every setting that differs (a nested dict one level deep)."""
    out = []
    for k in sorted(set(stored) | set(wanted)):
        a, b = stored.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in differences(a, b)]
        elif _jsonable(a) != _jsonable(b):
            out.append(f"{k}: {a!r} -> {b!r}")
    return out


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def prepare(out: Path, settings: dict, families: list[str], *, resume: bool,
            overwrite: bool, command: str) -> tuple[dict, list[str], str]:
    """Check the folder before anything is written; returns (settings to use, families,
    what happened: 'new' | 'continue' | 'overwrite').

    `settings` may be None with `resume` (take the stored ones).
    """
    from noisevision.safety import check_output_dir, scan_owned

    check_output_dir(out)
    if not out.is_dir() or not any(out.iterdir()):
        if resume:
            raise UsageError(f"no study in {str(out)!r} to resume: give --families (and the "
                             "other flags) to start one")
        return settings, families, "new"
    marker = read_marker(out)
    if marker is None:
        raise UsageError(f"--out {str(out)!r} is not empty and is not a report folder written "
                         f"by `noisevision study` or `demo` (no {MARKER}): choose a new or empty "
                         "--out (--overwrite only replaces such a folder)")
    if overwrite:
        scan_owned(out, is_study_entry, "study folder")  # refuses foreign files and links
        return settings, families, "overwrite"
    stored = marker.get("settings")
    if stored is None:
        raise UsageError(f"{str(out)!r} is an earlier demo report: pass --overwrite to replace "
                         "it, or choose another --out")
    if marker.get("command", "study") != command:
        raise UsageError(f"{str(out)!r} holds a `noisevision {marker.get('command')}` study, "
                         f"not a {command}: pass --overwrite to replace it, or choose another "
                         "--out")
    known = list(marker.get("families") or [])
    if resume:
        given = {k: v for k, v in (settings or {}).items() if v is not None}
        diff = differences({k: stored.get(k) for k in given}, given)
        if diff:
            raise UsageError(f"--resume continues the study in {str(out)!r} with its own "
                             f"settings, but these flags differ: {_shown(diff, stored, given)}; "
                             "drop them, or pass --overwrite to start again")
        return stored, families or known, "continue"
    diff = differences(stored, settings)
    if diff:
        raise UsageError(f"{str(out)!r} holds a study made with other settings "
                         f"({_shown(diff, stored, settings)}): rerun with the same flags, pass "
                         "--resume to continue it with its own settings, or --overwrite to "
                         "replace it")
    return stored, families, "continue"


def _shown(diff: list[str], old: dict, new: dict, most: int = 4) -> str:
    """The differences for one line: another named budget stands for the sizes it sets."""
    base = {str(d.get("budget") or "").split("+")[0] for d in (old, new) if d.get("budget")}
    if len(base) > 1:
        diff = [d for d in diff if not d.startswith("budget_settings.")]
    more = f"; and {len(diff) - most} more" if len(diff) > most else ""
    return "; ".join(diff[:most]) + more


def wipe(out: Path) -> None:
    """Remove what a study wrote in `out` (after `prepare` checked it with --overwrite)."""
    from noisevision.safety import remove_owned, scan_owned

    remove_owned(out, scan_owned(out, is_study_entry, "study folder"))


def write_marker(out: Path, settings: dict, families: list[str], command: str) -> None:
    """study.json: the settings and every family the folder has seen (in order)."""
    from noisevision.data.encode import write_atomic

    old = read_marker(out) if (out / MARKER).exists() else None
    seen = list((old or {}).get("families") or [])
    seen += [f for f in families if f not in seen]
    if command == "demo":  # the marker of earlier versions' demo reports, kept for them
        out.mkdir(parents=True, exist_ok=True)
        (out / LEGACY_DEMO_MARKER).write_text(json.dumps({"kind": "noisevision-demo-report"})
                                              + "\n")
    data = {"kind": "noisevision-study", "command": command, "settings": settings,
            "families": seen, "created": (old or {}).get("created")
            or time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / MARKER, (json.dumps(data, indent=2) + "\n").encode())


# --------------------------------------------------------------------------- step files

BASELINES = "_baselines"


def step_path(out: Path, family_slug: str, step: str) -> Path:
    return out / "steps" / family_slug / f"{step}.json"


def read_step(out: Path, family_slug: str, step: str) -> dict | None:
    """A finished step's record, or None (not done, or a file that does not parse)."""
    p = step_path(out, family_slug, step)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("done") is True else None


def write_step(out: Path, family_slug: str, step: str, record: dict) -> None:
    from noisevision.data.encode import write_atomic

    p = step_path(out, family_slug, step)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, json.dumps({**record, "done": True}, indent=2, default=str).encode())


def write_failure(out: Path, family_slug: str, step: str, message: str) -> None:
    """failed.json: the step that failed and why (removed when the family succeeds later)."""
    from noisevision.data.encode import write_atomic

    p = step_path(out, family_slug, "failed")
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, json.dumps({"step": step, "error": message}, indent=2).encode())


def read_failure(out: Path, family_slug: str) -> dict | None:
    try:
        return json.loads(step_path(out, family_slug, "failed").read_text())
    except (OSError, ValueError):
        return None
