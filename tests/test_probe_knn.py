"""kNN classification against a naive re-derivation (loops over queries and neighbours)."""

import math

import pytest
import torch

from noisevision.errors import UsageError
from noisevision.probe.knn import knn_accuracy, knn_predict


def naive_knn(train, labels, query, num_classes, k, temperature):
    out = []
    for q in query:
        sims = []
        for x, y in zip(train, labels, strict=True):
            s = float(q @ x) / (float(q.norm()) * float(x.norm()))
            sims.append((s, int(y)))
        sims.sort(key=lambda t: -t[0])
        votes = [0.0] * num_classes
        for s, y in sims[:k]:
            votes[y] += 1.0 if temperature is None else math.exp(s / temperature)
        out.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(out)


@pytest.mark.parametrize("k,temperature", [(1, 0.07), (5, 0.07), (7, None), (15, 0.5)])
def test_knn_matches_naive_loops(k, temperature):
    g = torch.Generator().manual_seed(0)
    train = torch.randn(60, 8, generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    query = torch.randn(25, 8, generator=g)
    got = knn_predict(train, labels, query, 4, k=k, temperature=temperature, chunk=7)
    assert torch.equal(got, naive_knn(train, labels, query, 4, k, temperature))


def test_knn_is_scale_invariant_and_separates_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 16, generator=g) * 5
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 16, generator=g)
    r = knn_accuracy(x[:200] * 1000.0, y[:200], x[200:], y[200:], 3, k=10)
    assert r["val_acc"] > 0.95
    assert r["method"] == "knn"


def test_knn_k_larger_than_train_and_bad_args():
    x = torch.eye(3)
    y = torch.tensor([0, 1, 1])
    assert knn_predict(x, y, x, 2, k=50, temperature=None).tolist() == [1, 1, 1]
    with pytest.raises(UsageError, match="k must be"):
        knn_predict(x, y, x, 2, k=0)
    with pytest.raises(UsageError, match="temperature"):
        knn_predict(x, y, x, 2, temperature=-1.0)
