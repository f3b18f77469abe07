"""One process at a time in a run or study folder: an advisory lock on the folder itself.

Two processes training into one run folder (a job requeued while the first still runs, the same
command in two terminals) would each overwrite the other's checkpoints and interleave the log:
the later one silently throws away the earlier one's progress. `FolderLock` takes an exclusive
`flock` on the folder's directory descriptor: no file is written (a foreign folder is never
touched), and the kernel releases the lock when the process ends, even after `kill -9`, so a
killed run resumes at once. Where the file system has no such locks (some network mounts) the
lock is skipped: it guards against a mistake, it is not needed for correctness.

Dataset writers take no lock: many processes or nodes filling one dataset (`--shard K/N`,
torchrun ranks) is how they are meant to run, and each image is written atomically.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from noisevision.errors import UsageError

try:
    import fcntl
except ImportError:  # not POSIX: no locks
    fcntl = None


class FolderLock:
    """Exclusive lock on `folder` while held; `acquire` is a no-op until the folder exists."""

    def __init__(self, folder: str | os.PathLike, what: str, hint: str) -> None:
        self.folder, self.what, self.hint = Path(folder), what, hint
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock if the folder exists and it is not held yet; one-line UsageError when
        another process holds it."""
        if self._fd is not None or fcntl is None or not self.folder.is_dir():
            return
        try:
            fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return  # unreadable: the command's own checks report it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(f"{self.what} {str(self.folder)!r} is in use by another "
                                 f"noisevision process; {self.hint}") from None
            return  # no lock support here (ENOLCK, EINVAL...): go on without
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
