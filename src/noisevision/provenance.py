"""Where a result came from: package versions, the git commit and the machine (one helper for
dataset manifests and run configs)."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The git commit of the noisevision source tree, when it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import noisevision

    return {"noisevision": noisevision.__version__, "torch": torch.__version__}


def provenance(device: torch.device | None = None, world_size: int | None = None
               ) -> dict[str, Any]:
    """Versions, git sha, python and (given a device) the device and its name."""
    out: dict[str, Any] = {**versions(), "python": platform.python_version(),
                           "git_sha": git_sha()}
    if device is not None:
        out["device"] = str(device)
        out["device_name"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                              else platform.processor())
    if world_size is not None:
        out["world_size"] = world_size
    return out


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, remembered per (resolved path, size, modification time):
    what identifies weights and encoder files in feature-cache keys and generator configs."""
    st = os.stat(path)
    memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[memo_key] = h.hexdigest()
    return _SHA_MEMO[memo_key]
