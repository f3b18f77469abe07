"""Log-volume of a source: the log-determinant of the covariance of its Inception features
(paper section 5.2, "diversity as |Sigma|": log-volume correlates with recall, r = 0.79, and
against precision, r = -0.84).

The sample covariance S of N features in D = 2048 dimensions is singular when N <= D (and
ill-conditioned near it), so log|S| would be -inf. The log-volume here is the log-determinant of
a shrinkage estimate that is always positive definite, with the same rule for every N:

    Sigma = V^(1/2) ((1 - lambda) R + lambda I) V^(1/2),   log|Sigma| = sum log v_i
                                                            + sum log((1 - lambda) rho_j + lambda)

V = diag(v) the per-feature variances (ddof 1), R the correlation matrix with eigenvalues rho_j,
and lambda the Schäfer-Strimmer (2005) shrinkage intensity toward the diagonal ("target D"):
lambda = sum_{i != j} Var(r_ij) / sum_{i != j} r_ij^2, clipped to [LAMBDA_FLOOR, 1], Var(r_ij)
estimated from the data. With N >> D lambda -> 0 and the log-volume -> log|S|; with N <= D,
lambda grows and the value stays finite. A feature of zero variance (constant over the set) has
its variance floored at VAR_FLOOR times the mean variance (it then counts as a very thin
dimension instead of -inf). Compare log-volumes of sets of equal N: the estimate depends on N.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from noisevision.errors import UsageError
from noisevision.stats import Metric, register_metric
from noisevision.stats.features import FeatureAccumulator, features_of, summary_of

LAMBDA_FLOOR = 1e-6   # the least shrinkage: the determinant stays finite whatever N
VAR_FLOOR = 1e-12     # a feature's variance floor, relative to the mean variance
CHUNK = 8192          # rows per float64 block (memory CHUNK x D)


def log_volume(features: torch.Tensor, device: str | torch.device | None = None
               ) -> dict[str, float]:
    """{"log_volume": log|Sigma| (natural log), "shrinkage": lambda, "n": N} of (N, D)
    features, Sigma the shrinkage covariance described in the module docstring."""
    if features.dim() != 2 or features.shape[0] < 3:
        raise UsageError(f"log-volume needs at least 3 feature vectors, got "
                         f"{tuple(features.shape)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    n, d = features.shape
    x = features.detach()
    mean = torch.zeros(d, dtype=torch.float64, device=device)
    for c in x.split(CHUNK):
        mean += c.to(device, torch.float64).sum(0)
    mean /= n
    var = torch.zeros_like(mean)
    for c in x.split(CHUNK):
        var += (c.to(device, torch.float64) - mean).square().sum(0)
    var /= n - 1
    var_floor = max(float(var.mean()) * VAR_FLOOR, 1e-300)
    var = var.clamp_min(var_floor)
    sd = var.sqrt()
    r = torch.zeros(d, d, dtype=torch.float64, device=device)
    w2 = torch.zeros_like(r)
    for c in x.split(CHUNK):
        z = (c.to(device, torch.float64) - mean) / sd
        r += z.T @ z
        z2 = z.square()
        w2 += z2.T @ z2
    r /= n - 1
    # Var(r_ij) = n / (n-1)^3 sum_k (w_kij - w_bar_ij)^2, w_kij = z_ki z_kj, w_bar = (n-1)/n r
    w_bar = r * ((n - 1) / n)
    var_r = (w2 - n * w_bar.square()).clamp_min(0.0) * (n / (n - 1) ** 3)
    off = ~torch.eye(d, dtype=torch.bool, device=device)
    denom = float(r[off].square().sum())
    lam = float(var_r[off].sum()) / denom if denom > 0 else 1.0
    lam = min(max(lam, LAMBDA_FLOOR), 1.0)
    r.fill_diagonal_(1.0)  # a correlation matrix (features at the variance floor included)
    shrunk = r.mul_(1.0 - lam).add_(torch.eye(d, dtype=torch.float64, device=device), alpha=lam)
    eig = torch.linalg.eigvalsh(shrunk).clamp_min(lam)  # >= lambda since R is PSD
    value = float(var.log().sum() + eig.log().sum())
    if not math.isfinite(value):
        raise UsageError("log-volume is not finite: the features hold NaN or inf")
    return {"log_volume": value, "shrinkage": lam, "n": float(n)}


def volume_compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    mine = summary_of(features_of(state, "volume"), "volume", log_volume)
    ref = summary_of(features_of(reference, "volume"), "volume", log_volume)
    return {"log_volume": mine["log_volume"], "log_volume_reference": ref["log_volume"],
            "volume_shrinkage": mine["shrinkage"]}


VOLUME = register_metric(Metric(
    name="volume", input="inception",
    description="log-volume: log-determinant of the Inception feature covariance (shrunk toward "
                "the diagonal so it stays finite for N <= 2048)",
    accumulator=FeatureAccumulator, compare=volume_compare, min_images=3,
    columns=("log_volume", "log_volume_reference", "volume_shrinkage")))
