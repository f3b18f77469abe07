"""Weighted k-nearest-neighbour classification on L2-normalised features.

The standard self-supervised kNN monitor (Wu et al. 2018, "Unsupervised feature learning via
non-parametric instance discrimination"): cosine similarities to every training feature, the k
most similar vote with weight exp(s / temperature); ``temperature=None`` gives a plain majority
vote. No training, so it is a quick, hyperparameter-light complement to the linear probe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisevision.errors import UsageError


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor,
                num_classes: int, k: int = 20, temperature: float | None = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Predicted labels (Q,) for `query` (Q, D) from (N, D) training features and labels (N,)."""
    if not (isinstance(k, int) and k >= 1):
        raise UsageError(f"k must be a positive integer, got {k!r}")
    if temperature is not None and not temperature > 0:
        raise UsageError("temperature must be > 0 (or None for a majority vote), "
                         f"got {temperature}")
    train = F.normalize(train_feats.float(), dim=1)
    k = min(k, train.shape[0])
    preds = []
    for i in range(0, query.shape[0], chunk):
        q = F.normalize(query[i:i + chunk].float(), dim=1)
        sim, idx = (q @ train.T).topk(k, dim=1)            # (q, k)
        weight = torch.ones_like(sim) if temperature is None else (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, dtype=weight.dtype, device=q.device)
        votes.scatter_add_(1, train_labels.to(q.device)[idx], weight)   # (q, C)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor,
                 val_labels: torch.Tensor, num_classes: int, k: int = 20,
                 temperature: float | None = 0.07) -> dict:
    """kNN top-1 accuracy on the validation features."""
    pred = knn_predict(train_feats, train_labels, val_feats, num_classes, k, temperature)
    acc = float((pred.cpu() == val_labels.cpu()).float().mean())
    return {"method": "knn", "val_acc": acc, "k": k, "temperature": temperature}
