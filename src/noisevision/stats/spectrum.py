"""Image spectrum (paper section 5.1, "Image spectrum", Fig. 6b).

The amplitude spectrum of natural images falls as A / |f|^alpha, typically alpha in [0.5, 2.0]
(van der Schaaf and van Hateren; the paper's [51]); the paper finds alpha in [1.4, 1.7] weakly
favourable for pretraining. Here alpha is fitted per image and a source is summarised by the
distribution of its alphas.

The fit, per image (`fit_alpha`):

1. grey = mean of R, G and B over the image's largest centred square (N x N; a square image
   whole); its mean is removed;
2. boundary handling (`boundary`): "periodic" (default) keeps the periodic component of Moisan's
   periodic + smooth decomposition (J. Math. Imaging Vis. 39, 2011): the FFT's wrap-around
   treats opposite borders as neighbours, and their jump adds a cross of ~1/f^2 power that pulls
   every alpha of a non-periodic image towards 1.8-2.1 (measured); the decomposition removes
   exactly that and keeps all frequencies. "hann" multiplies by a separable Hann window (biased
   high for steep spectra: +0.05 at alpha 2, +0.15 at 2.5, 64 px), "none" fits the raw image;
3. the amplitude |FFT| of every frequency with integer-rounded radius r (cycles per image) in
   the band FIT_BAND: R_MIN = 2 <= r <= floor(R_MAX_FRACTION * N) = 0.4 N (0.8 of Nyquist:
   away from the DC term and the image's lowest modes, and from the corner frequencies where
   aliasing and anti-aliasing filters bend real spectra);
4. per radius bin the mean of ln |FFT| and the mean of ln |f| over the bin's frequencies
   (log-domain averages: for a power law they lie exactly on the line, where bin averages of the
   amplitude are biased by the curvature of |f|^-alpha across a bin, -0.04 at 64 px), and
   alpha = minus the least-squares slope of those points (unweighted, one point per radius).

Measured on 1/f^alpha Gaussian noise, 64 px, 32 images per alpha: cut from a 2x larger field
(not periodic, like a photograph), the mean fitted alpha was within 0.025 of the truth for alpha
in 0.5..3.0 (per-image spread 0.05-0.07); on periodic noise within 0.05 up to alpha 2.5 and
0.15 low at 3.0 (the decomposition then removes some true low-frequency content).

The helpers the statistical tests share (`power_spectrum_slope`, `channel_power_spectrum`) live
here too: they pool images rather than fit each one.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from noisevision.errors import UsageError
from noisevision.stats import Metric, register_metric
from noisevision.stats._images import centre_square, check_images

R_MIN = 2                  # cycles per image: the lowest radius fitted
R_MAX_FRACTION = 0.4       # the highest radius fitted: floor(0.4 * N) cycles per image
FIT_BAND = (R_MIN, R_MAX_FRACTION)
MIN_SIDE = 16              # px: at least 5 radii in the band
BOUNDARIES = ("periodic", "hann", "none")
ALPHA_BAND = (1.4, 1.7)    # the paper's favourable range of alpha (section 5.1)
HIST_EDGES = torch.linspace(0.0, 4.0, 81, dtype=torch.float64)  # 0.05 wide; ends collect outliers
FLAT_STD = 1e-6            # a grey image with a smaller standard deviation has no alpha


def _grey(images: torch.Tensor) -> torch.Tensor:
    g = images.mean(dim=1)                                    # (B, H, W)
    return g - g.mean(dim=(1, 2), keepdim=True)


def periodic_component(g: torch.Tensor) -> torch.Tensor:
    """Moisan's periodic component of (B, H, W) images: the image minus the smooth image whose
    Laplacian is the border jump (solved in Fourier space; its mean is set to 0)."""
    _, h, w = g.shape
    v = torch.zeros_like(g)
    dy = g[:, -1, :] - g[:, 0, :]                              # (B, W) jump top <-> bottom
    dx = g[:, :, -1] - g[:, :, 0]                              # (B, H) jump left <-> right
    v[:, 0, :] += dy
    v[:, -1, :] -= dy
    v[:, :, 0] += dx
    v[:, :, -1] -= dx
    q = torch.arange(h, dtype=g.dtype, device=g.device)[:, None]
    r = torch.arange(w, dtype=g.dtype, device=g.device)[None, :]
    den = 2 * torch.cos(2 * math.pi * q / h) + 2 * torch.cos(2 * math.pi * r / w) - 4  # (H, W)
    den[0, 0] = 1.0
    s = torch.fft.fft2(v) / den
    s[:, 0, 0] = 0
    return g - torch.fft.ifft2(s).real


@functools.lru_cache(maxsize=16)
def _bins(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For an n x n rfft2 grid: bin index per frequency (-1 outside the band, flattened), each
    frequency's weight (2 where the half spectrum stands for a conjugate pair), and the weighted
    centred mean of ln |f| per bin."""
    fy = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)[None, :]
    rad = torch.sqrt(fy ** 2 + fx ** 2)                        # (n, n // 2 + 1)
    r = rad.round().long()
    hi = int(math.floor(R_MAX_FRACTION * n))
    inside = (r >= R_MIN) & (r <= hi)
    idx = torch.where(inside, r - R_MIN, -1).flatten()
    weight = torch.full_like(rad, 2.0)
    weight[:, 0] = 1.0
    if n % 2 == 0:
        weight[:, -1] = 1.0
    weight = (weight * inside).flatten()
    nb = hi - R_MIN + 1
    safe = idx.clamp(min=0)
    wsum = torch.zeros(nb, dtype=torch.float64).index_add_(0, safe, weight)
    lx = torch.zeros(nb, dtype=torch.float64).index_add_(
        0, safe, weight * rad.flatten().clamp(min=1e-12).log()) / wsum
    return safe.to(device), (weight / wsum[safe]).to(device), (lx - lx.mean()).to(device)


def fit_alpha(images: torch.Tensor, boundary: str = "periodic") -> torch.Tensor:
    """Per image the exponent alpha of the amplitude spectrum A / |f|^alpha (see the module
    docstring): (B, 3, H, W) images in [0, 1] -> (B,) float64 alphas on their device; NaN for
    a flat image (grey standard deviation < FLAT_STD). Non-square images are fitted on their
    largest centred square."""
    x = centre_square(check_images(images, "spectrum", min_side=MIN_SIDE))
    if boundary not in BOUNDARIES:
        raise UsageError(f"spectrum: boundary must be one of {BOUNDARIES}, not {boundary!r}")
    g = _grey(x.float() if x.dtype != torch.float64 else x)   # (B, N, N)
    n = g.shape[-1]
    flat = g.flatten(1).std(dim=1) < FLAT_STD
    if boundary == "periodic":
        g = periodic_component(g)
    elif boundary == "hann":
        win = torch.hann_window(n, periodic=False, dtype=g.dtype, device=g.device)
        g = g * win[:, None] * win[None, :]
    amp = torch.fft.rfft2(g).abs().flatten(1)                  # (B, n * (n // 2 + 1))
    log_amp = amp.clamp(min=torch.finfo(amp.dtype).tiny).log().double()
    idx, weight, lx = _bins(n, g.device)
    ly = torch.zeros(g.shape[0], lx.numel(), dtype=torch.float64, device=g.device)
    ly.index_add_(1, idx, log_amp * weight)                    # (B, bins): mean ln |FFT|
    slope = (ly * lx).sum(dim=1) / lx.square().sum()
    return torch.where(flat, torch.full_like(slope, math.nan), -slope)


# ---------------------------------------------------------------- helpers of the tests

def power_spectrum_slope(x: torch.Tensor) -> float:
    """Least-squares slope of log radial power vs log frequency (2 .. n/2 cycles per image).

    Pools the images: grey = channel mean (float64), each image's mean removed, |FFT|^2 averaged
    over the images, then over integer-rounded radii 2 .. n // 2 - 1; the slope of ln power
    against ln radius (for amplitude ~ 1/f^alpha it is -2 alpha).
    """
    g = x.double().mean(1)
    g = g - g.mean(dim=(1, 2), keepdim=True)
    n = g.shape[-1]
    power = torch.fft.fft2(g).abs().square().mean(0)  # (n, n)
    f = torch.fft.fftfreq(n, dtype=torch.float64) * n
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).round().long()
    radii = torch.arange(2, n // 2)
    pr = torch.stack([power[r == k].mean() for k in radii])
    lx, ly = radii.double().log(), pr.log()
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / lx.square().sum())


def channel_power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Power spectrum summed over the 3 channels, (B, H, W // 2 + 1), float64."""
    return torch.fft.rfft2(x.double()).abs().square().sum(1)


# ---------------------------------------------------------------- the metric

class AlphaAccumulator:
    """The distribution of fitted alphas over a stream of batches in O(1) memory: count, mean
    and centred sum of squares (float64, pairwise merges), the count in ALPHA_BAND and a
    histogram on HIST_EDGES."""

    def __init__(self, boundary: str = "periodic") -> None:
        if boundary not in BOUNDARIES:
            raise UsageError(f"spectrum: boundary must be one of {BOUNDARIES}, not {boundary!r}")
        self.boundary = boundary
        self.images = 0
        self.flat = 0
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._in_band = 0
        self._hist = torch.zeros(HIST_EDGES.numel() - 1, dtype=torch.int64)

    def update(self, batch: torch.Tensor) -> None:
        alpha = fit_alpha(batch, self.boundary).cpu()          # one transfer of B floats
        self.images += alpha.numel()
        ok = alpha[~alpha.isnan()]
        self.flat += alpha.numel() - ok.numel()
        if ok.numel() == 0:
            return
        n, mean = ok.numel(), float(ok.mean())
        m2 = float((ok - mean).square().sum())
        total = self._n + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self._n * n / total
        self._n = total
        self._in_band += int(((ok >= ALPHA_BAND[0]) & (ok <= ALPHA_BAND[1])).sum())
        bins = (torch.bucketize(ok, HIST_EDGES, right=True) - 1).clamp(0, self._hist.numel() - 1)
        self._hist += torch.bincount(bins, minlength=self._hist.numel())

    def state(self) -> dict[str, Any]:
        """{"images", "flat" (no alpha), "fitted", "alpha_mean", "alpha_m2", "in_band",
        "hist" (counts on "hist_edges"; the end bins collect values outside), "boundary"}."""
        if self.images == 0:
            raise UsageError("spectrum: no images were given")
        return {"images": self.images, "flat": self.flat, "fitted": self._n,
                "alpha_mean": self._mean, "alpha_m2": self._m2, "in_band": self._in_band,
                "hist": self._hist.clone(), "hist_edges": HIST_EDGES.clone(),
                "boundary": self.boundary}


def compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """The source's alpha distribution (the reference's is its own row):

    alpha_mean, alpha_std (sample standard deviation) over the source's non-flat images, and
    "alpha_in_1.4_1.7": the fraction of them with alpha in [1.4, 1.7].
    """
    if not isinstance(state, dict) or "fitted" not in state:
        raise UsageError("spectrum: the source state is not a spectrum state")
    n = int(state["fitted"])
    if n == 0:
        raise UsageError(f"spectrum: all {state['images']} images are flat (no spectrum)")
    std = math.sqrt(state["alpha_m2"] / (n - 1)) if n > 1 else 0.0
    return {"alpha_mean": float(state["alpha_mean"]), "alpha_std": std,
            "alpha_in_1.4_1.7": state["in_band"] / n}


METRIC = register_metric(Metric(
    name="spectrum",
    input="images",
    description="per-image exponent alpha of the amplitude spectrum A/|f|^alpha (paper 5.1)",
    accumulator=AlphaAccumulator,
    compare=compare,
    columns=("alpha_mean", "alpha_std", "alpha_in_1.4_1.7"),
))
