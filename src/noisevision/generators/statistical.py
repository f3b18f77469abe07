"""Statistical image models (Baradad et al., NeurIPS 2021, sec. 3.3; reference study sec. 3-4).

Each image starts as white noise 256 * U(0, 1) in a per-image decorrelated colour basis and goes
through `iterations` rounds of, in this order and each only when enabled:

* spectrum: keep the Fourier phase of every channel, set the magnitude to
  1 / (|fx|^a + |fy|^b) (frequencies in cycles per pixel, DC 0), restore the channel's mean/std;
* wavelet marginals (WMM): histogram-match every band of a 4-orientation steerable pyramid
  (3 scales at 128 px, 4 at 256 px) to a generalised Gaussian exp(-|x / alpha|^beta) on
  [-200, 200], alpha = 4^(band scale), beta ~ 0.4 + U(0, 0.4), then set its mean/std to the
  target's; the low-pass residual is kept;
* colour: histogram-match each decorrelated channel to the 256-bin histogram of a random
  "Mondrian" reference image (the colour model);

then the colour rotation is inverted, the mean colour added and the image stretched to [0, 1]
(one min-max over all channels). Defaults follow the MATLAB code that made the published datasets
(reference sec. 4.1), not its Python port: see `StatisticalConfig` for the differences from the
paper's text and how to get the paper's variant. The steerable pyramid is frequency-domain
(`steerable.py`) instead of the MATLAB spatial sp3 filters; histogram matching is the MATLAB
piecewise-linear CDF mapping (`histmatch.py`). Everything is batched and device-agnostic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisevision.errors import check
from noisevision.generators.base import Generator, check_resolution, register_generator
from noisevision.generators.histmatch import TargetHistogram, equal_bin_histogram, match_histograms
from noisevision.generators.steerable import N_ORIENTATIONS, SteerablePyramid, max_scales
from noisevision.rng import ImageRandom

EXPONENT_MODES = ("matlab", "paper")
MAX_COLORS = 22  # colour model: Ncolors = 3 + floor(20 U) in 3..22 (reference sec. 4.1)
MAX_BLUR = 10  # colour model: box blur side m = ceil(10 U) in 1..10
WMM_SUPPORT = 200.0  # WMM target histograms live on -200:0.5:200 (801 bins), as the MATLAB code
WMM_STEP = 0.5


@dataclass(frozen=True)
class StatisticalConfig:
    """One statistical model; the four presets only switch the three impositions.

    Defaults reproduce the MATLAB code that made the published stat-* datasets (reference 4.1,
    decisions of reference 13), because those are the data the paper's results were measured on:
    spectrum exponents a = s + d, b = s - d with s ~ U(0.5, 3.5), d ~ N(0, 0.05) (the paper's text
    says two independent U(0.5, 3.5) exponents: ``exponent_mode="paper"``); 10 iterations
    (paper and code: alternating projections, each round re-imposes the statistics that the
    other impositions disturbed; ``iterations`` trades exactness for speed); uniform start
    noise 256 U(0, 1) (the paper says Gaussian; after the first spectrum or histogram imposition
    only its phases and ranks matter); correlated channels (all four published datasets).
    """

    resolution: int = 128  # px, square; published data: 128 (small scale) and 256 (large scale)
    impose_spectrum: bool = True  # impose the 1/(|fx|^a + |fy|^b) magnitude spectrum
    impose_wmm: bool = False  # impose generalised-Gaussian wavelet marginals
    impose_color: bool = False  # impose the colour model's per-channel histograms
    correlate_channels: bool = True  # work in a random PCA colour basis, rotate back at the end
    #   (true for all four published datasets)
    iterations: int = 10  # rounds of spectrum -> WMM -> colour; MATLAB code and paper use 10
    #   (fewer: faster, statistics less exact); the spectrum alone is a projection, run once
    exponent_mode: str = "matlab"  # "matlab": s ~ U(lo, hi), a = s + d, b = s - d,
    #   d ~ N(0, exponent_jitter), the code behind the published data (near-isotropic slopes);
    #   "paper": a, b independent U(lo, hi) as the paper's text says (sec. 3.3)
    exponent_low: float = 0.5  # lower end of the exponent range (paper and code: 0.5)
    exponent_high: float = 3.5  # upper end (paper and code: 3.5)
    exponent_jitter: float = 0.05  # std of d in "matlab" mode: |3.5 - 0.5| / 15 / 4 in the code
    wmm_scales: int = 0  # steerable pyramid levels; 0 = auto: log2(resolution) - 4 (3 at 128 px,
    #   4 at 256 px, as the MATLAB code), at least 1
    wmm_beta_low: float = 0.4  # generalised-Gaussian shape beta ~ U(low, high) per channel and
    wmm_beta_high: float = 0.8  # band (paper and code: 0.4 + U(0, 0.4))
    color_bins: int = 256  # bins of the colour model's per-channel histograms (code: 256)

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name in ("impose_spectrum", "impose_wmm", "impose_color", "correlate_channels"):
            check(isinstance(getattr(self, name), bool),
                  f"{name} must be true or false, got {getattr(self, name)!r}")
        check(isinstance(self.iterations, int) and not isinstance(self.iterations, bool)
              and 1 <= self.iterations <= 1000,
              f"iterations must be an integer in [1, 1000], got {self.iterations!r}")
        check(self.exponent_mode in EXPONENT_MODES,
              f"exponent_mode must be one of {', '.join(EXPONENT_MODES)}, "
              f"got {self.exponent_mode!r}")
        for name in ("exponent_low", "exponent_high", "wmm_beta_low", "wmm_beta_high"):
            value = getattr(self, name)
            check(_is_number(value) and 0 < value <= 10,
                  f"{name} must be a number in (0, 10], got {value!r}")
        check(self.exponent_low <= self.exponent_high,
              f"need exponent_low <= exponent_high, got {self.exponent_low} > "
              f"{self.exponent_high}")
        check(self.wmm_beta_low <= self.wmm_beta_high,
              f"need wmm_beta_low <= wmm_beta_high, got {self.wmm_beta_low} > "
              f"{self.wmm_beta_high}")
        check(_is_number(self.exponent_jitter) and 0 <= self.exponent_jitter <= 1,
              f"exponent_jitter must be a number in [0, 1], got {self.exponent_jitter!r}")
        check(isinstance(self.color_bins, int) and 2 <= self.color_bins <= 65536,
              f"color_bins must be an integer in [2, 65536], got {self.color_bins!r}")
        allowed = max_scales(self.resolution)
        check(isinstance(self.wmm_scales, int) and 0 <= self.wmm_scales <= max(allowed, 0),
              f"wmm_scales must be an integer in [0, {allowed}] at {self.resolution} px "
              f"(0 = auto), got {self.wmm_scales!r}")
        if self.impose_wmm:
            check(allowed >= 1, "the wavelet-marginal model needs a resolution that is a "
                                f"multiple of 4, >= 16, got {self.resolution}")

    @property
    def pyramid_scales(self) -> int:
        """Pyramid levels actually used (resolves wmm_scales = 0)."""
        if self.wmm_scales:
            return self.wmm_scales
        auto = int(math.floor(math.log2(self.resolution))) - 4
        return min(max(auto, 1), max_scales(self.resolution))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- colour model

def _box_blur_same(img: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """m-tap mean filter along `dim` (-1 or -2) of img (B, C, H, W), zero padded, MATLAB 'same'
    alignment (output i averages inputs i + floor(m/2) - m + 1 .. i + floor(m/2)); m: (B,).

    Prefix sums along the axis, differenced at per-image offsets (one gather each end)."""
    n = img.shape[dim]
    pad = MAX_BLUR + 1
    padding = (pad, pad) if dim == -1 else (0, 0, pad, pad)
    csum = torch.nn.functional.pad(img, padding).cumsum(dim)  # csum[j] = sum(padded[:j + 1])
    i = torch.arange(n, device=img.device)[None, :]
    hi = i + torch.div(m, 2, rounding_mode="floor")[:, None] + pad  # (B, n) last tap, padded
    lo = hi - m[:, None]  # index whose prefix sum is subtracted
    view = (img.shape[0], 1, 1, n) if dim == -1 else (img.shape[0], 1, n, 1)
    shape = list(img.shape)
    upper = csum.gather(dim, hi.view(view).expand(shape))
    lower = csum.gather(dim, lo.view(view).expand(shape))
    return (upper - lower) / m.view(-1, 1, 1, 1).to(img.dtype)


def _sorted_labels(rnd: ImageRandom, cum: torch.Tensor, res: int) -> torch.Tensor:
    """The sorted vector of res^2 categorical draws (MATLAB mnrnd + sort): (B, res^2) labels.

    Only the multinomial counts matter, so draws are 16-bit uniforms u_k = (k + 1/2) / 2^16:
    their per-image histogram over the 2^16 values gives, by prefix sums, how many fall below
    each cumulative proportion, i.e. the run ends of the sorted labels."""
    B, dev, levels = rnd.batch, rnd.device, 1 << 16
    u = rnd.uniform_fields(16, res * res)  # (B, res^2)
    k = (u * levels).long()  # exact 16-bit integers
    offsets = torch.arange(B, device=dev)[:, None] * levels
    hist = torch.bincount((k + offsets).reshape(-1), minlength=B * levels).view(B, levels)
    below = torch.cat([torch.zeros_like(hist[:, :1]), hist.cumsum(1)], dim=1)  # (B, 2^16 + 1)
    # u_k < c  <=>  k < c 2^16 - 1/2: count of draws below each cumulative proportion c
    thresh = (cum.double() * levels - 0.5).ceil().clamp_(0, levels).long()
    ends = below.gather(1, thresh)  # (B, 22) run ends
    ends[:, -1] = res * res
    # label at position p = number of run ends <= p (empty runs are skipped by this count)
    marks = torch.zeros(B, res * res + 1, dtype=torch.int32, device=dev)
    marks.scatter_add_(1, ends, torch.ones_like(ends, dtype=torch.int32))
    return marks[:, : res * res].cumsum(1).long()  # (B, res^2)


def sample_color_model(rnd: ImageRandom, res: int, bins: int) -> dict[str, torch.Tensor]:
    """The colour model of the MATLAB `sample_colormodel` (reference sec. 4.1), per image.

    A "Mondrian" of Ncolors uniform colours with random proportions, the colour index vector
    sorted and laid out column-major (contiguous bands), times 256, box-blurred (m x m, zero
    padding), plus per-pixel noise 10 U(0, 1), stretched to [0, 256]; then its colour PCA.
    Returns basis (B, 3, 3) (columns = principal directions, by decreasing variance), mean (B, 3)
    and the histograms (B * 3 rows of `bins` bins) of the decorrelated channels.
    """
    B, dev = rnd.batch, rnd.device
    n_colors = 3 + (20 * rnd.uniform(1)).floor().long()  # (B, 1) in 3..22
    colors = rnd.uniform(MAX_COLORS, 3)  # (B, 22, 3)
    weights = 0.001 + rnd.uniform(MAX_COLORS)  # (B, 22)
    weights = weights * (torch.arange(MAX_COLORS, device=dev)[None] < n_colors)
    cum = torch.cumsum(weights, 1)
    cum = cum / cum[:, -1:]
    label = _sorted_labels(rnd, cum, res)  # (B, res^2)
    # MATLAB lays the sorted vector out column-major (position p = col * res + row). We keep
    # the row-major (transposed) image: the blur is the same m x m box along both axes and
    # everything taken from the reference (PCA, histograms) ignores pixel positions.
    ref = 256.0 * colors.transpose(1, 2).gather(2, label[:, None].expand(-1, 3, -1))  # (B, 3, HW)
    ref = ref.view(B, 3, res, res)
    m = (MAX_BLUR * rnd.uniform(1)).ceil().long().clamp_(1, MAX_BLUR)[:, 0]  # (B,)
    ref = _box_blur_same(_box_blur_same(ref, m, -1), m, -2)
    ref = ref + 10.0 * rnd.uniform_fields(8, 3, res, res)
    ref = ref - ref.amin(dim=(1, 2, 3), keepdim=True)
    ref = ref * (256.0 / ref.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12))
    pixels = ref.view(B, 3, -1)
    mean = pixels.mean(-1)  # (B, 3)
    centred = pixels - mean[..., None]
    scatter = torch.einsum("bin,bjn->bij", centred, centred).double()  # (B, 3, 3)
    _, vecs = torch.linalg.eigh(scatter)  # ascending eigenvalues
    basis = vecs.flip(-1)  # decreasing variance
    # fix each direction's sign (largest component positive) so every device agrees
    big = basis.abs().argmax(1, keepdim=True)  # (B, 1, 3)
    basis = (basis * torch.sign(basis.gather(1, big))).float()
    decorrelated = torch.einsum("bji,bjn->bin", basis, centred)  # (B, 3, HW)
    hist = equal_bin_histogram(decorrelated.reshape(B * 3, -1), bins)
    return {"basis": basis, "mean": mean, "hist": hist}


# ----------------------------------------------------------------------------- spectrum model

def sample_spectrum_exponents(rnd: ImageRandom, config: StatisticalConfig) -> torch.Tensor:
    """(B, 2) exponents (a for fx, b for fy), per `config.exponent_mode`."""
    lo, hi = config.exponent_low, config.exponent_high
    u = rnd.uniform(3, low=lo, high=hi) if hi > lo else torch.full((rnd.batch, 3), lo,
                                                                    device=rnd.device)
    d = rnd.normal(1, std=config.exponent_jitter) if config.exponent_jitter > 0 else \
        torch.zeros(rnd.batch, 1, device=rnd.device)
    if config.exponent_mode == "paper":
        return u[:, 1:3]
    return torch.cat([u[:, :1] + d, u[:, :1] - d], dim=1)


def spectrum_magnitude(exponents: torch.Tensor, res: int) -> torch.Tensor:
    """1 / (|fx|^a + |fy|^b) on the rfft2 grid (B, res, res // 2 + 1), DC 0; f in cycles/px."""
    dev = exponents.device
    fy = torch.fft.fftfreq(res, device=dev).abs()[None, :, None]  # (1, H, 1) in [0, 1/2]
    fx = torch.fft.rfftfreq(res, device=dev).abs()[None, None, :]  # (1, 1, W//2+1)
    a = exponents[:, 0, None, None]
    b = exponents[:, 1, None, None]
    denom = fx.pow(a) + fy.pow(b)  # 0 ** a = 0 for a > 0: only DC is 0
    mag = 1.0 / denom.clamp_min(1e-30)
    mag[:, 0, 0] = 0.0
    return mag


def row_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) std of the rows of x (G, n), each (G, 1); faster than torch.std on CPU.

    Sums are taken after subtracting the row's first value, to avoid cancellation."""
    n = x.shape[-1]
    first = x[:, :1]
    centred = x - first
    s1 = centred.sum(-1, keepdim=True)
    s2 = centred.square_().sum(-1, keepdim=True)
    mean = s1 / n
    var = (s2 - s1 * mean) / max(n - 1, 1)
    return mean + first, var.clamp_min(0).sqrt().clamp_min(1e-30)


def impose_spectrum(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Keep each channel's Fourier phase, set its magnitude, restore its mean and std.

    x: (B, C, H, W); magnitude: (B, H, W//2+1), shared by the channels."""
    B, C, H, W = x.shape
    mean, std = row_mean_std(x.reshape(B * C, -1))
    spec = torch.fft.rfft2(x)
    gain = magnitude[:, None] / spec.abs().clamp_min(1e-30)  # DC gets 0: the mean goes away
    y = torch.fft.irfft2(spec * gain, s=(H, W)).reshape(B * C, -1)
    y_mean, y_std = row_mean_std(y)
    scale = std / y_std
    return torch.addcmul(mean - y_mean * scale, y, scale).view(B, C, H, W)


# ----------------------------------------------------------------------------- wavelet marginals

def wmm_band_scales(res: int, n_scales: int) -> list[int]:
    """Band scale (res / band side) of the high-pass band then each oriented band, as MATLAB."""
    return [1] + [2 ** k for k in range(n_scales) for _ in range(N_ORIENTATIONS)]


def wmm_targets(betas: torch.Tensor, scales: list[int]) -> list[dict]:
    """Generalised-Gaussian targets exp(-|x / alpha|^beta) on -200:0.5:200, alpha = 4^scale.

    betas: (B, C, n_bands), bands ordered high-pass then level by level (4 orientations each).
    Returns one dict per band group (the high-pass, then each pyramid level) holding the target
    histograms (rows ordered (B, C, band)), their CDF tables, and the target mean and std per row
    ((rows, 1) each), ready to be reused by every iteration."""
    dev = betas.device
    B, C, n_bands = betas.shape
    bins = int(round(2 * WMM_SUPPORT / WMM_STEP)) + 1
    x = torch.linspace(-WMM_SUPPORT, WMM_SUPPORT, bins, device=dev, dtype=torch.float64)
    alpha = torch.tensor([4.0 ** s for s in scales], device=dev, dtype=torch.float64)
    z = (x.abs() / alpha[:, None])[None, None]  # (1, 1, n_bands, bins)
    h = torch.exp(-z.pow(betas.double()[..., None]))  # (B, C, n_bands, bins)
    total = h.sum(-1)
    mean = (h * x).sum(-1) / total
    std = torch.sqrt((h * (x - mean[..., None]) ** 2).sum(-1) / total)
    groups = []
    bounds = [(0, 1)] + [(1 + k * N_ORIENTATIONS, 1 + (k + 1) * N_ORIENTATIONS)
                         for k in range((n_bands - 1) // N_ORIENTATIONS)]
    for lo_band, hi_band in bounds:
        rows = h[:, :, lo_band:hi_band].reshape(-1, bins)
        lo = torch.full((rows.shape[0],), -WMM_SUPPORT - WMM_STEP / 2, device=dev,
                        dtype=torch.float64)
        target = TargetHistogram(rows, lo, torch.full_like(lo, WMM_STEP))
        groups.append({"hist": target, "table": target.cdf_table(),
                       "mean": mean[:, :, lo_band:hi_band].reshape(-1, 1).float(),
                       "std": std[:, :, lo_band:hi_band].reshape(-1, 1).float()})
    return groups


def _match_band_group(band: torch.Tensor, target: dict) -> torch.Tensor:
    """Histogram-match bands (B, C, [K,] h, w) to their target rows, then set mean and std."""
    flat = band.reshape(target["mean"].shape[0], -1)
    out = match_histograms(flat, target["hist"], target["table"])
    mu, sd = row_mean_std(out)
    scale = target["std"] / sd
    return torch.addcmul(target["mean"] - mu * scale, out, scale).view(band.shape)


def impose_wmm(x: torch.Tensor, pyramid: SteerablePyramid, targets: list[dict]) -> torch.Tensor:
    """Impose the wavelet marginals on every band (all but the low-pass residual) of x."""
    pyr = pyramid.decompose(x)
    pyr["highpass"] = _match_band_group(pyr["highpass"], targets[0])
    for k, band in enumerate(pyr["bands"]):
        pyr["bands"][k] = _match_band_group(band, targets[1 + k])
    return pyramid.reconstruct(pyr)


# ----------------------------------------------------------------------------- the generator

CPU_SUBBATCH = 2  # images per render_from call on CPU (speed only, never changes an image)


def _slice_params(params: dict, start: int, stop: int) -> dict:
    """The parameters of images [start, stop) of a batch."""
    out = {"exponents": params["exponents"][start:stop], "betas": params["betas"][start:stop]}
    if "color" in params:
        color, hist = params["color"], params["color"]["hist"]
        rows = slice(3 * start, 3 * stop)  # histogram rows are ordered (image, channel)
        out["color"] = {"basis": color["basis"][start:stop], "mean": color["mean"][start:stop],
                        "hist": TargetHistogram(hist.counts[rows], hist.lo[rows],
                                                hist.step[rows])}
    return out


class StatisticalModel(Generator):
    """Spectrum / wavelet-marginal / colour-histogram images (paper 3.3, reference 4.1)."""

    # torch's inverse real FFT rounds differently with 1 and 2 threads (measured), and the
    # iterated impositions amplify a last-bit difference into whole grey levels
    thread_sensitive = True
    config_cls = StatisticalConfig

    def __init__(self, config: StatisticalConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self._pyramids: dict[str, SteerablePyramid] = {}

    def default_batch_size(self, device: torch.device) -> int:
        scale = max(1, (self.config.resolution // 128) ** 2)
        return max(1, (256 if device.type == "cuda" else 16) // scale)

    def pyramid(self, device: torch.device) -> SteerablePyramid:
        key = str(device)
        if key not in self._pyramids:
            cfg = self.config
            self._pyramids[key] = SteerablePyramid(cfg.resolution, cfg.pyramid_scales, device)
        return self._pyramids[key]

    def sample_parameters(self, indices: torch.Tensor, seed: int,
                          stream: str = "statistical") -> dict:
        """The per-image model: colour model, spectrum exponents, WMM shapes (small tensors)."""
        cfg, res = self.config, self.config.resolution
        rnd = ImageRandom(seed, indices, stream)
        params: dict = {"exponents": sample_spectrum_exponents(rnd.child("spectrum"), cfg)}
        n_bands = 1 + N_ORIENTATIONS * cfg.pyramid_scales
        params["betas"] = rnd.child("wmm").uniform(3, n_bands, low=cfg.wmm_beta_low,
                                                   high=cfg.wmm_beta_high)  # (B, 3, n_bands)
        if cfg.impose_color or cfg.correlate_channels:
            params["color"] = sample_color_model(rnd.child("color"), res, cfg.color_bins)
        return params

    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        return self.render_stream(indices, seed, "statistical")

    def render_stream(self, indices: torch.Tensor, seed: int, stream: str) -> torch.Tensor:
        """`render` with the random draws taken from the named stream (other users of the model,
        such as the textured dead leaves, get textures independent of the stat_* images)."""
        res = self.config.resolution
        params = self.sample_parameters(indices, seed, stream)
        start = ImageRandom(seed, indices, f"{stream}/init")
        x = 256.0 * start.uniform_fields(16, 3, res, res)  # (B, 3, H, W), decorrelated basis
        B = x.shape[0]
        step = CPU_SUBBATCH if x.device.type == "cpu" else B
        if step >= B:
            return self.render_from(x, params)
        # CPU: a few images at a time keep the pyramid's working set in cache (about 1.4x faster
        # than whole batches); every image is computed on its own either way
        return torch.cat([self.render_from(x[i:i + step], _slice_params(params, i, i + step))
                          for i in range(0, B, step)])

    def render_from(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The deterministic part: iterate the impositions on start images x (B, 3, H, W)."""
        cfg, B = self.config, x.shape[0]
        if cfg.impose_spectrum:
            magnitude = spectrum_magnitude(params["exponents"], cfg.resolution)
        if cfg.impose_wmm:
            pyramid = self.pyramid(x.device)
            targets = wmm_targets(params["betas"],
                                  wmm_band_scales(cfg.resolution, cfg.pyramid_scales))
        if cfg.impose_color:
            color_hist = params["color"]["hist"]
            color_table = color_hist.cdf_table()
        # The spectrum imposition alone is a projection (phase kept, magnitude set, affine
        # restore): repeating it changes nothing, so without WMM or colour it runs once.
        rounds = cfg.iterations if (cfg.impose_wmm or cfg.impose_color) else 1
        for _ in range(rounds):
            if cfg.impose_spectrum:
                x = impose_spectrum(x, magnitude)
            if cfg.impose_wmm:
                x = impose_wmm(x, pyramid, targets)
            if cfg.impose_color:
                x = match_histograms(x.reshape(B * 3, -1), color_hist, color_table).view_as(x)
        if cfg.correlate_channels:
            color = params["color"]
            x = torch.einsum("bij,bjhw->bihw", color["basis"], x) + color["mean"][:, :, None, None]
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        return ((x - lo) / (hi - lo).clamp_min(1e-12)).float()


register_generator("stat_spectrum", StatisticalModel,
                   "1/(|fx|^a+|fy|^b) spectrum noise in a random colour basis "
                   "(paper: Spectrum; MATLAB stat-spectrum)",
                   impose_spectrum=True, impose_wmm=False, impose_color=False)
register_generator("stat_wmm", StatisticalModel,
                   "steerable-pyramid wavelet marginals, generalised Gaussian "
                   "(paper: WMM; MATLAB stat-wmm)",
                   impose_spectrum=False, impose_wmm=True, impose_color=False)
register_generator("stat_spectrum_color", StatisticalModel,
                   "spectrum + colour histograms of a random Mondrian "
                   "(paper: Spectrum + Color; MATLAB stat-spectrum_color)",
                   impose_spectrum=True, impose_wmm=False, impose_color=True)
register_generator("stat_spectrum_color_wmm", StatisticalModel,
                   "spectrum + colour histograms + wavelet marginals "
                   "(paper: Spectrum + Color + WMM; MATLAB stat-spectrum_color_wmm)",
                   impose_spectrum=True, impose_wmm=True, impose_color=True)
