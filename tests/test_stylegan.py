"""Tests of the untrained StyleGAN generators (issue 4): filter banks, pink noise, fast path vs
reference path, reproducibility, and the statistics each variant claims (paper section 3.4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from noisevision.errors import ConfigError, UsageError
from noisevision.generators import create_generator
from noisevision.generators.stylegan.filters import (
    blur_after_transpose,
    conv_transpose_stride2,
    lanczos_matrix,
    laplacian_envelope,
    pink_noise,
    upsample2x,
    wavelet_bank,
)
from noisevision.generators.stylegan.network import build_layers, channels, num_ws
from noisevision.generators.stylegan.paths.tied import relu_mix_table
from noisevision.rng import ImageRandom
from noisevision.stats.gradients import gradient_kurtosis
from noisevision.stats.gradients import orientation_coherence as coherence
from noisevision.stats.spectrum import power_spectrum_slope as spectrum_slope

VARIANTS = ("stylegan_random", "stylegan_highfreq", "stylegan_sparse", "stylegan_oriented")
SMALL = {"resolution": 64, "width": 0.125}


# ---- samples (the claims' statistics live in noisevision.stats.spectrum and .gradients) -------
@pytest.fixture(scope="module")
def samples() -> dict[str, torch.Tensor]:
    """24 images of each variant at 64 px, width 0.125, seed 0."""
    return {name: create_generator(name, **SMALL).generate(range(24), seed=0) for name in VARIANTS}


# ---- filter banks -----------------------------------------------------------------------------
def test_sign_bank_is_40_ternary_filters_with_documented_members():
    bank = wavelet_bank("sign")
    assert bank.shape == (40, 3, 3)
    assert set(bank.unique().tolist()) == {-1.0, 0.0, 1.0}
    edge0 = torch.tensor([[1.0, 0, -1]] * 3)
    assert torch.equal(bank[0], edge0)
    assert torch.equal(bank[8], -edge0)  # the edge at 180 deg
    assert torch.equal(bank[16], torch.tensor([[1.0, -1, 1]] * 3))  # thin line, sign-quantised
    assert torch.equal(bank[16:24], -bank[24:32])  # lines and their negatives
    assert torch.equal(bank[32:36], -bank[36:40])  # sparse filters and their negatives
    assert bank[32].abs().sum() == 1 and bank[32, 1, 1] == 1  # delta


def test_real_bank_is_40_filters_with_documented_members():
    bank = wavelet_bank("real")
    assert bank.shape == (40, 3, 3)
    assert torch.allclose(bank[0], torch.tensor([[1.0, 0, -1]] * 3))  # 0 deg edge
    assert torch.allclose(bank[8], torch.tensor([[2 / 3, -4 / 3, 2 / 3]] * 3), atol=1e-6)
    assert torch.allclose(bank[20:], -bank[:20])  # negatives of all 20
    oriented = torch.cat([bank[0:16], bank[20:36]])
    assert oriented.sum(dim=(1, 2)).abs().max() < 1e-6  # edges and lines are zero-mean
    assert bank[16:20].sum(dim=(1, 2)).abs().min() > 0.5  # sparse filters are not
    # rotations: the 90-degree edge is the transpose of the 0-degree one (up to sign)
    assert torch.allclose(bank[4].abs(), bank[0].T.abs(), atol=1e-6)
    assert not torch.equal(bank, wavelet_bank("sign"))


# ---- bulk random draws ------------------------------------------------------------------------
@pytest.mark.parametrize("indices", [[0], [5, 2**39, 3], list(range(6))])
def test_fast_hash_equals_image_random_bits_and_advances_the_counter(indices):
    a = ImageRandom(2**40 + 17, torch.tensor(indices), "stylegan/test")
    b = ImageRandom(2**40 + 17, torch.tensor(indices), "stylegan/test")
    a.bits(5), b.bits(5)
    assert torch.equal(a.fast_bits(1001), b.bits(1001))
    assert torch.equal(a.bits(7), b.bits(7))  # the counters moved by the same amount
    # uniform16 is two 16-bit halves of each word: high halves first, then low halves
    words = b.bits(4)
    u = a.uniform16(7)
    halves = torch.cat([words >> 16, words & 0xFFFF], 1)[:, :7].float()
    assert torch.equal(u, (halves + 0.5) / 65536.0)


# ---- pink noise and envelope ------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5])
def test_pink_noise_has_configured_amplitude_slope(alpha):
    n = 64
    rnd = ImageRandom(3, torch.arange(4), "test/pink")
    maps = pink_noise(torch.full((4,), alpha), rnd.uniform16(n, n // 2 + 1), None)
    assert maps.shape == (4, n, n)
    assert torch.allclose(maps.std(dim=(1, 2), unbiased=False), torch.ones(4), atol=1e-4)
    assert maps.mean(dim=(1, 2)).abs().max() < 1e-5
    power_slope = spectrum_slope(maps[:, None].expand(-1, 3, -1, -1))
    assert abs(-power_slope / 2 - alpha) < 0.03  # amplitude ~ 1/f^alpha, power ~ 1/f^(2 alpha)


def test_lanczos_envelope_rows_sum_to_one_and_interpolate():
    m = lanczos_matrix(4, 64)
    assert m.shape == (64, 4)
    assert torch.allclose(m.sum(1), torch.ones(64), atol=1e-6)
    assert torch.allclose(lanczos_matrix(4, 4), torch.eye(4), atol=1e-6)
    grid = torch.ones(2, 4, 4)
    for mode in ("lanczos", "bicubic"):
        assert torch.allclose(laplacian_envelope(grid, 32, mode), torch.ones(2, 32, 32),
                              atol=1e-5)


# ---- resampling ---------------------------------------------------------------------------------
def test_parity_split_transposed_conv_and_separable_blur_equal_the_plain_ops():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 5, 6, 7, generator=g), torch.randn(4, 5, 3, 3, generator=g)
    plain = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    assert torch.allclose(conv_transpose_stride2(x, w), plain, atol=1e-5)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    fir = (k[:, None] * k[None, :] / 16.0)[None, None]
    blurred = F.conv2d(F.pad(plain.reshape(8, 1, 13, 15), (1, 1, 1, 1)), fir).reshape(2, 4, 12, 14)
    assert torch.allclose(blur_after_transpose(plain), blurred, atol=1e-5)
    assert torch.allclose(blur_after_transpose(plain[:, :1]), blurred[:, :1], atol=1e-5)


def test_skip_upsampling_is_upfirdn2d_with_zero_padding():
    """StyleGAN2's upsample2d: zero insertion, pad (2, 1), the [1,3,3,1]^2 FIR with gain 4."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    z = torch.zeros(2, 3, 10, 14, dtype=torch.float64)
    z[..., ::2, ::2] = x
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    fir = (k[:, None] * k[None, :] / 64.0 * 4.0)[None, None]
    want = F.conv2d(F.pad(z.reshape(6, 1, 10, 14), (2, 1, 2, 1)), fir).reshape(2, 3, 10, 14)
    assert torch.allclose(upsample2x(x), want, atol=1e-12)
    ones = upsample2x(torch.ones(1, 1, 4, 4))  # a flat image fades to 3/4 at each edge
    assert ones[0, 0, 0, 0] == 0.5625 and ones[0, 0, 0, 3] == 0.75 and ones[0, 0, 3, 3] == 1.0
    # the old behaviour: replicated borders, equal inside
    rep = upsample2x(x, "replicate")
    assert torch.equal(rep, F.interpolate(x, scale_factor=2.0, mode="bilinear",
                                          align_corners=False))
    assert torch.allclose(rep[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], atol=1e-12)
    assert not torch.allclose(rep[..., 0, :], want[..., 0, :])
    with pytest.raises(ValueError, match="zero, replicate"):
        upsample2x(x, "reflect")


def _border_flatness(images: torch.Tensor, width: int) -> torch.Tensor:
    """Per image: the std of a `width`-px border over the interior's, averaged over channels."""
    mask = torch.zeros(images.shape[-2:], dtype=torch.bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    border, interior = images[:, :, mask], images[:, :, ~mask]
    return (border.std(2, unbiased=False) / interior.std(2, unbiased=False)).mean(1)


def test_random_images_have_the_flat_border_frame_of_the_published_images():
    """The published StyleGAN-Random tiles (reference-samples.png, 5 tiles at 128 px) have a
    flat frame: an 8 px border varies 0.53-0.76 times as much as the interior (mean 0.675); the
    frame is dark or light by the sign of each network's raw channel means. Zero padding on the
    skip path makes it (measured: 0.64-0.69 mean at 64-256 px and any width); replicated
    borders do not (0.91-0.98)."""
    mean = {}
    for pad in ("zero", "replicate"):
        gen = create_generator("stylegan_random", resolution=64, width=0.25,
                               images_per_network=3, skip_padding=pad)
        mean[pad] = float(_border_flatness(gen.images(range(36), 0).float(), 4).mean())
    assert 0.6 < mean["zero"] < 0.76, mean
    assert mean["replicate"] > 0.85, mean
    assert create_generator("stylegan_random").config.skip_padding == "zero"


def test_a_stored_config_without_skip_padding_renders_as_before():
    """Datasets written before the option existed regenerate with replicated borders."""
    from noisevision.generators.base import generator_from_description

    gen = create_generator("stylegan_random", **SMALL)
    desc = gen.describe()
    del desc["config"]["skip_padding"]
    old = generator_from_description(desc)
    assert old.config.skip_padding == "replicate"
    want = create_generator("stylegan_random", **SMALL, skip_padding="replicate")
    assert torch.equal(old.images(range(2), 0), want.images(range(2), 0))
    assert not torch.equal(old.images(range(2), 0), gen.images(range(2), 0))


# ---- network shape ----------------------------------------------------------------------------
def test_layers_widths_and_latent_count_follow_the_reference():
    assert [channels(r, 1.0) for r in (4, 64, 128, 256, 512)] == [512, 512, 256, 128, 64]
    assert (num_ws(128), num_ws(256), num_ws(512)) == (12, 14, 16)
    layers = build_layers(256, 1.0)
    assert max(layer.w_index for layer in layers) + 1 == num_ws(256)
    assert sum(layer.kind == "torgb" for layer in layers) == 7
    assert sum(layer.up for layer in layers) == 6


# ---- fast path against the plain reference path -----------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_fast_path_matches_reference_path(name):
    idx = [0, 1, 401]  # two networks in one batch
    # float32: "auto" may pick bfloat16 for Random on CPU (test_stylegan_winograd bounds it)
    fast = create_generator(name, compute_dtype="float32", **SMALL).generate(idx, seed=5)
    ref = create_generator(name, path="reference", **SMALL).generate(idx, seed=5)
    assert torch.allclose(fast, ref, atol=2e-4), float((fast - ref).abs().max())
    assert fast.std() > 0.05


@pytest.mark.parametrize("name, options", [
    ("stylegan_sparse", {"noise_maps": "none"}),  # bias, no noise: the table in z
    ("stylegan_oriented", {"bias_range": (0.0, 0.0)}),  # shared noise, no bias: the table in z/n
    ("stylegan_highfreq", {"noise_maps": "none"}),  # neither
])
def test_fast_path_matches_reference_without_bias_or_noise(name, options):
    idx = [2, 400]
    fast = create_generator(name, **options, **SMALL).generate(idx, seed=9)
    ref = create_generator(name, path="reference", **options, **SMALL).generate(idx, seed=9)
    assert torch.allclose(fast, ref, atol=2e-4), float((fast - ref).abs().max())


def test_relu_mix_table_equals_the_channel_sum():
    g = torch.Generator().manual_seed(0)
    b, c, p, r = 3, 50, 400, 5
    u, v = torch.randn(b, p, generator=g), torch.randn(b, p, generator=g)
    v[0, :7] = 0.0  # noise exactly zero: the t = +-inf / nan limits
    u[0, :3] = 0.0
    alpha = torch.randn(b, c, generator=g)
    alpha[1, :4] = 0.0  # channels that ignore u
    beta = torch.randn(b, c, generator=g)
    rows = torch.randn(b, c, r, generator=g)

    def brute(pre):  # pre: (B, C, P)
        return torch.einsum("bcr,bcp->brp", rows.double(), pre.double().relu())

    with_noise = relu_mix_table(u, v.abs(), v < 0, alpha, torch.ones_like(alpha), rows)
    expect = brute(alpha[:, :, None] * u[:, None] + v[:, None])
    assert torch.allclose(with_noise.double(), expect, atol=1e-4)
    with_bias = relu_mix_table(u, torch.ones_like(u), None, alpha, beta, rows)
    expect = brute(alpha[:, :, None] * u[:, None] + beta[:, :, None])
    assert torch.allclose(with_bias.double(), expect, atol=1e-4)


def test_single_thread_chunked_path_matches_reference_and_is_batch_invariant():
    # with one intra-op thread the bias+noise layers are built per image in cache-sized chunks
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = create_generator("stylegan_sparse", resolution=64, width=0.25)
        fast = gen.generate([0, 1, 401], seed=5)
        ref = create_generator("stylegan_sparse", path="reference", resolution=64,
                               width=0.25).generate([0, 1, 401], seed=5)
        assert torch.equal(gen.generate([401, 1], seed=5), fast[[2, 1]])
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(fast, ref, atol=2e-4), float((fast - ref).abs().max())


def test_paper_options_run_on_the_dense_path():
    gen = create_generator("stylegan_oriented", filter_choice="pair", amplitude="pair",
                           noise_alpha=(0.5, 2.0), noise_envelope="bicubic", **SMALL)
    x = gen.generate(2, seed=0)
    assert x.shape == (2, 3, 64, 64) and torch.isfinite(x).all() and x.std() > 0.05
    tied = create_generator("stylegan_oriented", **SMALL).generate(2, seed=0)
    assert not torch.allclose(x, tied)


# ---- reproducibility --------------------------------------------------------------------------
def test_images_are_bit_identical_in_any_batch():
    gen = create_generator("stylegan_oriented", **SMALL)
    whole = gen.generate([3, 399, 400, 7], seed=11)
    assert torch.equal(gen.generate([400], seed=11)[0], whole[2])
    assert torch.equal(gen.generate([7, 3], seed=11), whole[[3, 0]])
    fresh = create_generator("stylegan_oriented", **SMALL)  # no cached networks or maps
    assert torch.equal(fresh.generate([399, 400], seed=11, batch_size=1), whole[1:3])


@pytest.mark.parametrize("name", ["stylegan_random", "stylegan_highfreq", "stylegan_sparse"])
def test_other_variants_are_bit_identical_in_any_batch(name):
    gen = create_generator(name, **SMALL)
    whole = gen.generate([5, 1, 402], seed=3)
    assert torch.equal(gen.generate([1], seed=3)[0], whole[1])
    assert torch.equal(gen.generate([402, 5], seed=3), whole[[2, 0]])


def test_network_is_shared_by_groups_of_images_per_network():
    a = create_generator("stylegan_random", **SMALL).generate([0, 1], seed=2)
    b = create_generator("stylegan_random", images_per_network=1, **SMALL).generate([0, 1],
                                                                                    seed=2)
    assert torch.equal(a[0], b[0])  # image 0 uses network 0 in both
    assert not torch.allclose(a[1], b[1])  # image 1: network 0 vs network 1
    assert not torch.allclose(a[0], a[1])  # per-image latents differ within a network


def test_seeds_give_different_images():
    gen = create_generator("stylegan_sparse", **SMALL)
    assert not torch.allclose(gen.generate(2, seed=0), gen.generate(2, seed=1))


def test_bfloat16_fast_path_stays_close_to_float32():
    x32 = create_generator("stylegan_oriented", **SMALL).generate(3, seed=4)
    x16 = create_generator("stylegan_oriented", compute_dtype="bfloat16",
                           **SMALL).generate(3, seed=4)
    assert (x32 - x16).abs().mean() < 0.03


# ---- colour normalisation ---------------------------------------------------------------------
def test_colour_targets_are_imagenet_like(samples):
    x = samples["stylegan_highfreq"]
    means = x.mean(dim=(2, 3)).mean(0)  # clipping pulls the means a little toward 0.5
    assert torch.allclose(means, torch.tensor([0.483, 0.455, 0.401]), atol=0.08)
    assert x.min() >= 0 and x.max() <= 1


# ---- what the variants claim (paper section 3.4) ----------------------------------------------
def test_highfreq_has_flatter_spectrum_than_random(samples):
    # measured at seed 0: random about -3.1, high-freq about -2.6 (log power per log frequency)
    assert spectrum_slope(samples["stylegan_highfreq"]) > spectrum_slope(
        samples["stylegan_random"]) + 0.2


def test_sparse_has_heavier_tailed_gradients_than_highfreq(samples):
    # measured at seed 0: high-freq about 4.7, sparse about 9.5
    assert gradient_kurtosis(samples["stylegan_sparse"]) > 1.4 * gradient_kurtosis(
        samples["stylegan_highfreq"])


def test_oriented_has_more_coherent_orientation_than_sparse(samples):
    # measured at seed 0: sparse about 0.42, oriented about 0.55
    assert coherence(samples["stylegan_oriented"]) > coherence(samples["stylegan_sparse"]) + 0.06


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("resolution", 96), ("width", 0), ("filter_subset", (0, 40)), ("filter_subset", (30, 10)),
    ("noise_maps", "perlin"), ("bias_range", (0.2, -0.2)), ("shared_noise_size", 100),
    ("filter_bank", "haar"), ("path", "turbo"),
])
def test_bad_config_values_raise_one_line_config_errors(field, value):
    with pytest.raises(ConfigError) as err:
        create_generator("stylegan_oriented", **{field: value})
    assert field in str(err.value) and "\n" not in str(err.value)


def test_unknown_option_is_a_usage_error():
    with pytest.raises(UsageError, match="allowed"):
        create_generator("stylegan_oriented", wdith=0.5)


def test_config_survives_a_json_round_trip():
    import json

    gen = create_generator("stylegan_sparse", **SMALL)
    desc = json.loads(json.dumps(gen.describe()))
    again = create_generator(desc["name"], **desc["config"])
    assert again.config == gen.config
    assert math.isclose(again.config.bias_range[0], -0.2)
