"""Histogram matching's per-value passes as two Triton kernels on CUDA (issue 17).

`histmatch.match_histograms` on a GPU spent most of its time in about a dozen full passes over
the values (bin positions: a multiply-add, floor, clamp, subtraction, integer conversion and row
offsets; torch.bincount, whose CUDA kernel does one global int64 atomic per value over all
rows' bins; two gathers from the lookup tables; a multiply-add). Here:

* `row_histograms`: one program per row walks the row in blocks, computes each value's bin as
  the torch code does ((x - lo) / step as fma(x, 1 / step, -lo / step): torch's addcmul is a
  fused multiply-add on CPU and on CUDA; then floor, clamp) and
  accumulates a block histogram in registers (tl.histogram): no atomics, one read of the row,
  exact integer counts;
* `apply_tables`: per value, the same bin and fraction, then fma(slope[bin], fraction, lut[bin])
  (torch's addcmul_).

The small per-row tables (min, max, CDFs, the lookup table and slopes) stay torch code. Every
float operation is the torch code's: the two multiply-adds as explicit fused multiply-adds (as
torch's addcmul computes them), nothing else contracted (compiled with enable_fp_fusion=False),
so under the Triton interpreter on CPU the result is the CPU torch path's bit for bit (tested),
and on CUDA the torch CUDA path's (checked by `benchmarks/gpu_check.py`).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - no triton: the torch code is used
    triton = None

MAX_BINS = 4095  # register histogram of up to 4096 bins (one padding bin for masked lanes)
_BLOCK = 1024


if triton is not None:

    @triton.jit
    def _fma(x, y, z, EMULATE: tl.constexpr):
        # x * y + z rounded once. The Triton interpreter's tl.fma rounds twice, so on CPU it is
        # emulated in float64 (the product of two float32 is exact there; the sum then rounds
        # to float64 and to float32, which differs from one rounding only in near-halfway
        # cases, about one value in 2**29)
        if EMULATE:
            return (x.to(tl.float64) * y.to(tl.float64) + z.to(tl.float64)).to(tl.float32)
        else:
            return tl.fma(x, y, z)

    @triton.jit(do_not_specialize=["n", "bins"])
    def _row_hist_kernel(x_ptr, a_ptr, inv_ptr, counts_ptr, n, bins, BLOCK: tl.constexpr,
                         NB: tl.constexpr, EMULATE: tl.constexpr):
        row = tl.program_id(0)
        base = x_ptr + row.to(tl.int64) * n
        a = tl.load(a_ptr + row)
        inv = tl.load(inv_ptr + row)
        top = bins - 1.0
        acc = tl.zeros((NB,), dtype=tl.int32)
        for start in range(0, n, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            m = offs < n
            x = tl.load(base + offs, mask=m, other=0.0)
            cell = tl.minimum(tl.maximum(tl.floor(_fma(x, inv, a, EMULATE)), 0.0), top)
            acc += tl.histogram(tl.where(m, cell.to(tl.int32), NB - 1), NB)
        k = tl.arange(0, NB)
        tl.store(counts_ptr + row.to(tl.int64) * bins + k, acc, mask=k < bins)

    @triton.jit(do_not_specialize=["n", "bins"])
    def _apply_kernel(x_ptr, out_ptr, a_ptr, inv_ptr, lut_ptr, slope_ptr, n, bins,
                      BLOCK: tl.constexpr, EMULATE: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        at = row.to(tl.int64) * n + offs
        x = tl.load(x_ptr + at, mask=m, other=0.0)
        a = tl.load(a_ptr + row)
        inv = tl.load(inv_ptr + row)
        pos = _fma(x, inv, a, EMULATE)
        cell = tl.minimum(tl.maximum(tl.floor(pos), 0.0), bins - 1.0)
        frac = pos - cell
        t = row.to(tl.int64) * (bins + 1) + cell.to(tl.int32)
        low = tl.load(lut_ptr + t, mask=m, other=0.0)
        slope = tl.load(slope_ptr + t, mask=m, other=0.0)
        tl.store(out_ptr + at, _fma(slope, frac, low, EMULATE), mask=m)


def _options(x: torch.Tensor) -> dict:
    if x.device.type == "cpu":  # the interpreter
        return {"EMULATE": True}
    return {"EMULATE": False, "enable_fp_fusion": False}


def bin_affine(x: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """lo, step (G,) as histmatch._bin_positions, and the per-row (a, inv) with pos = a + x inv."""
    lo, hi = torch.aminmax(x, dim=1)  # one pass (the same values as amin and amax)
    step = ((hi - lo) / bins).clamp_min(torch.finfo(x.dtype).tiny)
    inv = 1.0 / step
    return lo, step, (-lo) * inv, inv


def row_histograms(x: torch.Tensor, a: torch.Tensor, inv: torch.Tensor,
                   bins: int) -> torch.Tensor:
    """int32 counts (G, bins) of the rows of x (G, n) on the bins given by (a, inv)."""
    g, n = x.shape
    counts = torch.empty(g, bins, dtype=torch.int32, device=x.device)
    nb = triton.next_power_of_2(bins + 1)
    _row_hist_kernel[(g,)](x, a.contiguous(), inv.contiguous(), counts, n, bins,
                           BLOCK=_BLOCK, NB=nb, num_warps=4, **_options(x))
    return counts


def apply_tables(x: torch.Tensor, a: torch.Tensor, inv: torch.Tensor, lut: torch.Tensor,
                 slope: torch.Tensor) -> torch.Tensor:
    """lut[bin] + slope[bin] * fraction for every value of x (G, n); tables (G, bins + 1)."""
    g, n = x.shape
    bins = lut.shape[1] - 1
    out = torch.empty_like(x)
    grid = (g, triton.cdiv(n, _BLOCK))
    _apply_kernel[grid](x, out, a.contiguous(), inv.contiguous(), lut.contiguous(),
                        slope.contiguous(), n, bins, BLOCK=_BLOCK, num_warps=4, **_options(x))
    return out
