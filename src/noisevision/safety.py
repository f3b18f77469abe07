"""Checks that run before any side effect (output paths, memory, folders noisevision owns) and
worker processes that end with their parent.

Every command that writes validates its inputs and its output path first, so bad input leaves
nothing behind; every command that removes or replaces files removes only what noisevision
itself wrote there (recognised by name and by the folder's own manifest or marker), never
follows a symbolic link out of the folder, and refuses anything else with one line.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from noisevision.errors import UsageError

NAME_MAX = 255


def _nearest_existing(path: Path) -> tuple[Path, list[str]]:
    """The deepest existing ancestor of `path` (itself included) and the names below it."""
    missing: list[str] = []
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        missing.append(p.name)
        p = p.parent
    return p, missing[::-1]


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` can be created (or is) a writable folder: checked without leaving anything."""
    return _check_output(path, flag, want_dir=True)


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` can be written as a file (its folder exists or can be created, is writable)."""
    return _check_output(path, flag, want_dir=False)


def _check_output(path: str | os.PathLike, flag: str, want_dir: bool) -> Path:
    try:
        path = Path(path)
        os.fspath(path).encode()
        if "\x00" in os.fspath(path):
            raise ValueError
    except (TypeError, ValueError, UnicodeEncodeError):
        raise UsageError(f"{flag} {str(path)!r} is not a usable path") from None
    if os.path.lexists(path) and path.is_symlink() and not path.exists():
        raise UsageError(f"{flag} {str(path)!r} is a broken symbolic link")
    if path.exists():
        if want_dir and not path.is_dir():
            raise UsageError(f"{flag} {str(path)!r} is a file (allowed: a folder)")
        if not want_dir and path.is_dir():
            raise UsageError(f"{flag} {str(path)!r} is a folder (allowed: a file name, e.g. "
                             "sheet.png)")
    base, missing = _nearest_existing(path if want_dir else path.parent)
    for name in missing:
        if len(name.encode()) > NAME_MAX:
            raise UsageError(f"{flag} {str(path)!r}: the name {name[:20]!r}... is longer than "
                             f"{NAME_MAX} bytes")
    if not base.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is not writable: {str(base)!r} is a file, "
                         "not a folder")
    _probe_writable(base, flag, path)
    return path


def _probe_writable(folder: Path, flag: str, path: Path) -> None:
    """Create and delete a hidden file in `folder` (catches read-only and virtual file systems)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".noisevision-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            why = "the disk is full"
        raise UsageError(f"{flag} {str(path)!r} is not writable ({why} in {str(folder)!r})"
                         ) from None


# --------------------------------------------------------------------------- memory

def available_memory(device=None) -> int | None:
    """Bytes that can still be allocated on `device` (CPU: MemAvailable; None when unknown)."""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(nbytes: int, what: str, hint: str, device=None, fraction: float = 0.5) -> None:
    """UsageError when `nbytes` exceed `fraction` of the free memory of `device`."""
    free = available_memory(device)
    if free is not None and nbytes > fraction * free:
        where = getattr(device, "type", "cpu") if device is not None else "cpu"
        raise UsageError(f"{what} needs {nbytes / 2**30:.1f} GiB, more than the "
                         f"{fraction * free / 2**30:.1f} GiB this {where} can spare "
                         f"({int(fraction * 100)}% of the free memory): {hint}")


# --------------------------------------------------------------------------- owned folders

def scan_owned(root: Path, is_ours: Callable[[str, bool], bool], what: str) -> list[str]:
    """Relative paths of everything under `root`, refusing links and anything not ours.

    `is_ours(relpath, is_dir)` says whether an entry is one noisevision writes in this kind of
    folder. A symbolic link anywhere is refused (never followed), as is any foreign entry.
    """
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        here = root / rel if rel else root
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            mode = os.lstat(e.path).st_mode
            if stat.S_ISLNK(mode):
                raise UsageError(f"{str(root / r)!r} is a symbolic link: noisevision never "
                                 f"follows links out of a {what}; remove the link or choose "
                                 "another --out")
            is_dir = stat.S_ISDIR(mode)
            if not is_ours(r, is_dir):
                raise UsageError(f"{str(root)!r} holds {str(r)!r}, which noisevision did not "
                                 f"write: it only replaces its own {what} files; move that "
                                 "away or choose another --out")
            found.append(r)
            if is_dir:
                stack.append(r)
    return found


def remove_owned(root: Path, entries: Iterable[str]) -> int:
    """Remove `entries` (relative paths from scan_owned): files first, then emptied folders."""
    entries = list(entries)
    n = 0
    for r in sorted(entries, key=lambda x: -x.count("/")):
        p = root / r
        if p.is_symlink():
            continue  # scan_owned refused links; never follow one that appeared since
        if p.is_dir():
            try:
                p.rmdir()
            except OSError:
                pass  # not empty: something appeared since the scan; keep it
        else:
            p.unlink(missing_ok=True)
            n += 1
    return n


# --------------------------------------------------------------------------- processes

def die_with_parent(parent: int) -> None:
    """Make this worker process end when its parent does, even after a kill -9 of the parent.

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG). Everywhere: a
    watchdog thread exits when the parent's pid changes (the worker was re-parented).
    `parent` is the pid the parent passed: a parent killed while this process was still
    starting is noticed too.
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="noisevision-parent-watch").start()
