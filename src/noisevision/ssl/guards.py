"""What stops or refuses a training run besides bad flags: preemption signals, and a step
that cannot fit in CPU memory (both checked by ssl/train.py's trainer)."""

from __future__ import annotations

import signal
import threading

import torch
from torch import nn

from noisevision.errors import UsageError


class StopSignals:
    """SIGTERM and SIGUSR1 while training: finish the step, save a checkpoint, stop (Stopped).

    Schedulers warn before they preempt: SLURM sends SIGTERM and kills KillWait (30 s) later,
    or SIGUSR1 ahead of time with `--signal=USR1@60`; torchrun passes SIGTERM to its workers.
    The flag is read at the next log step (every --log-every steps), where the ranks agree on it
    by an all-reduce they already make there, so every rank stops after the same step. Handlers
    are installed from the main thread only (elsewhere the signals keep their actions)."""

    NAMES = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        self.received = self.received or signum

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _activation_bytes(backbone: nn.Module, side: int) -> int:
    """Bytes of the conv, batch-norm and linear outputs of one image of `side` px."""
    total = [0]

    def hook(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * 4  # float32 on the CPU
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    hooks = [m.register_forward_hook(hook) for m in backbone.modules() if isinstance(m, kinds)]
    training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(torch.zeros(2, 3, side, side, device=next(backbone.parameters()).device))
    finally:
        backbone.train(training)
        for h in hooks:
            h.remove()
    return total[0] // 2


def check_step_memory(backbone: nn.Module, cfg, local_batch: int, device: torch.device) -> None:
    """CPU: a step whose activations cannot fit in memory is refused before anything is
    rendered or written (the kernel's OOM killer would end the run without a word; on a GPU an
    out-of-memory error is one line already). Estimate: the conv, batch-norm and linear
    outputs of one image (hooks on a 2-image forward) x the views a step trains (2 for the
    small recipe; MoCo's key branch keeps no graph) x the local batch x 1.3 (a CPU step
    measured 1.3x the estimate for ResNet-50 at 224 px, 2.3x for SmallAlexNet at 64 px)."""
    if device.type != "cpu":
        return
    from noisevision import safety

    per = _activation_bytes(backbone, cfg.crop) * (2 if cfg.recipe == "small" else 1)
    need, free = 1.3 * per * local_batch, safety.available_memory(device)
    if free is not None and need > free:
        raise UsageError(
            f"a step of {local_batch:,} images at {cfg.crop} px needs about "
            f"{need / 2**30:.1f} GiB for its activations, more than the {free / 2**30:.1f} "
            f"GiB free on this cpu: lower --batch-size (about {int(free / (1.3 * per)):,} "
            "fits) or --crop")


def check_moco_buffers(cfg, device: torch.device) -> None:
    """MoCo's queue (--moco-queue keys of --moco-dim floats) and its projection heads must fit
    in half the free memory before the model is built (an allocator error otherwise)."""
    if cfg.recipe != "moco":
        return
    from noisevision.safety import check_fits

    nbytes = 4 * cfg.moco_dim * (cfg.moco_queue + 2 * 2048)  # queue + the two heads' last layer
    check_fits(nbytes, f"MoCo's queue of {cfg.moco_queue:,} keys of {cfg.moco_dim:,} dims",
               "lower --moco-queue or --moco-dim", device)
