"""Statistics of image gradients that the generator tests check claims with (paper section 3.4:
sparse StyleGAN images have heavy-tailed gradients, oriented ones coherent orientations; dead
leaves squares have axis-aligned edges) and that compare feature visualisations (Figure 5).

Each pools a batch into one number; they register no metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _grey(x: torch.Tensor) -> torch.Tensor:
    return x.double().mean(1)  # (N, H, W)


def _central(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference gradients (gx, gy) of (..., H, W), interior pixels only."""
    return ((g[..., 1:-1, 2:] - g[..., 1:-1, :-2]) / 2,
            (g[..., 2:, 1:-1] - g[..., :-2, 1:-1]) / 2)


def gradient_kurtosis(x: torch.Tensor) -> float:
    """Median over images of the kurtosis of horizontal and vertical differences.

    Grey = channel mean (float64); per image, the kurtosis E[d^4] / E[d^2]^2 of its mean-removed
    horizontal and vertical neighbour differences taken together (3 for a Gaussian).
    """
    g = _grey(x)
    d = torch.cat([(g[:, :, 1:] - g[:, :, :-1]).flatten(1), (g[:, 1:] - g[:, :-1]).flatten(1)], 1)
    d = d - d.mean(1, keepdim=True)
    return float((d.pow(4).mean(1) / d.square().mean(1).square()).median())


def orientation_coherence(x: torch.Tensor, window: int = 7) -> float:
    """Mean structure-tensor coherence (l1 - l2) / (l1 + l2), tensor averaged over a box.

    Grey = channel mean (float64), central-difference gradients, the tensor's entries averaged
    over `window` x `window` boxes (valid positions only); 0 for isotropic texture, 1 for a
    single orientation.
    """
    gx, gy = _central(_grey(x)[:, None])
    jxx, jyy, jxy = (F.avg_pool2d(t, window, stride=1) for t in (gx * gx, gy * gy, gx * gy))
    return float((torch.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-12)).mean())


def axis_alignment(x: torch.Tensor, tolerance: float = 15.0) -> float:
    """Share of gradient energy whose orientation lies within `tolerance` degrees of the
    horizontal or the vertical axis.

    Grey = channel mean (float64), central-difference gradients (gx, gy), orientation
    atan2(gy, gx) modulo 90 degrees, each pixel weighted by gx^2 + gy^2, pooled over the batch.
    Isotropic structure gives 4 * tolerance / 180 (1/3 at 15 degrees), edges only along the
    axes give 1, edges only at 45 degrees give 0; NaN for a batch without any gradient.
    """
    gx, gy = _central(_grey(x))
    w = gx * gx + gy * gy
    a = torch.rad2deg(torch.atan2(gy, gx)).remainder(90.0)
    near = (a < tolerance) | (a > 90.0 - tolerance)
    total = float(w.sum())
    return float((w * near).sum()) / total if total > 0 else float("nan")
