"""The fused Triton kernel (stylegan/paths/triton.py) against a float64 reference, interpreted.

CI has no GPU: the kernel runs on CPU tensors with TRITON_INTERPRET=1, which must be set before
triton is imported, hence one subprocess (shared by the tests through a fixture) that prints its
measurements as JSON. Sizes are small (the interpreter is slow) but cover C and P that are not
multiples of anything, every block size of the wrapper (BLOCK_P 128 to 1024, several pixel
blocks), R in {1, 3, 7, 9, 12, 16} (one or two row tiles, one partial) and noise / beta None or
given.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

# (B, C, P, R, with noise, with beta)
CASES = [
    (3, 70, 3000, 12, True, True),  # 3 pixel blocks of 1024, the last partial; C = 70
    (2, 33, 1025, 9, False, True),  # one pixel past a block
    (3, 17, 257, 3, True, False),  # BLOCK_P 512, one warp-row of rows per tile (2 + 1)
    (2, 64, 100, 12, False, False),  # BLOCK_P 128
    (2, 5, 7, 16, True, True),  # R = 16: a single row tile
    (3, 9, 130, 7, True, False),  # R = 7 = 4 + 3: the second tile (4 rows) has a masked row
    (2, 1, 50, 1, True, True),  # C = 1, R = 1
]

CODE = r"""
import json, sys
import torch
from noisevision.generators.stylegan.paths import triton as st

cases = json.loads(sys.argv[1])
res = {"available": st.available(torch.device("cpu")) and st.available("cpu"), "cases": []}
g = torch.Generator().manual_seed(1234)

def inputs(b, c, p, r, has_noise, has_beta):
    u = torch.randn(b, p, generator=g)
    noise = 0.5 * torch.randn(b, p, generator=g) if has_noise else None
    alpha = torch.randn(b, c, generator=g)
    beta = 0.5 * torch.randn(b, c, generator=g) if has_beta else None
    rows = torch.randn(b, c, r, generator=g)
    return u, noise, alpha, beta, rows

def reference(u, noise, alpha, beta, rows):
    x = alpha.double()[:, :, None] * u.double()[:, None, :]
    if noise is not None:
        x = x + noise.double()[:, None, :]
    if beta is not None:
        x = x + beta.double()[:, :, None]
    return torch.einsum("bcr,bcp->brp", rows.double(), x.relu())

def take(t, sl):
    return None if t is None else t[sl]

for case in cases:
    args = inputs(*case)
    out = st.fused_relu_sums(*args)
    ref = reference(*args)
    err = (out.double() - ref)
    b = case[0]
    alone = all(torch.equal(st.fused_relu_sums(*[take(t, slice(i, i + 1)) for t in args])[0],
                            out[i]) for i in range(b))
    flip = st.fused_relu_sums(*[None if t is None else t.flip(0) for t in args])
    res["cases"].append({
        "case": case, "shape": list(out.shape), "dtype": str(out.dtype),
        "contiguous": out.is_contiguous(), "finite": bool(torch.isfinite(out).all()),
        "rel": (err.norm() / ref.norm()).item(), "max_abs": err.abs().max().item(),
        "ref_max": ref.abs().max().item(), "alone_equal": alone,
        "flipped_equal": torch.equal(flip, out.flip(0)),
    })

# non-contiguous inputs give the contiguous inputs' result exactly
u, noise, alpha, beta, rows = inputs(2, 21, 300, 9, True, True)
want = st.fused_relu_sums(u, noise, alpha, beta, rows)
got = st.fused_relu_sums(torch.stack([u, u], 2)[:, :, 0], noise.t().contiguous().t(),
                         alpha.t().contiguous().t(), beta, rows.transpose(1, 2).contiguous()
                         .transpose(1, 2))
res["noncontiguous_equal"] = torch.equal(got, want)
res["empty_shape"] = list(st.fused_relu_sums(u[:0], None, alpha[:0], None, rows[:0]).shape)

# misuse: a clear ValueError
u, noise, alpha, beta, rows = inputs(2, 8, 40, 3, True, True)
bad = {
    "R=17": lambda: st.fused_relu_sums(u, noise, alpha, beta, torch.zeros(2, 8, 17)),
    "R=0": lambda: st.fused_relu_sums(u, noise, alpha, beta, torch.zeros(2, 8, 0)),
    "alpha batch": lambda: st.fused_relu_sums(u, noise, alpha[:1], beta, rows),
    "rows batch": lambda: st.fused_relu_sums(u, noise, alpha, beta, rows[:1]),
    "rows channels": lambda: st.fused_relu_sums(u, noise, alpha, beta, rows[:, :5]),
    "noise shape": lambda: st.fused_relu_sums(u, noise[:, :7], alpha, beta, rows),
    "beta shape": lambda: st.fused_relu_sums(u, noise, alpha, beta[:, :3], rows),
    "u 1-D": lambda: st.fused_relu_sums(u[0], noise, alpha, beta, rows),
    "rows 2-D": lambda: st.fused_relu_sums(u, noise, alpha, beta, rows[:, :, 0]),
    "float64 u": lambda: st.fused_relu_sums(u.double(), noise, alpha, beta, rows),
    "float16 rows": lambda: st.fused_relu_sums(u, noise, alpha, beta, rows.half()),
}
res["errors"] = {}
for name, fn in bad.items():
    try:
        fn()
        res["errors"][name] = "no error"
    except Exception as e:  # noqa: BLE001
        res["errors"][name] = type(e).__name__ + ": " + str(e)
print("RESULT " + json.dumps(res))
"""


@pytest.fixture(scope="module")
def interpreted():
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", CODE, json.dumps(CASES)], env=env,
                       capture_output=True, text=True, timeout=600, check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    return json.loads(lines[-1][len("RESULT "):])


@needs_triton
def test_matches_float64_reference(interpreted):
    assert interpreted["available"]
    assert len(interpreted["cases"]) == len(CASES)
    for res in interpreted["cases"]:
        b, c, p, r, _, _ = res["case"]
        assert res["shape"] == [b, r, p] and res["dtype"] == "torch.float32", res
        assert res["contiguous"] and res["finite"], res
        assert res["rel"] < 1e-6, res  # float32 accumulation over c
        assert res["max_abs"] <= 1e-5 * max(1.0, res["ref_max"]), res


@needs_triton
def test_image_result_does_not_depend_on_its_batch(interpreted):
    for res in interpreted["cases"]:
        assert res["alone_equal"], res  # image b alone (B = 1) == row b of the batch, bitwise
        assert res["flipped_equal"], res  # the batch in reverse order


@needs_triton
def test_noncontiguous_inputs_and_empty_batch(interpreted):
    assert interpreted["noncontiguous_equal"]
    assert interpreted["empty_shape"] == [0, 9, 300]


@needs_triton
def test_misuse_raises_value_error(interpreted):
    for name, err in interpreted["errors"].items():
        assert err.startswith("ValueError: "), (name, err)


@needs_triton
def test_available(monkeypatch):
    from noisevision.generators.stylegan.paths import triton as st

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert st.available(torch.device("cuda")) and st.available("cuda:0")
    assert not st.available(torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert st.available("cpu") and not st.available("meta")


def test_import_without_triton():
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch\n"
            "from noisevision.generators.stylegan.paths import triton as st\n"
            "assert st.triton is None and not st.available(torch.device('cuda'))\n"
            "try:\n"
            "    st.fused_relu_sums(torch.zeros(1, 4), None, torch.zeros(1, 2), None,"
            " torch.zeros(1, 2, 3))\n"
            "except RuntimeError:\n"
            "    print('OK')\n")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr


GENERATOR_CODE = r"""
import torch
from noisevision.generators import create_generator
from noisevision.generators.stylegan import plan
for name in ("stylegan_highfreq", "stylegan_sparse", "stylegan_oriented"):
    want = create_generator(name, resolution=64, width=0.125).generate(range(2), seed=4)
    plan._fused = lambda device: True  # the CUDA route, on CPU under the interpreter
    gen = create_generator(name, resolution=64, width=0.125)  # plans are made per generator
    assert gen.plan(torch.device("cpu")).fused
    got = gen.generate(range(2), seed=4)
    plan._fused = lambda device: False
    err = float((got - want).abs().max())
    assert err < 1e-4, (name, err)
    print(name, err)
print("OK")
"""


@needs_triton
def test_generators_through_the_fused_kernel_match_the_torch_paths():
    """The wavelet variants with the kernel wired in (as on CUDA) render the CPU images."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", GENERATOR_CODE], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
