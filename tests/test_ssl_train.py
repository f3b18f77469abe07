"""The pretraining loop: tiny CPU runs on a folder of synthetic images.

Covers: loss falls, exact (bitwise) resume after a kill or a move, a 2-process torchrun (gloo)
whose replicas stay in sync, MoCo wiring, data plans and sources. Faults (bad input, signals,
killed processes, full disks, memory) are in test_ssl_faults.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ssl_runs import read_log, run_config, write_images

from noisevision.cli import main as cli_main
from noisevision.errors import UsageError
from noisevision.ssl.sources import DataSource
from noisevision.ssl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_resume_after_kill_is_bitwise_identical(images, tmp_path):
    full = pretrain(run_config(images, tmp_path / "full", checkpoint_every=2))
    killed = tmp_path / "killed"
    pretrain(run_config(images, killed, checkpoint_every=2), stop_after=3)  # dies after step 3
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)  # the last checkpoint before the kill
    pretrain(run_config(images, killed, checkpoint_every=2), resume=True)
    a = torch.load(full / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "encoder.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(full / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    ob = torch.load(killed / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(oa[k]["momentum_buffer"], ob[k]["momentum_buffer"]) for k in oa)
    losses_full = [r["loss"] for r in read_log(full) if "loss" in r]
    losses_resumed = [r["loss"] for r in read_log(killed) if "loss" in r]
    # The killed run logged step 3 before dying; its resumed tail equals the full run's tail.
    assert losses_resumed[-3:] == losses_full[-3:]
    cfg = json.loads((full / "config.json").read_text())
    assert cfg["config"]["recipe"] == "small" and cfg["environment"]["torch"] == torch.__version__


def test_a_moved_run_folder_with_a_probes_results_beside_it_resumes_exactly(images, tmp_path):
    """Runs are copied between machines and probed into their own folder (probe --out RUN):
    neither may block --resume. The copy continues as the original would have."""
    import shutil

    full = pretrain(run_config(images, tmp_path / "full", epochs=3))
    first = tmp_path / "first"
    pretrain(run_config(images, first, epochs=1))
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
        pretrain(run_config(images, other))


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
    pretrain(run_config(images, run, checkpoint_every=2, tensorboard=True), stop_after=3)
    pretrain(run_config(images, run, checkpoint_every=2, tensorboard=True), resume=True)
    assert made == [None, 3]  # fresh: nothing to purge; resumed at step 2: step 3 on is new


def test_loss_falls(images, tmp_path):
    run = pretrain(run_config(images, tmp_path / "fall", width=0.25, epochs=30, batch_size=48,
                        lr=0.1))
    losses = [r["loss"] for r in read_log(run) if "loss" in r]
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
    final = read_log(run)[-1]
    assert final["finished"] and final["global_step"] == 3  # 48 images / 16 per step
    sums = final["param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert json.loads((run / "config.json").read_text())["environment"]["world_size"] == 2


def test_moco_recipe_tiny_run(images, tmp_path):
    run = pretrain(run_config(images, tmp_path / "moco", recipe="moco", batch_size=8, epochs=1,
                        images=None, moco_queue=16, lr=0.03))
    log = read_log(run)
    assert [r["global_step"] for r in log if "loss" in r] == list(range(1, 7))
    # At init the key encoder equals the query encoder, so the positive already beats the 16
    # random queue entries: InfoNCE starts below the chance level log(17).
    assert 0 < log[0]["loss"] < np.log(17)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert int(state["queue_ptr"]) == (6 * 8) % 16
    enc = torch.load(run / "encoder.pt", weights_only=True)
    assert enc["arch"] == "resnet50" and "fc.weight" not in enc["state_dict"]


def test_mixture_plan_shares_and_disjoint_ranks(images, tmp_path):
    other = write_images(tmp_path / "other", 12, seed=1)
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
    other = write_images(tmp_path / "parent" / "photos", 2)
    assert scan_folder(tmp_path / "parent") == sorted(want + [str(p) for p in sorted(
        other.iterdir())])
    foreign = write_images(tmp_path / "foreign", 3)
    (foreign / "manifest.json").write_text(json.dumps({"images": 3}))
    assert len(scan_folder(foreign)) == 3
    (ds / "00000000" / "00000007.png").unlink()
    with pytest.raises(UsageError, match=r"'.*ds' is incomplete: 1 of 12 images .*indices 7\)"):
        scan_folder(ds)
    rc = cli_main(["pretrain", "--data", str(tmp_path / "parent"), "--out",
                   str(tmp_path / "run"), "--quiet"])
    assert rc == 2 and "is incomplete" in capsys.readouterr().err


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
    a = pretrain(run_config(images, tmp_path / "a", epochs=1, workers=2))
    b = pretrain(run_config(shards, tmp_path / "b", epochs=1, workers=2))
    wa = torch.load(a / "encoder.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    check_family(str(shards))  # a study family too
    assert torch.equal(_folder_images(str(shards), 4, 16), _folder_images(str(images), 4, 16))
