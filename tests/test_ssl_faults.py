"""Pretraining under faults and bad input: one-line errors before anything is written,
preemption signals, killed loader workers, a full disk, steps that cannot fit in memory,
non-finite losses; each keeps what was saved and resumes exactly.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ssl_runs import read_log, run_config, write_images

from noisevision.cli import main as cli_main
from noisevision.errors import ConfigError, UsageError
from noisevision.ssl.config import RECIPE_ONLY
from noisevision.ssl.train import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _cli_error(capsys, *args):
    rc = cli_main(["pretrain", "--quiet", "--workers", "0", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("noisevision: error:")
    return err


def test_bad_input_is_one_line_exit_2(images, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert "does not exist" in _cli_error(capsys, "--data", str(tmp_path / "nope"), "--out", out)
    (tmp_path / "empty").mkdir()
    assert "holds no images" in _cli_error(capsys, "--data", str(tmp_path / "empty"),
                                           "--out", out)
    assert "did you mean" in _cli_error(capsys, "--data", f"{images}:1,dead_leaves_shape:1",
                                        "--out", out)
    for bad in ("-1", "x", "nan", "0"):
        assert "bad weight" in _cli_error(capsys, "--data", f"{images}:{bad}", "--out", out)
    corrupt = tmp_path / "corrupt"
    write_images(corrupt, 4)
    (corrupt / "zz.png").write_bytes(b"\x89PNG garbage")
    assert "zz.png" in _cli_error(capsys, "--data", str(corrupt), "--out", out)
    assert not (tmp_path / "run").exists()  # no partial output


def test_truncated_image_found_while_training(tmp_path):
    folder = write_images(tmp_path / "trunc", 16)
    data = (folder / "003.png").read_bytes()
    (folder / "003.png").write_bytes(data[: len(data) // 2])  # header fine, pixels missing
    with pytest.raises(UsageError, match="003.png") as exc:
        pretrain(run_config(folder, tmp_path / "run", epochs=1))
    assert "\n" not in str(exc.value)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(images, tmp_path):
    run = tmp_path / "nan"
    with pytest.raises(UsageError, match="nan/inf") as exc:
        pretrain(run_config(images, run, lr=1e30, epochs=3, checkpoint_every=1))
    assert "last good checkpoint" in str(exc.value)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_two_process_torchrun_moco_shuffle_bn_stays_in_sync(images, tmp_path):
    """MoCo v2 under DDP with shuffle-BN (keys batch-shuffled across the 2 ranks)."""
    run = tmp_path / "ddp_moco"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "noisevision.cli", "pretrain", "--recipe", "moco",
           "--moco-bn", "shuffle", "--moco-queue", "32", "--data", str(images),
           "--out", str(run), "--crop", "32", "--epochs", "1", "--batch-size", "16",
           "--workers", "0", "--quiet", "--device", "cpu", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = read_log(run)
    final = log[-1]
    assert final["finished"] and final["global_step"] == 3  # 48 images / 16 per step
    sums = final["param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert int(state["queue_ptr"]) == (3 * 16) % 32  # the global batch entered the queue


def test_background_save_writes_the_state_of_its_step(tmp_path):
    """A checkpoint written beside training holds the state at submit time, whatever the
    training thread does to the live tensors meanwhile; the next submit waits for it."""
    import threading

    from noisevision.ssl.checkpoint import (
        BackgroundSaver,
        save_checkpoint,
        snapshot,
    )

    live = {"w": torch.zeros(1000), "opt": [torch.ones(3)]}
    gate = threading.Event()
    saver = BackgroundSaver()
    state = snapshot(live)

    def write():
        gate.wait(10)  # the training thread moves on before the file is written
        save_checkpoint(tmp_path / "checkpoint.pt", state)

    saver.submit(write)
    live["w"].add_(5.0)          # later steps change the live parameters in place
    live["opt"][0].mul_(7.0)
    assert not (tmp_path / "checkpoint.pt").exists()
    gate.set()
    saver.submit(lambda: None)   # waits for the save in flight
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(ck["w"], torch.zeros(1000)) and torch.equal(ck["opt"][0], torch.ones(3))
    saver.wait()


def test_background_save_error_is_raised_by_the_training_thread():
    from noisevision.ssl.checkpoint import BackgroundSaver

    saver = BackgroundSaver()

    def fail():
        raise UsageError("cannot write /run/checkpoint.pt: the disk is full")

    saver.submit(fail)
    with pytest.raises(UsageError, match="disk is full"):
        saver.wait()
    saver.wait()  # raised once, then clear


def test_full_disk_during_a_checkpoint_stops_training_with_one_line(images, tmp_path,
                                                                   monkeypatch, capsys):
    """A checkpoint that cannot be written (here: the second one, while the first landed)
    stops the run with the one-line error and exit status 2; the last good checkpoint stays."""
    import errno

    import noisevision.data.encode as encode

    real = encode.write_atomic
    calls = {"n": 0}

    def write_atomic(path, data, fsync=False):
        if str(path).endswith("checkpoint.pt"):
            calls["n"] += 1
            if calls["n"] == 2:
                encode.raise_write_error(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(path, data, fsync=fsync)

    monkeypatch.setattr(encode, "write_atomic", write_atomic)
    run = tmp_path / "run"
    code = cli_main(["pretrain", "--data", str(images), "--out", str(run), "--crop", "32",
                     "--width", "0.125", "--epochs", "3", "--batch-size", "16", "--lr", "0.01",
                     "--workers", "0", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "disk full while writing" in err[0], err
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 0)  # the first epoch's checkpoint, intact
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


# Out-of-range values of every kind of typed pretrain field, and in-range edge values.
_BAD = {"positive": [0, -1, True, 1.5], "count": [0, 2**40 + 1], "resolution": [8, 8192],
        "positive_float": [0.0, -1.0, float("nan"), float("inf")],
        "nonnegative_float": [-1e-9, float("nan")], "momentum": [1.0, -0.1, 5.0],
        "ema": [1.5, -0.1], "seed": [-1, 2**64], "loader_workers": [-1, 257]}
_EDGE = {"momentum": 0.0, "ema": 1.0, "nonnegative_float": 0.0, "loader_workers": 0}


def test_every_typed_field_is_range_checked_in_the_config_and_on_the_command_line(
        tmp_path, capsys):
    """One range per field for both ways in: a flag and a config made in code (or read back
    from a run's config.json). SGD momentum 0 is plain SGD; 1 or more never decays."""
    import dataclasses

    flags = dict((name, flag) for flag, name in __import__(
        "noisevision.cli", fromlist=["pretrain_flags"]).pretrain_flags())
    typed = [(f.name, f.metadata["argparse"]["type"]) for f in dataclasses.fields(PretrainConfig)
             if f.metadata.get("argparse", {}).get("type")]
    assert {kind for _, kind in typed} == set(_BAD)  # a new kind needs its bad values here
    for name, kind in typed:
        for bad in _BAD[kind]:
            with pytest.raises(ConfigError, match=name):
                PretrainConfig(data="dead_leaves_squares", **{name: bad})
            out = tmp_path / f"{name}_{bad}"
            try:
                rc = cli_main(["pretrain", "--data", "dead_leaves_squares", "--out", str(out),
                               flags[name], str(bad)])
            except SystemExit as exc:  # argparse's type check
                rc = exc.code
            err = capsys.readouterr().err.strip()
            assert rc == 2 and len(err.splitlines()) == 1 and not out.exists(), (name, bad, err)
        if kind in _EDGE:  # under the recipe that reads the field
            recipe = "moco" if name in RECIPE_ONLY["moco"] else "small"
            PretrainConfig(data="dead_leaves_squares", recipe=recipe, **{name: _EDGE[kind]})
    with pytest.raises(ConfigError, match="moco_queue"):  # each step enqueues a whole batch
        PretrainConfig(data="x", recipe="moco", batch_size=64, moco_queue=32)
    PretrainConfig(data="x", recipe="moco", batch_size=64, moco_queue=64)


def test_a_flag_of_the_other_recipe_is_refused_not_ignored(images, tmp_path, capsys):
    """--width under moco trained a full ResNet-50, --moco-dim under small nothing at all;
    both are now one line, before anything is written. A moco run's own flags on --resume
    are read against its recipe and batch, not the defaults."""
    for recipe, names in RECIPE_ONLY.items():
        other = "moco" if recipe == "small" else "small"
        for name in names:
            flag = "--" + name.replace("_", "-")
            value = {"moco_mlp": None, "moco_bn": "none", "pre_resize": "48",
                     "moco_momentum": "0.5"}.get(name, "3")
            if value is None:
                continue  # no flag (--moco-mlp is config-only)
            out = tmp_path / f"{other}_{name}"
            assert cli_main(["pretrain", "--data", str(images), "--out", str(out),
                             "--recipe", other, flag, value]) == 2
            err = capsys.readouterr().err.strip()
            assert f"applies to --recipe {recipe} only" in err and len(err.splitlines()) == 1
            assert not out.exists()
    with pytest.raises(ConfigError, match="moco_mlp"):
        PretrainConfig(data="x", moco_mlp=False)
    run = tmp_path / "moco"
    pretrain(run_config(images, run, recipe="moco", batch_size=8, epochs=1, moco_queue=16, lr=0.03))
    assert cli_main(["pretrain", "--out", str(run), "--resume", "--epochs", "2",
                     "--moco-queue", "16", "--quiet", "--workers", "0"]) == 0
    assert cli_main(["pretrain", "--out", str(run), "--resume", "--moco-queue", "32"]) == 2
    assert "cannot change moco_queue" in capsys.readouterr().err
    # a config stored by an earlier version with the other recipe's field set reads as default
    from noisevision.ssl.run_folder import config_from_dict

    stored = json.loads((run / "config.json").read_text())["config"]
    assert config_from_dict({**stored, "width": 0.5}).width == 1.0


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_a_preemption_signal_saves_the_step_and_resume_is_exact(images, tmp_path, monkeypatch,
                                                                signame):
    """SIGTERM (SLURM before its kill, torchrun's stop) or SIGUSR1 (`--signal=USR1@60`): the
    step in progress finishes, the checkpoint of that very step is written, Stopped; --resume
    continues bit-exactly. Without it a preempted run lost everything since its last epoch."""
    import signal

    from noisevision.errors import Stopped
    from noisevision.ssl import train

    ref = pretrain(run_config(images, tmp_path / "ref", epochs=3, log_every=2))
    real_loss, calls = train._Trainer._loss, []

    def loss(self, images):  # the scheduler's signal arrives during step 4 (epoch 1)
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), getattr(signal, signame))
        return real_loss(self, images)

    monkeypatch.setattr(train._Trainer, "_loss", loss)
    run = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as e:
        pretrain(run_config(images, run, epochs=3, log_every=2))
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) == handler  # the handlers are put back
    assert e.value.signum == getattr(signal, signame) and "--resume" in e.value.message
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 1)  # 3 steps an epoch: the log step after 4
    assert read_log(run)[-1] == {"stopped": signame, "epoch": 1, "step": 1, "global_step": 4}
    pretrain(run_config(images, run, epochs=3, log_every=2), resume=True)
    a = torch.load(ref / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _endless_run(images, run, *flags):
    """`noisevision pretrain` in its own process, for as long as it is let run (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "noisevision", "pretrain", "--data", str(images), "--out", str(run),
         "--crop", "32", "--width", "0.125", "--epochs", "100000", "--batch-size", "16",
         "--quiet", "--device", "cpu", *flags],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sigterm_from_outside_is_one_line_and_exit_143(images, tmp_path):
    import signal

    run = tmp_path / "run"
    proc = _endless_run(images, run, "--workers", "0", "--log-every", "1")
    try:
        deadline = time.time() + 120
        while not ((run / "log.jsonl").exists() and (run / "log.jsonl").read_text().count(
                "\n") >= 2) and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("noisevision: stopped by SIGTERM at epoch ")
    stopped = read_log(run)[-1]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (stopped["epoch"], stopped["step"])


def test_a_data_loader_process_killed_is_one_line_and_the_run_resumes(images, tmp_path):
    """The kernel's OOM killer takes a loader worker: one line naming it, exit 2, not torch's
    traceback; the checkpoints stay and --resume continues."""
    import signal

    run = tmp_path / "run"
    proc = _endless_run(images, run, "--workers", "2", "--checkpoint-every", "1")
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "checkpoint.pt").exists():
            time.sleep(0.2)
        for _ in range(20):  # a worker killed as its epoch ends is never missed: kill again
            pids = children.read_text().split() if children.exists() else []
            if pids:
                os.kill(int(pids[0]), signal.SIGKILL)
            try:
                err = proc.communicate(timeout=5)[1]
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        proc.kill()
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("noisevision: error: a data-loading process died (DataLoader "
                               "worker (pid"), err
    done = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert cli_main(["pretrain", "--out", str(run), "--resume", "--epochs", str(done + 1),
                     "--workers", "0", "--quiet"]) == 0


def test_a_step_that_cannot_fit_in_cpu_memory_is_one_line_before_anything(images, tmp_path,
                                                                         monkeypatch, capsys):
    """The kernel's OOM killer ends a CPU run without a word (MoCo's default batch of 256 at
    224 px needs about 28 GiB): the activations are estimated first, the largest batch named."""
    from noisevision import safety
    from noisevision.ssl.encoders import build_encoder
    from noisevision.ssl.guards import _activation_bytes

    per = _activation_bytes(build_encoder("small_alexnet", width=0.125, input_size=32), 32)
    assert 0 < per < 2**20
    free = int(1.3 * 2 * per * 5.5)  # room for 5 images a step (2 views each), not 16
    monkeypatch.setattr(safety, "available_memory", lambda device=None: free)
    out = tmp_path / "run"
    rc = cli_main(["pretrain", "--data", str(images), "--out", str(out), "--crop", "32",
                   "--width", "0.125", "--batch-size", "16", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "a step of 16 images at 32 px needs about" in err and "(about 5 fits)" in err
    assert not out.exists()
    monkeypatch.undo()
    pretrain(run_config(images, out, epochs=1, batch_size=4))  # fits: trains


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_at_one_step_and_resume_is_exact(images,
                                                                               tmp_path):
    """torchrun passes SIGTERM to its 2 workers (gloo): both stop after the same step (they
    agree at a log step), rank 0's checkpoint is that step's, and a torchrun --resume ends with
    the weights of an uninterrupted run."""
    import signal

    def cmd(run, *extra):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--standalone", "-m", "noisevision.cli", "pretrain", "--data", str(images),
                "--out", str(run), "--crop", "32", "--width", "0.125", "--epochs", "40",
                "--batch-size", "16", "--lr", "0.01", "--workers", "0", "--quiet", "--device",
                "cpu", "--log-every", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert subprocess.run(cmd(ref), capture_output=True, env=env, timeout=600).returncode == 0
    proc = subprocess.Popen(cmd(run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not ((run / "log.jsonl").exists() and len(
                (run / "log.jsonl").read_text().splitlines()) >= 4):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=300)[1]
    finally:
        proc.kill()
    stopped = read_log(run)[-1]
    assert "stopped" in stopped, err[-2000:]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (stopped["epoch"], stopped["step"])
    assert 0 < stopped["global_step"] < 120  # 40 epochs of 3 steps: stopped on the way
    done = subprocess.run(cmd(run, "--resume"), capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = read_log(run)[-1]
    assert final["finished"] and final["global_step"] == 120
    a = torch.load(ref / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
