"""StyleGANConfig: every option of the untrained-StyleGAN family, validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from noisevision.errors import check
from noisevision.generators.base import check_resolution
from noisevision.generators.stylegan.filters import BANK_SIZE, SKIP_PADDINGS

RESOLUTIONS = (64, 128, 256, 512)


def _pair(name: str, value, lo: float, hi: float, integer: bool = False) -> tuple:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and lo <= value[0] <= value[1] <= hi)
    if integer:
        ok = ok and all(float(v).is_integer() for v in value)
    check(ok, f"{name} must be a pair (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")
    return tuple(int(v) for v in value) if integer else tuple(float(v) for v in value)


def _choice(name: str, value, allowed: tuple[str, ...]) -> None:
    check(value in allowed, f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class StyleGANConfig:
    resolution: int = 256  # output side, px: 64/128/256/512 (reference: 256 at both scales, s1)
    width: float = 1.0  # channel multiplier on min(32768/res, 512) (reference s5.1: 1.0)
    w_dim: int = 512  # per-layer latent size (StyleGAN2: 512)
    images_per_network: int = 400  # a new random network every N images (reference s5.1: 400)
    conv_weights: str = "wavelet"  # "gaussian": dense N(0,1) per network (Random); "wavelet"
    filter_bank: str = "real"  # "sign": 40 ternary (High-freq, Sparse); "real": 40 (Oriented)
    filter_subset: tuple = (5, 40)  # bank subset size ~ U{low..high} per layer, image (Oriented)
    filter_choice: str = "input"  # "input": tied per input channel (code); "pair": paper
    amplitude: str = "output"  # "output": N(0,1) per output channel (code); "pair": a_{k,l}
    noise_maps: str = "shared"  # "none" | "dictionary" (per-layer maps) | "shared" (one map)
    noise_dictionary_size: int = 100  # maps per layer and network (reference: 100)
    shared_noise_size: int = 512  # side of the shared map, area-downsampled (reference: 512)
    noise_alpha: tuple = (0.5, 1.5)  # 1/f^alpha exponent range (code 0.5-1.5; paper 0.5-2)
    noise_strength: tuple = (0.0, 0.3)  # per layer and image, U(low, high) (reference: 0-0.3)
    noise_envelope: str = "lanczos"  # 4x4 Laplace envelope: "none" | "lanczos" (code) | "bicubic"
    bias_range: tuple = (-0.2, 0.2)  # per output channel U(low, high) (Sparse/Oriented: +-0.2)
    color_norm: str = "imagenet"  # "imagenet": random per-channel mean/std (s5.1) | "old"
    # the RGB skip path's 2x upsampling outside the image: "zero" (StyleGAN2's upfirdn2d; the
    # border frame of the published images) | "replicate" (noisevision before 2026-11-27)
    skip_padding: str = "zero"
    path: str = "fast"  # "fast" (structured) | "reference" (dense per-image convs, slow)
    # fast-path arithmetic: "float32", "bfloat16", or "auto" (StyleGAN.compute_dtype: bfloat16
    # for Random's dense convolutions on CUDA and on a CPU with native bfloat16, else float32)
    compute_dtype: str = "auto"
    # Random's 3x3 convs: "auto" (CPU: Winograd F(4,3) where it measured faster, see
    # stylegan/plan.py; CUDA: "fold" in channels-last), "winograd" (every conv layer),
    # "direct" (library convolutions; up layers as transposed conv + blur), "fold" (up layers
    # as one 3x3 conv to 4 x the channels with the blur folded in, then a pixel shuffle)
    conv_algorithm: str = "auto"

    # fields added after datasets were written, with the value that reproduces those datasets
    # (base.generator_from_description fills them into stored configs that lack them)
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"skip_padding": "replicate"}

    def __post_init__(self) -> None:
        check_resolution(self.resolution, RESOLUTIONS)
        check(isinstance(self.width, (int, float)) and 0 < self.width <= 4,
              f"width must be a number in (0, 4], got {self.width!r}")
        for name in ("w_dim", "images_per_network", "noise_dictionary_size"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**20,
                  f"{name} must be an integer in [1, 2**20], got {v!r}")
        _choice("conv_weights", self.conv_weights, ("gaussian", "wavelet"))
        _choice("filter_bank", self.filter_bank, ("sign", "real"))
        _choice("filter_choice", self.filter_choice, ("input", "pair"))
        _choice("amplitude", self.amplitude, ("output", "pair"))
        _choice("noise_maps", self.noise_maps, ("none", "dictionary", "shared"))
        _choice("noise_envelope", self.noise_envelope, ("none", "lanczos", "bicubic"))
        _choice("color_norm", self.color_norm, ("imagenet", "old"))
        _choice("skip_padding", self.skip_padding, SKIP_PADDINGS)
        _choice("path", self.path, ("fast", "reference"))
        _choice("compute_dtype", self.compute_dtype, ("auto", "float32", "bfloat16"))
        _choice("conv_algorithm", self.conv_algorithm, ("auto", "winograd", "direct", "fold"))
        s = self.shared_noise_size
        check(isinstance(s, int) and s >= self.resolution and s <= 4096 and s & (s - 1) == 0,
              f"shared_noise_size must be a power of two in [resolution, 4096], got {s!r}")
        object.__setattr__(self, "filter_subset",
                           _pair("filter_subset", self.filter_subset, 1, BANK_SIZE, True))
        object.__setattr__(self, "noise_alpha", _pair("noise_alpha", self.noise_alpha, 0, 4))
        object.__setattr__(self, "noise_strength",
                           _pair("noise_strength", self.noise_strength, 0, 10))
        object.__setattr__(self, "bias_range", _pair("bias_range", self.bias_range, -10, 10))
