"""`noisevision probe --out`: a killed probe resumes with the rows it had finished and gives the
uninterrupted results; progress of other settings is never mixed in; one probe per folder."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from noisevision.cli import main
from noisevision.locks import FolderLock
from noisevision.probe.baselines import random_init_encoder
from noisevision.probe.progress import PROGRESS
from noisevision.ssl.encoders import save_encoder

TIMINGS = ("feature_seconds", "probe_seconds")
# the module (noisevision.probe.evaluate is also the name of its function)
evaluate_module = importlib.import_module("noisevision.probe.evaluate")


@pytest.fixture
def setup(tmp_path):
    """A suite of two ImageFolder tasks (noisy, so that accuracies differ) and two encoders."""
    rng = np.random.default_rng(0)
    for task, colours in (("hue", ((150, 90, 90), (90, 90, 150))),
                          ("shade", ((100, 100, 100), (140, 140, 140)))):
        for split, n in (("train", 10), ("val", 6)):
            for c, colour in enumerate(colours):
                d = tmp_path / "suite" / task / split / f"c{c}"
                d.mkdir(parents=True)
                for i in range(n):
                    pixels = np.array(colour) + rng.normal(0, 70, (24, 24, 3))
                    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(d / f"{i}.png")
    for seed in (1, 2):
        model = random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32},
                                    seed=seed)
        save_encoder(tmp_path / f"enc{seed}" / "encoder.pt", model, "small_alexnet", {})
    return tmp_path


def argv(tmp_path, out, *extra):
    return ["probe", "--encoder", str(tmp_path / "enc1"), "--encoder", str(tmp_path / "enc2"),
            "--data", str(tmp_path / "suite"), "--method", "both", "--baselines", "--epochs", "4",
            "--out", str(out), "--quiet", "--device", "cpu", *extra]


def rows_of(out):
    rows = json.loads((out / "results.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def test_a_probe_stopped_part_way_computes_only_the_missing_rows_and_the_same_results(
        setup, monkeypatch, capsys):
    tmp = setup
    assert main(argv(tmp, tmp / "whole")) == 0
    whole = rows_of(tmp / "whole")
    assert len(whole) == 2 * 5 * 2  # tasks x (2 encoders + 3 baselines) x methods
    assert not (tmp / "whole" / PROGRESS).exists()  # the results replaced it

    calls = {"linear": 0, "knn": 0}
    real_linear, real_knn = evaluate_module.linear_probe, evaluate_module.knn_accuracy

    def linear(*a, **k):
        calls["linear"] += 1
        return real_linear(*a, **k)

    def knn(*a, **k):
        calls["knn"] += 1
        if calls["knn"] == 4:  # the 8th row: the process dies here
            raise KeyboardInterrupt
        return real_knn(*a, **k)

    monkeypatch.setattr(evaluate_module, "linear_probe", linear)
    monkeypatch.setattr(evaluate_module, "knn_accuracy", knn)
    assert main(argv(tmp, tmp / "part")) == 130  # "interrupted; rerun the same command"
    kept = json.loads((tmp / "part" / PROGRESS).read_text())["rows"]
    assert len(kept) == 7 and not (tmp / "part" / "results.json").exists()
    calls.update(linear=0, knn=-100)  # no more interruptions
    capsys.readouterr()
    assert main(argv(tmp, tmp / "part")) == 0
    assert calls == {"linear": 10 - 4, "knn": -100 + 10 - 3}  # only the 13 missing rows
    assert "resuming: 7 finished probe(s)" in capsys.readouterr().out
    assert rows_of(tmp / "part") == whole
    assert not (tmp / "part" / PROGRESS).exists()


def test_kill_9_then_the_same_command_finishes_with_the_uninterrupted_numbers(setup):
    tmp = setup
    out = tmp / "killed"
    cmd = [sys.executable, "-m", "noisevision.cli", *argv(tmp, out, "--mode", "augmented")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    progress = out / PROGRESS
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if len(json.loads(progress.read_text())["rows"]) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(json.loads(progress.read_text())["rows"])  # whole: written atomically
    assert 2 <= kept < 20 and not (out / "results.json").exists()
    assert main(argv(tmp, out, "--mode", "augmented")) == 0
    assert main(argv(tmp, tmp / "uninterrupted", "--mode", "augmented")) == 0
    assert rows_of(out) == rows_of(tmp / "uninterrupted")


def test_progress_of_other_settings_or_damaged_is_one_line_and_untouched(setup, capsys):
    tmp = setup
    out = tmp / "res"
    out.mkdir()
    progress = out / PROGRESS
    progress.write_text(json.dumps({"kind": "noisevision-probe-progress", "settings": {
        "data": str(tmp / "suite"), "seed": 0, "max_per_split": None, "fashion_train": None,
        "fashion_val": None, "mode": "cached", "epochs": 9, "k": 20, "temperature": 0.07},
        "rows": []}))
    before = progress.read_text()
    assert main(argv(tmp, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings (differs: epochs)" in err
    assert progress.read_text() == before and sorted(os.listdir(out)) == [PROGRESS]
    for damaged in ("{", "[]", '{"kind": "noisevision-probe-progress"}'):
        progress.write_text(damaged)
        assert main(argv(tmp, out)) == 2
        err = capsys.readouterr().err.strip()
        assert "not a probe progress file" in err and len(err.splitlines()) == 1
        assert progress.read_text() == damaged
    progress.unlink()
    progress.symlink_to(tmp / "elsewhere.json")
    assert main(argv(tmp, out)) == 2
    assert "is a link or a folder" in capsys.readouterr().err


def test_a_second_probe_in_the_same_folder_is_refused_while_the_first_runs(setup, capsys):
    tmp = setup
    out = tmp / "busy"
    out.mkdir()
    with FolderLock(out, "probe folder", "") as held:  # as a running probe holds it
        assert held.held
        assert main(argv(tmp, out)) == 2
        err = capsys.readouterr().err
        assert "is in use by another noisevision process" in err
        assert os.listdir(out) == []
    assert main(argv(tmp, out)) == 0  # released: the probe runs
