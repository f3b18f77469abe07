"""Feature visualisation (noisevision.featvis) and its generator family (generators/featvis.py).

Closed forms and independent references: the Fourier parameterisation inverts exactly and turns
white parameters into 1/f amplitude; the colour matrix has orthogonal columns and reproduces
lucid's published table; a view with jitter only is an exact pixel shift; optimisation raises
the chosen unit of a tiny network far above its value on the initial noise; weights of random
networks have torchvision's init variance; unit draws have the stated pair probability.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noisevision import create_generator, featvis
from noisevision.cli import main
from noisevision.errors import UsageError
from noisevision.generators.featvis import draw_units, random_network
from noisevision.rng import ImageRandom
from noisevision.ssl.encoders import save_encoder

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these small networks run faster so on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_encoder(path, seed=1, size=32):
    model = random_network("small_alexnet", seed, 0, CPU, width=0.125, input_size=size)
    save_encoder(path, model, "small_alexnet")
    return path


def test_fourier_parameterisation_round_trips():
    """image -> spectrum -> image is the identity (to float rounding), and spectrum -> image ->
    spectrum too for a spectrum of a real image."""
    g = torch.Generator().manual_seed(0)
    images = 0.05 + 0.9 * torch.rand(3, 3, 24, 20, generator=g)
    spec = featvis.spectrum_of(images)
    assert spec.shape == (3, 3, 24, 11, 2)
    assert torch.allclose(featvis.image_of(spec, 24, 20), images, atol=2e-5)
    again = featvis.spectrum_of(featvis.image_of(spec, 24, 20))
    assert torch.allclose(again, spec, atol=1e-3 * float(spec.abs().max()))


def test_white_parameters_give_an_image_with_1_over_f_amplitude():
    """White parameters are scaled by 1 / |f|: the radial power spectrum of the (pre-colour,
    pre-sigmoid) image falls as |f|^-2 (amplitude 1/f), fitted over 2..40 cycles per image."""
    n = 128
    spec = ImageRandom(0, torch.arange(16), "test").normal(3, n, n // 2 + 1, 2) * 0.01
    x = torch.logit(featvis.image_of(spec, n, n).double())
    x = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(torch.tensor(featvis.COLOR_SQRT_COV)),
                     x)  # the channels before colour mixing
    power = (torch.fft.fft2(x).abs() ** 2).mean(dim=(0, 1)).numpy()
    fy, fx = np.meshgrid(np.fft.fftfreq(n) * n, np.fft.fftfreq(n) * n, indexing="ij")
    r = np.hypot(fx, fy)
    ks = np.arange(2, 41)
    radial = np.array([power[(r >= k - 0.5) & (r < k + 0.5)].mean() for k in ks])
    slope = np.polyfit(np.log(ks), np.log(radial), 1)[0]
    assert abs(slope + 2.0) < 0.08, slope


def test_colour_matrix_is_orthogonal_up_to_its_scale():
    """Columns orthogonal (M^T M diagonal), the largest column of unit norm (lucid's
    normalisation), and M equal to lucid's published two-decimal table once rescaled."""
    m = featvis.COLOR_SQRT_COV
    gram = m.T @ m
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-12
    assert math.isclose(np.linalg.norm(m, axis=0).max(), 1.0, rel_tol=1e-12)
    table = np.array(featvis.LUCID_COLOR_SQRT_COV)
    rescaled = m * np.linalg.norm(table, axis=0).max()
    # within two units of the table's last decimal (its rounding moves the small third column)
    assert np.abs(rescaled - table).max() < 0.01
    # the published table itself is orthogonal up to that rounding
    g0 = table.T @ table
    assert np.abs(g0 - np.diag(np.diag(g0))).max() < 1e-3


def test_a_view_with_jitter_only_is_an_exact_pixel_shift():
    """scale = the view's zoom, angle 0, jitter 8 px at 256 px -> a shift by 2 px at 64 px."""
    k = (256.0 + 24.0 - 12.0) / 256.0
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tf = torch.tensor([[8.0, -8.0, k, 0.0]])
    out = featvis.transform(img, tf)
    want = img[:, :, :-2, 2:]  # out[y, x] = img[y - 2, x + 2]
    assert torch.allclose(out[:, :, 2:, :-2], want, atol=1e-5)
    assert torch.allclose(out[:, :, :2], torch.full_like(out[:, :, :2], 0.5))  # outside: 0.5


def test_the_deterministic_warp_gradient_is_grid_samples_gradient():
    """The fixed-order adjoint used on CUDA equals autograd's grid_sample gradient (float64), and
    the float32 views agree both ways."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 20, 24, generator=g, dtype=torch.float64).requires_grad_(True)
    tf = featvis.draw_transforms(ImageRandom(0, torch.arange(3), "t"), 1)[:, 0].double()
    grid = torch.nn.functional.affine_grid(featvis.affine_of(tf), [3, 3, 20, 24],
                                           align_corners=False)
    weight = torch.rand(3, 3, 20, 24, generator=g, dtype=torch.float64)
    (torch.nn.functional.grid_sample(img, grid, align_corners=False) * weight).sum().backward()
    want, img.grad = img.grad.clone(), None
    (featvis._Warp.apply(img, grid) * weight).sum().backward()
    assert torch.allclose(img.grad, want, atol=1e-12)
    x = img.detach().float()
    assert torch.allclose(featvis.transform(x, tf.float(), deterministic=True),
                          featvis.transform(x, tf.float(), deterministic=False), atol=1e-6)


def test_transform_draws_follow_the_reference_sets():
    tf = featvis.draw_transforms(ImageRandom(0, torch.arange(200), "t"), 20)  # (200, 20, 4)
    assert tf.shape == (200, 20, 4)
    assert tf[..., :2].abs().max() <= 12 and set(tf[..., :2].unique().tolist()) == set(
        float(v) for v in range(-12, 13))
    assert torch.allclose(tf[..., 2].unique(), torch.tensor(featvis._SCALES))
    zero = float((tf[..., 3] == 0).float().mean())
    assert abs(zero - 6 / 26) < 0.03  # 0 degrees six times in the 26-entry list


def test_optimisation_raises_the_chosen_unit_far_above_its_value_on_noise():
    """A random narrow SmallAlexNet at 32 px, conv5 units 0..3: after 48 steps each image's own
    unit is at least 8x its value on the initial noise and higher than that unit on the
    images optimised for the other units."""
    model = random_network("small_alexnet", 3, 0, CPU, width=0.25, input_size=32)
    _, module, channels = featvis.resolve_layer(model, "conv5")
    units = torch.tensor([[u, -1] for u in range(4)])
    rnd = ImageRandom(0, torch.arange(4), "test")
    spec = featvis.initial_spectrum(rnd.child("init"), 32)
    views = featvis.draw_transforms(rnd.child("views"), 48)
    objective = featvis.Objective(model, module, units)
    before = featvis.objective_value(objective, featvis.image_of(spec, 32, 32))
    with torch.enable_grad():
        images = featvis.optimise(objective, spec, views)
    after = featvis.objective_value(objective, images)
    assert (after > 0).all() and (after > 8 * before).all(), (before, after)  # 14-69x
    with torch.no_grad():
        act = model.blocks[4](model.blocks[3](model.blocks[2](model.blocks[1](
            model.blocks[0](featvis.normalise(images)))))).mean(dim=(2, 3))[:, :4]  # (4, 4)
    assert (act.diagonal() >= act.max(dim=0).values - 1e-6).all(), act


def test_the_cuda_path_runs_on_cpu_bf16_channels_last_and_deterministic_warp(monkeypatch):
    """CUDA's path (bf16 autocast, channels-last input, the fixed-order warp gradient, a whole
    batch at once) forced on a CPU: it runs and raises the objective; twice the same bytes."""
    model = random_network("small_alexnet", 3, 0, CPU, width=0.125, input_size=32)
    _, module, _ = featvis.resolve_layer(model, "conv4")
    rnd = ImageRandom(0, torch.arange(2), "test")
    spec = featvis.initial_spectrum(rnd.child("init"), 32)
    views = featvis.draw_transforms(rnd.child("views"), 6)
    objective = featvis.Objective(model, module, torch.tensor([[1, 2], [1, -1]]))
    real = featvis.transform
    monkeypatch.setattr(featvis, "transform", lambda x, tf: real(x, tf, deterministic=True))
    with torch.enable_grad():
        a = featvis.optimise(objective, spec, views, autocast=True)
        b = featvis.optimise(objective, spec, views, autocast=True)
    assert torch.equal(a, b)
    before = featvis.objective_value(objective, featvis.image_of(spec, 32, 32))
    assert (featvis.objective_value(objective, a) > before).all()


def test_a_pair_objective_is_the_mean_of_its_two_units():
    model = random_network("small_alexnet", 3, 0, CPU, width=0.125, input_size=32)
    _, module, _ = featvis.resolve_layer(model, "conv4")
    x = featvis.normalise(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        act = model.blocks[3](model.blocks[2](model.blocks[1](model.blocks[0](x))))
        act = act.mean(dim=(2, 3))
        got = featvis.Objective(model, module, torch.tensor([[5, 9], [7, -1]]))(x)
    assert torch.allclose(got, torch.stack([(act[0, 5] + act[0, 9]) / 2, act[1, 7]]))


def test_unit_draws_have_the_stated_pair_probability_and_are_uniform():
    units = draw_units(ImageRandom(0, torch.arange(20000), "u"), 16, 0.98)
    pair = units[:, 1] >= 0
    assert abs(float(pair.float().mean()) - 0.98) < 4 * math.sqrt(0.98 * 0.02 / 20000)
    assert (units[pair, 0] != units[pair, 1]).all()
    counts = torch.bincount(units[:, 0], minlength=16).double()
    chi2 = float(((counts - 1250) ** 2 / 1250).sum())
    assert chi2 < 37.7, chi2  # 15 degrees of freedom, p = 0.001
    assert (draw_units(ImageRandom(0, torch.arange(50), "u"), 16, 0.0)[:, 1] == -1).all()


def test_random_resnet50_has_torchvisions_init_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    model = random_network("resnet50", 7, 0, CPU)
    assert torch.equal(torch.random.get_rng_state(), state)
    w = model.layer3[0].conv2.weight  # (256, 256, 3, 3): kaiming normal, fan_out = 256 * 9
    assert abs(float(w.std()) / math.sqrt(2 / (256 * 9)) - 1) < 0.01
    assert abs(float(w.mean())) < 0.01 * float(w.std())
    assert float(model.bn1.weight.min()) == 1.0 and float(model.layer1[0].bn1.running_var[0]) == 1
    small = [random_network("small_alexnet", s, g, CPU, width=0.125, input_size=32)
             for s, g in ((7, 0), (7, 1), (8, 0), (7, 0))]  # (seed, group) -> the network
    w = [m.blocks[2][0].weight for m in small]
    assert torch.equal(w[0], w[3]) and not torch.equal(w[0], w[1])
    assert not torch.equal(w[0], w[2])


def test_checkpoint_family_is_batch_invariant_and_records_the_file_hash(tmp_path):
    enc = tiny_encoder(tmp_path / "enc.pt")
    gen = create_generator("featvis_encoder", encoder=str(enc), resolution=32, steps=6,
                           layer="conv5", pair_probability=0.5)
    assert len(gen.config.encoder_sha256) == 64
    x = gen.generate(range(4), seed=3, batch_size=4)
    assert torch.equal(gen.generate([2, 0, 3, 1], seed=3, batch_size=3)[[1, 3, 0, 2]], x)
    assert torch.equal(gen.generate(range(4), seed=3, batch_size=1), x)
    again = create_generator("featvis_encoder", **gen.describe()["config"])
    assert torch.equal(again.generate([1], seed=3), x[1:2])
    tiny_encoder(enc, seed=2)  # another file at the same path: the recorded hash refuses it
    with pytest.raises(UsageError, match="SHA-256"):
        create_generator("featvis_encoder", **gen.describe()["config"])


def test_rendering_under_inference_mode_gives_the_same_images():
    """Callers may render under torch.inference_mode (feature extraction): the optimisation
    still has autograd, and the bytes are the same."""
    from noisevision.generators.base import cheap_generator

    gen = cheap_generator("featvis_encoder", resolution=32)
    x = gen.generate([3, 4], seed=1)
    with torch.inference_mode():
        y = gen.generate([3, 4], seed=1)
    assert torch.equal(x, y)


def test_checkpoint_family_bad_input_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        create_generator("featvis_encoder", encoder=str(tmp_path / "missing.pt"))
    torch.save({"state_dict": {"foo.weight": torch.zeros(2, 2)}}, tmp_path / "odd.pt")
    with pytest.raises(UsageError, match="unknown architecture"):
        create_generator("featvis_encoder", encoder=str(tmp_path / "odd.pt"))
    enc = tiny_encoder(tmp_path / "enc.pt")
    with pytest.raises(UsageError, match=r"no layer 'layer4' \(allowed: features, conv1"):
        create_generator("featvis_encoder", encoder=str(enc), layer="layer4", resolution=32)
    with pytest.raises(UsageError, match="needs resolution 32"):
        create_generator("featvis_encoder", encoder=str(enc), resolution=64)  # fc6
    with pytest.raises(UsageError, match="needs an encoder"):
        create_generator("featvis_encoder").generate([0])


def test_generate_then_verify_refuses_another_encoder_file(tmp_path, capsys):
    enc = tiny_encoder(tmp_path / "enc.pt")
    out = tmp_path / "ds"
    args = ["generate", "featvis_encoder", "--out", str(out), "--n", "2", "--resolution", "32",
            "--set", f"encoder={enc}", "--set", "steps=3", "--device", "cpu", "--quiet"]
    assert main(args) == 0
    assert main(["verify", str(out), "--sample", "2"]) == 0
    tiny_encoder(enc, seed=5)
    capsys.readouterr()
    assert main(["verify", str(out), "--sample", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "SHA-256" in err and "\n" not in err


def test_visualize_writes_a_labelled_sheet_and_names_bad_layers_and_units(tmp_path, capsys):
    enc = tiny_encoder(tmp_path / "enc.pt")
    out = tmp_path / "sheet.png"
    assert main(["visualize", "--encoder", str(enc), "--layer", "conv3,conv5", "--units", "0-2",
                 "--steps", "3", "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.width > 3 * 128 and im.height > 2 * 128  # 2 rows of 3 tiles
    capsys.readouterr()
    for bad, msg in ((["--layer", "layer9"], "allowed: features, conv1, conv2"),
                     (["--layer", "conv5", "--units", "500"], "no unit 500 (allowed: 0..23)"),
                     (["--encoder", str(tmp_path / "none.pt")], "does not exist")):
        argv = ["visualize", "--encoder", str(enc), "--steps", "2", "--out",
                str(tmp_path / "bad.png"), *bad]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err
        assert not (tmp_path / "bad.png").exists()


def test_post_relu_on_a_resnet50_is_refused_not_ignored(tmp_path, capsys):
    from noisevision.probe.baselines import random_init_encoder
    from noisevision.ssl.encoders import save_encoder

    enc = tmp_path / "r50.pt"
    save_encoder(enc, random_init_encoder("resnet50"), "resnet50", {})
    out = tmp_path / "sheet.png"
    assert main(["visualize", "--encoder", str(enc), "--layer", "layer1", "--units", "0",
                 "--steps", "1", "--resolution", "32", "--post-relu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--post-relu applies to SmallAlexNet encoders only" in err and "\n" not in err
    assert not out.exists()


def test_pre_relu_objective_moves_a_unit_that_is_off_on_noise(tmp_path):
    """A SmallAlexNet conv3 unit whose batch-norm shift keeps it below zero on any input: after
    its ReLU it has no gradient, so the image stays the initial noise; `visualize`'s default
    pre-ReLU objective (lucid's "_pre_relu") does not see the shift at all: the same image as
    for the unshifted unit, which raises the unit well above its value on the noise."""
    model = random_network("small_alexnet", 3, 0, CPU, width=0.25, input_size=32)
    save_encoder(tmp_path / "plain.pt", model, "small_alexnet")
    plain = featvis.prepare(random_network("small_alexnet", 3, 0, CPU, width=0.25,
                                           input_size=32))  # the same weights, unshifted
    with torch.no_grad():
        model.blocks[2][1].bias[0] = -50.0  # unit 0 of conv3 is off for any input
    save_encoder(tmp_path / "off.pt", model, "small_alexnet")
    post, _, info_post = featvis.visualize(str(tmp_path / "off.pt"), ["conv3"], [0], steps=24,
                                           pre_relu=False)
    pre, _, info_pre = featvis.visualize(str(tmp_path / "off.pt"), ["conv3"], [0], steps=24)
    ref, _, _ = featvis.visualize(str(tmp_path / "plain.pt"), ["conv3"], [0], steps=24)
    assert not info_post["pre_relu"] and info_pre["pre_relu"]
    rnd = ImageRandom(0, torch.tensor([0]), "featvis/visualize")
    start = featvis.image_of(featvis.initial_spectrum(rnd.child("init"), 32), 32, 32)
    assert float((post - start).abs().max()) < 1e-6  # no gradient: the noise is returned
    assert torch.equal(pre, ref) and float((pre - start).abs().max()) > 0.2
    _, module, _ = featvis.resolve_layer(plain, "conv3", pre_relu=True)
    assert isinstance(module, torch.nn.BatchNorm2d)
    objective = featvis.Objective(plain, module, torch.tensor([[0, -1]]))
    before, after = (float(featvis.objective_value(objective, x)) for x in (start, pre))
    noise = featvis.image_of(featvis.initial_spectrum(ImageRandom(5, torch.arange(16), "n"),
                                                      32), 32, 32)
    spread = float(featvis.Objective(plain, module, torch.tensor([[0, -1]] * 16))(
        featvis.normalise(noise)).std())  # the unit over 16 other noise images
    assert after > 0 > before and after - before > 100 * spread, (before, after, spread)


def test_conv1_keeps_its_relu_under_the_pre_relu_objective():
    """conv1's pre-ReLU spatial mean is linear in the image (a flat colour maximises it), so
    the pre-ReLU objective starts at conv2."""
    model = random_network("small_alexnet", 3, 0, CPU, width=0.25, input_size=32)
    assert featvis.resolve_layer(model, "conv1", pre_relu=True)[1] is model.blocks[0]
    assert isinstance(featvis.resolve_layer(model, "conv2", pre_relu=True)[1],
                      torch.nn.BatchNorm2d)
