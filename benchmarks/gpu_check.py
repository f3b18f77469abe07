"""Correctness of every generator on a CUDA GPU, against itself and against the CPU.

    python benchmarks/gpu_check.py            # needs a CUDA GPU; prints one line per check
    python benchmarks/gpu_check.py cuda 'dead_leaves*' stylegan_random   # only these

CI has no GPU, so this is the GPU half of the generator contract, run by `benchmarks/gpu.sh` on
a lent device: for each registered generator at its contract size, the GPU images are finite and
in [0, 1], the same on a second call (determinism), the same in another batch size (image i is a
function of (config, seed, i) only; cuBLAS/cuDNN may pick other kernels per batch size, so the
tolerance is float rounding), and close to the CPU's images (the counter-based draws are the same
on every device). For StyleGAN, the fast structured path is also compared with the plain dense
reference path on the GPU. Exits 1 if any check fails.
"""

from __future__ import annotations

import fnmatch
import sys

import torch

from noisevision import create_generator, list_generators
from noisevision.generators.base import GENERATORS

FAILED: list[str] = []


def report(name: str, what: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name:28s} {what:26s} {detail}", flush=True)
    if not ok:
        FAILED.append(f"{name} {what}")


def overrides(name: str) -> dict:
    cls, _ = GENERATORS.get(name).factory
    return {"resolution": 32, **getattr(cls, "cheap_settings", {})}


def stats(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    d = (a - b).abs()
    return float(d.mean()), float(d.max()), float((d > 1 / 255).float().mean())


def check_dead_leaves_fused(dev: str) -> None:
    """Dead leaves' fused Triton rasteriser (the CUDA default) against the torch renderer on the
    same GPU (NOISEVISION_TRITON=0's path): the same leaf maps, N and images, bit for bit."""
    from noisevision.generators.dead_leaves import DeadLeaves

    fused = DeadLeaves._fused
    for name in ("dead_leaves_squares", "dead_leaves_oriented", "dead_leaves_shapes"):
        for res, batch in ((128, 64), (256, 16)):
            gen = create_generator(name, resolution=res)
            idx = torch.arange(1000, 1000 + batch, device=dev)
            ids_b, n_b = gen.leaf_ids(idx, 7)
            img_b = gen.render(idx, 7)
            DeadLeaves._fused = lambda self, device: False
            try:
                ids_a, n_a = gen.leaf_ids(idx, 7)
                img_a = gen.render(idx, 7)
            finally:
                DeadLeaves._fused = fused
            same = (torch.equal(ids_a, ids_b) and torch.equal(n_a, n_b)
                    and torch.equal(img_a, img_b))
            diff = int((ids_a != ids_b).sum())
            report(name, f"fused = torch, {res} px", same,
                   f"{diff} pixels differ; N {n_b[:4].tolist()}; cap hit {int((n_b < 0).sum())}")


def check_triton_off(names: list[str], dev: str, n: int) -> None:
    """The Triton paths (RNG, histogram matching, dead leaves) against NOISEVISION_TRITON=0's
    torch code on the same GPU, at the contract size: the same images bit for bit."""
    import os

    for name in names:
        gen = create_generator(name, **overrides(name))
        on = gen.generate(range(n), seed=3, device=dev, batch_size=n).cpu()
        os.environ["NOISEVISION_TRITON"] = "0"
        try:  # a new instance: nothing cached (textured dead leaves keep a texture pool)
            gen = create_generator(name, **overrides(name))
            off = gen.generate(range(n), seed=3, device=dev, batch_size=n).cpu()
        finally:
            del os.environ["NOISEVISION_TRITON"]
        m, mx, frac = stats(on, off)
        report(name, "triton = torch on cuda", mx == 0.0,
               f"mean {m:.2e} max {mx:.2e} >1/255: {frac:.4f}")


def main() -> int:
    dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"  # "cpu" only dry-runs this script
    assert dev != "cuda" or torch.cuda.is_available(), "needs a CUDA GPU"
    torch.backends.cuda.matmul.allow_tf32 = False  # compare in plain fp32 arithmetic
    torch.backends.cudnn.allow_tf32 = False
    n = 8
    patterns = sys.argv[2:] or ["*"]
    names = [m for m in list_generators() if any(fnmatch.fnmatch(m, p) for p in patterns)]
    for name in names:
        # StyleGAN in float32 for the device comparisons ("auto" is bfloat16 for Random on a
        # bf16 CPU); the default is compared with the reference path below
        pin = {"compute_dtype": "float32"} if name.startswith("stylegan") else {}
        gen = create_generator(name, **overrides(name), **pin)
        try:
            g1 = gen.generate(range(n), seed=3, device=dev, batch_size=n)
            g2 = gen.generate(range(n), seed=3, device=dev, batch_size=n)
            g3 = gen.generate(range(n), seed=3, device=dev, batch_size=3)
            rev = gen.generate(range(n - 1, -1, -1), seed=3, device=dev, batch_size=n)
            short = gen.generate(range(3), seed=3, device=dev, batch_size=n)  # padded to n
            cpu = gen.generate(range(n), seed=3, device="cpu", batch_size=n)
        except Exception as e:  # noqa: BLE001 - report and go on to the other generators
            report(name, "runs on cuda", False, f"{type(e).__name__}: {e}")
            continue
        g1c = g1.float().cpu()
        ok = bool(torch.isfinite(g1c).all()) and 0 <= float(g1c.min()) <= float(g1c.max()) <= 1
        report(name, "finite, in [0, 1]", ok, f"shape {tuple(g1.shape)} device {g1.device}")
        m, mx, _ = stats(g1c, g2.cpu())
        report(name, "same twice", mx == 0.0, f"max |diff| {mx:.2e}")
        # same batch size: an image's bytes must not depend on its neighbours or position
        m, mx, _ = stats(g1c, rev.cpu().flip(0))
        report(name, "batch order, same size", mx == 0.0, f"max {mx:.2e}")
        m, mx, _ = stats(g1c[:3], short.cpu())
        report(name, "3 images padded to 8", mx == 0.0, f"max {mx:.2e}")
        m, mx, frac = stats(g1c, g3.cpu())  # another batch size: float rounding only
        print(f"info {name:28s} batch 8 vs 3: mean {m:.2e} max {mx:.2e} >1/255: {frac:.4f}")
        m, mx, frac = stats(g1c, cpu)
        # bytes are reproducible per device type (datasets record it). Float rounding differs
        # between devices: dead leaves and StyleGAN agree to ~1e-6, while the histogram-matched
        # statistical models amplify it (measured on an H200: mean |diff| up to 0.0044, 0.0061
        # for textured dead leaves, whose texture pool comes from them); a gross difference
        # (a wrong draw or path) fails
        report(name, "cuda vs cpu", m < 0.01, f"mean {m:.2e} max {mx:.2e} >1/255: {frac:.4f}")
        if name.startswith("stylegan"):
            ref = create_generator(name, **overrides(name), path="reference")
            r = ref.generate(range(n), seed=3, device=dev, batch_size=n).cpu()
            m, mx, frac = stats(g1c, r)
            report(name, "fast fp32 vs reference", m < 1e-4 and mx < 2e-3,
                   f"mean {m:.2e} max {mx:.2e}")
            d = create_generator(name, **overrides(name)).generate(range(n), seed=3, device=dev)
            m, mx, frac = stats(d.cpu(), r)  # the default compute_dtype (bfloat16 bounds)
            report(name, "default vs reference", m < 0.015, f"mean {m:.2e} max {mx:.2e}")
    if any(m.startswith("dead_leaves") for m in names) and dev == "cuda":
        check_dead_leaves_fused(dev)
    if dev == "cuda":
        check_triton_off([m for m in names if m.startswith("stat_") or m.endswith("textured")],
                         dev, n)
    # ImageRandom on CUDA runs as Triton kernels (rng_triton): the same bits as the CPU code
    from noisevision.rng import ImageRandom

    idx = torch.tensor([0, 5, 2**39 + 7, 123456789])
    a = ImageRandom(11, idx.to(dev), "check/stream")
    b = ImageRandom(11, idx, "check/stream")
    same = all(torch.equal(a.bits(n).cpu(), b.bits(n)) for n in (1, 1000, 5000))
    report("rng", f"bits {dev} vs cpu", same, f"triton on {dev}: {a._triton}")
    # StyleGAN-Random with torch's default TF32 convolutions (what users get by default)
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    gen = create_generator("stylegan_random", resolution=64, width=0.25)
    g1 = gen.generate(range(n), seed=3, device=dev, batch_size=n).cpu()
    g3 = gen.generate(range(n), seed=3, device=dev, batch_size=3).cpu()
    cpu = gen.generate(range(n), seed=3, device="cpu", batch_size=n)
    d3, dc = (g1 - g3).abs(), (g1 - cpu).abs()
    print(f"info stylegan_random with TF32: batch 8 vs 3 max {float(d3.max()):.2e}, "
          f"vs cpu mean {float(dc.mean()):.2e} max {float(dc.max()):.2e}")
    print(f"{len(FAILED)} failed: {FAILED}" if FAILED else "all GPU checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
