"""Labelled contact sheets: a grid of images with an index under each and a title on top."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
