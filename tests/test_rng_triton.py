"""rng_triton's kernels give ImageRandom's bits exactly, run under the Triton interpreter.

CI has no GPU: the kernels run on CPU tensors with TRITON_INTERPRET=1, which must be set before
triton is imported, hence a subprocess. On a GPU, benchmarks/gpu_check.py covers the CUDA path.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

CODE = r"""
import torch
from noisevision import rng_triton
from noisevision.rng import ImageRandom, seed_words
dev = torch.device("cpu")
assert rng_triton.available(dev)
for seed, stream, idx in [(0, "a", [0, 1, 2]), (2**40 + 5, "stylegan/image/layer3", [7, 2**39 + 11,
                          123456789, 1048575, 1048576]), (99, "x", [5])]:
    indices = torch.tensor(idx)
    ref = ImageRandom(seed, indices, stream)  # the torch code (CPU never uses triton)
    assert not ref._triton
    ka, kb = rng_triton.keys(indices, *seed_words(seed, stream))
    assert torch.equal(ka, ref._key_a) and torch.equal(kb, ref._key_b)
    for n in (1, 5, 1500):  # across kernel blocks of 1024
        start = ref._counter
        want = ref.bits(n)
        got = rng_triton.bits(ka, kb, start, n)
        assert got.dtype == torch.int64 and torch.equal(got, want), (seed, stream, n)
    ref._counter = 2**32 - 3  # the counter wraps modulo 2**32 exactly as the torch code
    want = ref.bits(6)
    assert torch.equal(rng_triton.bits(ka, kb, 2**32 - 3, 6), want)
print("OK")
"""


def test_triton_bits_and_keys_equal_the_torch_code():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
