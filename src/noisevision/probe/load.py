"""Encoders to probe: noisevision run folders, and the paper's released encoder files.

* A pretraining run folder ``RUN`` (or ``RUN/encoder.pt``) in noisevision's format is read with
  :func:`noisevision.ssl.encoders.load_encoder`.
* A released file of the paper (small scale: a SmallAlexNet state dict saved from
  ``nn.DataParallel``, keys ``module.blocks.<i>.<j>.*``; large scale: a MoCo v2 checkpoint
  ``{"state_dict": {"module.encoder_q.<resnet key>": ...}}``), or a plain torchvision ResNet-50
  state dict. Wrapper prefixes (``module.``, ``encoder_q.``, ``encoder.``, ``backbone.``) are
  stripped, the key-encoder, queue and classifier/MLP head (``fc.*``) dropped, and the remaining
  keys must match the architecture exactly; SmallAlexNet's width and input size are read off the
  weight shapes. Files load with ``weights_only=True`` (no code in a checkpoint is run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisevision.errors import UsageError
from noisevision.ssl.encoders import (
    ARCHS,
    ENCODER_FORMAT,
    build_encoder,
    check_finite_weights,
    load_encoder,
)

_PREFIXES = ("module.", "encoder_q.", "encoder.", "backbone.", "model.")
_DROP = ("encoder_k.", "queue", "fc.", "head.")


def _state_dict_of(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "encoder", "net"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not (isinstance(payload, dict) and payload
            and all(isinstance(v, torch.Tensor) for v in payload.values())):
        raise UsageError(f"{path} holds no encoder state dict (allowed: a noisevision run "
                         "folder / encoder.pt, a SmallAlexNet state dict, a MoCo v2 or "
                         "torchvision ResNet-50 checkpoint)")
    return payload


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        if not k.startswith(_DROP):
            out[k] = v
    return out


def detect_arch(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """("small_alexnet", kwargs) or ("resnet50", kwargs) from the keys and shapes."""
    if "blocks.0.0.weight" in state and "blocks.5.1.weight" in state:
        c1, in_ch = state["blocks.0.0.weight"].shape[:2]
        c5 = state["blocks.4.0.weight"].shape[0]
        fc6_in = state["blocks.5.1.weight"].shape[1]
        side = round((fc6_in / c5) ** 0.5)
        size = 64 if _pooled(64) == side else next(
            (s for s in range(16, 2049) if _pooled(s) == side), 64)
        kwargs = {"in_channels": int(in_ch), "width": c1 / 96, "input_size": int(size)}
        if "blocks.7.0.weight" in state:
            kwargs["feat_dim"] = int(state["blocks.7.0.weight"].shape[0])
        return "small_alexnet", kwargs
    if "layer4.2.conv3.weight" in state and "conv1.weight" in state:
        return "resnet50", {"in_channels": int(state["conv1.weight"].shape[1])}
    sample = ", ".join(list(state)[:3])
    raise UsageError(f"checkpoint is of an unknown architecture (keys like {sample}); "
                     f"allowed: {', '.join(ARCHS)}")


def _pooled(size: int) -> int:
    for _ in range(3):
        size = (size - 3) // 2 + 1
    return size


def _load_foreign(path: Path, device: torch.device | str) -> tuple[nn.Module, dict]:
    from noisevision.ssl.checkpoint import load_torch_file

    payload = load_torch_file(path, "encoder file")
    state = _strip(_state_dict_of(payload, path))
    arch, kwargs = detect_arch(state)
    model = build_encoder(arch, **kwargs)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UsageError(f"{path} does not match a {arch} encoder ({what})")
    check_finite_weights(model, path)
    return model.to(device).eval(), {"source": str(path), "format": "released"}


def load_probe_encoder(spec: str | Path, *, arch: str | None = None,
                       device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, meta) from a run folder, an encoder.pt or a released file.

    `arch`, when given, must match the checkpoint's architecture (else a one-line UsageError).
    """
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"encoder {str(spec)!r} does not exist (allowed: a pretraining run "
                         "folder, its encoder.pt, or a released .pth encoder file)")
    file = path / "encoder.pt" if path.is_dir() else path
    ours = False
    if file.is_file():
        try:
            head = torch.load(file, map_location="cpu", weights_only=True)
            ours = isinstance(head, dict) and head.get("format") == ENCODER_FORMAT
        except Exception:  # noqa: BLE001  (reported precisely by the loaders below)
            ours = file.name == "encoder.pt"
    if ours or path.is_dir():
        model, meta = load_encoder(file, device=device)
    else:
        model, meta = _load_foreign(file, device)
    from noisevision.probe.baselines import arch_of

    found = arch_of(model)
    meta = {**meta, "arch": found, "arch_kwargs": dict(getattr(model, "arch_kwargs", {}))}
    if arch is not None and arch != found:
        raise UsageError(f"{spec} holds a {found} encoder, not {arch} "
                         f"(allowed --arch for this file: {found})")
    return model, meta
