"""Distributed data parallel helpers for `torchrun` (one process per GPU, or gloo on CPU).

`torchrun --nproc_per_node N -m noisevision.cli pretrain ...` sets RANK / WORLD_SIZE /
LOCAL_RANK; :func:`init_distributed` reads them, picks NCCL for CUDA and gloo for CPU, and binds
each process to its own GPU. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from noisevision.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int          # global rank of this process
    world_size: int    # number of processes
    local_rank: int    # rank on this machine (GPU index)
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun, else describe a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0, resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (B, ...) from every rank along dim 0 (no gradient); identity alone."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def broadcast_tensor(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    if is_distributed():
        dist.broadcast(x, src)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Average of a tensor over the ranks (for logging); a copy."""
    x = x.detach().clone()
    if is_distributed():
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def barrier() -> None:
    if is_distributed():
        dist.barrier()
