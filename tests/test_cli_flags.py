"""A flag given where it has no effect is refused with one line, never ignored in silence (a
--jpeg-quality without --format jpg wrote PNGs; --k with a linear probe probed no kNN)."""

import os

import pytest

from noisevision.cli import build_parser, main
from noisevision.cli.common import given

GEN = "dead_leaves_squares"


def test_the_parser_records_the_flags_typed_not_its_defaults():
    parser = build_parser()
    args = parser.parse_args(["probe", "--encoder", "r", "--data", "fashion-mnist"])
    assert given(args) == {"encoder": "--encoder", "data": "--data"}
    args = parser.parse_args(["probe", "--encoder=r", "--data", "x", "--temp", "0.1", "--k", "20"])
    assert set(given(args)) == {"encoder", "data", "temperature", "k"}  # = and abbreviations
    assert args.k == 20 and args.temperature == 0.1
    args = parser.parse_args(["pretrain", "--out", "o", "--quiet"])
    assert set(given(args)) == {"out", "quiet"}


@pytest.mark.parametrize("argv,flag,where", [
    (["generate", GEN, "--n", "2", "--resolution", "32", "--jpeg-quality", "50"],
     "--jpeg-quality", "--format jpg"),
    (["generate", GEN, "--n", "2", "--resolution", "32", "--jpeg-subsampling", "4:2:0",
      "--format", "png"], "--jpeg-subsampling", "--format jpg"),
    (["preview", GEN, "--n", "4", "--indices", "0-1", "--out", "{d}/p.png"], "--n",
     "a sheet without --indices"),
    (["probe", "--encoder", "{d}/run", "--data", "fashion-mnist", "--k", "5"], "--k",
     "--method knn or both"),
    (["probe", "--encoder", "{d}/run", "--data", "fashion-mnist", "--temperature", "none"],
     "--temperature", "--method knn or both"),
    (["probe", "--encoder", "{d}/run", "--data", "fashion-mnist", "--method", "knn",
      "--epochs", "5"], "--epochs", "--method linear or both"),
    (["probe", "--encoder", "{d}/run", "--data", "fashion-mnist", "--method", "knn",
      "--mode", "augmented"], "--mode", "--method linear or both"),
    (["probe", "--encoder", "{d}/run", "--data", "photo-crops", "--fashion-val", "50"],
     "--fashion-val", "--data fashion-mnist"),
    (["probe", "--encoder", "{d}/run", "--data", "fashion-mnist", "--max-per-split", "50"],
     "--max-per-split", "ImageFolder, suite and shard tasks"),
    (["analyze", GEN, "--metrics", "spectrum", "--lpips-weights", "{d}/w.pt"],
     "--lpips-weights", "--metrics with coherence"),
    (["analyze", GEN, "--metrics", "spectrum,colour", "--n-inception", "64"], "--n-inception",
     "the Inception metrics"),
    (["analyze", GEN, "--metrics", "colour", "--seed", "3"], "--seed",
     "--metrics with coherence"),
    (["analyze", GEN, "--task", "fashion-mnist"], "--task", "--correlate"),
    (["study", "--families", GEN, "--metrics", "colour", "--n-inception", "64", "--out",
      "{d}/s"], "--n-inception", "the Inception metrics"),
    (["study", "--families", GEN, "--metrics", "fid", "--n", "64", "--out", "{d}/s"], "--n",
     "the image metrics"),
    (["pretrain", "--data", "{d}/run", "--out", "{d}/r", "--continuous"], "--continuous",
     "--data that names a generator"),
    (["verify", "{d}/data", "--indices", "0-3", "--sample", "4"], "--sample",
     "a random sample"),
    (["verify", "{d}/data", "--indices", "0-3", "--seed", "4"], "--seed", "a random sample"),
    (["analyze", "--correlate", "{d}/r.json", "--properties", "{d}/a.json", "--n", "50"],
     "--n", "a measurement"),
])
def test_a_flag_that_would_be_ignored_is_one_line_and_writes_nothing(tmp_path, monkeypatch,
                                                                      capsys, argv, flag, where):
    monkeypatch.chdir(tmp_path)  # default outputs (sheet.png, noisevision-analysis) land here
    (tmp_path / "run").mkdir()
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    if argv[0] == "generate":
        argv += ["--out", str(tmp_path / "data"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"noisevision: error: {flag} applies to {where}"), err
    assert err.endswith(f"only; it would be ignored here: drop {flag}") and "\n" not in err
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_the_same_flags_where_they_apply_still_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", GEN, "--n", "2", "--resolution", "32", "--format", "jpg",
                 "--jpeg-quality", "50", "--out", str(tmp_path / "j"), "--quiet"]) == 0
    assert main(["preview", GEN, "--indices", "0-1", "--out", str(tmp_path / "p.png")]) == 0
    assert main(["analyze", GEN, "--metrics", "spectrum", "--n", "8", "--quiet",
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["analyze", "--correlate", "r.json", "a.json", "--properties",
                 str(tmp_path / "a" / "analysis.json"), "--out", str(tmp_path / "c")]) == 2
    assert "applies to" not in capsys.readouterr().err  # refused for its own reason
    assert main(["analyze", GEN, "--correlate", "r.json", "--properties", "a.json"]) == 2
    assert "SOURCE arguments (dead_leaves_squares) would be ignored" in capsys.readouterr().err
