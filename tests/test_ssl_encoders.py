"""Encoders: SmallAlexNet per reference Sec. 8.1, ResNet-50 backbone, encoder.pt round trip."""

import pytest
import torch

from noisevision.errors import UsageError
from noisevision.ssl.encoders import SmallAlexNet, build_encoder, load_encoder, save_encoder


def test_small_alexnet_reference_shapes_and_init():
    torch.manual_seed(0)
    m = SmallAlexNet()
    convs = [b[0] for b in m.blocks[:5]]
    assert [c.out_channels for c in convs] == [96, 192, 384, 384, 192]
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    assert m.blocks[5][1].in_features == 192 * 7 * 7 and m.blocks[5][1].out_features == 4096
    assert m.blocks[7][0].out_features == 128 and m.blocks[7][0].bias is not None
    w = m.blocks[6][0].weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    m.eval()
    x = torch.rand(2, 3, 64, 64)
    dims = [m(x, i).shape[1] for i in range(8)]
    assert dims == [96, 192, 384, 384, 192, 4096, 4096, 128]
    assert torch.allclose(m(x).norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.equal(m.features(x), m(x, 5)) and m.feature_dim == 4096
    with pytest.raises(UsageError):
        m(x, 8)


def test_save_load_round_trip(tmp_path):
    m = build_encoder("small_alexnet", width=0.125, input_size=32).eval()
    save_encoder(tmp_path / "encoder.pt", m, "small_alexnet", {"recipe": "small", "epochs": 3})
    m2, meta = load_encoder(tmp_path)  # a run folder works too
    assert meta == {"recipe": "small", "epochs": 3}
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(m.features(x), m2.features(x)) and not m2.training


def test_resnet50_backbone(tmp_path):
    r = build_encoder("resnet50")
    assert r.feature_dim == 2048 and "fc.weight" not in r.state_dict()
    assert r.features(torch.rand(2, 3, 32, 32)).shape == (2, 2048)
    save_encoder(tmp_path / "r.pt", r, "resnet50", {})
    r2, _ = load_encoder(tmp_path / "r.pt")
    assert torch.equal(r2.conv1.weight, r.conv1.weight)


def test_load_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_encoder(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="corrupt"):
        load_encoder(tmp_path / "bad.pt")
    torch.save({"format": "noisevision-encoder-v1", "arch": "vgg", "state_dict": {}},
               tmp_path / "arch.pt")
    with pytest.raises(UsageError, match="unknown encoder arch"):
        load_encoder(tmp_path / "arch.pt")
    with pytest.raises(UsageError, match="unknown encoder arch"):
        build_encoder("vgg")
