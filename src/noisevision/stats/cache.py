"""The analysis cache folder and atomic writes into it (converted weights, cached features).

The folder is `$NOISEVISION_CACHE` if set, else `$XDG_CACHE_HOME/noisevision`, else
`~/.cache/noisevision`. Nothing here downloads anything.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from noisevision.data.encode import write_atomic


def cache_dir(sub: str | None = None, create: bool = True) -> Path:
    """The noisevision cache folder (or its subfolder `sub`), created unless `create=False`."""
    root = os.environ.get("NOISEVISION_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path = base / "noisevision"
    if sub:
        path = path / sub
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """`torch.save(obj)` to `path` through a temporary file and a rename (never half written).

    Bytes are written as they are. The parent folder is created. A full disk or a read-only
    folder raises UsageError and leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, (bytes, bytearray)):
        data = bytes(obj)
    else:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
    write_atomic(path, data, fsync=True)
    return path
