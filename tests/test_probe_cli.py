"""`noisevision probe`: an ImageFolder task, baselines, JSON + markdown, errors as exit 2."""

import json

from PIL import Image

from noisevision.cli import main
from noisevision.probe.baselines import random_init_encoder
from noisevision.ssl.encoders import save_encoder


def test_probe_cli_on_an_image_folder(tmp_path, capsys):
    for split, n in (("train", 6), ("val", 3)):
        for c, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
            d = tmp_path / "data" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (24, 24), tuple(v + 5 * i for v in colour)).save(d / f"{i}.png")
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    save_encoder(tmp_path / "run" / "encoder.pt", model, "small_alexnet", {})
    code = main(["probe", "--encoder", str(tmp_path / "run"), "--data", str(tmp_path / "data"),
                 "--method", "both", "--baselines", "--epochs", "20", "--out",
                 str(tmp_path / "res"), "--quiet", "--device", "cpu"])
    assert code == 0
    rows = json.loads((tmp_path / "res" / "results.json").read_text())["rows"]
    assert len(rows) == 8  # 4 feature sets x (linear, knn)
    assert {r["seed"] for r in rows if r["method"] == "linear"} == {0}  # --seed's default
    mean_colour = [r for r in rows if r["encoder"] == "mean colour"]
    assert all(r["val_acc"] == 1.0 for r in mean_colour)  # red vs blue: colour decides
    assert "| run |" in capsys.readouterr().out


def test_probe_cli_errors_exit_2(tmp_path, capsys):
    assert main(["probe", "--encoder", str(tmp_path / "none"), "--data", "fashion-mnist"]) == 2
    assert "does not exist" in capsys.readouterr().err
    model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32})
    save_encoder(tmp_path / "run" / "encoder.pt", model, "small_alexnet", {})
    assert main(["probe", "--encoder", str(tmp_path / "run"), "--arch", "resnet50",
                 "--data", "fashion-mnist"]) == 2
    assert "not resnet50" in capsys.readouterr().err
    assert main(["probe", "--encoder", str(tmp_path / "run"), "--data", "imagenet"]) == 2
    assert "unknown data 'imagenet'" in capsys.readouterr().err
