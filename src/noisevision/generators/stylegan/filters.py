"""Fixed filters of the untrained-StyleGAN generators: wavelet banks, pink noise, resampling.

Baradad et al. 2021, section 3.4 ("StyleGAN-High-freq / Sparse / Oriented") and the reference
study (reference-implementation.md section 5.2), written from their descriptions:

* the sign-quantised bank of 40 ternary 3x3 filters (High-freq and Sparse) and the real-valued bank
  of 40 filters (Oriented), both cut from rotated 11x11 step edges and thin lines, plus four
  "sparse" filters;
* 1/f^alpha ("pink") noise maps with random phases, optionally multiplied by a 4x4 Laplacian
  envelope upsampled with Lanczos-3 (reference code) or bicubic (paper) interpolation;
* the [1, 3, 3, 1] FIR blur that follows a stride-2 transposed convolution, and 2x upsampling.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

BANK_SIZE = 40
_PATCH = 11  # side of the array the edge and line are drawn in before rotation (reference: 11)


def _rotate_bilinear(patch: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a square float64 array about its centre pixel (bilinear, zero outside)."""
    n = patch.shape[0]
    c = (n - 1) / 2
    th = math.radians(degrees)
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64) - c,
                            torch.arange(n, dtype=torch.float64) - c, indexing="ij")
    # inverse mapping: the output pixel (x, y) reads the input at (x, y) rotated by -theta
    sx = math.cos(th) * xx - math.sin(th) * yy + c
    sy = math.sin(th) * xx + math.cos(th) * yy + c
    x0, y0 = sx.floor(), sy.floor()
    fx, fy = sx - x0, sy - y0
    out = torch.zeros_like(patch)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            ok = (xi >= 0) & (xi < n) & (yi >= 0) & (yi < n)
            val = patch[yi.clamp(0, n - 1), xi.clamp(0, n - 1)] * ok
            out += wy * wx * val
    return out


def _centre3(patch: torch.Tensor) -> torch.Tensor:
    c = patch.shape[0] // 2
    return patch[c - 1:c + 2, c - 1:c + 2]


def _edge_patch() -> torch.Tensor:
    """Step edge: +1 on the left half, 0 on the centre column, -1 on the right half."""
    p = torch.zeros(_PATCH, _PATCH, dtype=torch.float64)
    p[:, :_PATCH // 2] = 1.0
    p[:, _PATCH // 2 + 1:] = -1.0
    return p


def _line_patch() -> torch.Tensor:
    """Thin line: ones with the centre column -1."""
    p = torch.ones(_PATCH, _PATCH, dtype=torch.float64)
    p[:, _PATCH // 2] = -1.0
    return p


def _sparse_filters() -> list[torch.Tensor]:
    """Delta; centre +1 / surround -1; plus of ones; plus +1 with corners -1."""
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1.0
    centre_surround = -torch.ones(3, 3, dtype=torch.float64)
    centre_surround[1, 1] = 1.0
    plus = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float64)
    plus_corners = torch.tensor([[-1.0, 1, -1], [1, 1, 1], [-1, 1, -1]], dtype=torch.float64)
    return [delta, centre_surround, plus, plus_corners]


def _oriented(patch: torch.Tensor, count: int, span: float, zero_mean: bool) -> list[torch.Tensor]:
    out = []
    for j in range(count):
        f = _centre3(_rotate_bilinear(patch, j * span / count))
        out.append(f - f.mean() if zero_mean else f)
    return out


@functools.cache
def _banks() -> dict[str, torch.Tensor]:
    # sign bank: 16 edges over 360 deg (mean removed, sign), 8 lines over 180 deg (sign) and their
    # negatives, the 4 sparse filters and their negatives
    edges = [f.sign() for f in _oriented(_edge_patch(), 16, 360.0, zero_mean=True)]
    lines = [f.sign() for f in _oriented(_line_patch(), 8, 180.0, zero_mean=False)]
    sparse = _sparse_filters()
    sign = edges + lines + [-f for f in lines] + sparse + [-f for f in sparse]
    # real bank: 8 edges and 8 lines over 180 deg, both zero-mean, the 4 sparse filters (not
    # mean-removed), and the negatives of all 20
    real = (_oriented(_edge_patch(), 8, 180.0, zero_mean=True)
            + _oriented(_line_patch(), 8, 180.0, zero_mean=True) + sparse)
    real = real + [-f for f in real]
    return {"sign": torch.stack(sign).float(), "real": torch.stack(real).float()}


def wavelet_bank(kind: str) -> torch.Tensor:
    """The 40 3x3 filters of bank `kind` ("sign" or "real") as a float32 (40, 3, 3) tensor."""
    return _banks()[kind].clone()


def lanczos_matrix(src: int, dst: int, a: int = 3) -> torch.Tensor:
    """(dst, src) Lanczos-a interpolation weights for upsampling a length-src signal to dst.

    Output sample x sits at input coordinate (x + 0.5) * src / dst - 0.5 (pixel centres aligned);
    each row is normalised to sum 1 (edge taps that fall outside the input are dropped).
    """
    centre = (torch.arange(dst, dtype=torch.float64) + 0.5) * src / dst  # (dst,)
    t = torch.arange(src, dtype=torch.float64)[None, :] + 0.5 - centre[:, None]  # (dst, src)
    w = torch.sinc(t) * torch.sinc(t / a) * (t.abs() < a)
    return (w / w.sum(1, keepdim=True)).float()


def laplacian_envelope(grid: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Upsample (N, g, g) Laplace samples to (N, size, size) ("lanczos" or "bicubic")."""
    if mode == "bicubic":
        return F.interpolate(grid[:, None], size=(size, size), mode="bicubic",
                             align_corners=False)[:, 0]
    m = lanczos_matrix(grid.shape[-1], size).to(grid.device)  # (size, g)
    return m @ grid @ m.T


def pink_noise(alpha: torch.Tensor, phase_u: torch.Tensor,
               envelope: torch.Tensor | None) -> torch.Tensor:
    """Unit-std 1/f^alpha noise maps (N, n, n) from per-map exponents and phase uniforms.

    alpha: (N,) amplitude-spectrum exponent; phase_u: (N, n, n // 2 + 1) uniforms in (0, 1), the
    phases of the half spectrum of a real map; envelope: (N, n, n) multiplier or None. Every
    frequency has amplitude |f|^-alpha (0 at DC) and a uniform random phase; on the two
    self-conjugate columns the phase is made antisymmetric, phi(f) - phi(-f), so the spectrum is
    exactly Hermitian and the map real (as in the reference's full-plane construction).
    """
    n = phase_u.shape[-2]
    dev = phase_u.device
    fy = torch.fft.fftfreq(n, device=dev) * 2.0  # Nyquist at 1, like a linspace(-1, 1) grid
    fx = torch.fft.rfftfreq(n, device=dev) * 2.0
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (n, n // 2 + 1)
    r[0, 0] = 1.0
    mag = r[None] ** (-alpha[:, None, None])  # (N, n, n // 2 + 1)
    mag[:, 0, 0] = 0.0
    phi = 2.0 * math.pi * phase_u
    for col in (0, n // 2):  # columns where f and -f both lie in the half plane
        c = phi[:, :, col]
        phi[:, :, col] = c - torch.roll(torch.flip(c, dims=(-1,)), shifts=1, dims=-1)
    x = torch.fft.irfft2(torch.polar(mag, phi), s=(n, n))  # (N, n, n)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    if envelope is not None:
        x = x * envelope
    return x / (x.std(dim=(-2, -1), keepdim=True, unbiased=False) + 1e-12)


def blur_after_transpose(z: torch.Tensor) -> torch.Tensor:
    """[1,3,3,1]^2 FIR (gain 4) on (B, C, 2H+1, 2W+1) transposed-conv output -> (B, C, 2H, 2W).

    Separable: four shifted slices per axis (a 1-channel 4x4 convolution over B*C maps is far
    slower on CPU). The kernel is symmetric, so correlation and convolution agree.
    """
    h, w = z.shape[-2:]
    p = F.pad(z, (1, 1, 1, 1))
    p = (p[..., :w - 1] + p[..., 3:w + 2]).add_(p[..., 1:w] + p[..., 2:w + 1], alpha=3.0)
    p = (p[..., :h - 1, :] + p[..., 3:h + 2, :]).add_(p[..., 1:h, :] + p[..., 2:h + 1, :],
                                                       alpha=3.0)
    return p.mul_(1.0 / 16.0)


def parity_kernels(weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four sub-kernels of `conv_transpose_stride2` (2x2, 2x1, 1x2, 1x1), contiguous."""
    even = [2, 0]  # even output rows 2m: tap 2 reads input row m - 1, tap 0 reads row m
    return (weight[:, :, even][:, :, :, even].contiguous(), weight[:, :, even, 1:2].contiguous(),
            weight[:, :, 1:2, even].contiguous(), weight[:, :, 1:2, 1:2].contiguous())


def conv_transpose_stride2(x: torch.Tensor, weight: torch.Tensor | None,
                           parts: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """F.conv_transpose2d(x, weight.transpose(0, 1), stride=2) for a (O, I, 3, 3) weight.

    Output pixel (2m + dy', 2n + dx') only receives the kernel taps of its parity, so the
    transposed convolution is four ordinary convolutions of x (2x2, 2x1, 1x2 and 1x1 sub-kernels,
    the same multiply count) interleaved on the (2h + 1, 2w + 1) grid; oneDNN runs ordinary
    convolutions several times faster than transposed ones on CPU. `parts`: the sub-kernels
    from `parity_kernels`, when cached (then `weight` is unused).
    """
    b, _, h, w = x.shape
    kee, keo, koe, koo = parts if parts is not None else parity_kernels(weight)
    ee = F.conv2d(x, kee, padding=1)  # (B, O, h + 1, w + 1)
    eo = F.conv2d(x, keo, padding=(1, 0))  # (h + 1, w)
    oe = F.conv2d(x, koe, padding=(0, 1))  # (h, w + 1)
    oo = F.conv2d(x, koo)  # (h, w)
    fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
           else torch.contiguous_format)
    z = torch.empty(b, kee.shape[0], 2 * h + 1, 2 * w + 1, dtype=x.dtype, device=x.device,
                    memory_format=fmt)
    z[:, :, 0::2, 0::2] = ee
    z[:, :, 0::2, 1::2] = eo
    z[:, :, 1::2, 0::2] = oe
    z[:, :, 1::2, 1::2] = oo
    return z


SKIP_PADDINGS = ("zero", "replicate")


def _upsample_axis_zero(x: torch.Tensor, dim: int) -> torch.Tensor:
    """2x along `dim` (-1 or -2): even outputs 1/4 x[m-1] + 3/4 x[m], odd 3/4 x[m] + 1/4 x[m+1],
    with zeros outside the image."""
    n = x.shape[dim]
    p = F.pad(x, (1, 1) if dim == -1 else (0, 0, 1, 1))
    lo, mid, hi = p.narrow(dim, 0, n), p.narrow(dim, 1, n), p.narrow(dim, 2, n)
    even = torch.add(mid, lo, alpha=1.0 / 3.0).mul_(0.75)
    odd = torch.add(mid, hi, alpha=1.0 / 3.0).mul_(0.75)
    axis = x.dim() + dim  # the interleaving axis, counted from the front
    return torch.stack([even, odd], dim=axis + 1).flatten(axis, axis + 1)


def upsample2x(x: torch.Tensor, padding: str = "zero") -> torch.Tensor:
    """2x upsampling of the RGB skip path: zero insertion followed by the [1, 3, 3, 1] FIR with
    gain 4, i.e. bilinear weights with half-pixel centres.

    `padding`: "zero" (StyleGAN2's upfirdn2d: the signal is zero outside the image, so each
    upsampling attenuates the outermost pixel to 3/4, and compounded over the skip path's
    levels the raw RGB fades towards zero near the border: after the per-channel colour
    normalisation this is the flat dark or light frame of the published StyleGAN-Random
    images); "replicate" (borders replicated, what noisevision rendered before this option).
    """
    if padding == "replicate":
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    if padding != "zero":
        raise ValueError(f"skip padding must be one of {', '.join(SKIP_PADDINGS)}, not {padding!r}")
    return _upsample_axis_zero(_upsample_axis_zero(x, -1), -2)
