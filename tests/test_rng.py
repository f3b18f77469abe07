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


# lowbias32 reference values: the hash as published by Chris Wellons (hash-prospector,
# "lowbias32": x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16),
# compiled as C (uint32 arithmetic) and run; independent of noisevision's code.
LOWBIAS32_VECTOR = {0x00000000: 0x00000000, 0x00000001: 0x688990C0, 0x00000002: 0xD1132181,
                    0xDEADBEEF: 0xE628C683, 0x80000000: 0xCC4B4124, 0xFFFFFFFF: 0x6768824A,
                    0x00003039: 0x912EFCF7}


def test_every_lowbias32_implementation_matches_the_published_function():
    import numpy as np

    from noisevision.rng import mix32

    x = list(LOWBIAS32_VECTOR)
    want = list(LOWBIAS32_VECTOR.values())
    assert mix32(torch.tensor(x, dtype=torch.int64)).tolist() == want       # int64 tensors
    assert mix32(np.array(x, dtype=np.uint32)).tolist() == want             # uint32 numpy
    assert [mix32(v) for v in x] == want                                    # Python ints
