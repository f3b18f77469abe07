"""A clean-room StyleGAN2-style synthesis network with random (untrained) weights.

Written from Karras et al. 2020 ("Analyzing and improving the image quality of StyleGAN") as
summarised in Baradad et al. 2021 section 3.4 and reference-implementation.md section 5.1:
learned-constant 4x4 input, modulated + demodulated 3x3 convolutions, 2x upsampling by a stride-2
transposed convolution and a [1,3,3,1] FIR, noise inputs, bias, ReLU with gain sqrt(2), and a
1x1 modulated ToRGB per resolution summed through upsampled skips. The mapping network is
bypassed: per-layer latents w ~ N(0, I) go through LeakyReLU(0.2).

Two synthesis paths compute the same images:

* `synthesize_reference`: the plain network, one dense modulated weight per image and layer
  (grouped convolution over the batch). Slow; used as the definition in tests.
* fast paths exploit structure. For shared dense weights (StyleGAN-Random) the modulation moves
  onto the activations (x * s, one shared conv, output * d): `conv_shared`, whose shared conv is
  a Winograd F(4, 3) convolution where `LayerParams.winograd` holds the transformed weight.
  For the wavelet variants, where layer weights are W[o, i] = a_o f_{k(i)} (filter tied to the
  input channel, amplitude per output channel), modulation gives a_o s_i f_{k(i)} and demodulation
  d_o = (a_o^2 E + eps)^-1/2 with E = sum_i s_i^2 |f_{k(i)}|^2, so every output channel is
  c_o * m with c_o = a_o d_o and the single map m = sum_i s_i f_{k(i)} * x_i. As the filters are
  3x3, m is the shifted sum (col2im) of 9 tap maps P_t = sum_i s_i f_{k(i)}[t] x_i: one
  (B, 9, C_in) x (B, C_in, HW) batched matmul per layer, shared with the ToRGB rows where both
  read the same activations (`synthesize_tied`). No dense convolution is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noisevision.device import triton_wanted
from noisevision.generators.stylegan_filters import (
    blur_after_transpose,
    conv_transpose_stride2,
    upsample2x,
)
from noisevision.generators.stylegan_winograd import (
    WINOGRAD_TILE,
    upsample_weight,
    winograd_conv,
    winograd_upsample,
)
from noisevision.generators.stylegan_winograd import plan as winograd_plan

DEMOD_EPS = 1e-8  # added to the demodulation sum of squares (StyleGAN2)
ACT_GAIN = math.sqrt(2.0)  # ReLU gain (StyleGAN2 bias_act)


@dataclass(frozen=True)
class Layer:
    """One synthesis layer: a 3x3 modulated conv ("conv") or a 1x1 ToRGB ("torgb")."""

    kind: str
    res: int  # output side in px
    c_in: int
    c_out: int
    up: bool  # conv0 of a block: 2x upsampling
    w_index: int  # which per-layer latent drives its style


def channels(res: int, width: float) -> int:
    """Channels at a resolution: min(32768 / res, 512) (reference section 5.1) times width."""
    return max(1, int(round(min(32768 // res, 512) * width)))


def build_layers(resolution: int, width: float) -> list[Layer]:
    """Layers in order; ToRGB of a block shares its latent with the next block's conv0."""
    c4 = channels(4, width)
    layers = [Layer("conv", 4, c4, c4, False, 0), Layer("torgb", 4, c4, 3, False, 1)]
    res, j = 8, 1
    while res <= resolution:
        c_prev, c = channels(res // 2, width), channels(res, width)
        layers += [Layer("conv", res, c_prev, c, True, 2 * j - 1),
                   Layer("conv", res, c, c, False, 2 * j),
                   Layer("torgb", res, c, 3, False, 2 * j + 1)]
        res, j = res * 2, j + 1
    return layers


def num_ws(resolution: int) -> int:
    """Number of per-layer latents: 2 log2(R) - 2 (12 at 128 px, 14 at 256, 16 at 512)."""
    return 2 * int(math.log2(resolution)) - 2


@dataclass
class LayerParams:
    """Per-image values of one layer; tensors have a leading batch dimension B."""

    s: torch.Tensor  # (B, C_in) styles
    weight: torch.Tensor | None = None  # dense weights, per image: (B, C_out, C_in, 3, 3)
    k: torch.Tensor | None = None  # tied filter index per input channel (B, C_in), fast wavelets
    a: torch.Tensor | None = None  # amplitude per output channel (B, C_out), fast wavelets
    shared: torch.Tensor | None = None  # one dense weight shared by all images (fast random)
    shared_sq: torch.Tensor | None = None  # `shared`'s sum of squares over taps (O, I), cached
    parity: tuple | None = None  # `shared`'s parity sub-kernels (up layers), cached per network
    # `shared` in the Winograd domain: F(4, 3) (36, O, I), or for up layers F(m, 2) parity
    # kernels ((m + 2)^2, O, I) (stylegan_winograd.transform_up_weight)
    winograd: torch.Tensor | None = None
    fold: torch.Tensor | None = None  # up layers: `fold_weight(shared)`, (4 O, I, 3, 3)
    bias: torch.Tensor | None = None  # (B, C_out) or None (zero)
    noise: torch.Tensor | None = None  # strength-scaled noise (B, 1, H, W) or None
    rgb_weight: torch.Tensor | None = None  # ToRGB (B, 3, C_in)


def _finish(y: torch.Tensor, p: LayerParams) -> torch.Tensor:
    """Noise, bias, ReLU with gain sqrt(2) (StyleGAN2 order: conv, + noise, + bias, act).

    In place on the fresh convolution output `y` (full-size passes dominate the fast paths).
    """
    if p.noise is not None:
        y.add_(p.noise.to(y.dtype))
    if p.bias is not None:
        y.add_(p.bias[:, :, None, None].to(y.dtype))
    return y.relu_().mul_(ACT_GAIN)


def conv_reference(x: torch.Tensor, layer: Layer, p: LayerParams) -> torch.Tensor:
    """Plain modulated/demodulated conv with one dense weight per image (grouped conv)."""
    b, _, h, w = x.shape
    wt = p.weight * p.s[:, None, :, None, None]  # (B, O, I, 3, 3)
    wt = wt * torch.rsqrt(wt.square().sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS)
    xg = x.reshape(1, b * layer.c_in, h, w)
    if layer.up:
        wt_t = wt.transpose(1, 2).reshape(b * layer.c_in, layer.c_out, 3, 3)
        y = blur_after_transpose(F.conv_transpose2d(xg, wt_t, stride=2, groups=b))
    else:
        y = F.conv2d(xg, wt.reshape(b * layer.c_out, layer.c_in, 3, 3), padding=1, groups=b)
    return _finish(y.reshape(b, layer.c_out, *y.shape[-2:]), p)


def conv_raw(xs: torch.Tensor, layer: Layer, p: LayerParams) -> torch.Tensor:
    """The shared dense conv of modulated activations `xs`, before demodulation."""
    wt = p.shared  # (O, I, 3, 3)
    if p.winograd is not None:  # Winograd: see stylegan_winograd
        if layer.up:  # F(m, 2) on the transposed conv's parity kernels, then the blur
            return winograd_upsample(xs, p.winograd)
        return winograd_conv(xs, p.winograd, winograd_plan("same", WINOGRAD_TILE))  # F(4, 3)
    if p.fold is not None:
        return fold_upsample(xs, p.fold)
    if layer.up:
        parts = p.parity
        return blur_after_transpose(conv_transpose_stride2(
            xs, wt.to(xs.dtype) if parts is None else None, parts))
    return F.conv2d(xs, wt.to(xs.dtype), padding=1)


def demodulation(p: LayerParams) -> torch.Tensor:
    """(B, O) 1 / ||W_o s||: the demodulation of shared weights under per-image styles."""
    wsq = p.shared_sq if p.shared_sq is not None else p.shared.square().sum(dim=(2, 3))
    sq = (p.s.square()[:, None, :] * wsq[None]).sum(-1)
    return torch.rsqrt(sq + DEMOD_EPS)


def conv_shared(x: torch.Tensor, layer: Layer, p: LayerParams) -> torch.Tensor:
    """Dense weights shared by the batch: modulate activations, one conv, demodulate outputs."""
    d = demodulation(p)
    xs = x.mul_(p.s[:, :, None, None].to(x.dtype))  # in place: its ToRGB has already read x
    y = conv_raw(xs, layer, p)
    if p.noise is None and p.bias is None:  # relu(y d) g == relu(y) (d g) as d > 0: one pass less
        return y.relu_().mul_((d * ACT_GAIN)[:, :, None, None].to(y.dtype))
    return _finish(y.mul_(d[:, :, None, None].to(y.dtype)), p)


def synthesize_shared(const: torch.Tensor, layers: list[Layer],
                      params: list[LayerParams]) -> torch.Tensor:
    """`synthesize` with `conv_shared` for layers without noise or bias, one pass less a layer.

    The activation after a conv is relu(y d) g = relu(y) (d g) with d g > 0 per (image,
    channel), so only relu(y) is written and the scale d g stays pending: the ToRGB reads relu(y)
    with its weights scaled by it, and the next conv's modulation multiplies by s (d g) in the
    same pass that applied s alone. Equal to `synthesize(..., conv_shared)` up to rounding.
    """
    act, scale, img = const, None, None  # the activation is act * scale (scale None: 1)
    for layer, p in zip(layers, params, strict=True):
        if layer.kind == "torgb":
            rgb = to_rgb(act, layer, p, scale).float()
            img = rgb if img is None else upsample2x(img) + rgb
            continue
        s = p.s if scale is None else p.s * scale
        y = conv_raw(act.mul_(s[:, :, None, None].to(act.dtype)), layer, p)
        act, scale = y.relu_(), demodulation(p) * ACT_GAIN
    return img


def fold_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) -> (4 O, I, 3, 3) float32, rows ordered (parity ey, ex, o): the 2x upsampling
    layer (stride-2 transposed conv, then the [1,3,3,1] blur) as one stride-1 3x3 correlation per
    output parity (stylegan_winograd.upsample_weight, exact), for `fold_upsample`."""
    # rows (o, ey, ex); float64, once per network, on the weight's device: on a GPU the network
    # is drawn there, and building it on the CPU (a device-to-host copy, a float64 einsum on
    # the host and a copy back) cost about half of StyleGAN-Random's time per 400 images
    k = upsample_weight(weight.detach())
    o = weight.shape[0]
    k = k.reshape(o, 4, *k.shape[1:]).transpose(0, 1).reshape(k.shape)
    return k.float().contiguous()


def fold_upsample(x: torch.Tensor, w4: torch.Tensor) -> torch.Tensor:
    """(B, I, h, w) -> (B, O, 2h, 2w): one 3x3 conv to the 4 parities, then a pixel shuffle.

    Output pixel (2q + ey, 2r + ex) of channel o is conv channel (2 ey + ex) O + o at (q, r).
    Keeps x's memory format (channels-last stays channels-last: one copy for the shuffle).
    """
    b, _, h, w = x.shape
    o = w4.shape[0] // 4
    y = F.conv2d(x, w4, padding=1)  # (B, 4 O, h, w)
    if y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous():
        t = y.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2, o).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(b, 2 * h, 2 * w, o).permute(0, 3, 1, 2)
    t = y.reshape(b, 2, 2, o, h, w).permute(0, 3, 4, 1, 5, 2)  # (b, o, q, ey, r, ex)
    return t.reshape(b, o, 2 * h, 2 * w)


def tap_matrix(p: LayerParams, bank9: torch.Tensor) -> torch.Tensor:
    """(B, C_in, 9) with T[i, t] = s_i f_{k(i)}[t]: the 9 taps of the modulated tied filters.

    `bank9` is the (40, 9) bank in the tap order `taps_to_map` expects (flipped for non-up).
    Matmuls read it transposed, (B, 9, C_in), as a strided view (no copy).
    """
    return F.embedding(p.k, bank9) * p.s[:, :, None]


def rgb_matrix(layer: Layer, p: LayerParams) -> torch.Tensor:
    """(B, C_in, 3) ToRGB weights: 1x1 modulated, no demodulation, style gain 1/sqrt(C_in)."""
    return p.rgb_weight.transpose(1, 2) * (p.s[:, :, None] / math.sqrt(layer.c_in))


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


def _fused(device: torch.device) -> bool:
    """Whether the tied path's channel sums run as the fused Triton kernel (CUDA only; set
    NOISEVISION_TRITON=0 to fall back to the torch code)."""
    if not triton_wanted(device):
        return False
    from noisevision.generators import stylegan_triton

    return stylegan_triton.available(device)


def synthesize_tied(const: torch.Tensor, layers: list[Layer], params: list[LayerParams],
                    bank: torch.Tensor, buffer) -> torch.Tensor:
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
            if _fused(u.device):  # CUDA: one Triton kernel, the C maps stay in registers
                from noisevision.generators.stylegan_triton import fused_relu_sums

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
            img = rgb if img is None else upsample2x(img) + rgb
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


def to_rgb(x: torch.Tensor, layer: Layer, p: LayerParams,
           scale: torch.Tensor | None = None) -> torch.Tensor:
    """1x1 modulated conv without demodulation, style gain 1/sqrt(C_in), zero bias.

    `scale` (B, C_in): a per-channel factor of the activations not yet applied to x.
    """
    b, _, h, w = x.shape
    s = p.s if scale is None else p.s * scale
    wt = p.rgb_weight * (s[:, None, :] / math.sqrt(layer.c_in))  # (B, 3, C_in)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        pix = x.permute(0, 2, 3, 1).reshape(b, h * w, layer.c_in)  # a view: no copy
        return torch.bmm(pix, wt.to(x.dtype).transpose(1, 2)).transpose(1, 2).reshape(b, 3, h, w)
    return torch.bmm(wt.to(x.dtype), x.reshape(b, layer.c_in, h * w)).reshape(b, 3, h, w)


def synthesize(const: torch.Tensor, layers: list[Layer], params: list[LayerParams],
               conv_fn) -> torch.Tensor:
    """Run the synthesis network: const (B, C4, 4, 4) -> raw RGB (B, 3, R, R) (float32)."""
    x, img = const, None
    for layer, p in zip(layers, params, strict=True):
        if layer.kind == "conv":
            x = conv_fn(x, layer, p)
        else:
            rgb = to_rgb(x, layer, p).float()
            img = rgb if img is None else upsample2x(img) + rgb
    return img
