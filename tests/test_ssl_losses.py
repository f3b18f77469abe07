"""Losses against naive re-derivations of their formulas (pairwise loops) on tiny inputs."""

import math

import torch
import torch.nn.functional as F

from noisevision.ssl.losses import align_loss, align_uniform_loss, infonce_loss, uniform_loss


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).float()


def test_align_loss_matches_loop():
    x, y = _unit(7, 5, 0), _unit(7, 5, 1)
    for alpha in (1.0, 2.0, 3.0):
        naive = sum(float(torch.sqrt(((x[i] - y[i]) ** 2).sum())) ** alpha for i in range(7)) / 7
        assert math.isclose(float(align_loss(x, y, alpha)), naive, rel_tol=1e-5)


def test_uniform_loss_matches_pair_loop():
    x = _unit(9, 4, 2)
    for t in (0.5, 2.0, 10.0):
        terms = [math.exp(-t * float(((x[i] - x[j]) ** 2).sum()))
                 for i in range(9) for j in range(i + 1, 9)]
        naive = math.log(sum(terms) / len(terms))
        assert math.isclose(float(uniform_loss(x, t)), naive, rel_tol=1e-5, abs_tol=1e-6)


def test_uniform_loss_extremes():
    # All points equal: every distance 0, loss log(1) = 0; two antipodes at t=2: log(exp(-8)).
    same = torch.ones(4, 3) / math.sqrt(3)
    assert abs(float(uniform_loss(same, 2.0))) < 1e-6
    anti = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert math.isclose(float(uniform_loss(anti, 2.0)), -8.0, rel_tol=1e-6)


def test_align_uniform_combination():
    x, y = _unit(6, 8, 3), _unit(6, 8, 4)
    loss, parts = align_uniform_loss(x, y, alpha=2, t=2, align_weight=0.5, unif_weight=2.0)
    expect = 0.5 * align_loss(x, y, 2) + 2.0 * (uniform_loss(x, 2) + uniform_loss(y, 2)) / 2
    assert torch.allclose(loss, expect)
    assert torch.allclose(parts["align"], align_loss(x, y, 2))


def test_infonce_matches_loop():
    q, k, queue = _unit(5, 6, 5), _unit(5, 6, 6), _unit(11, 6, 7).T
    t = 0.2
    loss, logits = infonce_loss(q, k, queue, t)
    assert logits.shape == (5, 12)
    naive = 0.0
    for i in range(5):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ queue[:, j]) / t) for j in range(11))
        naive += -math.log(pos / (pos + neg))
    assert math.isclose(float(loss), naive / 5, rel_tol=1e-5)
