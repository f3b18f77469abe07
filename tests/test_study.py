"""`noisevision study` at the tiny budget on CPU: every file written, resumed after a kill to
the same numbers, a family added later runs alone, bad input is one line, and report.html
opens in headless Chromium with every image loaded and no network request."""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisevision.cli import main
from noisevision.probe.datasets import FASHION_MNIST_DIR

needs_data = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs dataset-fashion-mnist)")

FAMILIES = "dead_leaves_shapes,stat_spectrum"
ARGS = ["study", "--budget", "tiny", "--families", FAMILIES, "--tasks", "fashion-mnist"]
CHEAP = [*ARGS, "--metrics", "colour,spectrum"]
TIMINGS = {"seconds", "feature_seconds", "probe_seconds", "images_per_s", "timings_s"}


def numbers(result: dict) -> dict:
    """Everything a study computed, without timings, paths or the command line."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in TIMINGS}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip({k: result[k] for k in ("rows", "families", "properties", "correlations",
                                         "paper_comparison")})


def files_of(root: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha256, mtime_ns) of every file."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Every metric (Inception ones included): the full report."""
    out = tmp_path_factory.mktemp("study") / "s"
    assert main([*ARGS, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def cheap(tmp_path_factory):
    """The image metrics that need no weights: the runs that resume and grow it stay fast
    (one FID of 2,048-d features costs seconds on this CPU whatever the image count)."""
    out = tmp_path_factory.mktemp("cheap") / "s"
    assert main([*CHEAP, "--out", str(out), "--quiet"]) == 0
    return out


@needs_data
def test_tiny_study_writes_every_file(study):
    for rel in ("study.json", "results.json", "results.md", "report.html",
                "steps/_baselines/probe-fashion-mnist.json", "figures/fig3-fashion-mnist.png",
                "figures/fig4.png", "figures/fashion-mnist/fig6a.png",
                "figures/fashion-mnist/fig7a.png"):
        assert (study / rel).is_file(), rel
    for fam in FAMILIES.split(","):
        for step in ("pretrain", "sheet", "probe-fashion-mnist", "properties"):
            assert json.loads((study / "steps" / fam / f"{step}.json").read_text())["done"]
        assert (study / "runs" / fam / "encoder.pt").is_file()
        with Image.open(study / "samples" / f"{fam}.png") as im:
            assert im.width > 100
    data = json.loads((study / "results.json").read_text())
    rows = data["rows"]
    assert {(r["encoder"], r["method"]) for r in rows} == {
        (e, m) for e in ("noise: dead_leaves_shapes", "noise: stat_spectrum",
                         "random-init small_alexnet", "raw pixels", "mean colour")
        for m in ("linear", "knn")}
    for r in rows:  # the interval is Wilson's for the row's own count, around its accuracy
        lo, hi = r["val_acc_ci95"]
        assert r["val_images"] == 100 and lo <= r["val_acc"] <= hi
        z, n, p = 1.96, 100, r["val_acc"]
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert math.isclose(hi - lo, 2 * half, rel_tol=1e-9) or lo == 0.0 or hi == 1.0
    # Raw pixels on 200 Fashion-MNIST images: measured 0.67 (demo test: 0.68); chance 0.10;
    # with 100 val images the binomial std is 0.05, so 0.35 leaves a > 6-sigma margin.
    raw = next(r for r in rows if r["encoder"] == "raw pixels" and r["method"] == "linear")
    assert raw["val_acc"] > 0.35
    props = {p["family"]: p for p in data["properties"]["fashion-mnist"]}
    assert set(props) == set(FAMILIES.split(","))
    for p in props.values():  # the tiny budget's analysis sizes, both sides
        assert (p["n"], p["n_inception"], p["reference_n"], p["reference_n_inception"]) == (
            32, 16, 32, 16)
        assert p["colour_kl"] >= 0 and p["fid"] > 0
    # stat_spectrum draws its exponents from [0.5, 3.5] (mean 2); dead leaves measure 1.2
    # at 128 px (BENCHMARKS): the means must keep that order at 48 px
    assert props["stat_spectrum"]["alpha_mean"] > props["dead_leaves_shapes"]["alpha_mean"]
    assert data["families"]["stat_spectrum"]["status"] == "done"
    assert data["correlations"]["fashion-mnist"]["note"].startswith("2 families")
    meta = data["meta"]
    assert meta["command"] == "study" and meta["budget"] == "tiny" and meta["torch"]
    assert "git_sha" in meta and "--families" in meta["argv"]
    md = (study / "results.md").read_text()
    assert f"{100 * raw['val_acc']:.1f}" in md and "| features |" in md


def test_wilson_interval_closed_form():
    from noisevision.study.report import wilson

    lo, hi = wilson(0.5, 100)  # (0.5 + 0.0192) / 1.0384 -+ 0.0962 / 1.0384 ... known values
    assert math.isclose(lo, 0.4038, abs_tol=1e-4) and math.isclose(hi, 0.5962, abs_tol=1e-4)
    assert wilson(0.0, 10)[0] == 0.0 and wilson(1.0, 10)[1] == 1.0


@needs_data
def test_killed_study_resumes_to_the_same_numbers(cheap, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "noisevision", *CHEAP, "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "dead_leaves_shapes: properties done" in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "".join(seen)
    assert not (out / "results.json").exists()
    assert not (out / "steps" / "stat_spectrum" / "properties.json").exists()
    # the rerun continues in a worker process (the scheduler of --parallel)
    assert main([*CHEAP, "--out", str(out), "--quiet", "--parallel", "2"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert numbers(resumed) == numbers(json.loads((cheap / "results.json").read_text()))


@needs_data
def test_adding_families_runs_only_them_and_a_failing_family_is_reported(cheap, tmp_path):
    out = tmp_path / "grown"
    shutil.copytree(cheap, out)
    before = files_of(out / "steps")
    runs_before = files_of(out / "runs")
    bad = tmp_path / "broken_folder"
    bad.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).save(bad / f"{i:02d}.png")
    data = (bad / "07.png").read_bytes()
    (bad / "07.png").write_bytes(data[:len(data) // 2])  # a truncated image: decoding fails
    mixture = "dead_leaves_shapes:1,stat_spectrum:1"
    assert main([*CHEAP, "--families", f"{FAMILIES},{bad}", "--family", mixture, "--out",
                 str(out), "--quiet"]) == 0
    after = files_of(out / "steps")
    assert {k: v for k, v in after.items() if k in before} == before  # not rewritten
    assert {k: v for k, v in files_of(out / "runs").items() if k in runs_before} == runs_before
    result = json.loads((out / "results.json").read_text())
    fams = result["families"]
    mix = "dead_leaves_shapes:1+stat_spectrum:1"
    assert list(fams) == [*FAMILIES.split(","), str(bad), mix]
    assert fams[mix]["status"] == "done" and fams[str(bad)]["status"] == "failed"
    assert fams[str(bad)]["failed_step"] == "pretrain" and fams[str(bad)]["error"]
    assert f"noise: {mix}" in {r["encoder"] for r in result["rows"]}
    # three families with accuracies and properties: the correlations exist now
    corr = result["correlations"]["fashion-mnist"]
    assert corr["note"] is None and corr["correlations"]["colour_kl"]["n"] == 3
    assert "failed" in (out / "report.html").read_text()
    # the old families' numbers are those of the first run
    first = numbers(json.loads((cheap / "results.json").read_text()))
    kept = [r for r in numbers(result)["rows"] if r["encoder"] != f"noise: {mix}"]
    assert kept == first["rows"]


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("noisevision: error: "), err
    return err


@needs_data
def test_bad_input_is_one_line_exit_2_and_writes_nothing(study, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    cases = [
        (["--families", "stylegan_orientd"], "stylegan_oriented"),
        (["--families", "dead_leaves_shapes", "--tasks", "fashion-mnst"], "fashion-mnist"),
        (["--families", "dead_leaves_shapes", "--tasks", str(tmp_path / "nowhere")],
         "unknown task"),
        (["--families", "dead_leaves_shapes:x+stat_spectrum"], "bad weight"),
        (["--families", ","], "empty"),
        (["--families", "dead_leaves_shapes", "--images", str(2**36), "--resolution", "512"],
         "largest that fits is --images"),
        (["--families", "dead_leaves_shapes", "--crop", "128"], "larger than"),
        (["--families", "stylegan_oriented", "--resolution", "48"], "not supported"),
        (["--families", "dead_leaves_shapes", "--recipe", "moco", "--width", "0.5"],
         "applies to --recipe small only"),
    ]
    for extra, expected in cases:
        assert main(["study", "--budget", "tiny", "--out", str(fresh), *extra]) == 2, extra
        assert expected in _one_line(capsys), extra
        assert not fresh.exists(), extra
    before = _tree(study)
    assert main([*ARGS, "--out", str(study), "--seed", "1"]) == 2  # other settings
    err = _one_line(capsys)
    assert "other settings" in err and "seed: 0 -> 1" in err
    assert main(["study", "--out", str(study), "--resume", "--probe-epochs", "7"]) == 2
    assert "probe_epochs: 5 -> 7" in _one_line(capsys)
    assert main(["study", "--out", str(fresh), "--resume"]) == 2
    assert "no study" in _one_line(capsys)
    assert _tree(study) == before  # refused before anything was written
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    assert main([*ARGS, "--out", str(busy), "--overwrite"]) == 2
    assert "not a report folder" in _one_line(capsys)
    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    (copy / "steps" / "notes.txt").write_text("precious")
    snapshot = _tree(copy)
    assert main([*ARGS, "--out", str(copy), "--overwrite", "--seed", "1"]) == 2
    assert "did not write" in _one_line(capsys)
    assert _tree(copy) == snapshot


def test_worker_slots_and_torchrun_command():
    from noisevision.errors import UsageError
    from noisevision.ssl.train import PretrainConfig
    from noisevision.study.schedule import plan_slots, torchrun_argv, worker_command

    assert plan_slots(3, [], 1, 4) == [[], [], []]
    assert plan_slots(2**40, [], 1, 2) == [[], []]  # never more slots than families
    assert plan_slots(0, [0, 1, 2, 3, 4], 2, 3) == [[0, 1], [2, 3]]  # GPU 4 stays idle
    assert plan_slots(0, [0, 1, 2, 3], 1, 2) == [[0], [1]]
    assert plan_slots(1, [0, 1, 2, 3], 1, 3) == [[0]]
    with pytest.raises(UsageError):
        plan_slots(1, [], 2, 2)
    argv, env = worker_command(Path("/s"), "a+b", [2, 3], "cuda", 2)
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and argv[argv.index("--worker") + 1] == "a+b"
    assert argv[argv.index("--gpus-per-family") + 1] == "2"
    cfg = PretrainConfig(data="dead_leaves_shapes:1", out="/s/runs/x", epochs=3, width=0.5,
                         quiet=True)
    cmd = torchrun_argv(cfg, 4)
    assert "--nproc_per_node=4" in cmd and cmd[cmd.index("--epochs") + 1] == "3"
    assert cmd[cmd.index("--width") + 1] == "0.5" and "--quiet" in cmd and "--resume" in cmd
    # the parser of `pretrain` reads the command back into the same config
    from noisevision.cli import build_parser, pretrain_flags

    args = build_parser().parse_args(cmd[cmd.index("pretrain"):])
    given = {n: getattr(args, n) for _, n in pretrain_flags() if getattr(args, n) is not None}
    assert PretrainConfig(**given, out=args.out) == cfg
    with pytest.raises(UsageError, match="no `pretrain` flag"):
        torchrun_argv(PretrainConfig(data="x", out="/o", channels_last=True), 2)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@needs_data
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y "
                    "chromium; scripts/setup.sh installs it)")
def test_report_opens_in_headless_chromium_with_every_image(study, tmp_path):
    html = (study / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(srcs) >= 2 + 1 + 1 + 6  # sheets, Figure 3, Figure 4, Figures 6 and 7
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    # nothing that could fetch: no script, stylesheet link, frame or remote URL
    assert not re.search(r"<script|<link|<iframe|@import|url\(|https?://|src=\"//", html, re.I)
    # a copy with a probe appended: after load, every image's natural size goes into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", """<pre id="probe"></pre><script>
window.addEventListener('load', () => { document.getElementById('probe').textContent =
  JSON.stringify(Array.from(document.images, i => [i.complete, i.naturalWidth])); });
</script></body>"""))
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    found = re.search(r'<pre id="probe">([^<]*)</pre>', out.stdout)
    assert found, out.stderr[-2000:]
    images = json.loads(found.group(1))
    assert len(images) == len(srcs)
    assert all(ok and width > 0 for ok, width in images), images


def test_torchrun_pretraining_of_a_family_runs_two_processes(tmp_path):
    """The command --gpus-per-family builds, run for real with 2 CPU processes (gloo)."""
    from noisevision.ssl.train import PretrainConfig
    from noisevision.study.schedule import run_torchrun_pretrain

    cfg = PretrainConfig(data="dead_leaves_shapes:1", out=str(tmp_path / "run"), images=32,
                         image_size=64, crop=32, width=0.125, epochs=1, batch_size=16,
                         device="cpu", workers=0, quiet=True, log_every=1)
    run = run_torchrun_pretrain(cfg, 2)
    assert (run / "encoder.pt").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["environment"]["world_size"] == 2
    assert config["config"]["batch_size"] == 16 and config["config"]["width"] == 0.125


@needs_data
def test_full_disk_stops_the_study_with_one_line_and_no_partial_step(cheap, tmp_path, capsys,
                                                                     monkeypatch):
    import errno

    out = tmp_path / "full"
    shutil.copytree(cheap, out)
    real_open = open

    def full_open(path, mode="r", *a, **kw):  # the disk fills up at the new family's first step
        if "w" in mode and str(path).endswith(".tmp") and "pretrain.json" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", full_open)
    rc = main([*CHEAP, "--families", f"{FAMILIES},dead_leaves_squares", "--out", str(out),
               "--quiet"])
    monkeypatch.undo()
    assert rc == 2 and "disk full" in _one_line(capsys)
    new = out / "steps" / "dead_leaves_squares"
    assert not (new / "pretrain.json").exists() and not (new / "failed.json").exists()
    assert not list(out.rglob("*.tmp"))  # nothing half-written


def test_a_suite_of_folder_tasks_is_one_group(tmp_path):
    """Folder tasks (images of several sizes) grouped by their suite for Figure 4; the cheap
    metrics only, so no analysis weights are needed."""
    rng = np.random.default_rng(1)
    suite = tmp_path / "suite"
    for task in ("stripes", "blobs"):
        for split, n in (("train", 8), ("val", 4)):
            for label in ("a", "b"):
                d = suite / task / split / label
                d.mkdir(parents=True)
                for i in range(n):
                    h, w = (40, 56) if i % 2 else (56, 40)
                    base = 60 if label == "a" else 190  # two separable brightness classes
                    a = np.clip(rng.normal(base, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(a).save(d / f"{i}.png")
    out = tmp_path / "s"
    assert main(["study", "--budget", "tiny", "--families", "dead_leaves_shapes", "--tasks",
                 str(suite), "--metrics", "colour,spectrum", "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert {(t["task"], t["group"]) for t in data["meta"]["tasks"]} == {
        ("blobs", "suite"), ("stripes", "suite")}
    assert {r["group"] for r in data["rows"]} == {"suite"}
    props = data["properties"]["blobs"][0]
    assert props["reference_n"] == 16 and props["alpha_mean"] > 0  # 16 train images, resized
    mean = next(r for r in data["rows"] if r["encoder"] == "mean colour"
                and r["task"] == "blobs" and r["method"] == "linear")
    assert mean["val_acc"] == 1.0  # brightness 60 vs 190 (sd 30): the mean colour separates
    assert (out / "figures" / "fig4.png").is_file()


@needs_data
def test_a_family_whose_generator_changed_is_refused(cheap, tmp_path, capsys):
    """A study continued by a newer noisevision whose generator renders other images: the
    stored config (edited here as a code change would move it) no longer matches."""
    out = tmp_path / "changed"
    shutil.copytree(cheap, out)
    step = out / "steps" / "stat_spectrum" / "pretrain.json"
    record = json.loads(step.read_text())
    config = record["identity"]["stat_spectrum"]["config"]
    assert config["resolution"] == 64  # the budget's side, recorded with the pretraining
    key = next(k for k, v in config.items() if isinstance(v, (int, float)) and k != "resolution")
    config[key] = config[key] + 1
    step.write_text(json.dumps(record))
    before = _tree(out)
    assert main([*CHEAP, "--out", str(out), "--quiet"]) == 2
    err = _one_line(capsys)
    assert "stat_spectrum renders other images" in err and f"config.{key}" in err
    assert _tree(out) == before


def test_a_refusal_names_the_changed_budget_not_every_size_it_sets():
    from noisevision.study.folder import _shown

    sizes = [f"budget_settings.f{i}: {i} -> {i + 1}" for i in range(18)]
    assert _shown(["budget: 'paper' -> 'custom'", *sizes], {"budget": "paper"},
                  {"budget": "custom"}) == "budget: 'paper' -> 'custom'"
    # the same budget with overrides: the overridden sizes are the news, four at most
    shown = _shown(["budget: 'tiny' -> 'tiny+overrides'", *sizes[:5]], {"budget": "tiny"},
                   {"budget": "tiny+overrides"})
    assert shown == ("budget: 'tiny' -> 'tiny+overrides'; budget_settings.f0: 0 -> 1; "
                     "budget_settings.f1: 1 -> 2; budget_settings.f2: 2 -> 3; and 2 more")
    assert _shown(["tasks: ['a'] -> ['b']"], {"budget": "small"},
                  {"budget": "small"}) == "tasks: ['a'] -> ['b']"


def test_cpu_time_estimate_matches_the_measured_small_budget_and_flags_paper():
    """The warning's rough model against the measured runs (BENCHMARKS.md): the small
    budget's pretraining took 153-264 s on the 2-core VM; the paper budget is hundreds of
    hours there, so the study says so before it starts."""
    import dataclasses

    from noisevision.study.budgets import BUDGETS, cpu_pretrain_hours

    small = cpu_pretrain_hours(BUDGETS["small"]) * 3600
    assert 100 < small < 300, small
    assert cpu_pretrain_hours(BUDGETS["paper"]) > 100
    twice = dataclasses.replace(BUDGETS["small"], epochs=2 * BUDGETS["small"].epochs)
    assert cpu_pretrain_hours(twice) == pytest.approx(2 * cpu_pretrain_hours(BUDGETS["small"]))
    assert cpu_pretrain_hours(BUDGETS["small"], cores=4) == pytest.approx(
        cpu_pretrain_hours(BUDGETS["small"]) / 2)
