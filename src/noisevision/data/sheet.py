"""Labelled contact sheets: a grid of images with an index under each and a title on top."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from noisevision.data.encode import to_uint8

_MIN_TILE = 128  # small images are upscaled (nearest) so a sheet stays readable


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def contact_sheet(images: torch.Tensor, labels: Sequence[str] | None = None,
                  title: str | None = None, ncols: int | None = None,
                  pad: int = 4) -> Image.Image:
    """(B, 3, H, W) float in [0, 1] -> one RGB PIL image with a labelled grid."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"contact_sheet needs (B, 3, H, W) images, got {tuple(images.shape)}")
    arrays = to_uint8(images)
    b, h, w, _ = arrays.shape
    scale = max(1, math.ceil(_MIN_TILE / max(h, w)))
    th, tw = h * scale, w * scale
    ncols = ncols or max(1, math.ceil(math.sqrt(b)))
    nrows = max(1, math.ceil(b / ncols))
    label_h = 14 if labels else 0
    title_h = 24 if title else 0
    sheet = Image.new("RGB", (ncols * (tw + pad) + pad,
                              title_h + nrows * (th + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 4), title, fill=(0, 0, 0), font=_font(16))
    small = _font(11)
    for k in range(b):
        r, c = divmod(k, ncols)
        x = pad + c * (tw + pad)
        y = title_h + pad + r * (th + label_h + pad)
        tile = Image.fromarray(arrays[k])
        if scale > 1:
            tile = tile.resize((tw, th), Image.NEAREST)
        sheet.paste(tile, (x, y))
        if labels:
            draw.text((x, y + th + 1), str(labels[k]), fill=(0, 0, 0), font=small)
    return sheet


SHEET_TAG = "noisevision contact sheet"
SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")


def _is_our_sheet(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            text = im.info.get("Software") or im.info.get("comment") or b""
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    if isinstance(text, bytes):
        text = text.decode("latin-1", "replace")
    return SHEET_TAG in str(text)


def check_sheet_target(path: str | Path) -> Path:
    """Before rendering: `path` ends in .png/.jpg, can be written, and replaces no foreign file.

    An existing file is replaced only when it is a contact sheet noisevision wrote (tagged in
    its metadata); anything else at that path is refused.
    """
    from noisevision.errors import UsageError
    from noisevision.safety import check_output_file

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name such as sheet.png")
    if path.suffix.lower() not in SHEET_SUFFIXES:
        raise UsageError(f"--out {path} must end in .png or .jpg")
    check_output_file(path)
    if path.is_symlink():
        raise UsageError(f"--out {path} is a symbolic link: noisevision will not write through "
                         "it; give another file name")
    if path.exists() and not _is_our_sheet(path):
        raise UsageError(f"--out {path} exists and is not a contact sheet written by "
                         "noisevision: it will not be replaced; give another file name")
    return path


def save_sheet(sheet: Image.Image, path: str | Path) -> Path:
    """Write a sheet (tagged as noisevision's) atomically, creating its folder."""
    import io

    from PIL import PngImagePlugin

    from noisevision.data.encode import write_atomic

    path = Path(path)
    buf = io.BytesIO()
    if path.suffix.lower() == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", SHEET_TAG)
        sheet.save(buf, format="PNG", pnginfo=info)
    else:
        sheet.save(buf, format="JPEG", quality=92, comment=SHEET_TAG.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return path
