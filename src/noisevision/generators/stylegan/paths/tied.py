"""The wavelet variants' path: filters tied to input channels, no dense convolution at all.

For High-freq, Sparse and Oriented, layer weights are W[o, i] = a_o f_{k(i)} (a filter from the
bank tied to the input channel, an amplitude per output channel). Modulation gives
a_o s_i f_{k(i)} and demodulation d_o = (a_o^2 E + eps)^-1/2 with E = sum_i s_i^2 |f_{k(i)}|^2,
so every output channel is c_o * m with c_o = a_o d_o and the single map
m = sum_i s_i f_{k(i)} * x_i. As the filters are 3x3, m is the shifted sum (col2im) of 9 tap maps
P_t = sum_i s_i f_{k(i)}[t] x_i: one (B, 9, C_in) x (B, C_in, HW) batched matmul per layer,
shared with the ToRGB rows where both read the same activations (`synthesize_tied`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noisevision.generators.stylegan.filters import blur_after_transpose, upsample2x
from noisevision.generators.stylegan.network import (
    ACT_GAIN,
    DEMOD_EPS,
    ConvParams,
    Layer,
    RGBParams,
)


@dataclass(kw_only=True)
class TiedParams(ConvParams):
    """A conv layer of the tied path: per-image filter indices and amplitudes."""

    k: torch.Tensor  # filter index per input channel (B, C_in)
    a: torch.Tensor  # amplitude per output channel (B, C_out)


def tap_matrix(p: TiedParams, bank9: torch.Tensor) -> torch.Tensor:
    """(B, C_in, 9) with T[i, t] = s_i f_{k(i)}[t]: the 9 taps of the modulated tied filters.

    `bank9` is the (40, 9) bank in the tap order `taps_to_map` expects (flipped for non-up).
    Matmuls read it transposed, (B, 9, C_in), as a strided view (no copy).
    """
    return F.embedding(p.k, bank9) * p.s[:, :, None]


def rgb_matrix(layer: Layer, p: RGBParams) -> torch.Tensor:
    """(B, C_in, 3) ToRGB weights: 1x1 modulated, no demodulation, style gain 1/sqrt(C_in)."""
    return p.weight.transpose(1, 2) * (p.s[:, :, None] / math.sqrt(layer.c_in))


def taps_to_map(taps: torch.Tensor, side: int, up: bool) -> torch.Tensor:
    """Sum the 9 tap maps (B, 9, side^2) into one map (B, 1, R, R), shifted as a 3x3 filter.

    F.fold (col2im) adds tap t = 3 dy + dx of input pixel (y, x) into output pixel
    (stride y + dy - pad, stride x + dx - pad). Up: stride 2, no padding, a (2 side + 1)^2 grid:
    the stride-2 transposed convolution, then the [1,3,3,1] FIR. Not up: stride 1, padding 1,
    which is the 3x3 correlation of F.conv2d(padding=1) when the taps are flipped (tap 8 - t),
    as `synthesize_tied` does. col2im sums in a fixed order per image, independent of the batch.
    """
    if up:
        z = F.fold(taps, (2 * side + 1, 2 * side + 1), 3, stride=2)
        return blur_after_transpose(z)
    return F.fold(taps, (side, side), 3, padding=1)


def relu_mix_table(u: torch.Tensor, w: torch.Tensor, sign: torch.Tensor | None,
                   alpha: torch.Tensor, kappa: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """out[b, r, p] = sum_i rows[b, i, r] relu(alpha_i u_p + kappa_i s_p w_p), without the C maps.

    u, w: (B, P) per-pixel values with w >= 0; sign: (B, P) bool, True where s_p = -1 (None: all
    +1); alpha, kappa: (B, C); rows: (B, C, R). For w > 0, channel i is active iff
    alpha_i t + kappa_i s > 0 with t = u / w: a threshold tau_i = -kappa_i s / alpha_i on t, so the
    sum is piecewise linear in t, A_j u + B_j w on the interval j between sorted thresholds. The
    tables A, B (prefix sums of the per-channel terms in threshold order, in float64) cost O(C R)
    per image; each pixel costs one binary search and one 2R-float table row instead of C channel
    values and an R x C matmul. Exact up to float rounding (at a threshold the channel is zero, so
    either interval gives the same value); w = 0 gives t = +-inf, the limit, or nan with u = 0,
    where every term is zero.
    """
    b, c = alpha.shape
    r = rows.shape[-1]
    ns = 1 if sign is None else 2  # tables for s = +1 (and -1)
    a64 = alpha.double()[:, None].expand(b, ns, c)  # (B, S, C)
    k64 = kappa.double()[:, None] * torch.tensor([1.0, -1.0][:ns], dtype=torch.float64,
                                                 device=alpha.device)[None, :, None]
    tau = torch.where(a64 != 0, -k64 / a64, torch.inf)  # threshold on t; never for alpha = 0
    tau_s, order = torch.sort(tau, dim=2, stable=True)
    on = (a64 < 0) | ((a64 == 0) & (k64 > 0))  # active as t -> -inf
    rows64 = rows.double()[:, None]  # (B, 1, C, R)
    terms = torch.cat([(rows64 * a64[..., None]), (rows64 * k64[..., None])], 3)  # (B,S,C,2R)
    base = (terms * on[..., None]).sum(2, keepdim=True)  # (B, S, 1, 2R)
    # crossing tau_i, channel i enters (alpha_i > 0) or leaves (alpha_i < 0) the active set
    delta = torch.gather(terms * torch.sign(a64)[..., None], 2,
                         order[..., None].expand(-1, -1, -1, 2 * r))
    table = torch.cat([base, delta.cumsum(2).add_(base)], 2)  # (B, S, C + 1, 2R)
    tau_s = tau_s.to(u.dtype)
    t = u / w
    j = torch.searchsorted(tau_s[:, 0].contiguous(), t)  # thresholds below t: the interval
    if sign is not None:
        j = torch.where(sign, torch.searchsorted(tau_s[:, 1].contiguous(), t) + (c + 1), j)
    j += (torch.arange(b, device=u.device) * (ns * (c + 1)))[:, None]
    ab = F.embedding(j, table.reshape(-1, 2 * r).to(u.dtype))  # (B, P, 2R)
    out = ab[..., :r] * u[..., None]
    out.addcmul_(ab[..., r:], w[..., None])
    return out.transpose(1, 2)


CHUNK_ELEMENTS = 1 << 20  # CPU: activations built per image in chunks of ~4 MiB (cache-sized)


def _materialized_sums(u: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor,
                       beta: torch.Tensor, rows: torch.Tensor, dtype: torch.dtype,
                       buffer) -> torch.Tensor:
    """sum_i rows[b, i, r] relu(alpha_i u + noise + beta_i) with the channel maps built.

    With one CPU intra-op thread, each image's (C, HW) activations are built and reduced chunk
    by chunk in a reused cache-sized workspace (about 2x faster than whole-batch passes through
    memory; the same calls for an image whatever its batch). With several threads (and on GPU),
    whole-batch passes into a reused workspace: per-chunk parallel regions cost more than they
    save there (measured 2-5x slower with 2 threads on a loaded 2-core machine).
    """
    b, c = alpha.shape
    hw = u.shape[1]
    a, n, bias = alpha[:, :, None].to(dtype), noise[:, None].to(dtype), beta[:, :, None].to(dtype)
    uu, rows_t = u[:, None].to(dtype), rows.to(dtype).transpose(1, 2)  # (B, R, C) view
    if u.device.type != "cpu" or torch.get_num_threads() > 1:
        x = buffer(b * c * hw, dtype, u.device).view(b, c, hw)
        torch.addcmul(n, a, uu, out=x)
        return torch.bmm(rows_t, x.add_(bias).relu_())
    out = torch.empty(b, rows.shape[-1], hw, dtype=dtype, device=u.device)
    step = min(hw, max(256, CHUNK_ELEMENTS // c))
    work = buffer(c * step, dtype, u.device)
    for i in range(b):
        for p0 in range(0, hw, step):
            sl = slice(p0, min(hw, p0 + step))
            x = work[:c * (sl.stop - p0)].view(c, sl.stop - p0)
            torch.addcmul(n[i, :, sl], a[i], uu[i, :, sl], out=x)
            torch.mm(rows_t[i], x.add_(bias[i]).relu_(), out=out[i, :, sl])
    return out


def synthesize_tied(const: torch.Tensor, layers: list[Layer], params: list,
                    bank: torch.Tensor, buffer, fused: bool = False,
                    skip_padding: str = "zero") -> torch.Tensor:
    """Fast path for W[o, i] = a_o f_{k(i)} (filter tied to the input, amplitude per output).

    Modulation gives a_o s_i f_{k(i)}; demodulation d_o = (a_o^2 E + eps)^-1/2 with
    E = sum_i s_i^2 |f_{k(i)}|^2, so every output channel is c_o z + noise + bias with c_o = a_o d_o
    and ONE map per image z = sum_i s_i f_{k(i)} * x_i. Since the filters are 3x3, z is the shifted
    sum of 9 tap maps P_t = sum_i s_i f_{k(i)}[t] x_i (12 rows when the ToRGB of the same
    activations is computed with them), so no dense convolution is needed. The rows are computed
    from the activations x_i = relu(g (c_i z + noise + b_i)) in one of two ways:

    * without bias or without noise, x_i = relu(alpha_i u + kappa_i w) with two per-pixel maps,
      and the weighted channel sums are piecewise linear in u / w: `relu_mix_table`, which never
      builds the C channel maps;
    * with both, the activations are written into `buffer(numel, dtype, device)`, a reused flat
      workspace (fresh multi-megabyte tensors cost page faults on every layer), and reduced by a
      (R, C) x (C, HW) matmul per image (`_materialized_sums`).

    `fused` (CUDA, the plan decides): the channel sums run as one Triton kernel (paths/triton.py)
    that keeps the C maps in registers.
    """
    b = const.shape[0]
    dtype = const.dtype
    nk = bank.shape[0]
    bank9_up = bank.reshape(nk, 9)  # tap t = 3 dy + dx, as the transposed convolution adds it
    bank9 = bank.flip(1, 2).reshape(nk, 9)  # correlation: tap t reads pixel (y + 1 - dy, ...)

    def taps_of(li: int) -> torch.Tensor:
        return tap_matrix(params[li], bank9_up if layers[li].up else bank9)

    x = const.reshape(b, layers[0].c_in, -1)  # dense (B, C, HW) activations, or None
    lazy = None  # (u, noise, alpha, beta) of the last conv's output when x is None

    def weighted_sums(rows: torch.Tensor) -> torch.Tensor:
        """(B, C, R) rows -> (B, R, HW) sums over the current activations' channels."""
        nonlocal x
        if x is None:
            u, noise, alpha, beta = lazy
            if fused:  # CUDA: one Triton kernel, the C maps stay in registers
                from noisevision.generators.stylegan.paths.triton import fused_relu_sums

                return fused_relu_sums(u, noise, alpha, beta, rows.float()).to(dtype)
            if beta is None and noise is not None:
                return relu_mix_table(u, noise.abs(), noise < 0, alpha, torch.ones_like(alpha),
                                      rows.float()).to(dtype)
            if noise is None:
                ones = torch.ones_like(u)
                beta = torch.zeros_like(alpha) if beta is None else beta
                return relu_mix_table(u, ones, None, alpha, beta, rows.float()).to(dtype)
            return _materialized_sums(u, noise, alpha, beta, rows, dtype, buffer)
        return torch.bmm(rows.to(dtype).transpose(1, 2), x)

    res = const.shape[-1]
    taps_t = taps_of(0)
    taps = weighted_sums(taps_t)  # (B, 9, HW) of layer 0
    img = None
    for li, (layer, p) in enumerate(zip(layers, params, strict=True)):
        if layer.kind == "torgb":
            rows = rgb_matrix(layer, p)
            nxt = li + 1 < len(layers)
            if nxt:  # the next conv reads the same activations: one pass for both
                taps_t = taps_of(li + 1)
                rows = torch.cat([rows, taps_t], 2)
            out = weighted_sums(rows)  # (B, 3 [+ 9], HW)
            rgb = out[:, :3].reshape(b, 3, res, res).float()
            img = rgb if img is None else upsample2x(img, skip_padding) + rgb
            if nxt:
                taps = out[:, 3:]
            continue
        if taps is None:  # conv1 of a block: its input is conv0's output
            taps_t = taps_of(li)
            taps = weighted_sums(taps_t)
        z = taps_to_map(taps, res, layer.up)  # (B, 1, R, R)
        res = z.shape[-1]
        taps = None
        energy = taps_t.square().sum((1, 2))[:, None]  # sum_i s_i^2 |f_k(i)|^2, (B, 1)
        c = p.a * torch.rsqrt(p.a.square() * energy + DEMOD_EPS)  # (B, C_out)
        # relu(c z + noise + b) * g == relu(g c z + g noise + g b) for g > 0
        noise = None if p.noise is None else p.noise.reshape(b, -1).float() * ACT_GAIN
        bias = None if p.bias is None else p.bias.float() * ACT_GAIN
        x, lazy = None, (z.reshape(b, -1).float(), noise, c * ACT_GAIN, bias)
    return img


