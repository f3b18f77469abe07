"""StyleGAN-Random's path: one dense weight per network, shared by the batch's images.

The modulation moves onto the activations (x * s, one shared convolution, output * d, with the
demodulation d computed from the weight's per-tap sum of squares), so a layer is one library or
Winograd convolution for the whole batch instead of one grouped convolution with a weight per
image. Each conv layer takes one algorithm (stylegan/plan.py chooses it):

* "direct": F.conv2d (stride-1 layers);
* "parity": the upsampling layer as the stride-2 transposed conv's four parity sub-kernels,
  then the [1, 3, 3, 1] blur (filters.conv_transpose_stride2);
* "winograd": Winograd F(4, 3) / F(m, 2) convolutions (paths/winograd.py), CPU;
* "fold": the upsampling layer as one 3x3 conv to 4x the channels, blur folded in, then a pixel
  shuffle (paths/fold.py), CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noisevision.generators.stylegan.filters import (
    blur_after_transpose,
    conv_transpose_stride2,
    upsample2x,
)
from noisevision.generators.stylegan.network import (
    ACT_GAIN,
    DEMOD_EPS,
    ConvParams,
    Layer,
    finish,
    to_rgb,
)
from noisevision.generators.stylegan.paths.fold import fold_upsample
from noisevision.generators.stylegan.paths.winograd import (
    WINOGRAD_TILE,
    winograd_conv,
    winograd_upsample,
)
from noisevision.generators.stylegan.paths.winograd import plan as winograd_plan

ALGORITHMS = ("direct", "parity", "winograd", "fold")


@dataclass(kw_only=True)
class SharedParams(ConvParams):
    """A conv layer of the shared path: the network's dense weight and its per-network forms."""

    weight: torch.Tensor  # (O, I, 3, 3), shared by the batch
    weight_sq: torch.Tensor | None = None  # weight's sum of squares over taps (O, I), cached
    algorithm: str = "direct"  # one of ALGORITHMS
    # the weight prepared for `algorithm`, once per network: "parity": its four parity
    # sub-kernels; "winograd": the Winograd-domain weight (n^2, O, I); "fold": (4 O, I, 3, 3)
    kernel: torch.Tensor | tuple | None = None


def conv_raw(xs: torch.Tensor, layer: Layer, p: SharedParams) -> torch.Tensor:
    """The shared dense conv of modulated activations `xs`, before demodulation."""
    if p.algorithm == "winograd":  # see paths/winograd.py
        if layer.up:  # F(m, 2) on the transposed conv's parity kernels, then the blur
            return winograd_upsample(xs, p.kernel)
        return winograd_conv(xs, p.kernel, winograd_plan("same", WINOGRAD_TILE))  # F(4, 3)
    if p.algorithm == "fold":  # see paths/fold.py
        return fold_upsample(xs, p.kernel)
    if layer.up:  # "parity": the transposed conv's four parity sub-kernels (or the weight)
        return blur_after_transpose(conv_transpose_stride2(
            xs, p.weight.to(xs.dtype) if p.kernel is None else None, p.kernel))
    return F.conv2d(xs, p.weight.to(xs.dtype), padding=1)


def demodulation(p: SharedParams) -> torch.Tensor:
    """(B, O) 1 / ||W_o s||: the demodulation of shared weights under per-image styles."""
    wsq = p.weight_sq if p.weight_sq is not None else p.weight.square().sum(dim=(2, 3))
    sq = (p.s.square()[:, None, :] * wsq[None]).sum(-1)
    return torch.rsqrt(sq + DEMOD_EPS)


def conv_shared(x: torch.Tensor, layer: Layer, p: SharedParams) -> torch.Tensor:
    """Dense weights shared by the batch: modulate activations, one conv, demodulate outputs."""
    d = demodulation(p)
    xs = x.mul_(p.s[:, :, None, None].to(x.dtype))  # in place: its ToRGB has already read x
    y = conv_raw(xs, layer, p)
    if p.noise is None and p.bias is None:  # relu(y d) g == relu(y) (d g) as d > 0: one pass less
        return y.relu_().mul_((d * ACT_GAIN)[:, :, None, None].to(y.dtype))
    return finish(y.mul_(d[:, :, None, None].to(y.dtype)), p)


def synthesize_shared(const: torch.Tensor, layers: list[Layer], params: list,
                      skip_padding: str = "zero") -> torch.Tensor:
    """`synthesize` with `conv_shared` for layers without noise or bias, one pass less a layer.

    The activation after a conv is relu(y d) g = relu(y) (d g) with d g > 0 per (image,
    channel), so only relu(y) is written and the scale d g stays pending: the ToRGB reads relu(y)
    with its weights scaled by it, and the next conv's modulation multiplies by s (d g) in the
    same pass that applied s alone. Equal to `synthesize(..., conv_shared)` up to rounding.
    """
    act, scale, img = const, None, None  # the activation is act * scale (scale None: 1)
    for layer, p in zip(layers, params, strict=True):
        if layer.kind == "torgb":
            rgb = to_rgb(act, layer, p, scale).float()
            img = rgb if img is None else upsample2x(img, skip_padding) + rgb
            continue
        s = p.s if scale is None else p.s * scale
        y = conv_raw(act.mul_(s[:, :, None, None].to(act.dtype)), layer, p)
        act, scale = y.relu_(), demodulation(p) * ACT_GAIN
    return img


