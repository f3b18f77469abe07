"""Colour profile of an image source (paper section 5.1, "Color profile", Fig. 6a).

Every pixel's colour is converted from sRGB to CIE L*a*b* (D65); a source's colours are
modelled as one 3-D Gaussian (mean and covariance of all its pixels' Lab values), and two
sources differ by the symmetric KL divergence of their Gaussians (the paper's colour distance
to ImageNet-100; r = -0.57 with accuracy).

The sums behind the mean and covariance are float64 and merged batch by batch (Chan et al.'s
pairwise update), so the state is 12 numbers whatever the number of images.
"""

from __future__ import annotations

from typing import Any

import torch

from noisevision.errors import UsageError
from noisevision.stats import Metric, register_metric
from noisevision.stats._images import check_images

# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, D65, as tabulated by B. Lindbloom
# ("RGB/XYZ Matrices", brucelindbloom.com); rows X, Y, Z.
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
D65_WHITE = (0.95047, 1.0, 1.08883)  # XYZ of the D65 reference white (2 degree observer), Y = 1
_EPS = (6 / 29) ** 3                 # CIE 1976: f(t) = t^(1/3) above, linear below
# The covariance floor added to both Gaussians in `compare`, in (Lab units)^2: the variance of a
# uniform quantisation error of one Lab unit (about one 8-bit sRGB step). A grayscale source has
# a = b = 0 at every pixel (a singular covariance and an infinite KL); with the floor its
# distance is large but finite, and natural images' variances (hundreds) move by < 0.1%.
COV_RIDGE = 1.0 / 12.0


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB companding inverted (IEC 61966-2-1): values in [0, 1] -> linear light."""
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _EPS, t.clamp(min=_EPS) ** (1 / 3), t / (3 * (6 / 29) ** 2) + 4 / 29)


def srgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 3, H, W) CIE L*a*b* (D65): L in [0, 100], a and b
    roughly in [-128, 128]. Runs in the images' dtype (float64 in, float64 out) and device."""
    lin = srgb_to_linear(images)
    m = torch.tensor(SRGB_TO_XYZ, dtype=images.dtype, device=images.device)
    white = torch.tensor(D65_WHITE, dtype=images.dtype, device=images.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin) / white.view(1, 3, 1, 1)  # (B, 3, H, W)
    fx, fy, fz = _lab_f(xyz).unbind(dim=1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


# ---------------------------------------------------------------- Gaussians

def _cholesky(cov: torch.Tensor, which: str) -> torch.Tensor:
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise UsageError(f"symmetric KL: the {which} covariance is not positive definite "
                         "(a source with no spread in some direction; add a ridge)")
    return chol


def gaussian_kl(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> float:
    """KL(N(mean0, cov0) || N(mean1, cov1)) in nats, closed form, float64:

    0.5 * (tr(cov1^-1 cov0) + d^T cov1^-1 d - k + ln det cov1 - ln det cov0), d = mean1 - mean0.
    Means are (k,), covariances (k, k) symmetric positive definite (else a UsageError).
    """
    m0, m1 = (torch.as_tensor(m, dtype=torch.float64).cpu().reshape(-1) for m in (mean0, mean1))
    c0, c1 = (torch.as_tensor(c, dtype=torch.float64).cpu() for c in (cov0, cov1))
    k = m0.numel()
    if m1.numel() != k or c0.shape != (k, k) or c1.shape != (k, k):
        raise UsageError(f"KL of Gaussians: means must be (k,) and covariances (k, k), got "
                         f"{tuple(m0.shape)}, {tuple(c0.shape)}, {tuple(m1.shape)}, "
                         f"{tuple(c1.shape)}")
    l0, l1 = _cholesky(c0, "first"), _cholesky(c1, "second")
    a = torch.linalg.solve_triangular(l1, l0, upper=False)             # L1^-1 L0
    d = torch.linalg.solve_triangular(l1, (m1 - m0)[:, None], upper=False)
    logdet = 2 * (l1.diagonal().log().sum() - l0.diagonal().log().sum())
    kl = float(0.5 * (a.square().sum() + d.square().sum() - k + logdet))
    return max(kl, 0.0)  # >= 0 in exact arithmetic; equal Gaussians round to about -1e-16


def symmetric_kl(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> float:
    """The symmetric (Jeffreys) divergence KL(0 || 1) + KL(1 || 0) of two Gaussians, nats."""
    return gaussian_kl(mean0, cov0, mean1, cov1) + gaussian_kl(mean1, cov1, mean0, cov0)


# ---------------------------------------------------------------- the metric

class LabGaussianAccumulator:
    """Mean and covariance of every pixel's Lab colour over a stream of image batches.

    Each batch's mean and centred second moments are summed in float64 on the batch's device
    and merged into the running ones (Chan, Golub and LeVeque's pairwise update).
    """

    def __init__(self) -> None:
        self.images = 0
        self.pixels = 0
        self._mean: torch.Tensor | None = None  # (3,) float64
        self._m2: torch.Tensor | None = None    # (3, 3) float64, sum of centred outer products

    def update(self, batch: torch.Tensor) -> None:
        x = check_images(batch, "colour")
        lab = srgb_to_lab(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)
        n = lab.shape[0] * lab.shape[2] * lab.shape[3]
        mean = lab.sum(dim=(0, 2, 3), dtype=torch.float64) / n            # (3,)
        c = lab - mean.to(lab.dtype).view(1, 3, 1, 1)                      # (B, 3, H, W)
        m2 = torch.empty(3, 3, dtype=torch.float64, device=lab.device)
        for i in range(3):
            for j in range(i, 3):
                m2[i, j] = m2[j, i] = (c[:, i] * c[:, j]).sum(dtype=torch.float64)
        # moments about the float32-rounded mean used for centring -> about the float64 mean
        off = c.sum(dim=(0, 2, 3), dtype=torch.float64)                   # (3,)
        m2 -= torch.outer(off, off) / n
        self.images += lab.shape[0]
        if self._mean is None:
            self._mean, self._m2, self.pixels = mean, m2, n
            return
        dev = self._mean.device
        mean, m2 = mean.to(dev), m2.to(dev)
        total = self.pixels + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + torch.outer(delta, delta) * (self.pixels * n / total)
        self.pixels = total

    def state(self) -> dict[str, Any]:
        """{"images", "pixels", "mean": (3,) float64 Lab, "cov": (3, 3) float64 (divided by
        pixels - 1)} on the CPU."""
        if self._mean is None or self._m2 is None:
            raise UsageError("colour: no images were given")
        return {"images": self.images, "pixels": self.pixels, "mean": self._mean.cpu(),
                "cov": (self._m2 / max(self.pixels - 1, 1)).cpu()}


def compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """The source's colour distance to the reference and its mean colour.

    colour_kl: symmetric KL of the two Lab Gaussians, each covariance + COV_RIDGE * I (nats);
    lab_L_mean, lab_a_mean, lab_b_mean: the source's mean Lab colour.
    """
    ridge = COV_RIDGE * torch.eye(3, dtype=torch.float64)
    for name, s in (("source", state), ("reference", reference)):
        if not isinstance(s, dict) or not {"mean", "cov"} <= s.keys():
            raise UsageError(f"colour: the {name} state is not a colour state (mean, cov)")
    kl = symmetric_kl(state["mean"], torch.as_tensor(state["cov"]) + ridge,
                      reference["mean"], torch.as_tensor(reference["cov"]) + ridge)
    lab = [float(v) for v in torch.as_tensor(state["mean"]).reshape(-1)]
    return {"colour_kl": kl, "lab_L_mean": lab[0], "lab_a_mean": lab[1], "lab_b_mean": lab[2]}


METRIC = register_metric(Metric(
    name="colour",
    input="images",
    description="symmetric KL between 3-D Gaussians of the pixels' CIE Lab colours (paper 5.1)",
    accumulator=LabGaussianAccumulator,
    compare=compare,
    columns=("colour_kl", "lab_L_mean", "lab_a_mean", "lab_b_mean"),
))
