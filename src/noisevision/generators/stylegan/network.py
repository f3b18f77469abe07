"""The untrained StyleGAN2-style synthesis network, as a readable definition.

Written from Karras et al. 2020 ("Analyzing and improving the image quality of StyleGAN") as
summarised in Baradad et al. 2021 section 3.4 and reference-implementation.md section 5.1:
learned-constant 4x4 input, modulated + demodulated 3x3 convolutions, 2x upsampling by a stride-2
transposed convolution and a [1,3,3,1] FIR, noise inputs, bias, ReLU with gain sqrt(2), and a
1x1 modulated ToRGB per resolution summed through upsampled skips. The mapping network is
bypassed: per-layer latents w ~ N(0, I) go through LeakyReLU(0.2).

`synthesize(const, layers, params, conv_reference)` is the plain network: one dense modulated
weight per image and layer (a grouped convolution over the batch). It is slow and it is the
definition the fast paths (stylegan/paths/, chosen per layer by stylegan/plan.py) are tested
against. Each path has its own per-layer parameters; the per-image draws every path shares
(styles, bias, noise) are in `ConvParams`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noisevision.generators.stylegan.filters import blur_after_transpose, upsample2x

DEMOD_EPS = 1e-8  # added to the demodulation sum of squares (StyleGAN2)
ACT_GAIN = math.sqrt(2.0)  # ReLU gain (StyleGAN2 bias_act)


@dataclass(frozen=True)
class Layer:
    """One synthesis layer: a 3x3 modulated conv ("conv") or a 1x1 ToRGB ("torgb")."""

    kind: str
    res: int  # output side in px
    c_in: int
    c_out: int
    up: bool  # conv0 of a block: 2x upsampling
    w_index: int  # which per-layer latent drives its style


def channels(res: int, width: float) -> int:
    """Channels at a resolution: min(32768 / res, 512) (reference section 5.1) times width."""
    return max(1, int(round(min(32768 // res, 512) * width)))


def build_layers(resolution: int, width: float) -> list[Layer]:
    """Layers in order; ToRGB of a block shares its latent with the next block's conv0."""
    c4 = channels(4, width)
    layers = [Layer("conv", 4, c4, c4, False, 0), Layer("torgb", 4, c4, 3, False, 1)]
    res, j = 8, 1
    while res <= resolution:
        c_prev, c = channels(res // 2, width), channels(res, width)
        layers += [Layer("conv", res, c_prev, c, True, 2 * j - 1),
                   Layer("conv", res, c, c, False, 2 * j),
                   Layer("torgb", res, c, 3, False, 2 * j + 1)]
        res, j = res * 2, j + 1
    return layers


def num_ws(resolution: int) -> int:
    """Number of per-layer latents: 2 log2(R) - 2 (12 at 128 px, 14 at 256, 16 at 512)."""
    return 2 * int(math.log2(resolution)) - 2


@dataclass(kw_only=True)
class ConvParams:
    """Per-image values of a 3x3 conv layer that every path uses; leading batch dimension B."""

    s: torch.Tensor  # (B, C_in) styles
    bias: torch.Tensor | None = None  # (B, C_out) or None (zero)
    noise: torch.Tensor | None = None  # strength-scaled noise (B, 1, H, W) or None


@dataclass(kw_only=True)
class DenseParams(ConvParams):
    """The reference path: one dense weight per image (B, C_out, C_in, 3, 3)."""

    weight: torch.Tensor


@dataclass(kw_only=True)
class RGBParams:
    """A ToRGB layer: styles (B, C_in) and weights (B, 3, C_in)."""

    s: torch.Tensor
    weight: torch.Tensor


def finish(y: torch.Tensor, p: ConvParams) -> torch.Tensor:
    """Noise, bias, ReLU with gain sqrt(2) (StyleGAN2 order: conv, + noise, + bias, act).

    In place on the fresh convolution output `y` (full-size passes dominate the fast paths).
    """
    if p.noise is not None:
        y.add_(p.noise.to(y.dtype))
    if p.bias is not None:
        y.add_(p.bias[:, :, None, None].to(y.dtype))
    return y.relu_().mul_(ACT_GAIN)


def conv_reference(x: torch.Tensor, layer: Layer, p: DenseParams) -> torch.Tensor:
    """Plain modulated/demodulated conv with one dense weight per image (grouped conv)."""
    b, _, h, w = x.shape
    wt = p.weight * p.s[:, None, :, None, None]  # (B, O, I, 3, 3)
    wt = wt * torch.rsqrt(wt.square().sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS)
    xg = x.reshape(1, b * layer.c_in, h, w)
    if layer.up:
        wt_t = wt.transpose(1, 2).reshape(b * layer.c_in, layer.c_out, 3, 3)
        y = blur_after_transpose(F.conv_transpose2d(xg, wt_t, stride=2, groups=b))
    else:
        y = F.conv2d(xg, wt.reshape(b * layer.c_out, layer.c_in, 3, 3), padding=1, groups=b)
    return finish(y.reshape(b, layer.c_out, *y.shape[-2:]), p)


def to_rgb(x: torch.Tensor, layer: Layer, p: RGBParams,
           scale: torch.Tensor | None = None) -> torch.Tensor:
    """1x1 modulated conv without demodulation, style gain 1/sqrt(C_in), zero bias.

    `scale` (B, C_in): a per-channel factor of the activations not yet applied to x.
    """
    b, _, h, w = x.shape
    s = p.s if scale is None else p.s * scale
    wt = p.weight * (s[:, None, :] / math.sqrt(layer.c_in))  # (B, 3, C_in)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        pix = x.permute(0, 2, 3, 1).reshape(b, h * w, layer.c_in)  # a view: no copy
        return torch.bmm(pix, wt.to(x.dtype).transpose(1, 2)).transpose(1, 2).reshape(b, 3, h, w)
    return torch.bmm(wt.to(x.dtype), x.reshape(b, layer.c_in, h * w)).reshape(b, 3, h, w)


def synthesize(const: torch.Tensor, layers: list[Layer], params: list, conv_fn,
               skip_padding: str = "zero") -> torch.Tensor:
    """Run the synthesis network: const (B, C4, 4, 4) -> raw RGB (B, 3, R, R) (float32).

    `skip_padding`: the RGB skip path's upsampling borders (`filters.upsample2x`)."""
    x, img = const, None
    for layer, p in zip(layers, params, strict=True):
        if layer.kind == "conv":
            x = conv_fn(x, layer, p)
        else:
            rgb = to_rgb(x, layer, p).float()
            img = rgb if img is None else upsample2x(img, skip_padding) + rgb
    return img
