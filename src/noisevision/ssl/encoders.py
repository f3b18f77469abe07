"""Encoders for contrastive pretraining and their on-disk format.

* :class:`SmallAlexNet`: the small-scale encoder of the paper (Baradad et al. 2021, Sec. 4, after
  Wang & Isola 2020), exactly as reference-implementation.md Sec. 8.1: five 3x3 conv blocks and
  three fully connected blocks (fc6 4096 -> fc7 4096 -> fc8 128 + L2 normalisation) for 64 px
  inputs, weights N(0, 0.02).
* :class:`ResNet50Encoder`: torchvision's ResNet-50, randomly initialised (never downloaded), with
  its classifier removed: the MoCo v2 backbone (Sec. 8.3); the MoCo head lives in ``moco.py``.

Every encoder has the same small interface, used by pretraining and by the evaluation code:
``forward(x, layer_index=-1)`` (the output of one block, spatially averaged if 4-D),
``features(x)`` (the representation probed by a linear classifier) and ``feature_dim``.

A pretraining run folder holds ``encoder.pt``::

    {"format": "noisevision-encoder-v1", "arch": "small_alexnet" | "resnet50",
     "arch_kwargs": {...}, "state_dict": {...backbone only...}, "meta": {...}}

written by :func:`save_encoder` and read back by :func:`load_encoder`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from noisevision.errors import UsageError

ENCODER_FORMAT = "noisevision-encoder-v1"
ARCHS = ("small_alexnet", "resnet50")


class L2Norm(nn.Module):
    """Project each row onto the unit sphere (the last step of fc8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class SmallAlexNet(nn.Module):
    """The 8-block AlexNet-like encoder of the small-scale experiments (reference Sec. 8.1).

    Blocks (0-based, as ``layer_index``): conv1..conv5 = 0..4, fc6 = 5, fc7 = 6, fc8 = 7.
    ``width`` scales every layer's channel count (1.0 = the reference; smaller only for quick CPU
    runs) and ``input_size`` is the crop side the fc6 layer is sized for (64 in the reference).
    """

    def __init__(self, in_channels: int = 3, feat_dim: int = 128, *, width: float = 1.0,
                 input_size: int = 64) -> None:
        super().__init__()
        if not (isinstance(in_channels, int) and in_channels >= 1):
            raise UsageError(f"in_channels must be a positive integer, got {in_channels!r}")
        if not (isinstance(feat_dim, int) and feat_dim >= 1):
            raise UsageError(f"feat_dim must be a positive integer, got {feat_dim!r}")
        if not (isinstance(width, (int, float)) and 0 < width <= 4):
            raise UsageError(f"width must be a number in (0, 4], got {width!r}")
        if not (isinstance(input_size, int) and input_size >= 16):
            raise UsageError(f"input_size must be an integer >= 16, got {input_size!r}")
        self.arch_kwargs = {"in_channels": in_channels, "feat_dim": feat_dim,
                            "width": float(width), "input_size": input_size}
        c1, c2, c3, c4, c5 = (_scaled(c, width) for c in (96, 192, 384, 384, 192))
        fc = _scaled(4096, width)

        def conv(cin: int, cout: int, pool: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            return nn.Sequential(*layers)

        side = input_size
        for _ in range(3):  # three 3/2 max-pools: 64 -> 31 -> 15 -> 7
            side = (side - 3) // 2 + 1
        if side < 1:
            raise UsageError(f"input_size {input_size} is too small for SmallAlexNet (>= 16)")
        self.blocks = nn.ModuleList([
            conv(in_channels, c1, pool=True),   # conv1 (B, 96, 31, 31) at 64 px
            conv(c1, c2, pool=True),            # conv2 (B, 192, 15, 15)
            conv(c2, c3, pool=False),           # conv3 (B, 384, 15, 15)
            conv(c3, c4, pool=False),           # conv4 (B, 384, 15, 15)
            conv(c4, c5, pool=True),            # conv5 (B, 192, 7, 7)
            nn.Sequential(nn.Flatten(), nn.Linear(c5 * side * side, fc, bias=False),
                          nn.BatchNorm1d(fc), nn.ReLU(inplace=True)),   # fc6 (B, 4096)
            nn.Sequential(nn.Linear(fc, fc, bias=False), nn.BatchNorm1d(fc),
                          nn.ReLU(inplace=True)),                       # fc7 (B, 4096)
            nn.Sequential(nn.Linear(fc, feat_dim), L2Norm()),           # fc8 (B, 128), unit norm
        ])
        self.block_dims = (c1, c2, c3, c4, c5, fc, fc, feat_dim)
        self.feature_dim = fc   # fc6, the layer probed in the paper (reference layer_index 5)
        self.feature_layer = 5
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init: conv/linear weights N(0, 0.02), biases 0, BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, layer_index: int = -1) -> torch.Tensor:
        """Output of block `layer_index` (-1 = fc8, the unit-norm embedding); 4-D outputs are
        averaged over space to (B, C)."""
        n = len(self.blocks)
        if not (isinstance(layer_index, int) and -n <= layer_index < n):
            raise UsageError(f"layer_index must be in [-{n}, {n - 1}], got {layer_index!r}")
        last = layer_index % n
        for block in self.blocks[:last + 1]:
            x = block(x)
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc6 output after BN + ReLU, (B, 4096): the probed representation."""
        return self.forward(x, layer_index=self.feature_layer)


class ResNet50Encoder(ResNet):
    """torchvision's ResNet-50 (random init, no download) without its classifier.

    State-dict keys are torchvision's (``conv1.weight``, ``layer1.0...``) minus ``fc``, so the
    weights load into ``torchvision.models.resnet50()`` with ``strict=False``.
    Blocks for ``layer_index``: stem = 0, layer1..layer4 = 1..4; -1 = the pooled 2048-D output.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        if not (isinstance(in_channels, int) and in_channels >= 1):
            raise UsageError(f"in_channels must be a positive integer, got {in_channels!r}")
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3,
                                   bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.fc = nn.Identity()
        self.arch_kwargs = {"in_channels": in_channels}
        self.feature_dim = 2048
        self.feature_layer = -1

    def forward(self, x: torch.Tensor, layer_index: int = -1) -> torch.Tensor:
        if not (isinstance(layer_index, int) and -1 <= layer_index <= 4):
            raise UsageError(f"layer_index must be in [-1, 4] for resnet50, got {layer_index!r}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        last = 4 if layer_index == -1 else layer_index
        for stage in stages[:last]:
            x = stage(x)
        return x.mean(dim=(2, 3))  # (B, C): global average pool

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled layer4 output, (B, 2048): the MoCo linear-probe representation."""
        return self.forward(x, layer_index=-1)


def build_encoder(arch: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised encoder: "small_alexnet" (SmallAlexNet kwargs) or "resnet50"."""
    if arch == "small_alexnet":
        cls: type[nn.Module] = SmallAlexNet
    elif arch == "resnet50":
        cls = ResNet50Encoder
    else:
        raise UsageError(f"unknown encoder arch {arch!r} (allowed: {', '.join(ARCHS)})")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"bad options for encoder {arch!r}: {exc}") from None


def _to_builtin(value: Any) -> Any:
    """Meta values as plain Python (torch.load(weights_only=True) refuses arbitrary objects)."""
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def encoder_payload(model: nn.Module, arch: str, meta: dict[str, Any] | None = None,
                    state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """What encoder.pt holds: the backbone's weights (copied to host memory, or `state`, a
    host copy of them already made), arch and `meta`."""
    if arch not in ARCHS:
        raise UsageError(f"unknown encoder arch {arch!r} (allowed: {', '.join(ARCHS)})")
    model = getattr(model, "module", model)  # unwrap DDP / DataParallel
    if state is None:
        state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return {"format": ENCODER_FORMAT, "arch": arch,
            "arch_kwargs": dict(getattr(model, "arch_kwargs", {})),
            "state_dict": state, "meta": _to_builtin(dict(meta or {}))}


def write_encoder(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write an `encoder_payload` to `path` atomically (tmp file + rename)."""
    from noisevision.ssl.checkpoint import save_torch_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_torch_file(path, payload)


def save_encoder(path: str | os.PathLike, model: nn.Module, arch: str,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write the backbone's weights, arch and `meta` to `path` atomically (tmp file + rename)."""
    return write_encoder(path, encoder_payload(model, arch, meta))


def load_encoder(path: str | os.PathLike,
                 device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read `encoder.pt` (or a run folder holding one) -> (model in eval mode, meta)."""
    path = Path(path)
    if path.is_dir():
        path = path / "encoder.pt"
    if not path.is_file():
        raise UsageError(f"encoder file {str(path)!r} does not exist "
                         "(expected <RUN>/encoder.pt written by `noisevision pretrain`)")
    from noisevision.ssl.checkpoint import load_torch_file

    payload = load_torch_file(path, "encoder file")
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        raise UsageError(f"{str(path)!r} is not a noisevision encoder file "
                         f"(expected format {ENCODER_FORMAT!r})")
    arch = payload.get("arch")
    if arch not in ARCHS:
        raise UsageError(f"{str(path)!r} holds unknown encoder arch {arch!r} "
                         f"(allowed: {', '.join(ARCHS)})")
    model = build_encoder(arch, **dict(payload.get("arch_kwargs") or {}))
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"encoder file {str(path)!r} has weights that do not match its arch "
                         f"{arch!r}: {first}") from None
    check_finite_weights(model, path)
    model.to(device).eval()
    return model, dict(payload.get("meta") or {})


def check_finite_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Refuse an encoder with a NaN or infinite weight or buffer (one line naming the first):
    every feature it gives would be NaN, and probes would report noise as accuracy."""
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UsageError(f"encoder file {str(path)!r} holds non-finite weights (NaN or inf) "
                             f"in {k!r}: its training diverged or the file is damaged")
