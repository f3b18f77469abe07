"""Batched two-view augmentation: per-sample parameters, torchvision-equivalent operations."""

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from noisevision.errors import ConfigError
from noisevision.ssl.augment import (
    AugmentConfig,
    TwoViewAugment,
    apply_views,
    color_jitter,
    gaussian_blur,
    moco_augment,
    sample_crop_boxes,
    small_augment,
)


def test_crop_boxes_follow_randomresizedcrop_rule():
    g = torch.Generator().manual_seed(0)
    boxes = sample_crop_boxes(4000, 128, (0.08, 1.0), (3 / 4, 4 / 3), g)
    x1, y1, x2, y2 = boxes.unbind(1)
    w, h = x2 - x1, y2 - y1
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 128).all() and (y2 <= 128).all()
    assert torch.equal(w, w.round()) and (w >= 1).all()
    area = w * h / 128**2
    # Rounding to whole pixels moves area/aspect a little outside the nominal ranges.
    assert area.min() > 0.07 and area.max() <= 1.0
    aspect = w / h
    assert aspect.min() > 0.70 and aspect.max() < 1.43
    # Area is uniform in [0.08, 1] for accepted tries; large areas get rejected more often
    # (they do not fit at extreme aspects), so the mean sits below 0.54 but well above 0.3.
    assert 0.3 < float(area.mean()) < 0.54
    # Positions cover the image: offsets of small crops reach both edges.
    assert float(x1.min()) == 0 and float((128 - x2).min()) == 0


def test_per_sample_params_and_determinism():
    imgs = (torch.rand(6, 3, 48, 48) * 255).to(torch.uint8)
    a, b = TwoViewAugment(small_augment(32), 1), TwoViewAugment(small_augment(32), 1)
    v1, v2 = a(imgs)
    w1, w2 = b(imgs)
    assert v1.shape == v2.shape == (6, 3, 32, 32) and v1.dtype == torch.float32
    assert torch.equal(v1, w1) and torch.equal(v2, w2)  # same seed, same views
    assert not torch.allclose(v1, v2)                     # two independent draws
    a.reseed(5)
    u1, _ = a(imgs)
    a.reseed(5)
    u1b, _ = a(imgs)
    assert torch.equal(u1, u1b) and not torch.equal(u1, v1)


def test_whole_image_crop_is_antialiased_resize():
    cfg = AugmentConfig(crop=24, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                        grayscale_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    img = torch.rand(2, 3, 48, 48)
    g = torch.Generator().manual_seed(0)
    from noisevision.ssl.augment import sample_params
    p = sample_params(2, 48, cfg, g)
    out = apply_views(img, p, cfg, torch.arange(2))
    assert torch.allclose(out, torch.nn.functional.avg_pool2d(img, 2), atol=1e-6)
    p["flip"][:] = True
    flipped = apply_views(img, p, cfg, torch.arange(2))
    assert torch.allclose(flipped, out.flip(-1))


def test_color_jitter_matches_torchvision_per_sample():
    x = torch.rand(4, 3, 16, 16)
    factors = torch.tensor([[0.7, 1.3, 0.8, 0.1], [1.2, 0.6, 1.4, -0.3],
                            [1.0, 1.0, 0.0, 0.45], [0.9, 1.1, 1.2, -0.05]])
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
    apply = torch.tensor([True, True, True, False])
    out = color_jitter(x, factors, order, apply)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(4):
        ref = x[i]
        if apply[i]:
            for k in order[i].tolist():
                ref = ops[k](ref, float(factors[i, k]))
        assert torch.allclose(out[i], ref, atol=2e-4), i


def test_gaussian_blur_per_sample():
    x = torch.rand(3, 3, 20, 20)
    sigma = torch.tensor([0.1, 1.0, 2.0])
    y = gaussian_blur(x, sigma)
    assert torch.allclose(y[0], x[0], atol=1e-3)                  # sigma 0.1: nearly identity
    assert y[2].std() < y[1].std() < x[1].std()                   # more blur, less variance
    const = torch.full((2, 3, 20, 20), 0.3)
    assert torch.allclose(gaussian_blur(const, torch.tensor([0.5, 2.0])), const, atol=1e-6)
    assert math.isclose(float(y[1].mean()), float(x[1].mean()), abs_tol=0.02)


def test_moco_views_and_grayscale_rate():
    cfg = moco_augment(32)
    assert cfg.blur_p == 0.5 and cfg.jitter_p == 0.8 and cfg.scale == (0.2, 1.0)
    aug = TwoViewAugment(AugmentConfig(crop=16, grayscale_p=0.2, mean=(0, 0, 0),
                                       std=(1, 1, 1), jitter_p=0.0), 3)
    imgs = torch.rand(500, 3, 24, 24)
    v1, _ = aug(imgs)
    gray = (v1[:, 0] - v1[:, 1]).abs().amax(dim=(1, 2)) < 1e-6
    assert 0.14 < float(gray.float().mean()) < 0.26  # p = 0.2, n = 500: +-3.4 sigma


def test_bad_config():
    with pytest.raises(ConfigError, match="grayscale_p"):
        AugmentConfig(grayscale_p=1.5)
    with pytest.raises(ConfigError, match="pre_resize"):
        AugmentConfig(crop=64, pre_resize=32)
