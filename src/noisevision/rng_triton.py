"""`ImageRandom`'s hash as single Triton kernels on CUDA (bit-identical to the torch code).

In torch, one `ImageRandom.bits` call is about 35 elementwise kernels (the overflow-free int64
lowbias32 of rng.py, twice) and each new stream's keys about 40 more; a StyleGAN batch makes
thousands of such small launches, so on a GPU the host's launch rate, not the GPU, set the speed.
These kernels do the same int64 arithmetic (products stay below 2**48, nothing overflows), so
their bits are the torch path's on any device: tested under the Triton interpreter on CPU
(TRITON_INTERPRET=1) and on GPU by `benchmarks/gpu_check.py`.

Import never fails: without Triton, `available` is False and rng.py keeps its torch code.
"""

from __future__ import annotations

import torch

from noisevision.device import triton_available
from noisevision.rng import LOWBIAS32_MULS, LOWBIAS32_SHIFTS

try:  # torch wheels without CUDA (macOS, Windows, CPU-only) may have no triton
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any import problem means "not available"
    triton = None

_BLOCK = 1024


def available(device: torch.device | str) -> bool:
    """Whether these kernels run on `device`: noisevision.device.triton_available."""
    return triton is not None and triton_available(device)


if triton is not None:

    @triton.jit
    def _mul32(x, lo: tl.constexpr, hi: tl.constexpr):
        # (x * c) mod 2**32 for int64 x in [0, 2**32), c = hi * 2**16 + lo, as rng._mul32
        return (x * lo + (((x * hi) & 0xFFFF) << 16)) & 0xFFFFFFFF

    # rng.mix32's steps with its constants (rng.LOWBIAS32_*), multipliers as 16-bit halves
    _S1, _S2, _S3 = (tl.constexpr(v) for v in LOWBIAS32_SHIFTS)
    _M1_LO, _M1_HI = tl.constexpr(LOWBIAS32_MULS[0] & 0xFFFF), tl.constexpr(LOWBIAS32_MULS[0] >> 16)
    _M2_LO, _M2_HI = tl.constexpr(LOWBIAS32_MULS[1] & 0xFFFF), tl.constexpr(LOWBIAS32_MULS[1] >> 16)

    @triton.jit
    def _mix32(x):
        x = x ^ (x >> _S1)
        x = _mul32(x, _M1_LO, _M1_HI)
        x = x ^ (x >> _S2)
        x = _mul32(x, _M2_LO, _M2_HI)
        return x ^ (x >> _S3)

    @triton.jit
    def _word(hi, lo, zero64):
        # a 32-bit word passed as two 16-bit int32 halves (Triton types Python ints in
        # [2**31, 2**32) as uint32; halves keep every scalar a plain positive int32). The
        # halves may arrive as int32 scalars or, when Triton specializes a value such as 1, as
        # compile-time ints: adding them to an int64 zero tensor works for both.
        return ((zero64 + hi) << 16) | (zero64 + lo)

    # The key words and counter starts are data, not shapes: Triton would specialise each
    # integer argument on its value being 1 or a multiple of 16, so every new stream name (a
    # dead-leaves block, a StyleGAN layer) could compile another copy of these kernels (about
    # a second each, measured as the first generator of a GPU benchmark running slower)
    @triton.jit(do_not_specialize=["start_hi", "start_lo"])
    def _bits_kernel(ka_ptr, kb_ptr, out_ptr, start_hi, start_lo, n, BLOCK: tl.constexpr):
        b = tl.program_id(1)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        ka = tl.load(ka_ptr + b)
        kb = tl.load(kb_ptr + b)
        ctr = (_word(start_hi, start_lo, offs * 0) + offs) & 0xFFFFFFFF
        x = _mix32((_mul32(ctr, 0x79B9, 0x9E37) + ka) & 0xFFFFFFFF)
        x = _mix32(x ^ kb)
        tl.store(out_ptr + b.to(tl.int64) * n + offs, x, mask=mask)

    @triton.jit(do_not_specialize=["w0h", "w0l", "w1h", "w1l", "w2h", "w2l"])
    def _keys_kernel(idx_ptr, ka_ptr, kb_ptr, w0h, w0l, w1h, w1l, w2h, w2l, n,
                     BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        idx = tl.load(idx_ptr + offs, mask=mask, other=0)
        z = idx * 0
        w0, w1, w2 = _word(w0h, w0l, z), _word(w1h, w1l, z), _word(w2h, w2l, z)
        lo = idx & 0xFFFFF
        hi = idx >> 20
        ka = _mix32(_mix32(lo ^ w0) ^ (hi * 0x9E37 & 0xFFFFFFFF))
        ka = _mix32(ka ^ w1)
        kb = _mix32(ka ^ w2)
        tl.store(ka_ptr + offs, ka, mask=mask)
        tl.store(kb_ptr + offs, kb, mask=mask)


def _halves(word: int) -> tuple[int, int]:
    return word >> 16, word & 0xFFFF


def keys(indices: torch.Tensor, w0: int, w1: int, w2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (B, 1) int64 keys of rng.ImageRandom for int64 `indices` (B,)."""
    n = indices.numel()
    idx = indices.contiguous()
    ka = torch.empty(n, dtype=torch.int64, device=idx.device)
    kb = torch.empty_like(ka)
    if n:
        _keys_kernel[(triton.cdiv(n, _BLOCK),)](idx, ka, kb, *_halves(w0), *_halves(w1),
                                                *_halves(w2), n, BLOCK=_BLOCK)
    return ka[:, None], kb[:, None]


def bits(key_a: torch.Tensor, key_b: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """(B, n) int64 words: counters start..start+n-1 hashed with each row's keys."""
    b = key_a.shape[0]
    out = torch.empty(b, n, dtype=torch.int64, device=key_a.device)
    if b and n:
        grid = (triton.cdiv(n, _BLOCK), b)
        _bits_kernel[grid](key_a.contiguous(), key_b.contiguous(), out,
                           *_halves(start & 0xFFFFFFFF), n, BLOCK=_BLOCK)
    return out
