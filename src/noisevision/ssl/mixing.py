"""Sample mixing before the two views (Shaders21k: Baradad et al., NeurIPS 2022, Sec. 4).

Shaders21k found that contrastive pretraining gains accuracy when every training image is a mix
of several images, possibly of different programs (here: of different sources of a mixture,
since a batch holds every source's share). `pretrain --mix` mixes each image of a batch with
`count - 1` others of the same batch before the two views are drawn:

* ``mixup``: a convex combination, x = sum_k w_k x_k, with w_k = u_k / sum u (u_k uniform in
  (0, 1): Shaders21k's default "non-uniform" convex weights);
* ``cutmix``: the image, with a box of each partner pasted on it in turn (Yun et al. 2019 as
  Shaders21k: lambda ~ Beta(1, 1), a box of side S sqrt(1 - lambda) around a uniform centre,
  clipped to the image; a later box covers an earlier one);
* ``mixup+cutmix``: each partner's box alone on black, convex-combined with the image itself
  (Shaders21k's convex_cutmix).

The defaults are Shaders21k's released configuration: 6 images per mix (its ``mixup 6``
datasets), the convex weights and Beta(1, 1) above. Which partners, weights and boxes a step
uses is a pure function of (run seed, rank, epoch, step) (`step_seed`), so a resumed run mixes
exactly as an uninterrupted one. `Mixing` records each mixed image's partners and weights (the
share of the result each partner contributes), from which `mix_labels` forms MixUp-style soft
labels where a caller has labels (pretraining itself has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIX_MODES = ("none", "mixup", "cutmix", "mixup+cutmix")
SHADERS21K_COUNT = 6  # images per mix in Shaders21k's mixup datasets


@dataclass(frozen=True)
class Mixing:
    """How a batch is mixed: partners (B, K) batch rows (column 0: the image itself), convex
    weights (B, K) summing to 1 (unused by cutmix), boxes (B, K, 4) as y0, y1, x0, x1 (unused
    by mixup; column 0 always)."""

    mode: str
    partners: torch.Tensor
    weights: torch.Tensor
    boxes: torch.Tensor


def sample_mixing(mode: str, batch: int, size: int, count: int,
                  generator: torch.Generator) -> Mixing:
    """Draw partners, convex weights and boxes for a batch of `batch` images of side `size`.

    Partners are uniform among the other images of the batch (the image itself when the batch
    holds one). The draws are made on the CPU from `generator`, always the same number of them
    for a given (mode, batch, count), so they depend on the seed alone.
    """
    if mode not in MIX_MODES or mode == "none":
        raise ValueError(f"mix mode must be one of {', '.join(MIX_MODES[1:])}, got {mode!r}")
    if count < 2:
        raise ValueError(f"count must be >= 2, got {count}")
    rows = torch.arange(batch)[:, None]
    offset = torch.randint(0, max(batch - 1, 1), (batch, count - 1), generator=generator)
    others = (rows + 1 + offset) % batch if batch > 1 else rows.expand(batch, count - 1)
    partners = torch.cat([rows, others], dim=1)  # (B, K)
    u = torch.rand(batch, count, generator=generator)
    weights = u / u.sum(dim=1, keepdim=True)
    lam = torch.rand(batch, count, generator=generator)  # Beta(1, 1)
    centre = torch.rand(batch, count, 2, generator=generator) * size  # (cy, cx)
    half = size * torch.sqrt(1.0 - lam) / 2.0
    lo = torch.round((centre - half[..., None]).clamp(min=0.0))
    hi = torch.round((centre + half[..., None]).clamp(max=float(size)))
    boxes = torch.stack([lo[..., 0], hi[..., 0], lo[..., 1], hi[..., 1]], dim=-1).long()
    return Mixing(mode, partners, weights, boxes)


def box_masks(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, K, 4) boxes -> (B, K, S, S) bool: inside y0 <= y < y1, x0 <= x < x1."""
    pos = torch.arange(size, device=boxes.device)
    inside_y = (pos >= boxes[..., 0:1]) & (pos < boxes[..., 1:2])  # (B, K, S)
    inside_x = (pos >= boxes[..., 2:3]) & (pos < boxes[..., 3:4])
    return inside_y[..., :, None] & inside_x[..., None, :]


def apply_mixing(images: torch.Tensor, mixing: Mixing) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed images (B, 3, S, S) float32 in [0, 1] (uint8 input is scaled) and the share
    (B, K) of each partner in them."""
    dev = images.device
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    B, _, S, _ = x.shape
    partners = mixing.partners.to(dev)
    weights = mixing.weights.to(dev)
    count = partners.shape[1]
    if mixing.mode == "mixup":
        out = torch.zeros_like(x)
        for k in range(count):
            out += weights[:, k, None, None, None] * x[partners[:, k]]
        return out, weights
    masks = box_masks(mixing.boxes.to(dev), S)  # (B, K, S, S)
    if mixing.mode == "cutmix":
        out = x[partners[:, 0]].clone()
        owner = torch.zeros(B, S, S, dtype=torch.long, device=dev)
        for k in range(1, count):  # pasted in turn: a later box covers an earlier one
            out = torch.where(masks[:, k, None], x[partners[:, k]], out)
            owner = torch.where(masks[:, k], k, owner)
        share = torch.stack([(owner == k).float().mean(dim=(1, 2)) for k in range(count)], 1)
        return out, share
    # mixup+cutmix: the image itself plus each partner's box alone on black, convex-combined
    out = weights[:, 0, None, None, None] * x
    share = [weights[:, 0]]
    for k in range(1, count):
        inside = masks[:, k, None].float()  # (B, 1, S, S)
        out += weights[:, k, None, None, None] * inside * x[partners[:, k]]
        share.append(weights[:, k] * inside.mean(dim=(1, 2, 3)))
    return out, torch.stack(share, dim=1)


def mix_labels(labels: torch.Tensor, partners: torch.Tensor,
               share: torch.Tensor) -> torch.Tensor:
    """MixUp-style soft labels: labels (B, C) one-hot (or soft) -> (B, C), each mixed image's
    labels weighted by the partners' shares (normalised: black of a mixup+cutmix counts for
    nothing)."""
    share = share / share.sum(dim=1, keepdim=True)
    return (labels[partners] * share[..., None]).sum(dim=1)


def step_seed(run_seed: int, rank: int, epoch: int, step: int) -> int:
    """The seed of a step's mixing draws: a function of the data position only."""
    from noisevision.ssl.sources import _seed_for

    return _seed_for(run_seed, "mix", rank, epoch, step)


def mix_batch(images: torch.Tensor, mode: str, count: int,
              seed: int) -> tuple[torch.Tensor, Mixing, torch.Tensor]:
    """Mix a batch as `pretrain --mix` does: draws from `seed`, then `apply_mixing`.
    Returns (mixed images, the draws, each partner's share)."""
    generator = torch.Generator().manual_seed(int(seed))
    mixing = sample_mixing(mode, images.shape[0], images.shape[-1], count, generator)
    mixed, share = apply_mixing(images, mixing)
    return mixed, mixing, share
