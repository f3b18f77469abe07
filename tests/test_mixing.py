"""Sample mixing before the two views (ssl/mixing.py, `pretrain --mix`).

Mixed images against per-image loops of the three rules, the partners' shares and soft labels,
draws that depend on the step seed alone, the unmixed path untouched, and a tiny `pretrain
--mix cutmix` on a mixture of two families that resumes bitwise after a kill.
"""

from __future__ import annotations

import json

import pytest
import torch

from noisevision.cli import main as cli_main
from noisevision.ssl import mixing, train
from noisevision.ssl.mixing import apply_mixing, mix_batch, mix_labels, sample_mixing
from noisevision.ssl.train import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

B, S = 7, 12


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)  # test data only
    return torch.randint(0, 256, (B, 3, S, S), generator=g, dtype=torch.int64).to(torch.uint8)


def draws(mode, count=4, seed=1):
    return sample_mixing(mode, B, S, count, torch.Generator().manual_seed(seed))


def test_partners_are_the_image_and_others_of_its_batch():
    m = draws("mixup", count=6)
    assert m.partners.shape == (B, 6) and torch.equal(m.partners[:, 0], torch.arange(B))
    assert (m.partners[:, 1:] != torch.arange(B)[:, None]).all()
    assert ((m.partners >= 0) & (m.partners < B)).all()
    assert torch.allclose(m.weights.sum(1), torch.ones(B)) and (m.weights > 0).all()
    assert ((m.boxes[..., 0] <= m.boxes[..., 1]) & (m.boxes[..., 2] <= m.boxes[..., 3])).all()
    assert ((m.boxes >= 0) & (m.boxes <= S)).all()


def test_mixup_is_the_convex_combination(batch):
    m = draws("mixup")
    out, share = apply_mixing(batch, m)
    x = batch.float() / 255.0
    for b in range(B):
        want = sum(float(m.weights[b, k]) * x[int(m.partners[b, k])] for k in range(4))
        assert torch.allclose(out[b], want, atol=1e-6)
    assert torch.equal(share, m.weights)


def test_cutmix_pastes_the_boxes_in_turn(batch):
    m = draws("cutmix")
    out, share = apply_mixing(batch, m)
    x = batch.float() / 255.0
    for b in range(B):
        want = x[b].clone()
        owner = torch.zeros(S, S)
        for k in range(1, 4):
            y0, y1, x0, x1 = m.boxes[b, k].tolist()
            want[:, y0:y1, x0:x1] = x[int(m.partners[b, k])][:, y0:y1, x0:x1]
            owner[y0:y1, x0:x1] = k
        assert torch.equal(out[b], want)
        for k in range(4):
            assert float(share[b, k]) == pytest.approx(float((owner == k).float().mean()))
    assert torch.allclose(share.sum(1), torch.ones(B))


def test_mixup_cutmix_combines_boxes_on_black(batch):
    m = draws("mixup+cutmix")
    out, share = apply_mixing(batch, m)
    x = batch.float() / 255.0
    for b in range(B):
        want = float(m.weights[b, 0]) * x[b]
        for k in range(1, 4):
            y0, y1, x0, x1 = m.boxes[b, k].tolist()
            cut = torch.zeros(3, S, S)
            cut[:, y0:y1, x0:x1] = x[int(m.partners[b, k])][:, y0:y1, x0:x1]
            want = want + float(m.weights[b, k]) * cut
            area = (y1 - y0) * (x1 - x0) / S**2
            assert float(share[b, k]) == pytest.approx(float(m.weights[b, k]) * area)
        assert torch.allclose(out[b], want, atol=1e-6)
    assert (share.sum(1) <= 1 + 1e-6).all()


def test_soft_labels_weigh_each_partners_label_by_its_share(batch):
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    for mode in ("mixup", "cutmix", "mixup+cutmix"):
        m = draws(mode)
        _, share = apply_mixing(batch, m)
        soft = mix_labels(onehot, m.partners, share)
        assert torch.allclose(soft.sum(1), torch.ones(B))
        for b in range(B):
            want = torch.zeros(3)
            for k in range(4):
                want[labels[m.partners[b, k]]] += share[b, k] / share[b].sum()
            assert torch.allclose(soft[b], want, atol=1e-6)


def test_the_draws_are_a_function_of_the_step_seed(batch):
    a = mix_batch(batch, "cutmix", 6, seed=mixing.step_seed(3, 0, 1, 5))
    b = mix_batch(batch, "cutmix", 6, seed=mixing.step_seed(3, 0, 1, 5))
    c = mix_batch(batch, "cutmix", 6, seed=mixing.step_seed(3, 0, 1, 6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].boxes, b[1].boxes)
    assert not torch.equal(a[1].boxes, c[1].boxes)


def test_bad_mix_options_are_one_line_errors(capsys, tmp_path):
    from noisevision.errors import ConfigError

    with pytest.raises(ConfigError, match="mix_count"):
        PretrainConfig(data="x", out="y", mix="mixup", mix_count=1)
    with pytest.raises(ConfigError, match="unknown mix"):
        PretrainConfig(data="x", out="y", mix="blend")
    with pytest.raises(SystemExit) as exc:
        cli_main(["pretrain", "--data", "stat_spectrum", "--out", str(tmp_path / "r"),
                  "--mix", "blend"])
    assert exc.value.code == 2
    assert cli_main(["pretrain", "--data", "stat_spectrum", "--out", str(tmp_path / "r"),
                     "--mix", "cutmix", "--mix-count", "1"]) == 2
    assert "mix_count" in capsys.readouterr().err


DATA = "dead_leaves_squares:1,fractal_ifs:1"
FLAGS = ["--resolution", "32", "--crop", "32", "--width", "0.125", "--images", "32",
         "--batch-size", "8", "--epochs", "2", "--lr", "0.01", "--log-every", "1",
         "--checkpoint-every", "2", "--device", "cpu", "--quiet"]


def _state(run):
    return torch.load(run / "encoder.pt", weights_only=True)["state_dict"]


def test_pretrain_mix_cutmix_on_two_families_resumes_exactly(tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert cli_main(["pretrain", "--data", DATA, "--out", str(full), "--mix", "cutmix",
                     *FLAGS]) == 0
    cfg = json.loads((full / "config.json").read_text())["config"]
    assert (cfg["mix"], cfg["mix_count"]) == ("cutmix", 6)
    killed = tmp_path / "killed"
    given = dict(data=DATA, out=str(killed), mix="cutmix", image_size=32, crop=32, width=0.125,
                 images=32, batch_size=8, epochs=2, lr=0.01, log_every=1, checkpoint_every=2,
                 device="cpu", quiet=True)
    pretrain(PretrainConfig(**given), explicit=set(given), stop_after=5)
    assert cli_main(["pretrain", "--data", DATA, "--out", str(killed), "--mix", "cutmix",
                     *FLAGS, "--resume"]) == 0
    a, b = _state(full), _state(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the mixing changed the training: the same run unmixed ends elsewhere
    plain = tmp_path / "plain"
    assert cli_main(["pretrain", "--data", DATA, "--out", str(plain), *FLAGS]) == 0
    c = _state(plain)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # resuming cannot change the mixing
    assert cli_main(["pretrain", "--data", DATA, "--out", str(killed), "--mix", "mixup",
                     *FLAGS, "--resume"]) == 2


def test_the_unmixed_path_never_mixes(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("mix_batch called without --mix")

    monkeypatch.setattr(train, "mix_batch", boom)
    run = tmp_path / "plain"
    assert cli_main(["pretrain", "--data", "dead_leaves_squares", "--out", str(run),
                     *FLAGS]) == 0
    assert json.loads((run / "config.json").read_text())["config"]["mix"] == "none"
