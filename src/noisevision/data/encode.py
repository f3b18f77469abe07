"""Float images -> uint8 arrays -> PNG/JPEG bytes, and atomic file writes."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisevision.errors import UsageError

FORMATS = ("png", "jpg")
PNG_COMPRESS_LEVEL = 1  # zlib level 1: ~3x faster than PIL's default 6, files ~10-20% larger


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] or uint8 on any device -> (B, H, W, 3) uint8 numpy (float
    values rounded to nearest: Generator.images(..., dtype=torch.uint8) gives the same)."""
    from noisevision.generators.base import to_uint8_tensor

    x = images.detach()
    x = x if x.dtype == torch.uint8 else to_uint8_tensor(x)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


JPEG_SUBSAMPLING = {"4:4:4": 0, "4:2:0": 2}  # PIL's subsampling codes


def encode(array: np.ndarray, fmt: str, jpeg_quality: int = 95,
           jpeg_subsampling: str = "4:4:4") -> bytes:
    """One (H, W, 3) uint8 image as PNG or JPEG bytes (JPEG chroma: 4:4:4 or 4:2:0)."""
    buf = io.BytesIO()
    image = Image.fromarray(array, mode="RGB") if array.ndim == 3 else Image.fromarray(array)
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "jpg":
        if jpeg_subsampling not in JPEG_SUBSAMPLING:
            raise UsageError(f"unknown JPEG subsampling {jpeg_subsampling!r} (allowed: "
                             f"{', '.join(JPEG_SUBSAMPLING)})")
        image.save(buf, format="JPEG", quality=jpeg_quality,
                   subsampling=JPEG_SUBSAMPLING[jpeg_subsampling])
    else:
        raise UsageError(f"unknown image format {fmt!r} (allowed: {', '.join(FORMATS)})")
    return buf.getvalue()


MAX_PIXELS = 89_478_485  # PIL's default decompression-bomb limit (width x height)
ALLOWED_IMAGES = "readable PNG/JPEG/BMP/WebP/PPM/TIFF files"


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header; UsageError for a non-image or a bomb."""
    return _open(path, decode=False)[0]


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as (H, W, 3) uint8; one-line UsageError naming a bad file."""
    return _open(path, decode=True)[1]


def as_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image as (H, W, 3) uint8. Integer greys of more than 8 bits (16-bit PNG, TIFF:
    modes I;16* and I) are scaled from 0..65535, which PIL's convert("RGB") would clip at 255
    (a 16-bit image turns white); float greys (mode F) must lie in [0, 1]. Alpha is dropped,
    as torchvision's ImageFolder loader does."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        grey = np.clip(np.rint(np.asarray(im, dtype=np.float64) / 257.0), 0, 255)
    elif im.mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        if grey.size and not (np.isfinite(grey).all() and grey.min() >= 0 and grey.max() <= 1):
            raise ValueError("floating-point pixels outside [0, 1]: save it as 8- or 16-bit")
        grey = np.rint(grey * 255.0)
    else:
        return np.asarray(im.convert("RGB"))
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def decode_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode an encoded image held in memory (a tar member) as read_rgb does; errors name
    `name` (say "shard X, sample K")."""
    return _open(io.BytesIO(data), decode=True, name=name)[1]


def _open(path, decode: bool, name: str | None = None):
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise Image.DecompressionBombError(
                        f"{w} x {h} pixels is more than the limit of {MAX_PIXELS:,} "
                        "(a decompression bomb?)")
                arr = as_rgb(im) if decode else None
    except FileNotFoundError:
        raise UsageError(f"missing image file {name or path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"refused image {name or path}: {' '.join(str(exc).split())}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"cannot read image {name or path}: corrupt or unreadable image "
                         f"({reason}); allowed: {ALLOWED_IMAGES}") from None
    return (w, h), arr


def decode(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8; UsageError names a missing or corrupt file."""
    return read_rgb(path)


def write_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write to a hidden temporary name in the same folder, then rename: no half-written file.

    `fsync`: flush the data to disk before the rename (checkpoints: a crash of the machine, not
    only of the process, then leaves the old file or the new one). A full disk raises
    UsageError and leaves nothing behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        discard_temporary(tmp)
        raise_write_error(path, exc)
        raise


def discard_temporary(tmp: Path) -> None:
    """Remove a temporary file after a failed write (nothing half-written stays behind)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def raise_write_error(path: Path, exc: OSError) -> None:
    """A full disk or a refused write as the one-line UsageError naming `path`; any other
    error returns (the caller re-raises it)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise UsageError(f"disk full while writing {path}: free some space and rerun the same "
                         "command to resume") from None
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
