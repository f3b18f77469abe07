"""Folder layout of a generated dataset: DIR/<chunk>/<index>.<ext>, 1,000 images a chunk.

Chunk folders act as classes, so any ImageFolder reader takes the dataset as it is.

Scanning never follows a symbolic link: a chunk folder that is a link is refused (a resume would
otherwise write through it into another folder), and an image file that is a link does not count
as present. A present image must also be complete: non-empty and ending in its format's trailer
(PNG's IEND chunk, JPEG's end-of-image marker), a cheap check of every file that catches the
truncated and 0-byte files a crash or a full disk can leave.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from noisevision.errors import UsageError

CHUNK = 1000
_CHUNK_RE = re.compile(r"^\d{8,13}$")  # 8 digits, more for indices >= 10**8
_TMP_RE = re.compile(r"^\.\d{8,13}\.(png|jpg)\.\d+\.tmp$")
TRAILERS = {"png": b"IEND\xaeB`\x82", "jpg": b"\xff\xd9"}
# The shards layout (data/shards.py): DIR/shard-<k, 6 digits or more>.tar and its temporaries.
SHARD_RE = re.compile(r"^shard-(\d{6,})\.tar$")
SHARD_TMP_RE = re.compile(r"^\.shard-\d{6,}\.tar\.\d+\.tmp$")


def chunk_name(index: int) -> str:
    return f"{index // CHUNK * CHUNK:08d}"


def image_path(root: Path, index: int, ext: str) -> Path:
    return Path(root) / chunk_name(index) / f"{index:08d}.{ext}"


def is_complete(path: str | os.PathLike, ext: str, size: int | None = None) -> bool:
    """A regular, non-empty file that ends in the format's trailer (cheap: reads 16 bytes)."""
    trailer = TRAILERS[ext]
    try:
        if size is None:
            size = os.stat(path).st_size
        if size < len(trailer) + 8:
            return False
        with open(path, "rb") as fh:
            fh.seek(-16, os.SEEK_END)
            tail = fh.read()
    except OSError:
        return False
    if ext == "jpg":  # a JPEG may carry zero padding after its end-of-image marker
        tail = tail.rstrip(b"\x00")
    return tail.endswith(trailer)


def _chunk_entries(root: Path):
    """(chunk DirEntry) for every chunk folder; a chunk that is a symbolic link is refused."""
    with os.scandir(root) as it:
        entries = list(it)
    for e in entries:
        if not _CHUNK_RE.match(e.name):
            continue
        if e.is_symlink():
            raise UsageError(f"chunk folder {e.path} is a symbolic link: noisevision never "
                             "writes or deletes through links out of a dataset folder; remove "
                             "the link and rerun")
        if e.is_dir(follow_symlinks=False):
            yield e


def scan_images(root: Path, ext: str, check: bool = True) -> tuple[set[int], set[int]]:
    """(complete indices, damaged indices) of the final image files under `root`.

    Temporary files never count; links to files count as damaged (they are replaced by a real
    file on resume, never written through). `check=False` skips the trailer check.
    """
    found: set[int] = set()
    damaged: set[int] = set()
    root = Path(root)
    if not root.is_dir():
        return found, damaged
    suffix = f".{ext}"
    for chunk in _chunk_entries(root):
        with os.scandir(chunk.path) as it:
            for entry in it:
                name = entry.name
                if not (name.endswith(suffix) and not name.startswith(".")
                        and name[:-len(suffix)].isdigit()):
                    continue
                index = int(name[:-len(suffix)])
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    damaged.add(index)
                elif check and not is_complete(entry.path, ext, st.st_size):
                    damaged.add(index)
                else:
                    found.add(index)
    return found, damaged


def existing_indices(root: Path, ext: str) -> set[int]:
    """Indices whose final image file exists and is complete (temporaries never count)."""
    return scan_images(root, ext)[0]


def chunk_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(Path(e.path) for e in _chunk_entries(root))


def remove_stale_temporaries(root: Path) -> int:
    """Delete leftovers of a killed run (hidden .tmp files); returns how many."""
    n = 0
    for chunk in chunk_dirs(root):
        with os.scandir(chunk) as it:
            stale = [e.path for e in it if e.name.startswith(".") and e.name.endswith(".tmp")
                     and not e.is_dir(follow_symlinks=False)]
        for p in stale:
            Path(p).unlink(missing_ok=True)
            n += 1
    return n


def is_dataset_entry(rel: str, is_dir: bool) -> bool:
    """Whether `rel` (relative to a dataset folder) is a path `generate` writes."""
    parts = rel.split("/")
    if len(parts) == 1:
        if is_dir:
            return bool(_CHUNK_RE.match(parts[0]))
        if SHARD_RE.match(parts[0]) or SHARD_TMP_RE.match(parts[0]):
            return True
        return parts[0] in ("manifest.json", "sheet.png") or bool(
            re.match(r"^\.(manifest\.json|sheet\.png)\.\d+\.tmp$", parts[0])
            or parts[0].startswith(".write-test."))
    if len(parts) == 2 and _CHUNK_RE.match(parts[0]) and not is_dir:
        name = parts[1]
        m = re.match(r"^(\d{8,13})\.(png|jpg)$", name)
        return bool(m and chunk_name(int(m.group(1))) == parts[0]) or bool(_TMP_RE.match(name))
    return False
