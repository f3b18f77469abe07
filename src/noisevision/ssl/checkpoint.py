"""Training checkpoints: the full state needed to continue a run exactly.

``<RUN>/checkpoint.pt`` holds the resolved config, the model (for MoCo: both encoders, heads and
the queue), the optimiser, the learning-rate schedule and the data position (epoch, next step).
The data order and the augmentation draws are pure functions of (seed, rank, epoch, step), so the
position is all the random state a run has. Files are written to a temporary name and renamed,
so a kill during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from noisevision.errors import UsageError

CHECKPOINT_FORMAT = "noisevision-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_torch_file(path: Path, what: str) -> Any:
    """torch.load on CPU with weights_only; any unpickling failure is a one-line UsageError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means a corrupt file)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UsageError(f"{what} {str(path)!r} is corrupt or not a torch file ({reason})") \
            from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on CPU; UsageError for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint {str(path)!r} to resume from "
                         "(start the run without --resume)")
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{str(path)!r} is not a noisevision checkpoint "
                         f"(expected format {CHECKPOINT_FORMAT!r})")
    return state
