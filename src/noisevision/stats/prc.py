"""Improved precision and recall of a source against the reference (Kynkäänniemi et al. 2019;
paper section 5.2: precision r = -0.67 and recall r = +0.83 with accuracy).

Each set's manifold is the union of balls around its points with radius the distance to the
k-th nearest other point of the same set (k = 3). Precision: the fraction of source points inside
the reference manifold; recall: the fraction of reference points inside the source manifold.
Computed by `torch_fidelity.metric_prc.prc_features_to_metric` (prc_neighborhood=3, batched
distances: memory batch x N), on CUDA when available.

Features: the TF-Inception pool features (2048-d) of stats.features, as the paper's analysis
uses; Kynkäänniemi et al. used VGG-16 fc2 features (4096-d), so the columns are named
`precision_inception` / `recall_inception`. `VGG16Features(device, weights=PATH)` gives the
original paper's features from a local torchvision VGG-16 state dict (nothing is downloaded;
no such file ships offline here) for `precision_recall(...)` called directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from noisevision.errors import UsageError
from noisevision.stats import Metric, register_metric
from noisevision.stats.features import INSTALL_FIDELITY, FeatureAccumulator, features_of

NEIGHBORHOOD = 3
BATCH = 4096   # rows of a distance block: memory BATCH x N float32


def _metric_prc() -> Any:
    try:
        from torch_fidelity import metric_prc
    except ImportError:
        raise UsageError(f"precision/recall need torch-fidelity: {INSTALL_FIDELITY}") from None
    return metric_prc


def precision_recall(source: torch.Tensor, reference: torch.Tensor, k: int = NEIGHBORHOOD,
                     device: str | torch.device | None = None,
                     batch_size: int = BATCH) -> dict[str, float]:
    """{"precision", "recall", "f_score"} of (N_s, D) source features against (N_r, D) reference
    features, with k-th nearest neighbour radii (torch-fidelity's prc_features_to_metric)."""
    if source.dim() != 2 or reference.dim() != 2 or source.shape[1] != reference.shape[1]:
        raise UsageError(f"precision/recall need (N, D) features of equal D, got "
                         f"{tuple(source.shape)} and {tuple(reference.shape)}")
    if min(len(source), len(reference)) <= k:
        raise UsageError(f"precision/recall with k = {k} need more than {k} feature vectors per "
                         f"set, got {len(source)} and {len(reference)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    mp = _metric_prc()
    out = mp.prc_features_to_metric(
        source.detach().to(device, torch.float32), reference.detach().to(device, torch.float32),
        prc_neighborhood=int(k), prc_batch_size=int(batch_size), save_cpu_ram=True,
        verbose=False)
    return {"precision": float(out[mp.KEY_METRIC_PRECISION]),
            "recall": float(out[mp.KEY_METRIC_RECALL]),
            "f_score": float(out[mp.KEY_METRIC_F_SCORE])}


def prc_compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    out = precision_recall(features_of(state, "prc"), features_of(reference, "prc"))
    return {"precision_inception": out["precision"], "recall_inception": out["recall"]}


PRC = register_metric(Metric(
    name="prc", input="inception",
    description="improved precision/recall to the reference (k = 3) on Inception features "
                "(the original paper used VGG-16)",
    accumulator=FeatureAccumulator, compare=prc_compare, min_images=NEIGHBORHOOD + 1,
    columns=("precision_inception", "recall_inception")))


class VGG16Features:
    """VGG-16 fc2 features after ReLU (4096-d; Kynkäänniemi et al.'s features) through
    torch-fidelity's `vgg16` extractor, from a local torchvision VGG-16 state dict `weights`
    (required: nothing is downloaded). Images: (B, 3, H, W) uint8 or float in [0, 1], resized
    to 224 inside the extractor."""

    def __init__(self, weights: str | os.PathLike[str], device: str | torch.device = "cpu",
                 batch_size: int = 32) -> None:
        path = Path(weights)
        if not path.is_file():
            raise UsageError(f"VGG-16 weights {path} do not exist (a torchvision vgg16 state "
                             "dict is needed; nothing is downloaded)")
        try:
            from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16
        except ImportError:
            raise UsageError(f"VGG-16 features need torch-fidelity: {INSTALL_FIDELITY}") from None
        try:
            net = FeatureExtractorVGG16("vgg16", ["fc2_relu"],
                                        feature_extractor_weights_path=str(path))
        except Exception as exc:
            raise UsageError(f"VGG-16 weights {path} are not a torchvision vgg16 state dict: "
                             f"{type(exc).__name__}") from None
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in images.split(self.batch_size):
            x = chunk.to(self.device)
            if x.dtype != torch.uint8:
                x = x.float().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
            (feats,) = self.net(x)
            out.append(feats.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 4096)
