"""The checks every image metric makes on a batch before it reads it (one-line UsageErrors)."""

from __future__ import annotations

import torch

from noisevision.errors import UsageError


def check_images(batch: object, metric: str, square: bool = False,
                 min_side: int = 1) -> torch.Tensor:
    """`batch` as a floating (B, 3, H, W) tensor with B >= 1, or a UsageError naming the problem.

    Values are not range-checked (that would cost a pass over the batch); the metrics are
    defined for images in [0, 1]. `square`: H must equal W. `min_side`: the smallest H and W.
    """
    if not isinstance(batch, torch.Tensor):
        raise UsageError(f"{metric}: a batch must be a tensor of images, not "
                         f"{type(batch).__name__}")
    shape = tuple(batch.shape)
    if batch.ndim != 4 or shape[1] != 3 or shape[0] < 1:
        raise UsageError(f"{metric}: a batch must be (B, 3, H, W) images with B >= 1, "
                         f"not {shape}")
    if not batch.is_floating_point():
        raise UsageError(f"{metric}: images must be floating point in [0, 1], not {batch.dtype}")
    if square and shape[2] != shape[3]:
        raise UsageError(f"{metric}: images must be square, not {shape[2]}x{shape[3]}")
    if min(shape[2], shape[3]) < min_side:
        raise UsageError(f"{metric}: images must be at least {min_side} px on each side, "
                         f"not {shape[2]}x{shape[3]}")
    return batch


def centre_square(images: torch.Tensor) -> torch.Tensor:
    """The largest centred square of (B, C, H, W) images (a view; square images unchanged)."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return images[..., top:top + side, left:left + side]
