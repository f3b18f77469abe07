"""`noisevision analyze`: sources read one way, the analysis table, the feature cache, and the
correlation of properties with probe accuracies (against independent computations)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisevision import analysis
from noisevision.cli import main
from noisevision.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def _folder(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            root / f"{i:03d}.png")
    return root


def test_sources_are_read_the_same_way(tmp_path):
    gen = analysis.open_source("dead_leaves_squares", resolution=32)
    a = torch.cat(list(gen.batches(5, batch=2)))
    assert a.dtype == torch.uint8 and a.shape == (5, 3, 32, 32)
    from noisevision.generators.base import create_generator

    want = create_generator("dead_leaves_squares", resolution=32).images(range(5), 0,
                                                                          dtype=torch.uint8)
    assert torch.equal(a, want)
    # a dataset written by generate gives the same images, in index order
    ds = tmp_path / "ds"
    assert main(["generate", "dead_leaves_squares", "--n", "5", "--resolution", "32", "--out",
                 str(ds), "--quiet"]) == 0
    src = analysis.open_source(str(ds))
    assert src.kind == "dataset" and src.available == 5
    assert torch.equal(torch.cat(list(src.batches(5, batch=3))), want)
    # files decoded by several threads (batches read ahead) come back in index order
    threaded = analysis.open_source(str(ds), workers=3)
    assert torch.equal(torch.cat(list(threaded.batches(5, batch=2))), want)
    assert torch.equal(torch.cat(list(threaded.batches(3, batch=1))), want[:3])
    # two processes render the same bytes, in order
    par = analysis.open_source("dead_leaves_squares", resolution=32, workers=2)
    assert torch.equal(torch.cat(list(par.batches(5, batch=2))), want)
    # a plain folder
    folder = analysis.open_source(str(_folder(tmp_path / "imgs", 4)))
    assert folder.kind == "folder" and torch.cat(list(folder.batches(4))).shape == (4, 3, 32, 32)
    with pytest.raises(UsageError, match="fewer than"):
        list(folder.batches(9))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "imgs" / "zz.png")
    with pytest.raises(UsageError, match="different sizes"):
        list(analysis.open_source(str(tmp_path / "imgs")).batches(5))
    with pytest.raises(UsageError, match="different sizes"):
        list(analysis.open_source(str(tmp_path / "imgs"), workers=2).batches(5, batch=2))
    for bad, needle in (("nosuch_generator", "unknown generator"),
                        (str(tmp_path / "missing"), "does not exist"),
                        (str(tmp_path / "imgs" / "000.png"), "is a file")):
        with pytest.raises(UsageError, match=needle):
            analysis.open_source(bad)


def test_analyze_writes_a_table_and_reuses_cached_features(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NOISEVISION_CACHE", str(tmp_path / "cache"))
    ref = _folder(tmp_path / "ref", 8)
    out = tmp_path / "an"
    args = ["analyze", "dead_leaves_squares", "stat_spectrum", "--reference", str(ref),
            "--n", "8", "--n-inception", "4", "--metrics", "colour,spectrum,fid", "--out",
            str(out), "--quiet", "--workers", "1"]
    assert main(args) == 0
    result = json.loads((out / "analysis.json").read_text())
    rows = {r["source"]: r for r in result["rows"]}
    assert set(rows) == {"dead_leaves_squares", "stat_spectrum", f"{ref} (reference)"}
    assert rows[f"{ref} (reference)"]["colour_kl"] == pytest.approx(0, abs=1e-9)
    assert abs(rows[f"{ref} (reference)"]["fid"]) < 1e-3
    for name in ("dead_leaves_squares", "stat_spectrum"):
        r = rows[name]
        assert r["colour_kl"] > 0 and r["fid"] > 0 and 0 < r["alpha_mean"] < 5
    assert "| dead_leaves_squares |" in (out / "analysis.md").read_text()
    # the second analysis of the same sources extracts no features
    from noisevision.stats import features

    def fail(*_, **__):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(features.InceptionFeatures, "__call__", fail)
    assert main(args) == 0
    again = json.loads((out / "analysis.json").read_text())
    assert [r["fid"] for r in again["rows"]] == [r["fid"] for r in result["rows"]]


@pytest.mark.parametrize("argv,needle", [
    (["analyze", "dead_leaves_squares", "--metrics", "colur"], "did you mean colour"),
    (["analyze"], "say what to analyze"),
    (["analyze", "dead_leaves_squares", "--metrics", "prc", "--n-inception", "2"],
     "needs at least 4 images"),
    (["analyze", "--correlate", "x.json"], "--properties"),
    (["analyze", "dead_leaves_squares", "--n", "0"], "positive integer"),
    (["analyze", "dead_leaves_squares", "--resolution", "8"], "a resolution"),
    (["analyze", "stat_wmm", "--resolution", "18", "--metrics", "spectrum"], "multiple of 4"),
])
def test_bad_analyze_invocations_are_one_line(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1, err


def test_a_generator_at_resolution_r_measures_as_its_dataset_written_at_r(tmp_path):
    """--resolution renders generator sources (and crops the photos) at R; the numbers are those
    of the dataset `generate` writes at R, thread-sensitive families included (the analysis
    renders with the machine's threads, datasets are written with one)."""
    data = tmp_path / "data"
    assert main(["generate", "stat_spectrum_color", "--n", "12", "--resolution", "32",
                 "--out", str(data), "--quiet", "--workers", "1"]) == 0
    out = tmp_path / "res"
    assert main(["analyze", "stat_spectrum_color", str(data), "--resolution", "32", "--n", "12",
                 "--metrics", "spectrum,colour", "--workers", "1", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert result["meta"]["sizes"] == {"photos": 32, "stat_spectrum_color": 32, str(data): 32}
    ref, gen, folder = result["rows"]
    for key in ("alpha_mean", "alpha_std", "colour_kl", "lab_L_mean", "lab_a_mean"):
        assert gen[key] == folder[key], key


def _probe_results(path: Path, acc: dict[str, float]) -> Path:
    rows = [{"task": "t", "encoder": f"noise: {k}", "method": "linear", "val_acc": v}
            for k, v in acc.items()]
    rows.append({"task": "t", "encoder": "raw pixels", "method": "linear", "val_acc": 0.1})
    path.write_text(json.dumps({"meta": {"command": "demo"}, "rows": rows}))
    return path


def test_correlate_against_independent_statistics(tmp_path):
    from scipy import stats

    rng = np.random.default_rng(3)
    names = [f"g{i}" for i in range(8)]
    recall = rng.uniform(0, 1, 8)
    precision = 1 - recall + rng.normal(0, 0.1, 8)
    fid = rng.uniform(100, 400, 8)
    acc = 0.3 + 0.4 * recall - 0.0005 * fid + rng.normal(0, 0.01, 8)
    props = {"meta": {}, "rows": [
        {"source": n, "fid": float(f), "precision_inception": float(p),
         "recall_inception": float(r), "colour_kl": float(k)}
        for n, f, p, r, k in zip(names, fid, precision, recall, rng.uniform(0, 5, 8),
                                 strict=True)]}
    (tmp_path / "analysis.json").write_text(json.dumps(props))
    res = _probe_results(tmp_path / "results.json", dict(zip(names, acc, strict=True)))
    out = analysis.correlate([str(res)], str(tmp_path / "analysis.json"), boot=200)
    assert len(out["table"]) == 8  # the raw-pixels row has no source
    r = out["correlations"]["fid"]
    assert r["pearson"] == pytest.approx(stats.pearsonr(fid, acc)[0], abs=1e-12)
    assert r["spearman"] == pytest.approx(stats.spearmanr(fid, acc)[0], abs=1e-12)
    assert r["pearson_ci"][0] <= r["pearson"] <= r["pearson_ci"][1]
    # partial correlation: the residuals of both on recall, correlated (numpy.polyfit)
    rp = precision - np.polyval(np.polyfit(recall, precision, 1), recall)
    ra = acc - np.polyval(np.polyfit(recall, acc, 1), recall)
    assert out["extra"]["precision_vs_accuracy_given_recall"] == pytest.approx(
        np.corrcoef(rp, ra)[0, 1], abs=1e-9)
    pytest.importorskip("matplotlib")
    written = analysis.draw_figures(out, tmp_path)
    assert "fig7a.png" in written and (tmp_path / "fig7a.svg").stat().st_size > 1000
    with pytest.raises(UsageError, match="no knn accuracies"):
        analysis.probe_accuracies([str(_probe_results(tmp_path / "e.json", {}))], method="knn")


def test_the_batched_jpeg_decoder_equals_the_checked_one_and_names_a_bad_file(tmp_path):
    """The nvJPEG path of a CUDA analysis (torchvision's decode_jpeg, here on the CPU): the same
    pixels as the checked PIL decoder; a corrupt file is named in one line."""
    ds = tmp_path / "ds"
    assert main(["generate", "stat_spectrum", "--n", "5", "--resolution", "32", "--format",
                 "jpg", "--out", str(ds), "--quiet"]) == 0
    src = analysis.open_source(str(ds), workers=2)
    assert "decoder" not in src.identity  # the CPU decodes with PIL
    want = torch.cat(list(src.batches(5, batch=2)))
    src.identity["decoder"] = "nvjpeg"  # what open_source sets for JPEGs on a CUDA device
    got = torch.cat(list(src.batches(5, batch=2)))
    assert got.dtype == torch.uint8 and torch.equal(got, want)
    assert analysis.sources._decoder(src._files, "cuda") == {"decoder": "nvjpeg"}
    assert analysis.sources._decoder(src._files + ["x.png"], "cuda") == {}
    bad = Path(src._files[3])
    bad.write_bytes(bad.read_bytes()[:40] + b"\0" * 200)
    with pytest.raises(UsageError, match=bad.name):
        list(src.batches(5, batch=2))


def test_correlate_uses_each_propertys_measured_sources_and_refuses_bad_json(tmp_path):
    """A property missing, NaN or a flag for some sources is correlated over the others (n);
    a malformed results.json or analysis.json is one line naming the file and row."""
    from scipy import stats

    rng = np.random.default_rng(5)
    names = [f"g{i}" for i in range(6)]
    acc = rng.uniform(0.2, 0.6, 6)
    fid = rng.uniform(50, 300, 6)
    rows = [{"source": n, "fid": float(f), "colour_kl": float(k)}
            for n, f, k in zip(names, fid, rng.uniform(0, 5, 6), strict=True)]
    rows[1]["fid"] = float("nan")
    rows[2]["fid"] = True
    del rows[3]["fid"]
    rows[4]["colour_kl"] = None
    (tmp_path / "analysis.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    res = _probe_results(tmp_path / "results.json", dict(zip(names, acc, strict=True)))
    out = analysis.correlate([str(res)], str(tmp_path / "analysis.json"), boot=50)
    keep = [0, 4, 5]
    assert out["correlations"]["fid"]["n"] == 3
    assert out["correlations"]["fid"]["pearson"] == pytest.approx(
        stats.pearsonr(fid[keep], acc[keep])[0], abs=1e-12)
    assert out["correlations"]["colour_kl"]["n"] == 5
    bad_results = {"r_type": {"meta": {}, "rows": [{"method": "linear", "val_acc": "0.5"}]},
                   "r_row": {"meta": {}, "rows": [3]}, "r_meta": {"meta": [1], "rows": []},
                   "r_enc": {"meta": {}, "rows": [{"method": "linear", "val_acc": 0.5,
                                                   "encoder": ["x"]}]},
                   "r_nan": {"meta": {}, "rows": [{"method": "linear", "val_acc": float("nan"),
                                                   "encoder": "noise: g0"}]},
                   "r_encoders": {"meta": {"encoders": [1]}, "rows": []}}
    for name, payload in bad_results.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
        with pytest.raises(UsageError, match=name) as e:
            analysis.correlate([str(tmp_path / f"{name}.json")], str(tmp_path / "analysis.json"))
        assert "\n" not in str(e.value)
    for name, payload in {"p_row": {"rows": ["x"]}, "p_source": {"rows": [{"source": 1}]},
                          "p_meta": {"meta": 2, "rows": []}, "p_list": [1]}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
        with pytest.raises(UsageError, match=name):
            analysis.correlate([str(res)], str(tmp_path / f"{name}.json"))


def test_a_first_n_of_a_larger_folder_and_foreign_shards_read_like_files(tmp_path):
    """The first n images of a folder holding more (n not a multiple of the batch: this
    crashed); real images kept as WebDataset shards give the same images as their files."""
    import io
    import tarfile

    folder = _folder(tmp_path / "imgs", 11)
    want = torch.cat(list(analysis.open_source(str(folder)).batches(11, batch=11)))
    for workers in (1, 3):
        src = analysis.open_source(str(folder), workers=workers)
        assert torch.equal(torch.cat(list(src.batches(7, batch=3))), want[:7])
    shards = tmp_path / "wds"
    shards.mkdir()
    for k, chunk in enumerate((range(0, 6), range(6, 11))):
        with tarfile.open(shards / f"val-{k:04d}.tar", "w") as tf:
            for i in chunk:
                for ext, data in (("png", (folder / f"{i:03d}.png").read_bytes()),
                                  ("json", b"{}")):
                    info = tarfile.TarInfo(f"img{i:05d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    src = analysis.open_source(str(shards), workers=2)
    assert src.kind == "folder" and src.available == 11
    assert torch.equal(torch.cat(list(src.batches(9, batch=4))), want[:9])
    (shards / "val-0001.tar").write_bytes((shards / "val-0001.tar").read_bytes()[:3000])
    with pytest.raises(UsageError, match="val-0001.tar is truncated"):
        analysis.open_source(str(shards))
