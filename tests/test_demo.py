"""The main job end to end at the tiny budget, and its user errors (exit status 2)."""

import json

import pytest

from noisevision.cli import main
from noisevision.probe.datasets import FASHION_MNIST_DIR, available_photos

needs_data = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists() or len(available_photos()) < 2,
    reason="offline data packages not installed (scripts/setup.sh installs them)")


@needs_data
def test_demo_tiny_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--budget", "tiny", "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "results.json").read_text())
    rows = data["rows"]
    features = {"noise: dead_leaves_shapes", "random-init small_alexnet", "raw pixels",
                "mean colour"}
    assert {r["encoder"] for r in rows} == features
    assert {(r["task"], r["method"]) for r in rows} == {
        (t, m) for t in ("photo-crops", "fashion-mnist") for m in ("linear", "knn")}
    assert len(rows) == 16 and all(0.0 <= r["val_acc"] <= 1.0 for r in rows)
    # Raw pixels on 200 Fashion-MNIST images: measured 0.68; chance is 0.10. With 100 val
    # images the binomial std at 0.68 is 0.05, so 0.35 leaves a > 6-sigma margin.
    raw = next(r for r in rows if r["encoder"] == "raw pixels" and r["task"] == "fashion-mnist"
               and r["method"] == "linear")
    assert raw["val_acc"] > 0.35
    assert (out / "runs" / "dead_leaves_shapes" / "encoder.pt").is_file()
    assert (out / "samples" / "dead_leaves_shapes.png").is_file()
    report = (out / "report.md").read_text()
    assert "random init" in report and "| features |" in (out / "results.md").read_text()
    assert data["meta"]["timings_s"]["total"] > 0


def test_demo_refuses_a_non_empty_folder_and_missing_data(tmp_path, capsys, monkeypatch):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    monkeypatch.setenv("NOISEVISION_FASHION_MNIST", str(tmp_path / "no-such-dir"))
    fresh = tmp_path / "fresh"
    assert main(["demo", "--budget", "tiny", "--out", str(fresh), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "apt-get install -y dataset-fashion-mnist" in err and "\n" not in err
    assert not fresh.exists()  # nothing written before the data check
    monkeypatch.delenv("NOISEVISION_FASHION_MNIST")
    if (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists() and available_photos():
        assert main(["demo", "--budget", "tiny", "--out", str(out), "--quiet"]) == 2
        assert "not empty" in capsys.readouterr().err
    assert main(["demo", "--families", "no_such_noise", "--out", str(fresh)]) == 2
    assert "unknown generator" in capsys.readouterr().err


def test_demo_mixture_families_are_split_and_checked(tmp_path, capsys):
    from noisevision.probe.demo import BUDGETS, family_data_spec, family_members

    assert family_members("dead_leaves_shapes+stat_spectrum_color_wmm") == [
        "dead_leaves_shapes", "stat_spectrum_color_wmm"]
    assert family_members("dead_leaves_shapes") == ["dead_leaves_shapes"]
    assert family_members("stylegan_oriented:2+dead_leaves_shapes") == [
        "stylegan_oriented", "dead_leaves_shapes"]
    assert family_data_spec("stylegan_oriented:2+dead_leaves_shapes") == (
        "stylegan_oriented:2,dead_leaves_shapes:1")
    for b in BUDGETS.values():  # every built-in entry names registered generators only
        from noisevision.generators.base import list_generators
        assert all(m in list_generators() for f in b.families for m in family_members(f))
    fresh = tmp_path / "fresh"
    assert main(["demo", "--families", "dead_leaves_shapes+no_such_noise",
                 "--out", str(fresh)]) == 2
    assert "no_such_noise" in capsys.readouterr().err
    assert not fresh.exists()
    assert main(["demo", "--families", "dead_leaves_shapes:x+stylegan_oriented",
                 "--out", str(fresh)]) == 2
    assert "bad weight" in capsys.readouterr().err
    assert not fresh.exists()
