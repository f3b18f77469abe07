"""The paper's baselines (Sec. 4, "As baselines we use mean image colors, raw pixels and features
obtained by an untrained Alexnet (denoted CNN - Random)").

Each baseline is a parameter-free module with the encoder interface (``features(x)``,
``feature_dim``, ``arch_kwargs['input_size']``), so it runs through the same transforms, feature
extraction and probes as a pretrained encoder:

* :class:`MeanColour`: the mean of each channel over the 64 px centre crop (3-D).
* :class:`RawPixels`: the centre crop average-pooled to ``side`` px and flattened
  (3 x 32 x 32 = 3,072-D by default, about fc6's 4,096; the paper does not give its size).
* :func:`random_init_encoder`: the same architecture as the probed encoder, freshly initialised
  with the reference init from a fixed seed, never trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from noisevision.ssl.encoders import build_encoder


class MeanColour(nn.Module):
    """Per-channel mean of the (normalised) input crop: (B, 3, S, S) -> (B, 3)."""

    def __init__(self, input_size: int = 64) -> None:
        super().__init__()
        self.arch_kwargs = {"input_size": input_size}
        self.feature_dim = 3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class RawPixels(nn.Module):
    """The input crop average-pooled to side x side and flattened: (B, 3 * side * side)."""

    def __init__(self, input_size: int = 64, side: int = 32) -> None:
        super().__init__()
        self.arch_kwargs = {"input_size": input_size}
        self.side = side
        self.feature_dim = 3 * side * side

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, self.side).flatten(1)


def random_init_encoder(arch: str, arch_kwargs: dict | None = None, seed: int = 0) -> nn.Module:
    """`build_encoder(arch, **arch_kwargs)` initialised from `seed`, in eval mode.

    The global RNG is forked and restored, so callers' random state is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_encoder(arch, **dict(arch_kwargs or {}))
    return model.eval()


def arch_of(model: nn.Module) -> str:
    """"small_alexnet" or "resnet50" for an encoder built by noisevision.ssl.encoders."""
    from noisevision.ssl.encoders import ResNet50Encoder, SmallAlexNet

    if isinstance(model, SmallAlexNet):
        return "small_alexnet"
    if isinstance(model, ResNet50Encoder):
        return "resnet50"
    raise TypeError(f"not a noisevision encoder: {type(model).__name__}")
