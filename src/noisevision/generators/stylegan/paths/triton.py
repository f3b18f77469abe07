"""The wavelet fast path's channel sums as one fused Triton kernel (CUDA; no activations in memory).

`synthesize_tied` needs, per layer, R weighted sums over the C channel maps
x_c = relu(alpha_c u + noise + beta_c) of one image (R = 9 tap rows, 12 with the ToRGB rows):

    out[b, r, p] = sum_c rows[b, c, r] * relu(alpha[b, c] * u[b, p] + noise[b, p] + beta[b, c])

Built with torch, the (B, C, P) activations make several full passes through GPU memory.
Here one program takes one image and a block of BLOCK_P pixels: it loads its u and noise once,
then walks the channels c = 0, 1, ..., C - 1 in order, building x_c for its pixels in registers
and adding rows[b, c, :] x_c into an (R, BLOCK_P) float32 accumulator (an outer-product update:
about R + 3 float operations per pixel and channel, no reduction across threads), and stores
the R sums once. The R rows are split into two power-of-two tiles (12 = 8 + 4, 9 = 8 + 1,
3 = 2 + 1) so that no padded row costs work. All arithmetic is float32 (no tensor cores, no
tf32): tl.dot in "ieee" precision would lower to the same FMAs, plus per-chunk operand layout
conversions through shared memory. u, noise and x are (1, BLOCK_P) tiles so that every tensor
has the accumulators' register layout (a 1-D x needs a shared-memory layout conversion per
channel); the compiled loop is described in BENCHMARKS.md.

Each pixel's sum is one sequential chain over c (the block size depends on P only), so an
image's output is bit-identical whatever batch it is computed in.

Import never fails: without Triton, `available` is False (the torch path stays in use).
Tested under the Triton interpreter on CPU (TRITON_INTERPRET=1, set before triton is imported).
"""

from __future__ import annotations

import torch

from noisevision.device import triton_available

try:  # torch wheels without CUDA (macOS, Windows, CPU-only) may have no triton
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any import problem means "not available"
    triton = None

MAX_ROWS = 16
_MAX_GRID_Y = 65535  # CUDA's limit on grid axis 1 (the batch): larger batches are launched in parts


def available(device: torch.device | str) -> bool:
    """Whether these kernels run on `device`: noisevision.device.triton_available."""
    return triton is not None and triton_available(device)


if triton is not None:

    @triton.jit
    def _fused_relu_sums_kernel(u_ptr, noise_ptr, alpha_ptr, beta_ptr, rows_ptr, out_ptr, C, P,
                                R: tl.constexpr, R_HI: tl.constexpr, R_LO: tl.constexpr,
                                HAS_NOISE: tl.constexpr, HAS_BETA: tl.constexpr,
                                BLOCK_P: tl.constexpr):
        # program (pixel block, image b); rows R_HI..R-1 go to a second tile of R_LO (pow2) rows.
        # 2-D (1, BLOCK_P) pixel tiles: one register layout for all tensors (none converted)
        b = tl.program_id(1).to(tl.int64)
        offs = (tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P))[None, :]
        pmask = offs < P
        u = tl.load(u_ptr + b * P + offs, mask=pmask, other=0.0)
        if HAS_NOISE:
            n = tl.load(noise_ptr + b * P + offs, mask=pmask, other=0.0)
        a_row = alpha_ptr + b * C
        bias_row = beta_ptr + b * C
        w_row = rows_ptr + b * C * R
        r_hi = tl.arange(0, R_HI)
        acc_hi = tl.zeros([R_HI, BLOCK_P], dtype=tl.float32)
        if R_LO > 0:
            r_lo = tl.arange(0, R_LO)
            acc_lo = tl.zeros([R_LO, BLOCK_P], dtype=tl.float32)
        for c in range(0, C):  # fixed order: the same chain for every pixel, batch and block
            t = tl.load(a_row + c) * u
            if HAS_NOISE:
                t = t + n
            if HAS_BETA:
                t = t + tl.load(bias_row + c)
            x = tl.maximum(t, 0.0)
            w_hi = tl.load(w_row + c * R + r_hi)
            acc_hi += w_hi[:, None] * x
            if R_LO > 0:
                w_lo = tl.load(w_row + c * R + R_HI + r_lo, mask=r_lo < R - R_HI, other=0.0)
                acc_lo += w_lo[:, None] * x
        out_img = out_ptr + b * R * P
        tl.store(out_img + r_hi[:, None] * P + offs, acc_hi,
                 mask=(r_hi[:, None] < R) & pmask)
        if R_LO > 0:
            tl.store(out_img + (R_HI + r_lo[:, None]) * P + offs, acc_lo,
                     mask=(r_lo[:, None] < R - R_HI) & pmask)


def _check(name: str, t: torch.Tensor, shape: tuple[int, ...], device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise ValueError(f"{name} must be float32, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, u on {device}")


def _config(p: int) -> tuple[int, int]:
    """(BLOCK_P, num_warps): 8 pixels per thread (4 for the smallest maps)."""
    block_p = min(1024, max(128, triton.next_power_of_2(p)))
    return block_p, max(1, block_p // 256)


def fused_relu_sums(u: torch.Tensor, noise: torch.Tensor | None, alpha: torch.Tensor,
                    beta: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """out[b, r, p] = sum_c rows[b, c, r] relu(alpha[b, c] u[b, p] + noise[b, p] + beta[b, c]).

    u, noise: (B, P); alpha, beta: (B, C); rows: (B, C, R) with 1 <= R <= 16; all float32 on
    one device (noise / beta None mean zero). Returns the (B, R, P) float32 sums, contiguous,
    accumulated in float32 over c in order (bit-identical per image whatever the batch).
    """
    if not isinstance(u, torch.Tensor) or u.dim() != 2:
        raise ValueError(f"u must be a (B, P) tensor, got {getattr(u, 'shape', type(u))}")
    device = u.device
    b, p = u.shape
    if not isinstance(alpha, torch.Tensor) or alpha.dim() != 2:
        raise ValueError(f"alpha must be a (B, C) tensor, got {getattr(alpha, 'shape', alpha)}")
    c = alpha.shape[1]
    if not isinstance(rows, torch.Tensor) or rows.dim() != 3:
        raise ValueError(f"rows must be a (B, C, R) tensor, got {getattr(rows, 'shape', rows)}")
    r = rows.shape[2]
    if not 1 <= r <= MAX_ROWS:
        raise ValueError(f"rows must have 1 <= R <= {MAX_ROWS} sums, got R = {r}")
    _check("u", u, (b, p), device)
    _check("alpha", alpha, (b, c), device)
    _check("rows", rows, (b, c, r), device)
    if noise is not None:
        _check("noise", noise, (b, p), device)
    if beta is not None:
        _check("beta", beta, (b, c), device)
    if not available(device):
        raise RuntimeError(f"fused_relu_sums needs triton and a CUDA device (or CPU with "
                           f"TRITON_INTERPRET=1), got {device}")
    out = torch.empty(b, r, p, dtype=torch.float32, device=device)
    if b == 0 or p == 0:
        return out
    u, alpha, rows = u.contiguous(), alpha.contiguous(), rows.contiguous()
    noise = None if noise is None else noise.contiguous()
    beta = None if beta is None else beta.contiguous()
    r_hi = 1 << (r.bit_length() - 1)  # largest power of two <= R
    r_lo = 0 if r == r_hi else triton.next_power_of_2(r - r_hi)
    block_p, num_warps = _config(p)
    for s in range(0, b, _MAX_GRID_Y):
        e = min(b, s + _MAX_GRID_Y)
        grid = (triton.cdiv(p, block_p), e - s)
        _fused_relu_sums_kernel[grid](
            u[s:e], u[s:e] if noise is None else noise[s:e], alpha[s:e],
            alpha[s:e] if beta is None else beta[s:e], rows[s:e], out[s:e], c, p,
            R=r, R_HI=r_hi, R_LO=r_lo, HAS_NOISE=noise is not None, HAS_BETA=beta is not None,
            BLOCK_P=block_p, num_warps=num_warps)
    return out
