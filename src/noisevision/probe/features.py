"""Frozen features of an encoder on real images (reference-implementation.md Sec. 8.2-8.3).

The paper probes SmallAlexNet at fc6 (block 5, 4096-D after BN + ReLU) on 64 px inputs and
ResNet-50 at the pooled 2048-D output on 224 px inputs. Evaluation transforms follow the reference:
SmallAlexNet train RandomResizedCrop(64, scale 0.08-1) + flip, val Resize(70) + CenterCrop(64),
normalised with the STL-10 statistics used in pretraining; ResNet-50 train RandomResizedCrop(224)
+ flip, val Resize(256) + CenterCrop(224) with ImageNet statistics.

The encoder stays in eval mode under ``torch.inference_mode``; :func:`weights_snapshot` and
:func:`check_unchanged` verify afterwards that not one backbone tensor (weights or BN buffers)
moved, MoCo's sanity check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms import v2

from noisevision.errors import UsageError
from noisevision.rng import sample_seed

STL10_MEAN, STL10_STD = (0.4409, 0.4279, 0.3868), (0.2683, 0.2610, 0.2687)  # reference 8.1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # reference 8.3


@dataclass(frozen=True)
class ProbeTransforms:
    """The probe's input pipeline for one architecture."""

    size: int          # crop side fed to the encoder, px (64 SmallAlexNet, 224 ResNet-50)
    resize: int        # val: resize the short side to this, then centre-crop `size` (70 / 256)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    min_scale: float = 0.08  # RandomResizedCrop area range lower bound (torchvision default)

    def train(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return v2.Compose([v2.RandomResizedCrop(self.size, scale=(self.min_scale, 1.0),
                                                antialias=True),
                           v2.RandomHorizontalFlip(),
                           v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(self.mean, self.std)])

    def val(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return v2.Compose([v2.Resize(self.resize, antialias=True), v2.CenterCrop(self.size),
                           v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(self.mean, self.std)])


def transforms_for(model: nn.Module) -> ProbeTransforms:
    """The paper's transforms for `model` (SmallAlexNet: 64/70, ResNet-50: 224/256)."""
    size = int(getattr(model, "probe_input_size", 0) or 0)
    kwargs = getattr(model, "arch_kwargs", {}) or {}
    if size == 0 and "input_size" in kwargs:
        size = int(kwargs["input_size"])
    if size == 0 and getattr(model, "feature_dim", None) == 2048:
        return ProbeTransforms(224, 256, IMAGENET_MEAN, IMAGENET_STD)
    size = size or 64
    return ProbeTransforms(size, round(size * 70 / 64), STL10_MEAN, STL10_STD)


class _Transformed(torch.utils.data.Dataset):
    """`transform` applied to each image of `base`. With `stream` = (seed, name), a random
    transform's draws (torchvision's come from torch's global RNG) are seeded per sample from
    (seed, name, index), so they do not depend on the loader's workers, the batch or the order."""

    def __init__(self, base: torch.utils.data.Dataset, transform: Callable,
                 stream: tuple[int, str] | None = None) -> None:
        self.base, self.transform, self.stream = base, transform, stream

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[i]
        if self.stream is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.stream[0], self.stream[1], int(i)))
            return self.transform(image), label


def loader(dataset: torch.utils.data.Dataset, transform: Callable, *, batch_size: int = 256,
           shuffle: bool = False, num_workers: int = 0,
           generator: torch.Generator | None = None,
           stream: tuple[int, str] | None = None) -> torch.utils.data.DataLoader:
    """Batches of transformed images (B, 3, S, S) float32 and labels (B,); `stream` =
    (seed, name) seeds a random transform per sample (see `_Transformed`)."""
    return torch.utils.data.DataLoader(_Transformed(dataset, transform, stream),
                                       batch_size=batch_size, shuffle=shuffle,
                                       num_workers=num_workers, generator=generator,
                                       drop_last=False)


def _reraise_worker_error(exc: UsageError) -> UsageError:
    """A UsageError raised in a DataLoader worker comes back with a traceback; keep one line."""
    lines = [ln for ln in str(exc).splitlines() if ln.startswith("noisevision.errors.UsageError")]
    msg = lines[-1].split(": ", 1)[1] if lines else str(exc).splitlines()[-1]
    return UsageError(msg)


def encode(model: nn.Module, images: torch.Tensor, layer_index: int | None = None) -> torch.Tensor:
    """Probed features of a batch: `model.features` (or block `layer_index`), float32 (B, D)."""
    if layer_index is None:
        out = model.features(images)
    else:
        out = model(images, layer_index=layer_index)
    return out.float().reshape(out.shape[0], -1)


@torch.inference_mode()
def extract_features(model: nn.Module, dataset: torch.utils.data.Dataset, *,
                     transform: Callable | None = None, device: torch.device | str = "cpu",
                     batch_size: int = 256, num_workers: int = 0,
                     layer_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) float32 on the CPU and labels (N,) of a whole dataset, model frozen."""
    device = torch.device(device)
    transform = transform or transforms_for(model).val()
    model.eval()
    feats, labels = [], []
    try:
        for x, y in loader(dataset, transform, batch_size=batch_size, num_workers=num_workers):
            if not feats and device.type == "cpu":
                check_encode_memory(model, x, layer_index)
            feats.append(encode(model, x.to(device, non_blocking=True), layer_index).cpu())
            labels.append(y)
    except UsageError as exc:
        raise (_reraise_worker_error(exc) if num_workers else exc) from None
    if not feats:
        raise UsageError("no images to extract features from (the split is empty)")
    out = torch.cat(feats)
    finite = torch.isfinite(out).all(dim=1)
    if not bool(finite.all()):  # e.g. an activation overflowing in bfloat16
        raise UsageError(f"the encoder's features are not finite (NaN or inf) for "
                         f"{int((~finite).sum())} of {out.shape[0]} images: its weights do not "
                         "suit these images (a diverged run?) or the precision overflows")
    return out, torch.cat(labels).long()


def check_encode_memory(model: nn.Module, batch: torch.Tensor,
                        layer_index: int | None = None) -> None:
    """CPU: a batch too large to encode in memory is one line naming the batch that fits (the
    kernel's OOM killer would end the probe without a word). Estimate: 5 x the largest conv,
    batch-norm or linear output of one image (hooks on a 2-image forward; measured: ResNet-50
    at 224 px peaks at 4.6x, SmallAlexNet at 64 px at 2x)."""
    from noisevision import safety

    largest = [0]

    def hook(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output[:1].numel() * 4)
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        encode(model, batch[:2], layer_index)
    finally:
        for h in hooks:
            h.remove()
    per = 5 * largest[0]
    need, free = per * batch.shape[0], safety.available_memory(torch.device("cpu"))
    if free is not None and need > free:
        raise UsageError(f"a batch of {batch.shape[0]:,} images at {batch.shape[-1]} px needs "
                         f"about {need / 2**30:.1f} GiB to encode, more than the "
                         f"{free / 2**30:.1f} GiB free on this cpu: lower --batch-size (about "
                         f"{max(1, int(free // per)):,} fits)")


def weights_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer (to check the backbone stayed frozen)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_unchanged(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise RuntimeError naming the first tensor that changed since `before` (a probe bug)."""
    after = model.state_dict()
    for k, v in before.items():
        if k not in after or not _same(v, after[k].detach()):
            raise RuntimeError(f"encoder tensor {k!r} changed during probing; "
                               "the backbone must stay frozen")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal tensors, NaN equal to NaN (torch.equal says a NaN weight changed)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a, b) or (a.is_floating_point() and bool(
        ((a == b) | (a.isnan() & b.isnan())).all()))


def weights_digest(model: nn.Module) -> str:
    """A short sha256 of the state dict (names, shapes, bytes): a cache / report key."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
