"""MoCo v2 (He et al., CVPR 2020; Chen et al., arXiv:2003.04297) as one nn.Module.

The large-scale recipe of Baradad et al. 2021 (reference Sec. 8.3): ResNet-50 query encoder with
a 2-layer MLP head (2048-2048-ReLU-128), a key encoder updated as an exponential moving average
(momentum 0.999), a queue of K = 65,536 negative keys held as a buffer, and InfoNCE at
temperature 0.2.

Batch norm leaks information between the positive pair if the keys of one batch are normalised
together with their own queries' images; MoCo's remedy is shuffle-BN: under DDP the key batch is
shuffled across the ranks before the key encoder and un-shuffled after. ``bn="sync"`` uses
SyncBatchNorm instead (CUDA only). In a single process there is nothing to shuffle across (as in
the reference, which always ran multi-GPU), so shuffle-BN is a no-op there.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from noisevision.errors import UsageError
from noisevision.ssl.ddp import concat_all_gather, is_distributed
from noisevision.ssl.losses import infonce_loss


def projection_head(in_dim: int, dim: int, mlp: bool) -> nn.Module:
    """MoCo v2's MLP head (Linear-ReLU-Linear) or MoCo v1's single linear layer."""
    if mlp:
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True),
                             nn.Linear(in_dim, dim))
    return nn.Linear(in_dim, dim)


class EncoderWithHead(nn.Module):
    """backbone (B, feature_dim) -> head -> L2-normalised (B, dim)."""

    def __init__(self, backbone: nn.Module, dim: int, mlp: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = projection_head(int(backbone.feature_dim), dim, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)


class MoCo(nn.Module):
    """Query/key encoders, the negative queue and the MoCo v2 forward pass."""

    def __init__(self, backbone: nn.Module, *, dim: int = 128, queue_size: int = 65536,
                 momentum: float = 0.999, temperature: float = 0.2, mlp: bool = True,
                 bn: str = "shuffle", seed: int = 0) -> None:
        super().__init__()
        if bn not in ("shuffle", "sync", "none"):
            raise UsageError(f"unknown MoCo bn mode {bn!r} (allowed: shuffle, sync, none)")
        if not (isinstance(queue_size, int) and queue_size >= 1):
            raise UsageError(f"queue_size must be a positive integer, got {queue_size!r}")
        if not 0.0 <= momentum <= 1.0:
            raise UsageError(f"momentum must be in [0, 1], got {momentum!r}")
        if not temperature > 0:
            raise UsageError(f"temperature must be > 0, got {temperature!r}")
        self.momentum, self.temperature, self.bn = float(momentum), float(temperature), bn
        self.encoder_q = EncoderWithHead(backbone, dim, mlp)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        if bn == "sync":
            self.encoder_q = nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder_q)
            self.encoder_k = nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder_k)
        gen = torch.Generator().manual_seed(seed)
        queue = F.normalize(torch.randn(dim, queue_size, generator=gen), dim=0)
        self.register_buffer("queue", queue)                                 # (dim, K)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # Same seed on every rank, so every rank draws the same shuffle without communicating.
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)

    @property
    def backbone(self) -> nn.Module:
        """The query backbone: what is saved as the pretrained encoder."""
        return self.encoder_q.backbone

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query, for every parameter (EMA of the query encoder)."""
        qs = [p.data for p in self.encoder_q.parameters()]
        ks = [p.data for p in self.encoder_k.parameters()]
        torch._foreach_mul_(ks, self.momentum)
        torch._foreach_add_(ks, qs, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys of every rank (B_total, dim) over the oldest entries (a ring buffer)."""
        keys = concat_all_gather(keys.float())
        n, size = keys.shape[0], self.queue.shape[1]
        if n > size:
            keys, n = keys[-size:], size
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[:, idx] = keys.T
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    @torch.no_grad()
    def _keys(self, im_k: torch.Tensor) -> torch.Tensor:
        if self.bn != "shuffle" or not is_distributed():
            return self.encoder_k(im_k)
        # Shuffle-BN: gather all key images, permute them over the ranks, encode, undo.
        rank = dist.get_rank()
        gathered = concat_all_gather(im_k)                  # (W*B, 3, H, W)
        perm = torch.randperm(gathered.shape[0], generator=self.shuffle_generator)
        perm = perm.to(im_k.device)
        unperm = torch.argsort(perm)
        b = im_k.shape[0]
        k = self.encoder_k(gathered[perm[rank * b:(rank + 1) * b]])
        k_all = concat_all_gather(k)                        # (W*B, dim), shuffled order
        return k_all[unperm][rank * b:(rank + 1) * b]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits (B, 1 + K)); updates the key encoder and the queue as side effects."""
        q = self.encoder_q(im_q)                            # (B, dim), unit rows
        with torch.no_grad():
            self.momentum_update()
            k = self._keys(im_k)                            # (B, dim)
        loss, logits = infonce_loss(q, k, self.queue.clone().detach(), self.temperature)
        self.enqueue(k)
        return loss, logits
