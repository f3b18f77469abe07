"""The upsampling layer as one stride-1 convolution (CUDA's path for StyleGAN-Random).

A stride-2 transposed 3x3 convolution followed by the [1, 3, 3, 1] blur equals, per output
parity (ey, ex), one stride-1 3x3 correlation of the input (`upsample_weight`, exact). Stacking
the four parities as 4x the output channels makes the layer one tensor-core convolution and a
pixel shuffle: 4x the multiplies of the transposed convolution, but no transposed convolution,
interleave or blur pass over the output. CUDA's default; on CPU only when asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisevision.generators.stylegan.paths.winograd import upsample_weight


def fold_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) -> (4 O, I, 3, 3) float32, rows ordered (parity ey, ex, o): the 2x upsampling
    layer (stride-2 transposed conv, then the [1,3,3,1] blur) as one stride-1 3x3 correlation per
    output parity (paths/winograd.upsample_weight, exact), for `fold_upsample`."""
    # rows (o, ey, ex); float64, once per network, on the weight's device: on a GPU the network
    # is drawn there, and building it on the CPU (a device-to-host copy, a float64 einsum on
    # the host and a copy back) cost about half of StyleGAN-Random's time per 400 images
    k = upsample_weight(weight.detach())
    o = weight.shape[0]
    k = k.reshape(o, 4, *k.shape[1:]).transpose(0, 1).reshape(k.shape)
    return k.float().contiguous()


def fold_upsample(x: torch.Tensor, w4: torch.Tensor) -> torch.Tensor:
    """(B, I, h, w) -> (B, O, 2h, 2w): one 3x3 conv to the 4 parities, then a pixel shuffle.

    Output pixel (2q + ey, 2r + ex) of channel o is conv channel (2 ey + ex) O + o at (q, r).
    Keeps x's memory format (channels-last stays channels-last: one copy for the shuffle).
    """
    b, _, h, w = x.shape
    o = w4.shape[0] // 4
    y = F.conv2d(x, w4, padding=1)  # (B, 4 O, h, w)
    if y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous():
        t = y.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2, o).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(b, 2 * h, 2 * w, o).permute(0, 3, 1, 2)
    t = y.reshape(b, 2, 2, o, h, w).permute(0, 3, 4, 1, 5, 2)  # (b, o, q, ey, r, ex)
    return t.reshape(b, o, 2 * h, 2 * w)


