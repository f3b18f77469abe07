"""The counter-based RNG: distributions, independence of batch composition, stream separation."""

import math

import pytest
import torch

from noisevision.rng import ImageRandom, _mix32_int, mix32, seed_words


def test_mix32_matches_python_integer_reference():
    xs = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF]
    got = mix32(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert got == [_mix32_int(x) for x in xs]
    assert all(0 <= g < 2**32 for g in got)


def test_draws_depend_only_on_own_index():
    full = ImageRandom(7, torch.arange(10), "s")
    a = full.uniform(50)
    b = full.normal(3, 4)
    for i in (0, 3, 9):
        one = ImageRandom(7, torch.tensor([i]), "s")
        assert torch.equal(one.uniform(50)[0], a[i])
        assert torch.equal(one.normal(3, 4)[0], b[i])
    shuffled = ImageRandom(7, torch.tensor([9, 2, 5]), "s").uniform(50)
    assert torch.equal(shuffled, a[[9, 2, 5]])


def test_seeds_streams_and_indices_differ():
    idx = torch.arange(4)
    base = ImageRandom(0, idx, "a").bits(64)
    assert not torch.equal(base, ImageRandom(1, idx, "a").bits(64))
    assert not torch.equal(base, ImageRandom(0, idx, "b").bits(64))
    assert not torch.equal(base, ImageRandom(0, idx, "a").child("x").bits(64))
    assert len({tuple(r.tolist()) for r in base}) == 4
    assert seed_words(2**40 + 3, "a") != seed_words(3, "a")  # high seed bits matter


def test_uniform_and_normal_moments():
    r = ImageRandom(3, torch.arange(4), "m")
    u = r.uniform(50_000)
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(u.std()) - math.sqrt(1 / 12)) < 0.003
    z = r.normal(50_000)
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.std()) - 1.0) < 0.01
    assert abs(float((z**4).mean()) - 3.0) < 0.1  # Gaussian kurtosis
    lap = r.laplace(50_000, scale=2.0)
    assert abs(float(lap.abs().mean()) - 2.0) < 0.05  # E|X| = b for Laplace(0, b)


def test_integers_are_uniform_and_in_range():
    r = ImageRandom(5, torch.arange(3), "i")
    k = r.integers(2, 8, 60_000)
    assert int(k.min()) == 2 and int(k.max()) == 7
    counts = torch.bincount(k.flatten() - 2, minlength=6).double()
    expected = k.numel() / 6
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # 5 dof, p = 0.001
    with pytest.raises(ValueError):
        r.integers(3, 3, 1)


def test_bad_indices_rejected():
    with pytest.raises(ValueError):
        ImageRandom(0, torch.tensor([-1]), "s")
    with pytest.raises(ValueError):
        seed_words(-5, "s")
