"""Resolve a device string ("auto", "cpu", "cuda", "cuda:N") once, with a clear error."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from noisevision.errors import UsageError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """"auto" picks cuda:0 when a GPU is visible, else cpu."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r} (allowed: auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r} asked for but no CUDA GPU is visible "
                             "(allowed here: auto, cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r} does not exist "
                             f"({torch.cuda.device_count()} CUDA device(s) visible)")
    elif device.type != "cpu":
        raise UsageError(f"unsupported device {spec!r} (allowed: auto, cpu, cuda, cuda:N)")
    return device


@contextmanager
def cpu_threads(n: int | None, device: torch.device):
    """torch intra-op threads = n while rendering or training on CPU; restored afterwards.

    A no-op on GPU or when n is None.
    """
    if n is None or device.type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def one_cpu_thread(device: torch.device):
    """Render with one intra-op thread on CPU (a no-op on GPU).

    Datasets are written and verified this way: a few kernels (FFTs, reductions) round
    differently with another thread count, and a stored image must regenerate bit for bit
    whatever machine or worker count verifies it. One thread per process is also the fast
    choice on a busy machine.
    """
    return cpu_threads(1, device)


def triton_available(device: torch.device | str) -> bool:
    """Whether noisevision's Triton kernels run on `device`: triton imports and the device is
    CUDA (unless NOISEVISION_TRITON=0), or CPU under TRITON_INTERPRET=1 (tests). The one switch
    every Triton path (rng_triton, dead leaves, histogram matching, StyleGAN's tied sums) asks."""
    device = torch.device(device)
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return False
    elif not triton_wanted(device):
        return False
    return _triton_imports()


def _triton_imports() -> bool:
    global _TRITON
    if _TRITON is None:
        try:  # torch wheels without CUDA (macOS, Windows, CPU-only) may have no triton
            import triton  # noqa: F401
            _TRITON = True
        except Exception:  # noqa: BLE001 - any import problem means "not available"
            _TRITON = False
    return _TRITON


_TRITON: bool | None = None


def triton_wanted(device: torch.device) -> bool:
    """Whether to run the Triton kernels on `device`: CUDA, unless NOISEVISION_TRITON=0 (which
    switches every Triton path back to its torch code, for comparison or debugging). Callers
    still check that triton imports (their module's `available`)."""
    return device.type == "cuda" and os.environ.get("NOISEVISION_TRITON", "1") != "0"
