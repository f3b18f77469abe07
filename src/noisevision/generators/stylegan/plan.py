"""Which path every layer of a StyleGAN generator takes: chosen once per (config, device).

The choices, all made here (the generator and the paths only follow the plan):

* route: "reference" (the plain network: `path="reference"`, or the paper's "pair" filter or
  amplitude options, which have no fast path), "shared" (StyleGAN-Random's dense weights shared
  by a network's images) or "tied" (the wavelet variants);
* dtype: the fast path's arithmetic type (`compute_dtype`, "auto" resolved: bfloat16 for
  Random on CUDA and on a CPU with native bfloat16, float32 elsewhere);
* memory format: channels-last for Random on CUDA with `conv_algorithm="auto"` (cuDNN's native
  layout), NCHW elsewhere (measured slower on the 2-core CPU);
* per conv layer of the shared route, the algorithm (paths/shared.py): "winograd" on CPU where it
  measured faster (stride-1 layers with >= 64 channels at >= 16 px; upsampling layers with
  >= 64 channels and >= 64 px outputs), "fold" for upsampling layers on CUDA, "parity" for the
  other upsampling layers, "direct" for the rest; `conv_algorithm` other than "auto" forces one;
* fused: the tied route's channel sums as the Triton kernel (CUDA with Triton, unless
  NOISEVISION_TRITON=0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from noisevision.device import triton_wanted
from noisevision.generators.stylegan.config import StyleGANConfig
from noisevision.generators.stylegan.network import Layer


@dataclass(frozen=True)
class RenderPlan:
    route: str                              # "reference" | "shared" | "tied"
    dtype: torch.dtype                      # fast-path arithmetic
    memory_format: torch.memory_format      # activations of the shared route
    algorithms: tuple[str | None, ...]      # per layer: a paths/shared.py algorithm, else None
    fused: bool                             # tied route: channel sums by the Triton kernel
    fewer_passes: bool                      # shared route without noise and bias:
    #                                         paths/shared.synthesize_shared (one pass less)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (False where the check is missing)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_dtype(config: StyleGANConfig, device: torch.device) -> torch.dtype:
    """config.compute_dtype with "auto" resolved: bfloat16 for StyleGAN-Random's dense
    convolutions on CUDA and on a CPU with native bfloat16 (about 2x faster on CPU, 1.25x on an
    H200, images within the tested bounds of float32 ones: mean |diff| < 0.015, the same spectrum
    slope); float32 everywhere else (the wavelet variants gain nothing from it)."""
    cd = config.compute_dtype
    if cd == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
        return torch.bfloat16 if native and config.conv_weights == "gaussian" else torch.float32
    return torch.bfloat16 if cd == "bfloat16" else torch.float32


def _route(config: StyleGANConfig) -> str:
    tied_fast = config.filter_choice == "input" and config.amplitude == "output"
    if config.path == "reference" or not (config.conv_weights == "gaussian" or tied_fast):
        return "reference"
    return "shared" if config.conv_weights == "gaussian" else "tied"


def _algorithm(config: StyleGANConfig, layer: Layer, device: torch.device) -> str:
    algo = config.conv_algorithm
    if algo == "winograd":
        return "winograd"
    if algo == "auto" and device.type == "cpu" and min(layer.c_in, layer.c_out) >= 64 and (
            layer.res >= 64 if layer.up else layer.res >= 16):
        return "winograd"
    if layer.up and (algo == "fold" or (algo == "auto" and device.type == "cuda")):
        return "fold"
    return "parity" if layer.up else "direct"


def _fused(device: torch.device) -> bool:
    if not triton_wanted(device):
        return False
    from noisevision.generators.stylegan.paths import triton

    return triton.available(device)


def make_plan(config: StyleGANConfig, layers: list[Layer], device: torch.device) -> RenderPlan:
    route = _route(config)
    fmt = (torch.channels_last if route == "shared" and device.type == "cuda"
           and config.conv_algorithm == "auto" else torch.contiguous_format)
    algorithms = tuple(_algorithm(config, layer, device)
                       if route == "shared" and layer.kind == "conv" else None
                       for layer in layers)
    return RenderPlan(route=route, dtype=compute_dtype(config, device), memory_format=fmt,
                      algorithms=algorithms, fused=route == "tied" and _fused(device),
                      fewer_passes=(route == "shared" and config.noise_maps == "none"
                                    and tuple(config.bias_range) == (0.0, 0.0)))
