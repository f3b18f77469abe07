"""Folder layout of a generated dataset: DIR/<chunk>/<index>.<ext>, 1,000 images a chunk.

Chunk folders act as classes, so any ImageFolder reader takes the dataset as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CHUNK = 1000
_CHUNK_RE = re.compile(r"^\d{8}$")


def chunk_name(index: int) -> str:
    return f"{index // CHUNK * CHUNK:08d}"


def image_path(root: Path, index: int, ext: str) -> Path:
    return Path(root) / chunk_name(index) / f"{index:08d}.{ext}"


def existing_indices(root: Path, ext: str) -> set[int]:
    """Indices whose final image file exists (temporary files are never counted)."""
    found: set[int] = set()
    root = Path(root)
    if not root.is_dir():
        return found
    suffix = f".{ext}"
    for chunk in os.scandir(root):
        if not (chunk.is_dir() and _CHUNK_RE.match(chunk.name)):
            continue
        for entry in os.scandir(chunk.path):
            name = entry.name
            if name.endswith(suffix) and not name.startswith(".") and name[:-len(suffix)].isdigit():
                found.add(int(name[:-len(suffix)]))
    return found


def chunk_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _CHUNK_RE.match(p.name))


def remove_stale_temporaries(root: Path) -> int:
    """Delete leftovers of a killed run (hidden .tmp files); returns how many."""
    n = 0
    for chunk in chunk_dirs(root):
        for p in chunk.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    return n
