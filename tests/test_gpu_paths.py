"""CPU tests of the CUDA fast paths of issue 17 (no GPU needed).

- StyleGAN-Random's folded upsampling weights are built on the weight's device (no host round
  trip): checked on the "meta" device, which has no data and fails on any copy to the CPU.
"""

from __future__ import annotations

import torch

from noisevision.generators.stylegan_net import fold_weight
from noisevision.generators.stylegan_winograd import upsample_weight


def test_fold_weight_stays_on_its_device_and_matches_the_cpu_build():
    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(3))
    k = upsample_weight(w)  # the float64 build as before (rows o, ey, ex)
    expect = k.reshape(6, 4, 5, 3, 3).transpose(0, 1).reshape(24, 5, 3, 3).float()
    assert torch.equal(fold_weight(w), expect)
    meta = fold_weight(torch.empty(6, 5, 3, 3, device="meta"))
    assert meta.device.type == "meta" and meta.shape == (24, 5, 3, 3)
    assert meta.dtype == torch.float32
