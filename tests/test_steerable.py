"""The frequency-domain steerable pyramid and the batched histogram matching."""

from __future__ import annotations

import math

import pytest
import torch

from noisevision.generators.histmatch import (
    TargetHistogram,
    equal_bin_histogram,
    match_histograms,
)
from noisevision.generators.steerable import SteerablePyramid, max_scales


def _energy(pyr: dict) -> torch.Tensor:
    e = pyr["highpass"].square().sum() + pyr["lowpass"].square().sum()
    return e + sum(b.square().sum() for b in pyr["bands"])


@pytest.mark.parametrize("size,scales", [(64, 3), (48, 2), (32, 1)])
def test_reconstruction_is_exact_and_energy_is_kept(size, scales):
    gen = torch.Generator().manual_seed(0)  # test data only, not generator content
    x = torch.randn(2, 3, size, size, generator=gen)
    pyr = SteerablePyramid(size, scales).decompose(x)
    assert [tuple(b.shape[-3:]) for b in pyr["bands"]] == [
        (4, size >> k, size >> k) for k in range(scales)]
    back = SteerablePyramid(size, scales).reconstruct(pyr)
    assert float((back - x).abs().max()) < 1e-4  # float32 FFT round trip
    # tight frame: coefficient energy equals image energy (within float rounding)
    assert float(_energy(pyr) / x.square().sum()) == pytest.approx(1.0, abs=1e-4)


def test_band_scale_convention_matches_a_tight_frame():
    """White noise gives about the same band std at every level (the sp3 convention)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 128, 128, generator=gen)
    pyr = SteerablePyramid(128, 3).decompose(x)
    stds = [float(b.std()) for b in pyr["bands"]]
    assert max(stds) / min(stds) < 1.15, stds


def test_orientation_and_scale_selectivity():
    n = 64
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32),
                            torch.arange(n, dtype=torch.float32), indexing="ij")
    pyramid = SteerablePyramid(n, 3)
    # (grating, level, orientation that must hold most of the band energy)
    cases = [(torch.cos(2 * math.pi * 12 * xx / n), 0, 0),  # varies along x
             (torch.cos(2 * math.pi * 12 * yy / n), 0, 2),  # varies along y
             (torch.cos(2 * math.pi * 8 * (xx + yy) / n), 0, 3),  # 135 deg (y axis up)
             (torch.cos(2 * math.pi * 8 * (xx - yy) / n), 0, 1),  # 45 deg
             (torch.cos(2 * math.pi * 3 * xx / n), 2, 0)]  # coarse: level 2
    for grating, level, orient in cases:
        pyr = pyramid.decompose(grating)
        energy = torch.stack([b.square().sum(dim=(-2, -1)) for b in pyr["bands"]])  # (3, 4)
        assert int(energy.sum(1).argmax()) == level
        share = energy[level] / energy[level].sum()
        assert float(share[orient]) > 0.75, share


def test_pyramid_rejects_impossible_scales():
    assert max_scales(128) == 5 and max_scales(96) == 4 and max_scales(33) == 0
    assert max_scales(100) == 1 and max_scales(200) == 2 and max_scales(18) == 0
    with pytest.raises(ValueError):
        SteerablePyramid(36, 3)


def test_every_side_reconstructs_at_every_scale_it_allows():
    """Sides that are not powers of two (100 px crashed in the low-pass crop: 50 -> 12 + 12
    rows): every side 16..140 builds, decomposes and reconstructs exactly at 1..max scales."""
    gen = torch.Generator().manual_seed(4)
    for n in range(16, 141, 2):
        for scales in range(1, max_scales(n) + 1):
            x = torch.randn(2, n, n, generator=gen)
            pyramid = SteerablePyramid(n, scales)
            back = pyramid.reconstruct(pyramid.decompose(x))
            assert torch.allclose(back, x, atol=1e-4), (n, scales)


def test_histogram_matching_reaches_the_target_quantiles():
    gen = torch.Generator().manual_seed(2)
    source = torch.rand(3, 16384, generator=gen)
    ref = torch.stack([torch.randn(50000, generator=gen),
                       torch.empty(50000).exponential_(1.0, generator=gen),
                       torch.rand(50000, generator=gen) * 10 - 3])
    out = match_histograms(source, equal_bin_histogram(ref, 256))
    qs = torch.tensor([0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98])
    got, want = torch.quantile(out, qs, dim=1), torch.quantile(ref, qs, dim=1)
    spread = want[-1] - want[0]
    assert float(((got - want).abs() / spread).max()) < 0.01  # within 1% of the 2-98% spread
    # monotone map: the order of the source values is kept
    order = source.argsort(1)
    assert bool((out.gather(1, order).diff(dim=1) >= 0).all())


def test_histogram_matching_treats_rows_independently():
    gen = torch.Generator().manual_seed(3)
    source = torch.randn(5, 4096, generator=gen) ** 3
    target = equal_bin_histogram(torch.rand(5, 8192, generator=gen), 801)
    together = match_histograms(source, target)
    for i in range(5):
        row = TargetHistogram(target.counts[i:i + 1], target.lo[i:i + 1], target.step[i:i + 1])
        assert torch.equal(match_histograms(source[i:i + 1], row)[0], together[i])
