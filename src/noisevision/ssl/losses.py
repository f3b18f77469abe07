"""Contrastive losses as small pure functions.

* Alignment and uniformity (Wang & Isola, "Understanding Contrastive Representation Learning
  through Alignment and Uniformity on the Hypersphere", ICML 2020, Eqs. 4-5), the small-scale
  objective of Baradad et al. 2021 (reference Sec. 8.1):
  ``L_align = E ||f(x) - f(y)||^alpha`` over positive pairs and
  ``L_unif = log E_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)`` over pairs within one view of a batch.
* InfoNCE with a queue of negatives (MoCo, He et al. CVPR 2020, Eq. 1; MoCo v2 temperature 0.2).

Inputs are embeddings on the unit sphere, (B, D); the losses are computed in float32 whatever the
autocast dtype, since the exponentials of uniformity lose too much in bf16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def align_loss(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean over the batch of ||x_i - y_i||^alpha, x and y (B, D) paired row by row."""
    x, y = x.float(), y.float()
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniform_loss(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log of the mean over pairs i < j of exp(-t ||x_i - x_j||^2), x (B, D) with B >= 2.

    Written as logsumexp(...) - log(#pairs) so that large t or spread points do not underflow.
    """
    x = x.float()
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"uniform_loss needs at least 2 rows, got {n}")
    sq = torch.pdist(x, p=2).pow(2)  # (B*(B-1)/2,) squared distances of the pairs i < j
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())


def align_uniform_loss(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 2.0, t: float = 2.0,
                       align_weight: float = 1.0,
                       unif_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference objective: align_w * L_align(x, y) + unif_w * (L_unif(x) + L_unif(y)) / 2.

    Returns (loss, parts) with parts {"align": ..., "uniform": ...} detached, for logging.
    """
    la = align_loss(x, y, alpha)
    lu = (uniform_loss(x, t) + uniform_loss(y, t)) / 2
    loss = align_weight * la + unif_weight * lu
    return loss, {"align": la.detach(), "uniform": lu.detach()}


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """(B, 1 + K) logits: column 0 = q_i . k_i (positive), then q_i . queue[:, j] (negatives),
    all divided by the temperature. q, k (B, D) unit rows; queue (D, K) unit columns."""
    q, k, queue = q.float(), k.float(), queue.float()
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    l_neg = q @ queue                          # (B, K)
    return torch.cat([l_pos, l_neg], dim=1) / temperature


def infonce_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                 temperature: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's InfoNCE: cross entropy of the positive (class 0) among 1 + K candidates.

    Returns (loss, logits); the keys `k` and the queue carry no gradient in MoCo.
    """
    logits = moco_logits(q, k, queue, temperature)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels), logits
