"""Linear probe: learns what is linearly decodable, stays at chance on noise labels, never
changes the frozen encoder, follows the paper's recipes."""

import pytest
import torch

from noisevision.errors import ConfigError
from noisevision.probe.baselines import MeanColour, RawPixels, random_init_encoder
from noisevision.probe.datasets import EvalTask, TensorImages
from noisevision.probe.features import check_unchanged, extract_features, weights_snapshot
from noisevision.probe.linear import (
    LinearProbeConfig,
    linear_probe,
    recipe_for,
    train_linear_head,
)

FAST = LinearProbeConfig(epochs=15, milestones=(9, 12))


def colour_task(n_train=60, n_val=30, seed=0):
    """Three classes told apart by mean colour (red, green, blue dominant) plus pixel noise."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        y = torch.arange(n) % 3
        base = torch.full((n, 3, 1, 1), 60.0)
        base[torch.arange(n), y] = 190.0
        img = base + torch.randn(n, 3, 40, 40, generator=g) * 30
        return TensorImages(img.clamp(0, 255).to(torch.uint8), y)

    return EvalTask("colours", split(n_train), split(n_val), ("r", "g", "b"))


def test_head_fits_separable_features_and_stays_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 32, generator=g) * 2  # pairwise distances ~11 std: separable
    y = torch.arange(1200) % 5
    x = centres[y] + torch.randn(1200, 32, generator=g)
    r = train_linear_head(x[:800], y[:800], x[800:], y[800:], 5, FAST)
    assert r["val_acc"] > 0.95
    y_rand = torch.randint(0, 5, (1200,), generator=g)
    r = train_linear_head(x[:800], y_rand[:800], x[800:], y_rand[800:], 5, FAST)
    # chance 0.2; 400 val samples: std of accuracy ~0.02, so 0.3 is a > 4-sigma bound
    assert r["val_acc"] < 0.3


def test_mean_colour_baseline_solves_a_colour_task_raw_pixels_too():
    task = colour_task()
    for model in (MeanColour(), RawPixels(side=8)):
        r = linear_probe(model, task, FAST)
        assert r["val_acc"] > 0.9, type(model).__name__


def test_probe_leaves_encoder_bit_identical_in_both_modes():
    task = colour_task(24, 12)
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    model.train()  # a probe must put it in eval mode itself (BN stats must not move)
    before = weights_snapshot(model)
    r = linear_probe(model, task, LinearProbeConfig(epochs=2, milestones=(1,)))
    check_unchanged(before, model)
    assert 0.0 <= r["val_acc"] <= 1.0
    model.train()
    r = linear_probe(model, task, LinearProbeConfig(epochs=1, milestones=(1,), mode="augmented",
                                                    batch_size=8, standardize=False))
    check_unchanged(before, model)
    assert r["mode"] == "augmented" and len(r["log"]) == 1


def test_augmented_probe_crops_are_a_function_of_seed_epoch_and_image_not_of_workers():
    """torchvision draws its crops and flips from torch's global RNG, which each loader worker
    seeds on its own: the paper's probe gave a different accuracy for every --workers."""
    from noisevision.probe.features import loader, transforms_for

    task = colour_task(24, 12)
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    tfm = transforms_for(model).train()

    def crops(workers, batch, name="probe-augment/epoch-0"):
        return torch.cat([x for x, _ in loader(task.train, tfm, batch_size=batch,
                                                num_workers=workers, stream=(0, name))])

    base = crops(0, 5)
    assert torch.equal(base, crops(2, 7)) and torch.equal(base, crops(0, 24))
    assert not torch.equal(base, crops(0, 5, "probe-augment/epoch-1"))  # a fresh epoch's crops
    cfg = LinearProbeConfig(epochs=2, milestones=(1,), mode="augmented", batch_size=8,
                            standardize=False)
    r0 = linear_probe(model, task, cfg, num_workers=0)
    r2 = linear_probe(model, task, cfg, num_workers=2)
    assert r0["log"] == r2["log"] and r0["val_acc"] == r2["val_acc"]


def test_the_seed_reaches_the_heads_init_and_data_order_in_both_modes():
    """probe --seed N: N runs of a probe give a spread, not N copies of one number."""
    task = colour_task(24, 12)
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    for mode in ("cached", "augmented"):
        runs = [linear_probe(model, task, recipe_for("small_alexnet", mode, 2, seed=s))
                for s in (0, 0, 1)]
        assert [r["config"]["seed"] for r in runs] == [0, 0, 1]
        assert runs[0]["log"] == runs[1]["log"] and runs[0]["log"] != runs[2]["log"], mode


def test_check_unchanged_detects_a_changed_weight_or_buffer():
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    before = weights_snapshot(model)
    with torch.no_grad():
        model.blocks[0][1].running_mean[0] += 1e-3
    with pytest.raises(RuntimeError, match="running_mean"):
        check_unchanged(before, model)


def test_features_follow_the_paper_crop_and_layer():
    task = colour_task(4, 4)
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    x, y = extract_features(model, task.train, batch_size=3)
    assert x.shape == (4, model.feature_dim) and y.tolist() == [0, 1, 2, 0]
    assert (x >= 0).all()  # fc6 after BN + ReLU


def test_recipes_match_the_reference():
    small = recipe_for("small_alexnet", "augmented")
    assert (small.optimizer, small.lr, small.betas, small.batch_size, small.epochs,
            small.milestones, small.gamma) == ("adam", 1e-3, (0.5, 0.999), 128, 100, (60, 80), 0.2)
    r50 = recipe_for("resnet50", "augmented")
    assert (r50.optimizer, r50.lr, r50.batch_size, r50.gamma, r50.milestones) == \
        ("sgd", 30.0, 256, 0.1, (60, 80))
    assert recipe_for("resnet50", "cached").optimizer == "adam"
    assert recipe_for("small_alexnet", "cached", epochs=10).milestones == (6, 8)


@pytest.mark.parametrize("field,value", [("optimizer", "lbfgs"), ("epochs", 0), ("lr", -1.0),
                                         ("mode", "fast"), ("gamma", 2.0)])
def test_bad_config_raises_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        LinearProbeConfig(**{field: value})
