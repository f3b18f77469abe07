"""A probe's finished rows, kept in `--out` while it runs, so that a killed probe resumes.

`noisevision probe` over a suite of tasks with several encoders, or the paper's augmented probe
of a ResNet-50, runs for hours. With `--out`, every (task, encoder, method) row is written to
OUT/probe-progress.json as it finishes (atomically), beside the settings that decide its number.
The same command rerun computes only the rows that are missing, and the finished results.json
replaces the progress file. A row is reused only for the same encoder weights (a digest of its
tensors) and the same task (its summary); a progress file of other settings is refused with the
settings that differ, never mixed into the results or silently thrown away.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from noisevision.errors import UsageError
from noisevision.locks import FolderLock

PROGRESS = "probe-progress.json"
KIND = "noisevision-probe-progress"


def model_digest(model: nn.Module) -> str:
    """sha256 of a model's class and every tensor of its state dict (names, dtypes, shapes,
    bytes): the same digest for the same weights, however the model was loaded."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ProbeProgress:
    """OUT/probe-progress.json: {kind, settings, rows}; each row carries `encoder_sha256` and
    `task_summary` so that it is reused only for the same weights and the same task."""

    def __init__(self, out: str | Path, settings: dict) -> None:
        self.path = Path(out) / PROGRESS
        self.settings = json.loads(json.dumps(settings, default=str))  # as it reads back
        self.rows: list[dict] = []
        # two probes in one folder would drop each other's rows: one at a time (held from the
        # first write until the end of `with progress:`)
        self.lock = FolderLock(out, "probe folder", "wait for that probe to end (or stop it), "
                               "or choose another --out")

    def __enter__(self) -> ProbeProgress:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def check_path(self) -> None:
        if self.path.is_symlink() or self.path.is_dir():
            raise UsageError(f"{self.path} is a link or a folder: noisevision will not replace "
                             "it; choose another --out")

    def load(self) -> list[dict]:
        """The rows of an earlier run of these settings (none if there is no progress file)."""
        self.check_path()
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text())
            ok = (isinstance(data, dict) and data.get("kind") == KIND
                  and isinstance(data.get("settings"), dict)
                  and isinstance(data.get("rows"), list)
                  and all(isinstance(r, dict) and {"task", "encoder", "method", "val_acc",
                                                   "encoder_sha256", "task_summary"} <= set(r)
                          for r in data["rows"]))
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise UsageError(f"{self.path} is not a probe progress file noisevision can read: "
                             "remove it to start the probe over, or choose another --out")
        old = data["settings"]
        differ = sorted(k for k in set(old) | set(self.settings)
                        if old.get(k) != self.settings.get(k))
        if differ:
            raise UsageError(f"{self.path} is the progress of a probe with other settings "
                             f"(differs: {', '.join(differ)}): rerun that command to finish it, "
                             "remove the file to start over, or choose another --out")
        self.rows = data["rows"]
        return self.rows

    def done(self, task_summary: dict, encoder: str, digest: str) -> dict[str, dict]:
        """method -> finished row of this encoder (name and weights) on this task."""
        summary = json.loads(json.dumps(task_summary, default=str))
        return {r["method"]: r for r in self.rows
                if r["encoder"] == encoder and r["encoder_sha256"] == digest
                and r["task_summary"] == summary}

    def add(self, row: dict, task_summary: dict, digest: str) -> None:
        """Record a finished row (atomically: the file is always whole)."""
        from noisevision.data.encode import write_atomic

        row = {**row, "encoder_sha256": digest,
               "task_summary": json.loads(json.dumps(task_summary, default=str))}
        self.rows = [r for r in self.rows
                     if (r["task"], r["encoder"], r["method"]) != (row["task"], row["encoder"],
                                                                    row["method"])] + [row]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            write_atomic(self.path, json.dumps({"kind": KIND, "settings": self.settings,
                                                "rows": self.rows}, indent=1,
                                               default=str).encode())
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def finish(self) -> None:
        """The results are written: the progress file is no longer needed."""
        self.path.unlink(missing_ok=True)


def strip(rows: Sequence[dict]) -> list[dict]:
    """Rows without the progress file's bookkeeping."""
    return [{k: v for k, v in r.items() if k not in ("encoder_sha256", "task_summary")}
            for r in rows]
