"""Winograd convolutions of StyleGAN-Random (issue 4): exact transforms, agreement with the
direct convolutions, and the generator's images with and without them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from noisevision.errors import ConfigError
from noisevision.generators import create_generator
from noisevision.generators.stylegan.filters import blur_after_transpose, conv_transpose_stride2
from noisevision.generators.stylegan.paths import winograd as stylegan_winograd
from noisevision.generators.stylegan.paths.winograd import (
    cook_toom,
    plan,
    transform_up_weight,
    transform_weight,
    up_tile,
    upsample_weight,
    winograd_conv,
    winograd_upsample,
)
from noisevision.stats.spectrum import power_spectrum_slope as spectrum_slope

SMALL = {"resolution": 64, "width": 0.125}  # 64 channels: "auto" takes Winograd at 16-64 px


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (6, 3), (4, 2)])
def test_cook_toom_matrices_compute_the_correlation(m, r):
    at, g, bt = cook_toom(m, r, (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)[:m + r - 2])
    gen = torch.Generator().manual_seed(m * 10 + r)
    d = torch.randn(m + r - 1, dtype=torch.float64, generator=gen)
    k = torch.randn(r, dtype=torch.float64, generator=gen)
    y = at @ ((g @ k) * (bt @ d))
    expect = torch.stack([(d[i:i + r] * k).sum() for i in range(m)])
    assert torch.allclose(y, expect, atol=1e-12)


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("side", [4, 7, 16])
@pytest.mark.parametrize("m", [2, 4, 6])
def test_winograd_equals_direct_convolutions(side, m):
    gen = torch.Generator().manual_seed(side + m)
    x = torch.randn(2, 24, side, side, generator=gen)
    w = torch.randn(20, 24, 3, 3, generator=gen)
    same, up = plan("same", m), plan("up", m)
    y = winograd_conv(x, transform_weight(w, same, torch.float32), same)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    assert y.shape == ref.shape and _rel_err(y, ref) < 5e-5  # measured 3e-7 .. 1e-5
    y = winograd_conv(x, transform_weight(w, up, torch.float32), up)
    ref = conv_transpose_stride2(x.double(), w.double())
    assert y.shape == ref.shape and _rel_err(y, ref) < 5e-5
    # the upsampling layer with its blur as four parity kernels, outputs interleaved
    y = winograd_conv(x, transform_weight(upsample_weight(w), same, torch.float32), same,
                      phases=2)
    ref = blur_after_transpose(ref)
    assert y.shape == ref.shape and _rel_err(y, ref) < 5e-5


def test_winograd_image_does_not_depend_on_its_batch():
    x = torch.randn(3, 64, 16, 16, generator=torch.Generator().manual_seed(1))
    p = plan("same", 4)
    u = transform_weight(torch.randn(64, 64, 3, 3), p, torch.float32)
    assert torch.equal(winograd_conv(x[1:2], u, p)[0], winograd_conv(x, u, p)[1])


def test_winograd_bands_equal_one_band(monkeypatch):
    # bands of tile rows (BAND_TILES) change which tiles each matmul sees (so the rounding of its
    # kernels may differ), not the result: equal to rounding, and to direct convolutions
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 30, 21, generator=gen)
    w = torch.randn(12, 16, 3, 3, generator=gen)
    p = plan("same", 4)
    u = transform_weight(w, p, torch.float32)
    u4 = transform_weight(upsample_weight(w), p, torch.float32)
    one, one4 = winograd_conv(x, u, p), winograd_conv(x, u4, p, phases=2)
    for band_tiles in (1, 6, 13):  # 8 x 6 tiles: bands of 1, 1 and 2 tile rows
        monkeypatch.setattr(stylegan_winograd, "BAND_TILES", band_tiles)
        y = winograd_conv(x, u, p)
        assert _rel_err(y, one.double()) < 2e-5  # Winograd float32 rounding: ~1e-6
        assert torch.equal(winograd_conv(x[1:], u, p)[0], y[1])  # still batch-invariant
        assert _rel_err(winograd_conv(x, u4, p, phases=2), one4.double()) < 2e-5
    ref = F.conv2d(x.double(), w.double(), padding=1)
    assert _rel_err(one, ref) < 5e-5
    ref = blur_after_transpose(conv_transpose_stride2(x.double(), w.double()))
    assert _rel_err(one4, ref) < 5e-5


@pytest.mark.parametrize("m", [2, 3, 4, 5])
@pytest.mark.parametrize("side", [4, 7, 16])
def test_winograd_upsample_equals_transposed_conv_and_blur(m, side):
    gen = torch.Generator().manual_seed(side * 10 + m)
    x = torch.randn(2, 24, side, side + 3, generator=gen)  # non-square too
    w = torch.randn(20, 24, 3, 3, generator=gen)
    u = transform_up_weight(w, torch.float32, m)
    assert u.shape == ((m + 2) ** 2, 20, 24)
    y = winograd_upsample(x, u)
    ref = blur_after_transpose(conv_transpose_stride2(x.double(), w.double()))
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert _rel_err(y, ref) < 2e-5  # measured 2e-7 (m = 2, 3) .. 3e-6 (m = 5)


def test_winograd_upsample_image_does_not_depend_on_its_batch():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 64, 16, 16, generator=gen).to(torch.bfloat16)
    u = transform_up_weight(torch.randn(48, 64, 3, 3, generator=gen), torch.bfloat16, up_tile(16))
    assert torch.equal(winograd_upsample(x[2:3], u)[0], winograd_upsample(x, u)[2])


def test_bfloat16_winograd_upsample_error_per_layer():
    """bfloat16 rms relative error of one upsampling layer: F(m, 2) parity kernels (measured
    0.4% for m = 3, 1.1% for m = 5) against the four-parity F(4, 3) it replaces (1.1%); F(4, 3)
    on a stride-1 layer: 1.7%."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 128, 24, 24, generator=gen).relu().to(torch.bfloat16)
    w = torch.randn(128, 128, 3, 3, generator=gen)
    ref = blur_after_transpose(conv_transpose_stride2(x.double(), w.double()))

    def rms(y: torch.Tensor) -> float:
        return float((y.double() - ref).square().mean().sqrt() / ref.square().mean().sqrt())

    same = plan("same", 4)
    four = rms(winograd_conv(x, transform_weight(upsample_weight(w), same, torch.bfloat16), same,
                             phases=2))
    errs = {m: rms(winograd_upsample(x, transform_up_weight(w, torch.bfloat16, m)))
            for m in (3, 5)}
    assert errs[3] < 0.008 and errs[5] < 0.02 and errs[5] < 1.2 * four, (errs, four)
    assert up_tile(64) in (3, 4, 5) and up_tile(16) in (3, 4, 5)


def test_random_generator_with_winograd_matches_direct():
    # (the reference-path comparison of test_stylegan.py runs "auto", i.e. Winograd, at 64 ch)
    idx = [0, 1, 2]
    wino = create_generator("stylegan_random", conv_algorithm="winograd", compute_dtype="float32",
                            **SMALL)
    x = wino.generate(idx, seed=5)
    direct = create_generator("stylegan_random", conv_algorithm="direct", compute_dtype="float32",
                              **SMALL)
    y = direct.generate(idx, seed=5)
    assert not torch.equal(x, y)  # the Winograd path did run
    assert torch.allclose(x, y, atol=2e-4), float((x - y).abs().max())
    assert torch.equal(wino.generate([2, 0], seed=5), x[[2, 0]])  # any batch, bit for bit
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # and with one thread (bit-identical across batches, not across thread counts)
        one = wino.generate(idx, seed=5)
        assert torch.equal(wino.generate([1], seed=5)[0], one[1])
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(one, x, atol=1e-5)


def test_bfloat16_winograd_keeps_random_smooth():
    # bfloat16 Winograd F(4, 3) has about 6x the relative error of a bfloat16 direct conv per
    # layer (measured 1.7% vs 0.29% rms; 2.6% with the points 0, +-1, +-2, which gave these
    # image figures); in images: mean |diff| to float32 measured 0.0064
    # (direct bfloat16: 0.0018), spectrum slope -3.141 vs -3.144 (24 images, seed 0)

    x32 = create_generator("stylegan_random", compute_dtype="float32", **SMALL).generate(8, seed=0)
    x16 = create_generator("stylegan_random", compute_dtype="bfloat16", conv_algorithm="winograd",
                           **SMALL).generate(8, seed=0)
    assert (x32 - x16).abs().mean() < 0.015
    assert abs(spectrum_slope(x16) - spectrum_slope(x32)) < 0.05
    assert spectrum_slope(x16) < -2.8  # the high-freq claim's margin: high-freq is about -2.6


def test_conv_algorithm_is_validated():
    with pytest.raises(ConfigError):
        create_generator("stylegan_random", conv_algorithm="fft", **SMALL)


def test_fold_upsampling_equals_transposed_conv_and_blur():
    """conv_algorithm="fold" (the CUDA default's up layers: one 3x3 conv to 4 x the channels with
    the blur folded in, then a pixel shuffle) renders the direct path's images to rounding."""
    fold = create_generator("stylegan_random", conv_algorithm="fold", compute_dtype="float32",
                            **SMALL)
    direct = create_generator("stylegan_random", conv_algorithm="direct", compute_dtype="float32",
                              **SMALL)
    a = fold.generate(range(4), seed=5)
    b = direct.generate(range(4), seed=5)
    assert float((a - b).abs().max()) < 1e-4


def test_channels_last_activations_match(monkeypatch):
    """The CUDA default keeps activations channels-last (ToRGB reads them through a view, the
    pixel shuffle keeps the layout); forced on CPU it gives the NCHW images to rounding."""
    import dataclasses

    direct = create_generator("stylegan_random", conv_algorithm="direct", compute_dtype="float32",
                              **SMALL)
    want = direct.generate(range(4), seed=6)
    gen = create_generator("stylegan_random", compute_dtype="float32", **SMALL)
    cpu = gen.plan(torch.device("cpu"))
    gen._plans["cpu"] = dataclasses.replace(  # the CUDA plan: channels-last, fold, no Winograd
        cpu, memory_format=torch.channels_last,
        algorithms=tuple(None if a is None else "fold" if layer.up else "direct"
                         for a, layer in zip(cpu.algorithms, gen.layers, strict=True)))
    got = gen.generate(range(4), seed=6)
    assert float((got - want).abs().max()) < 1e-4


def test_auto_dtype_is_bfloat16_only_for_random_on_cuda_or_a_bf16_cpu(monkeypatch):
    from noisevision.generators.stylegan import plan

    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(plan, "cpu_has_bf16", lambda native=native: native)
        want = torch.bfloat16 if native else torch.float32
        assert create_generator("stylegan_random", **SMALL).compute_dtype(cpu) == want
        assert create_generator("stylegan_oriented", **SMALL).compute_dtype(cpu) == torch.float32
        assert create_generator("stylegan_random", compute_dtype="float32",
                                **SMALL).compute_dtype(cpu) == torch.float32
    cuda = torch.device("cuda")
    assert create_generator("stylegan_random", **SMALL).compute_dtype(cuda) == torch.bfloat16
    assert create_generator("stylegan_sparse", **SMALL).compute_dtype(cuda) == torch.float32


def test_default_random_stays_within_the_bfloat16_bounds():
    """Whatever "auto" picks on this CPU, the default images stay close to float32 ones."""

    x = create_generator("stylegan_random", **SMALL).generate(8, seed=1)
    x32 = create_generator("stylegan_random", compute_dtype="float32", **SMALL).generate(8, seed=1)
    assert (x - x32).abs().mean() < 0.015
    assert abs(spectrum_slope(x) - spectrum_slope(x32)) < 0.05
