"""Linear probe of a frozen encoder (reference-implementation.md Sec. 8.2 and 8.3).

Two modes:

* ``augmented`` (the paper): every epoch the frozen encoder sees freshly augmented training crops
  (RandomResizedCrop + flip) and one Linear layer is trained on its features. SmallAlexNet
  recipe: fc6 (4096-D), Adam lr 1e-3, betas (0.5, 0.999), batch 128, 100 epochs, lr x0.2 at
  epochs 60 and 80. ResNet-50 recipe: pooled 2048-D, SGD lr 30, momentum 0.9, no weight decay,
  batch 256, 100 epochs, x0.1 at 60 and 80, head weights N(0, 0.01). The accuracy after the last
  epoch is reported (as the reference), the best epoch too.
* ``cached`` (fast): features are computed once, on the validation transform (centre crop, no
  augmentation), then z-scored with the training mean/std and the head is trained on the cached
  tensors with the SmallAlexNet (Adam) recipe whatever the architecture (z-scoring removes the
  feature-scale reason for SGD lr 30). What changes from the paper: no crop/flip augmentation
  during head training (slightly lower accuracy on large tasks, more overfitting on small ones),
  per-feature standardisation, and one optimiser recipe for all encoders. It is ~100x cheaper:
  one encoder pass instead of 100.

After probing, :func:`noisevision.probe.features.check_unchanged` confirms the backbone's weights
and BN buffers are bit-identical to before.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from noisevision.device import one_cpu_thread
from noisevision.errors import UsageError, check
from noisevision.probe.datasets import EvalTask
from noisevision.probe.features import (
    check_encode_memory,
    check_unchanged,
    encode,
    extract_features,
    loader,
    transforms_for,
    weights_snapshot,
)

MODES = ("cached", "augmented")


@dataclass(frozen=True)
class LinearProbeConfig:
    """Hyperparameters of the linear head (defaults: the paper's SmallAlexNet probe, Sec. 8.2)."""

    optimizer: str = "adam"            # "adam" (SmallAlexNet, ref 8.2) | "sgd" (ResNet-50, ref 8.3)
    lr: float = 1e-3                   # 1e-3 Adam (ref 8.2); 30.0 SGD (ref 8.3)
    betas: tuple[float, float] = (0.5, 0.999)   # Adam betas (ref 8.2)
    momentum: float = 0.9              # SGD momentum (ref 8.3)
    weight_decay: float = 0.0          # none in either reference probe
    batch_size: int = 128              # 128 (ref 8.2); 256 (ref 8.3)
    epochs: int = 100                  # 100 in both references
    milestones: tuple[int, ...] = (60, 80)  # epochs where lr is multiplied by gamma
    gamma: float = 0.2                 # 0.2 (ref 8.2); 0.1 (ref 8.3)
    mode: str = "cached"               # "cached" (fast, see module doc) | "augmented" (paper)
    standardize: bool = True           # z-score cached features with train statistics
    seed: int = 0                      # head init, shuffling and augmentation draws

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "milestones", tuple(self.milestones))
        check(self.optimizer in ("adam", "sgd"),
              f"optimizer must be adam or sgd, got {self.optimizer!r}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(isinstance(self.batch_size, int) and self.batch_size >= 1,
              f"batch_size must be a positive integer, got {self.batch_size!r}")
        check(isinstance(self.epochs, int) and self.epochs >= 1,
              f"epochs must be a positive integer, got {self.epochs!r}")
        check(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        check(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def scaled(self, epochs: int) -> LinearProbeConfig:
        """The same recipe over `epochs` epochs, milestones scaled proportionally (60/80 of 100)."""
        ms = tuple(max(1, round(m * epochs / self.epochs)) for m in self.milestones)
        return dataclasses.replace(self, epochs=epochs, milestones=ms)


RESNET50_RECIPE = LinearProbeConfig(optimizer="sgd", lr=30.0, batch_size=256, gamma=0.1,
                                    mode="augmented", standardize=False)


def recipe_for(arch: str, mode: str = "cached", epochs: int | None = None,
               seed: int = 0) -> LinearProbeConfig:
    """The paper's probe for `arch` in `mode` (cached mode always uses the Adam recipe), its head
    initialised, its data shuffled and (augmented) its crops drawn from `seed`."""
    if mode == "augmented":
        cfg = RESNET50_RECIPE if arch == "resnet50" else LinearProbeConfig(mode="augmented",
                                                                           standardize=False)
    else:
        cfg = LinearProbeConfig(mode=mode)
    cfg = dataclasses.replace(cfg, seed=seed)
    return cfg.scaled(epochs) if epochs else cfg


def _head(dim: int, num_classes: int, seed: int, device: torch.device) -> nn.Linear:
    head = nn.Linear(dim, num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(num_classes, dim, generator=g) * 0.01)  # MoCo's N(0, 0.01)
        head.bias.zero_()
    return head.to(device)


def _optimiser(head: nn.Module, cfg: LinearProbeConfig):
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, betas=cfg.betas,
                               weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), gamma=cfg.gamma)
    return opt, sched


@torch.no_grad()
def accuracy(head: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += int((head(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(1, x.shape[0])


def train_linear_head(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                      y_val: torch.Tensor, num_classes: int, config: LinearProbeConfig,
                      device: torch.device | str = "cpu") -> dict:
    """Fit one Linear layer on cached features; returns accuracies and a per-epoch log."""
    device = torch.device(device)
    # tiny matmuls: thread hand-offs cost more than they save (8x slower with 2 busy threads)
    with one_cpu_thread(device):
        return _train_head(x_train, y_train, x_val, y_val, num_classes, config, device)


def _train_head(x_train, y_train, x_val, y_val, num_classes, config, device) -> dict:
    x_train, x_val = x_train.float(), x_val.float()
    if config.standardize:
        mu = x_train.mean(0, keepdim=True)
        sd = x_train.std(0, keepdim=True).clamp_min(1e-6)
        x_train, x_val = (x_train - mu) / sd, (x_val - mu) / sd
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_val, y_val = x_val.to(device), y_val.to(device)
    head = _head(x_train.shape[1], num_classes, config.seed, device)
    opt, sched = _optimiser(head, config)
    g = torch.Generator().manual_seed(config.seed + 1)
    n = x_train.shape[0]
    log = []
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=g).to(device)
        total = 0.0
        for i in range(0, n, config.batch_size):
            idx = perm[i:i + config.batch_size]
            loss = F.cross_entropy(head(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        sched.step()
        if not math.isfinite(total):  # features are finite (extract_features checks them)
            raise UsageError(f"the linear probe diverged at epoch {epoch + 1} (loss {total}): "
                             "the features' scale is extreme; try --method knn")
        log.append({"epoch": epoch + 1, "train_loss": total / n})
    log[-1]["val_acc"] = accuracy(head, x_val, y_val)
    return {"val_acc": log[-1]["val_acc"], "train_acc": accuracy(head, x_train, y_train),
            "epochs": config.epochs, "log": log}


def _probe_augmented(model: nn.Module, task: EvalTask, config: LinearProbeConfig,
                     device: torch.device, batch_size: int, num_workers: int) -> dict:
    """The paper's probe: fresh augmented crops through the frozen encoder every epoch."""
    tfm = transforms_for(model)
    head = _head(model.feature_dim, task.num_classes, config.seed, device)
    opt, sched = _optimiser(head, config)
    g = torch.Generator().manual_seed(config.seed + 1)
    log = []
    for epoch in range(config.epochs):
        total, n = 0.0, 0
        # each crop and flip a function of (seed, epoch, image): the same whatever the workers
        for x, y in loader(task.train, tfm.train(), batch_size=config.batch_size,
                           shuffle=True, num_workers=num_workers, generator=g,
                           stream=(config.seed, f"probe-augment/epoch-{epoch}")):
            if n == 0 and epoch == 0 and device.type == "cpu":
                check_encode_memory(model, x)  # as extract_features does on its first batch
            with torch.inference_mode():
                f = encode(model, x.to(device))
            loss = F.cross_entropy(head(f.clone()), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * y.numel(), n + y.numel()
        sched.step()
        log.append({"epoch": epoch + 1, "train_loss": total / max(1, n)})
    xv, yv = extract_features(model, task.val, transform=tfm.val(), device=device,
                              batch_size=batch_size, num_workers=num_workers)
    acc = accuracy(head, xv.to(device), yv.to(device))
    log[-1]["val_acc"] = acc
    return {"val_acc": acc, "epochs": config.epochs, "log": log}


def linear_probe(model: nn.Module, task: EvalTask, config: LinearProbeConfig | None = None, *,
                 device: torch.device | str = "cpu", batch_size: int = 256, num_workers: int = 0,
                 features: tuple | None = None) -> dict:
    """Linear-probe accuracy of frozen `model` on `task`; checks the backbone did not change.

    `features` = (x_train, y_train, x_val, y_val) reuses cached features (cached mode only).
    """
    config = config or LinearProbeConfig()
    device = torch.device(device)
    model.to(device).eval()
    before = weights_snapshot(model)
    if config.mode == "augmented":
        result = _probe_augmented(model, task, config, device, batch_size, num_workers)
    else:
        if features is None:
            features = cached_features(model, task, device=device, batch_size=batch_size,
                                       num_workers=num_workers)
        result = train_linear_head(*features, task.num_classes, config, device)
    check_unchanged(before, model)
    result.update({"method": "linear", "mode": config.mode, "task": task.name,
                   "config": dataclasses.asdict(config)})
    return result


def cached_features(model: nn.Module, task: EvalTask, *, device: torch.device | str = "cpu",
                    batch_size: int = 256, num_workers: int = 0) -> tuple:
    """(x_train, y_train, x_val, y_val) on the validation transform, for cached probes and kNN."""
    tfm = transforms_for(model).val()
    xt, yt = extract_features(model, task.train, transform=tfm, device=device,
                              batch_size=batch_size, num_workers=num_workers)
    xv, yv = extract_features(model, task.val, transform=tfm, device=device,
                              batch_size=batch_size, num_workers=num_workers)
    return xt, yt, xv, yv
