"""Encoders to probe: run folders, the paper's released layouts, wrong architectures."""

import pytest
import torch

from noisevision.errors import UsageError
from noisevision.probe.baselines import random_init_encoder
from noisevision.probe.load import load_probe_encoder
from noisevision.ssl.encoders import build_encoder, save_encoder

SMALL = {"width": 0.125, "input_size": 32}


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_folder_and_encoder_file(tmp_path):
    model = random_init_encoder("small_alexnet", SMALL, seed=3)
    save_encoder(tmp_path / "run" / "encoder.pt", model, "small_alexnet", {"data": "x"})
    for spec in (tmp_path / "run", tmp_path / "run" / "encoder.pt"):
        loaded, meta = load_probe_encoder(spec, arch="small_alexnet")
        assert same_weights(loaded, model) and meta["data"] == "x"
        assert meta["arch_kwargs"]["input_size"] == 32 and not loaded.training
    with pytest.raises(UsageError, match="holds a small_alexnet encoder, not resnet50"):
        load_probe_encoder(tmp_path / "run", arch="resnet50")


def test_released_small_alexnet_layout_from_data_parallel(tmp_path):
    model = random_init_encoder("small_alexnet", {"width": 0.25}, seed=1)
    released = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(released, tmp_path / "encoder.pth")
    loaded, meta = load_probe_encoder(tmp_path / "encoder.pth")
    assert meta["arch"] == "small_alexnet" and meta["arch_kwargs"]["width"] == 0.25
    assert meta["arch_kwargs"]["input_size"] == 64
    assert same_weights(loaded, model)


def test_moco_checkpoint_layout_for_resnet50(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        r50 = build_encoder("resnet50")
    state = {f"module.encoder_q.{k}": v for k, v in r50.state_dict().items()}
    state["module.encoder_q.fc.0.weight"] = torch.zeros(2048, 2048)   # MoCo v2 MLP head
    state["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # key encoder
    state["module.queue"] = torch.zeros(128, 16)
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": state}, tmp_path / "ckpt.pth.tar")
    loaded, meta = load_probe_encoder(tmp_path / "ckpt.pth.tar", arch="resnet50")
    assert meta["arch"] == "resnet50" and same_weights(loaded, r50)


def test_wrong_or_broken_checkpoints_raise_one_line(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3), "lin.weight": torch.zeros(2)}, tmp_path / "a.pt")
    with pytest.raises(UsageError, match="unknown architecture"):
        load_probe_encoder(tmp_path / "a.pt")
    (tmp_path / "b.pth").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read encoder file"):
        load_probe_encoder(tmp_path / "b.pth")
    model = random_init_encoder("small_alexnet", SMALL)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.6")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(UsageError, match="does not match a small_alexnet") as e:
        load_probe_encoder(tmp_path / "partial.pth")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="does not exist"):
        load_probe_encoder(tmp_path / "nothing")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_in_every_layout(tmp_path, bad):
    """Every feature of such an encoder is NaN: probes would report noise as accuracy (and
    the frozen-backbone check would call NaN != NaN a change)."""
    model = random_init_encoder("small_alexnet", SMALL)
    with torch.no_grad():
        model.state_dict()["blocks.2.0.weight"].view(-1)[5] = bad
    save_encoder(tmp_path / "run" / "encoder.pt", model, "small_alexnet")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "rel.pth")
    for spec in (tmp_path / "run", tmp_path / "rel.pth"):
        with pytest.raises(UsageError, match="non-finite weights .* in 'blocks.2.0.weight'"):
            load_probe_encoder(spec)


def test_non_finite_features_are_one_line():
    from noisevision.probe.features import check_unchanged, extract_features, weights_snapshot

    class Overflow(torch.nn.Module):  # finite weights, features that overflow on big pixels
        def features(self, x):
            return (x.flatten(1)[:, :4] * 1e38) * 1e38

    images = torch.utils.data.TensorDataset(torch.rand(6, 3, 8, 8), torch.zeros(6))
    with pytest.raises(UsageError, match="not finite .* for 6 of 6 images"):
        extract_features(Overflow(), images, transform=lambda x: x)
    model = random_init_encoder("small_alexnet", SMALL)
    with torch.no_grad():
        model.state_dict()["blocks.0.0.weight"].view(-1)[0] = float("nan")
    check_unchanged(weights_snapshot(model), model)  # NaN stays NaN: unchanged


def test_a_batch_too_large_to_encode_on_a_cpu_is_one_line(monkeypatch):
    from noisevision import safety
    from noisevision.probe.features import extract_features

    model = random_init_encoder("small_alexnet", SMALL)
    images = torch.utils.data.TensorDataset(torch.rand(12, 3, 32, 32), torch.zeros(12))
    x, _ = extract_features(model, images, transform=lambda t: t, batch_size=12)
    assert x.shape[0] == 12
    monkeypatch.setattr(safety, "available_memory", lambda device=None: 2**20)
    with pytest.raises(UsageError, match=r"a batch of 12 images at 32 px needs about .* "
                                         r"lower --batch-size \(about \d+ fits\)"):
        extract_features(model, images, transform=lambda t: t, batch_size=12)
    from noisevision.probe.datasets import EvalTask, TensorImages
    from noisevision.probe.linear import LinearProbeConfig, _probe_augmented

    split = TensorImages(torch.zeros(12, 3, 32, 32, dtype=torch.uint8), torch.arange(12) % 2)
    with pytest.raises(UsageError, match="a batch of 12 images at 32 px"):  # the paper's probe:
        _probe_augmented(model, EvalTask("t", split, split, ("a", "b")),  # its training batch
                         LinearProbeConfig(mode="augmented", epochs=1, batch_size=12),
                         torch.device("cpu"), 1, 0)  # (the val extraction: batches of 1)
