"""The pretraining loop: tiny CPU runs on a folder of synthetic images.

Covers: loss falls, exact (bitwise) resume after a kill, a 2-process torchrun (gloo) whose
replicas stay in sync, MoCo wiring, data plans, and one-line errors for bad input.
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
from PIL import Image

from noisevision.cli import main as cli_main
from noisevision.errors import ConfigError, UsageError
from noisevision.ssl.config import RECIPE_ONLY
from noisevision.ssl.sources import DataSource
from noisevision.ssl.train import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _write_images(folder, n, seed=0, size=32):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        a = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
        for _ in range(6):
            x, y = rng.integers(0, size - 4, 2)
            w, h = rng.integers(3, size // 2, 2)
            a[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        Image.fromarray(a).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp("imgs") / "class_a", 48)


def _cfg(data, out, **kw):
    base = dict(crop=32, width=0.125, epochs=2, batch_size=16, lr=0.01, log_every=1,
                quiet=True, workers=0)
    if kw.get("recipe") == "moco":
        del base["width"]  # SmallAlexNet's: the moco recipe refuses it
    base.update(kw)
    return PretrainConfig(data=str(data), out=str(out), **base)


def _log(run):
    return [json.loads(line) for line in open(run / "log.jsonl")]


def test_resume_after_kill_is_bitwise_identical(images, tmp_path):
    full = pretrain(_cfg(images, tmp_path / "full", checkpoint_every=2))
    killed = tmp_path / "killed"
    pretrain(_cfg(images, killed, checkpoint_every=2), stop_after=3)  # dies after step 3
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)  # the last checkpoint before the kill
    pretrain(_cfg(images, killed, checkpoint_every=2), resume=True)
    a = torch.load(full / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "encoder.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(full / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    ob = torch.load(killed / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(oa[k]["momentum_buffer"], ob[k]["momentum_buffer"]) for k in oa)
    losses_full = [r["loss"] for r in _log(full) if "loss" in r]
    losses_resumed = [r["loss"] for r in _log(killed) if "loss" in r]
    # The killed run logged step 3 before dying; its resumed tail equals the full run's tail.
    assert losses_resumed[-3:] == losses_full[-3:]
    cfg = json.loads((full / "config.json").read_text())
    assert cfg["config"]["recipe"] == "small" and cfg["environment"]["torch"] == torch.__version__


def test_a_moved_run_folder_with_a_probes_results_beside_it_resumes_exactly(images, tmp_path):
    """Runs are copied between machines and probed into their own folder (probe --out RUN):
    neither may block --resume. The copy continues as the original would have."""
    import shutil

    full = pretrain(_cfg(images, tmp_path / "full", epochs=3))
    first = tmp_path / "first"
    pretrain(_cfg(images, first, epochs=1))
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    (moved / "results.json").write_text('{"meta": {}, "rows": []}')  # as probe --out RUN leaves
    (moved / "notes.txt").write_text("lr sweep, second try")
    assert cli_main(["pretrain", "--out", str(moved), "--resume", "--epochs", "3", "--quiet",
                     "--workers", "0"]) == 0
    a = torch.load(full / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(moved / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (moved / "notes.txt").read_text() == "lr sweep, second try"
    stored = json.loads((moved / "config.json").read_text())["config"]
    assert Path(stored["out"]).resolve() == moved.resolve()
    # a fresh start is still refused in a folder of other files
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="holds files that `pretrain` did not write"):
        pretrain(_cfg(images, other))


def test_tensorboard_events_past_the_checkpoint_are_purged_on_resume(images, tmp_path,
                                                                     monkeypatch):
    """As log.jsonl drops its lines past the checkpoint, TensorBoard hides its events there
    (SummaryWriter's purge_step); checked with the real tensorboard by hand (a resumed step
    showed twice before). tensorboard is optional: a stand-in records what it is given."""
    import sys
    import types

    made = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            made.append(purge_step)

        def add_scalar(self, *a):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=Writer))
    run = tmp_path / "tb"
    pretrain(_cfg(images, run, checkpoint_every=2, tensorboard=True), stop_after=3)
    pretrain(_cfg(images, run, checkpoint_every=2, tensorboard=True), resume=True)
    assert made == [None, 3]  # fresh: nothing to purge; resumed at step 2: step 3 on is new


def test_loss_falls(images, tmp_path):
    run = pretrain(_cfg(images, tmp_path / "fall", width=0.25, epochs=30, batch_size=48,
                        lr=0.1))
    losses = [r["loss"] for r in _log(run) if "loss" in r]
    assert len(losses) == 30
    # Fixed seeds, deterministic on CPU; logged losses fluctuate by about +-0.15 step to step.
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.1


def test_two_process_torchrun_stays_in_sync(images, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "noisevision.cli", "pretrain", "--data", str(images),
           "--out", str(run), "--crop", "32", "--width", "0.125", "--epochs", "1",
           "--batch-size", "16", "--lr", "0.01", "--workers", "0", "--quiet", "--device", "cpu",
           "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = _log(run)[-1]
    assert final["finished"] and final["global_step"] == 3  # 48 images / 16 per step
    sums = final["param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert json.loads((run / "config.json").read_text())["environment"]["world_size"] == 2


def test_moco_recipe_tiny_run(images, tmp_path):
    run = pretrain(_cfg(images, tmp_path / "moco", recipe="moco", batch_size=8, epochs=1,
                        images=None, moco_queue=16, lr=0.03))
    log = _log(run)
    assert [r["global_step"] for r in log if "loss" in r] == list(range(1, 7))
    # At init the key encoder equals the query encoder, so the positive already beats the 16
    # random queue entries: InfoNCE starts below the chance level log(17).
    assert 0 < log[0]["loss"] < np.log(17)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert int(state["queue_ptr"]) == (6 * 8) % 16
    enc = torch.load(run / "encoder.pt", weights_only=True)
    assert enc["arch"] == "resnet50" and "fc.weight" not in enc["state_dict"]


def test_mixture_plan_shares_and_disjoint_ranks(images, tmp_path):
    other = _write_images(tmp_path / "other", 12, seed=1)
    spec = f"{images}:3,{other}:1"
    shards = []
    for rank in (0, 1):
        src = DataSource(spec, image_size=32, images=40, seed=0, workers=0)
        assert src.shares == [30, 10]
        src.prepare(torch.device("cpu"), rank, 2, progress=False)
        plan = src.plan(epoch=0, batch_size=4)
        assert len(plan) == 5  # (15 + 5) slots on this rank / 4
        counts = [sum(step[i].numel() for step in plan) for i in range(2)]
        assert counts == [15, 5]
        assert all(torch.equal(a, b) for s, t in zip(plan, src.plan(0, 4), strict=True)
                   for a, b in zip(s, t, strict=True))  # a pure function of (seed, epoch, rank)
        shards.append(set(src.components[0].shard))
        batches = list(src.epoch_batches(0, 4, start_step=3))
        assert len(batches) == 2 and batches[0].shape == (4, 3, 32, 32)
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 48


def test_continuous_generator_uses_fresh_indices():
    src = DataSource("dead_leaves_squares", image_size=16, images=4, seed=3,
                     generator_mode="continuous")
    src.prepare(torch.device("cpu"), 0, 1, progress=False)
    comp = src.components[0]
    x = comp.fetch(1, torch.tensor([0, 2]))
    ref = comp.generator.generate([4, 6], seed=3)  # epoch 1 owns indices 4..7
    assert torch.equal(x, ref)


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
    _write_images(corrupt, 4)
    (corrupt / "zz.png").write_bytes(b"\x89PNG garbage")
    assert "zz.png" in _cli_error(capsys, "--data", str(corrupt), "--out", out)
    assert not (tmp_path / "run").exists()  # no partial output


def test_truncated_image_found_while_training(tmp_path):
    folder = _write_images(tmp_path / "trunc", 16)
    data = (folder / "003.png").read_bytes()
    (folder / "003.png").write_bytes(data[: len(data) // 2])  # header fine, pixels missing
    with pytest.raises(UsageError, match="003.png") as exc:
        pretrain(_cfg(folder, tmp_path / "run", epochs=1))
    assert "\n" not in str(exc.value)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(images, tmp_path):
    run = tmp_path / "nan"
    with pytest.raises(UsageError, match="nan/inf") as exc:
        pretrain(_cfg(images, run, lr=1e30, epochs=3, checkpoint_every=1))
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
    log = _log(run)
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
    pretrain(_cfg(images, run, recipe="moco", batch_size=8, epochs=1, moco_queue=16, lr=0.03))
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

    ref = pretrain(_cfg(images, tmp_path / "ref", epochs=3, log_every=2))
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
        pretrain(_cfg(images, run, epochs=3, log_every=2))
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) == handler  # the handlers are put back
    assert e.value.signum == getattr(signal, signame) and "--resume" in e.value.message
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 1)  # 3 steps an epoch: the log step after 4
    assert _log(run)[-1] == {"stopped": signame, "epoch": 1, "step": 1, "global_step": 4}
    pretrain(_cfg(images, run, epochs=3, log_every=2), resume=True)
    a = torch.load(ref / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_from_outside_is_one_line_and_exit_143(images, tmp_path):
    import signal

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisevision", "pretrain", "--data", str(images), "--out", str(run),
         "--crop", "32", "--width", "0.125", "--epochs", "100000", "--batch-size", "16",
         "--workers", "0", "--quiet", "--log-every", "1", "--device", "cpu"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
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
    stopped = _log(run)[-1]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (stopped["epoch"], stopped["step"])


def test_a_data_loader_process_killed_is_one_line_and_the_run_resumes(images, tmp_path):
    """The kernel's OOM killer takes a loader worker: one line naming it, exit 2, not torch's
    traceback; the checkpoints stay and --resume continues."""
    import signal

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisevision", "pretrain", "--data", str(images), "--out", str(run),
         "--crop", "32", "--width", "0.125", "--epochs", "100000", "--batch-size", "16",
         "--workers", "2", "--quiet", "--checkpoint-every", "1", "--device", "cpu"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
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


def test_data_spec_takes_existing_paths_whole_and_refuses_a_source_twice(images, tmp_path):
    from noisevision.ssl.sources import SourceSpec, parse_data_spec

    odd = tmp_path / "run:2026-11-27T10:00,b"  # a folder name a timestamp gave it
    odd.mkdir()
    assert parse_data_spec(str(odd)) == [SourceSpec(str(odd), 1.0)]
    colon = tmp_path / "t:10"
    colon.mkdir()
    assert parse_data_spec(f"{colon},dead_leaves_squares:3") == [
        SourceSpec(str(colon), 1.0), SourceSpec("dead_leaves_squares", 3.0)]
    assert parse_data_spec(f"{colon}:2") == [SourceSpec(str(colon), 2.0)]
    for spec in ("dead_leaves_squares,dead_leaves_squares:2",
                 f"{images},{images}/../{images.name}"):
        with pytest.raises(UsageError, match="listed twice in --data"):
            parse_data_spec(spec)


def test_a_generated_dataset_folder_gives_exactly_its_images(tmp_path, capsys):
    """`generate --sheet` writes DIR/sheet.png, a 4 x 4 contact sheet: it must never become a
    training (or analysed) image; nor may anything else put in the folder. An incomplete dataset
    is refused, not read in part; someone else's manifest.json changes nothing."""
    import json

    from noisevision.ssl.sources import scan_folder

    ds = tmp_path / "parent" / "ds"
    assert cli_main(["generate", "dead_leaves_squares", "--n", "12", "--start", "3",
                     "--resolution", "32", "--out", str(ds), "--sheet", "--quiet"]) == 0
    Image.new("RGB", (32, 32)).save(ds / "00000000" / "notes.png")  # not one of its files
    want = [str(ds / "00000000" / f"{i:08d}.png") for i in range(3, 15)]
    assert (ds / "sheet.png").exists()
    assert scan_folder(ds) == want
    other = _write_images(tmp_path / "parent" / "photos", 2)
    assert scan_folder(tmp_path / "parent") == sorted(want + [str(p) for p in sorted(
        other.iterdir())])
    foreign = _write_images(tmp_path / "foreign", 3)
    (foreign / "manifest.json").write_text(json.dumps({"images": 3}))
    assert len(scan_folder(foreign)) == 3
    (ds / "00000000" / "00000007.png").unlink()
    with pytest.raises(UsageError, match=r"'.*ds' is incomplete: 1 of 12 images .*indices 7\)"):
        scan_folder(ds)
    rc = cli_main(["pretrain", "--data", str(tmp_path / "parent"), "--out",
                   str(tmp_path / "run"), "--quiet"])
    assert rc == 2 and "is incomplete" in capsys.readouterr().err


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
    pretrain(_cfg(images, out, epochs=1, batch_size=4))  # fits: trains


def test_real_images_kept_as_webdataset_shards_train_like_their_folder(images, tmp_path):
    """Shards that noisevision did not write (no manifest; ImageNet as WebDataset, say) are a
    folder source whose samples are read by seeking: the same images in the same order as the
    folder train bit-identically, under loader workers too."""
    import io
    import tarfile

    from noisevision.data.wds import folder_items
    from noisevision.ssl.sources import source_image_side
    from noisevision.study.families import _folder_images, check_family

    files = sorted(images.iterdir())
    shards = tmp_path / "wds"
    shards.mkdir()
    for k in range(3):
        with tarfile.open(shards / f"train-{k:03d}.tar", "w") as tf:
            for f in files[16 * k:16 * (k + 1)]:
                for ext, data in (("png", f.read_bytes()), ("cls", b"0")):
                    info = tarfile.TarInfo(f"{f.stem}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    assert len(folder_items(str(shards))) == 48 and source_image_side(str(shards)) == 32
    a = pretrain(_cfg(images, tmp_path / "a", epochs=1, workers=2))
    b = pretrain(_cfg(shards, tmp_path / "b", epochs=1, workers=2))
    wa = torch.load(a / "encoder.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    check_family(str(shards))  # a study family too
    assert torch.equal(_folder_images(str(shards), 4, 16), _folder_images(str(images), 4, 16))


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
    stopped = _log(run)[-1]
    assert "stopped" in stopped, err[-2000:]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (stopped["epoch"], stopped["step"])
    assert 0 < stopped["global_step"] < 120  # 40 epochs of 3 steps: stopped on the way
    done = subprocess.run(cmd(run, "--resume"), capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = _log(run)[-1]
    assert final["finished"] and final["global_step"] == 120
    a = torch.load(ref / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
