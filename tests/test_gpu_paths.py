"""CPU tests of the CUDA fast paths of issue 17 (no GPU needed).

- StyleGAN-Random's folded upsampling weights are built on the weight's device (no host round
  trip): checked on the "meta" device, which has no data and fails on any copy to the CPU.
- Dead leaves' fused Triton rasteriser runs under the Triton interpreter (TRITON_INTERPRET=1,
  set before triton is imported, hence a subprocess) on CPU tensors, forced on with
  `DeadLeaves._fused`, and must give the torch renderer's leaf maps and images bit for bit.
- Histogram matching's Triton kernels (histmatch_triton), forced with histmatch.FORCE_TRITON,
  must give the torch code's values bit for bit (their two fused multiply-adds emulated in
  float64 under the interpreter, whose own fma rounds twice).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:  # the stylegan package layout, else the earlier flat modules
    from noisevision.generators.stylegan.paths.fold import fold_weight
    from noisevision.generators.stylegan.paths.winograd import upsample_weight
except ImportError:
    from noisevision.generators.stylegan_net import fold_weight
    from noisevision.generators.stylegan_winograd import upsample_weight

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_fold_weight_stays_on_its_device_and_matches_the_cpu_build():
    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(3))
    k = upsample_weight(w)  # the float64 build as before (rows o, ey, ex)
    expect = k.reshape(6, 4, 5, 3, 3).transpose(0, 1).reshape(24, 5, 3, 3).float()
    assert torch.equal(fold_weight(w), expect)
    meta = fold_weight(torch.empty(6, 5, 3, 3, device="meta"))
    assert meta.device.type == "meta" and meta.shape == (24, 5, 3, 3)
    assert meta.dtype == torch.float32


# ---- dead leaves: the fused Triton rasteriser (dead_leaves_triton) under the interpreter --------

HAS_TRITON = importlib.util.find_spec("triton") is not None

DEAD_LEAVES_CODE = r"""
import json, sys
import torch
torch.set_num_threads(1)
from noisevision import create_generator
from noisevision.generators import dead_leaves_triton as dlt
from noisevision.generators.dead_leaves import DeadLeaves

out = {"available": dlt.available(torch.device("cpu"))}
cases = json.loads(sys.argv[1])
torch_path = DeadLeaves._fused
for name, res, chunk, fused_chunk, overrides, position in cases:
    gen = create_generator(name, resolution=res, chunk_leaves=chunk, **overrides)
    idx = torch.tensor([3, 40])
    DeadLeaves._fused = torch_path
    col_a = torch.zeros(2, gen.config.max_leaves + 1, 3)
    ids_a, n_a = gen.leaf_ids(idx, 5, col_a)
    DeadLeaves._fused = lambda self, device: True
    dlt.FUSED_CHUNK = fused_chunk
    col_b = torch.zeros_like(col_a)
    ids_b, n_b = gen.leaf_ids(idx, 5, col_b)
    drawn = (ids_b.amax() + 1).item()
    r = {"ids_equal": torch.equal(ids_a, ids_b), "n_equal": torch.equal(n_a, n_b),
         "colours_equal": torch.equal(col_a[:, :drawn], col_b[:, :drawn]),
         "n": n_b.tolist(), "uncovered": int((ids_b < 0).sum())}
    if position:  # render(): the same image first in its batch and second after another one
        a = gen.render(torch.tensor([40, 3]), 5)
        b = gen.render(torch.tensor([7, 40]), 5)
        r["position"] = torch.equal(a[0], b[1])
    out[f"{name}/{res}/{fused_chunk}/{overrides}"] = r
print(json.dumps(out))
"""

# (generator, resolution, config chunk_leaves, the fused path's chunk, config overrides): every
# variant, a resolution that is not a power of two (masked columns and rows), a chunk that is not
# a multiple of 256, and a leaf cap that stops images before they are covered (N = -1)
DEAD_LEAVES_CASES = [
    ("dead_leaves_squares", 16, 256, 512, {}, False),
    ("dead_leaves_oriented", 18, 256, 384, {}, False),
    ("dead_leaves_shapes", 20, 256, 1024, {}, True),
    ("dead_leaves_shapes", 24, 256, 256, {"max_leaves": 300}, False),
]


@pytest.fixture(scope="module")
def dead_leaves_fused():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=SRC)
    proc = subprocess.run([sys.executable, "-c", DEAD_LEAVES_CODE, json.dumps(DEAD_LEAVES_CASES)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_fused_dead_leaves_equal_the_torch_renderer_bit_for_bit(dead_leaves_fused):
    """The rasteriser's leaf maps, coverage leaf N and leaf colours equal the CPU torch
    renderer's exactly (all of its arithmetic is integer or the torch code's float32 sequence),
    and a rendered image is the same at another batch position."""
    assert dead_leaves_fused.pop("available") is True
    for case, r in dead_leaves_fused.items():
        assert r["ids_equal"] and r["n_equal"] and r["colours_equal"], (case, r)
        assert r.get("position", True), case
    capped = dead_leaves_fused["dead_leaves_shapes/24/256/{'max_leaves': 300}"]
    assert -1 in capped["n"] and capped["uncovered"] > 0  # the cap case does what it says


# ---- histogram matching: the Triton kernels (histmatch_triton) under the interpreter ------------

HISTMATCH_CODE = r"""
import json
import torch
torch.set_num_threads(1)
from noisevision import create_generator
from noisevision.generators import histmatch as hm

out = {}
g = torch.Generator().manual_seed(0)
# rows x values x bins: partial blocks, one value past a block, few bins, 801 (WMM), 1000
for rows, n, bins in [(3, 1000, 256), (5, 4097, 801), (2, 100, 7), (4, 3000, 1000)]:
    x = torch.randn(rows, n, generator=g) * 3
    x[0, :50] = x[0, 50]  # ties (equal values, a flat CDF step)
    t = hm.equal_bin_histogram(torch.randn(rows, 500, generator=g) ** 3, bins)
    hm.FORCE_TRITON = False
    a = hm.match_histograms(x, t)
    hm.FORCE_TRITON = True
    b = hm.match_histograms(x, t)
    out[f"match {rows}x{n}/{bins}"] = torch.equal(a, b)
for name in ("stat_spectrum_color_wmm", "stat_wmm"):
    gen = create_generator(name, resolution=32)
    hm.FORCE_TRITON = False
    a = gen.render(torch.tensor([3, 9]), 1)
    hm.FORCE_TRITON = True
    b = gen.render(torch.tensor([3, 9]), 1)
    out[name] = torch.equal(a, b)
print(json.dumps(out))
"""


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_histogram_matching_equals_the_torch_code_bit_for_bit():
    """Row histograms in registers and the table lookup (the CUDA path) give the torch code's
    values exactly: matched rows, and whole statistical-model images at 32 px."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=SRC)
    proc = subprocess.run([sys.executable, "-c", HISTMATCH_CODE], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result and all(result.values()), result
