"""Fréchet Inception Distance and Kernel Inception Distance of a source to the reference
(paper section 5.2: FID predicts accuracy, r = -0.85), on the Inception pool features of
stats.features, through torch-fidelity's own formulas.

FID (Heusel et al. 2017): |mu_s - mu_r|^2 + tr(S_s + S_r - 2 (S_s S_r)^(1/2)), means and
covariances (ddof 1) in float64 (`torch_fidelity.metric_fid`).
KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
(x.y / d + 1)^3, averaged over `KID_SUBSETS` random subsets of min(1000, N_s, N_r) features of each
set (`torch_fidelity.metric_kid`, fixed seed: the same features give the same number).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from noisevision.errors import UsageError
from noisevision.stats import Metric, register_metric
from noisevision.stats.features import (
    INSTALL_FIDELITY,
    FeatureAccumulator,
    features_of,
    summary_of,
)

KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
KID_SEED = 2020


def _fidelity(module: str) -> Any:
    try:
        return __import__(f"torch_fidelity.{module}", fromlist=["_"])
    except ImportError:
        raise UsageError(f"FID/KID need torch-fidelity: {INSTALL_FIDELITY}") from None


def fid_statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    """{"mu": (D,), "sigma": (D, D)} float64 of (N, D) features."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise UsageError(f"FID needs at least 2 feature vectors, got {tuple(features.shape)}")
    stats = _fidelity("metric_fid").fid_features_to_statistics(features.detach().cpu().double())
    return {"mu": np.asarray(stats["mu"], np.float64), "sigma": np.asarray(stats["sigma"],
                                                                         np.float64)}


def _statistics_of(state: dict[str, Any]) -> dict[str, np.ndarray]:
    return summary_of(features_of(state, "fid"), "fid", fid_statistics)


def frechet_distance(stats_1: dict[str, np.ndarray], stats_2: dict[str, np.ndarray]) -> float:
    """FID of two {"mu", "sigma"} statistics (torch-fidelity's fid_statistics_to_metric)."""
    mf = _fidelity("metric_fid")
    return float(mf.fid_statistics_to_metric(stats_1, stats_2, False)[mf.KEY_METRIC_FID])


def fid_compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    return {"fid": frechet_distance(_statistics_of(state), _statistics_of(reference))}


def kid(features_1: torch.Tensor, features_2: torch.Tensor, subsets: int = KID_SUBSETS,
        subset_size: int | None = None, seed: int = KID_SEED) -> dict[str, float]:
    """{"kid": mean, "kid_std": std over subsets} (torch-fidelity's kid_features_to_metric)."""
    n = min(len(features_1), len(features_2))
    size = min(KID_MAX_SUBSET, n) if subset_size is None else int(subset_size)
    if size < 2 or size > n:
        raise UsageError(f"KID subset size {size} must be in 2..{n} (the smaller set's size)")
    mk = _fidelity("metric_kid")
    out = mk.kid_features_to_metric(
        features_1.detach().cpu().float(), features_2.detach().cpu().float(),
        kid_subsets=int(subsets), kid_subset_size=size, rng_seed=int(seed), verbose=False)
    return {"kid": float(out[mk.KEY_METRIC_KID_MEAN]), "kid_std": float(out[mk.KEY_METRIC_KID_STD])}


def kid_compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    return kid(features_of(state, "kid"), features_of(reference, "kid"))


FID = register_metric(Metric(
    name="fid", input="inception",
    description="Frechet Inception Distance to the reference (TF-Inception pool features)",
    accumulator=FeatureAccumulator, compare=fid_compare, min_images=2, columns=("fid",)))

KID = register_metric(Metric(
    name="kid", input="inception",
    description=f"Kernel Inception Distance to the reference (cubic kernel, {KID_SUBSETS} subsets "
                f"of min({KID_MAX_SUBSET}, N))",
    accumulator=FeatureAccumulator, compare=kid_compare, min_images=2,
    columns=("kid", "kid_std")))
