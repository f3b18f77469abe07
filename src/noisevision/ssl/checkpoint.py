"""Training checkpoints: the full state needed to continue a run exactly.

``<RUN>/checkpoint.pt`` holds the resolved config, the model (for MoCo: both encoders, heads and
the queue), the optimiser, the learning-rate schedule and the data position (epoch, next step).
The data order and the augmentation draws are pure functions of (seed, rank, epoch, step), so the
position is all the random state a run has. Files are written to a temporary name, flushed to
disk and renamed, so a kill during the write leaves the previous checkpoint intact.

Integrity: every file saved here (checkpoints and encoder files) carries ``content_sha256``, a
SHA-256 over every tensor's dtype, shape and bytes and every plain value, in a fixed order. A
loader recomputes it and refuses a file whose content changed on disk (a flipped block inside
the zip archive can otherwise unpickle into wrong weights without any error). Files without the
field (written before it existed, or by other code) load as before.

Writing runs beside training (`BackgroundSaver`): the state is copied to host memory at the
step it describes, then hashed, serialised and fsynced on a worker thread while the next steps
run (a MoCo checkpoint is about 450 MiB: seconds of hashing and flushing that a GPU would
otherwise wait). One save is in flight at most; the next one, the end of the run and any exit
wait for it, and a failed save (a full disk) is raised there as its one-line error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from noisevision.errors import UsageError

CHECKPOINT_FORMAT = "noisevision-checkpoint-v1"
DIGEST_KEY = "content_sha256"


def content_digest(obj: Any) -> str:
    """SHA-256 of a nested structure of dicts, lists, tensors and plain values (order-fixed)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(("V" + json.dumps(obj, sort_keys=True, default=repr)).encode())


def save_torch_file(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """torch.save `payload` plus its content digest, atomically (temporary file, fsync, rename)."""
    from noisevision.data.encode import write_atomic

    path = Path(path)
    payload = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    payload[DIGEST_KEY] = content_digest(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(path, buf.getvalue(), fsync=True)
    return path


def snapshot(obj: Any) -> Any:
    """`obj` with every tensor copied to host memory (a state dict's tensors are the live
    parameters: a save that runs beside training must not see later steps)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class BackgroundSaver:
    """Run saves on a worker thread, one at a time (see the module text). `wait` joins the
    save in flight and raises its error, if any."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, save: Callable[[], object]) -> None:
        self.wait()

        def run() -> None:
            try:
                save()
            except BaseException as exc:  # noqa: BLE001  (raised in the training thread)
                self._error = exc

        # not a daemon: an interpreter leaving on an exception still finishes the file
        self._thread = threading.Thread(target=run, name="noisevision-checkpoint")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    return save_torch_file(path, {"format": CHECKPOINT_FORMAT, **state})


def _why_unloadable(exc: BaseException, data: bytes = b"") -> str:
    """A whole-sentence reason for a torch.load failure (never a cut message)."""
    text = str(exc)
    if data and not data.startswith((b"PK\x03\x04", b"\x80")):
        return "it is corrupt or not a torch file (neither a torch zip archive nor a pickle)"
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in text.lower() \
            or "Weights only load failed" in text:
        return ("it was refused: it holds Python objects that safe loading refuses (only "
                "tensors and plain data are allowed; noisevision never unpickles code)")
    if isinstance(exc, (EOFError, zipfile.BadZipFile)) or "zip archive" in text \
            or "central directory" in text or "PytorchStreamReader" in text:
        return "it is corrupt: truncated or damaged (not a complete torch zip archive)"
    if isinstance(exc, pickle.UnpicklingError) or "pickle" in text.lower():
        return "it is corrupt: its pickled data is damaged"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    if len(first) > 160:  # shorten at a word boundary, never mid-word
        first = first[:160].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {first}"


def load_torch_file(path: Path, what: str) -> Any:
    """torch.load on CPU with weights_only; a damaged, foreign or tampered file is UsageError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    if not data:
        raise UsageError(f"{what} {str(path)!r} is empty (0 bytes): it was not written "
                         "completely")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure: a refused file)
        why = _why_unloadable(exc, data)
        raise UsageError(f"cannot read {what} {str(path)!r}: {why}") from None
    if isinstance(obj, dict) and DIGEST_KEY in obj:
        stored = obj.pop(DIGEST_KEY)
        if stored != content_digest(obj):
            raise UsageError(f"{what} {str(path)!r} is damaged: its content no longer matches "
                             "the checksum stored when it was written")
    return obj


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on CPU; UsageError for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint {str(path)!r} to resume from")
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{str(path)!r} is not a noisevision checkpoint "
                         f"(expected format {CHECKPOINT_FORMAT!r})")
    for key, kind in (("config", dict), ("model", dict), ("optimizer", dict), ("epoch", int),
                      ("step", int)):
        if not isinstance(state.get(key), kind):
            raise UsageError(f"checkpoint {str(path)!r} has no valid {key!r} field "
                             f"(expected {kind.__name__})")
    return state
