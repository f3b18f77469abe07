"""Reliability under faults and bad input (one test per class of defect).

* data loss: --overwrite removes only noisevision's own files (demo reports, datasets, sheets,
  results) and never follows a symbolic link;
* stuck states: a run killed before its first checkpoint continues; --resume refuses changed
  flags it cannot honour and honours --epochs; damaged checkpoints are refused; damaged or
  missing images are re-rendered on resume and listed by verify; workers die with the parent;
* one clear line: a table of bad invocations of every command (the fuzz test below) exits 2
  with one line, no traceback and no new file.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisevision.cli import main
from noisevision.data.layout import image_path
from noisevision.data.writer import Shard, write_dataset
from noisevision.errors import UsageError
from noisevision.generators.base import create_generator
from noisevision.ssl.train import PretrainConfig, pretrain

GEN = "dead_leaves_squares"


pytestmark = pytest.mark.usefixtures("one_thread")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (links not followed) -> file bytes (None for folders/links)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def cli(capsys, *args: str) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("noisevision: error: "), err
    assert "Traceback" not in err
    return lines[0]


def bomb_png(path: Path, side: int = 10000) -> Path:
    """A PNG whose header claims side x side pixels (a decompression bomb), a few bytes long."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def small_images(folder: Path, n: int = 24, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"{i:03d}.png")
    return folder


# ----------------------------------------------------------------------------- data loss

def _fake_report(out: Path, marker: bool = True) -> None:
    (out / "samples").mkdir(parents=True)
    (out / "runs" / "fam").mkdir(parents=True)
    for rel in ("report.md", "results.md", "samples/a.png", "runs/fam/config.json",
                "runs/fam/checkpoint.pt.tmp", "runs/fam/log.jsonl"):
        (out / rel).write_text("x")
    (out / "results.json").write_text(json.dumps({"meta": {"command": "demo"}, "rows": []}))
    if marker:
        (out / ".noisevision-report.json").write_text("{}")


def test_demo_overwrite_removes_only_its_own_report(tmp_path, capsys):
    from noisevision.probe.demo import _prepare_out

    out = tmp_path / "report"
    _fake_report(out)
    _prepare_out(out, overwrite=True)
    assert sorted(tree(out)) == [".noisevision-report.json"]  # only the fresh marker
    # A report of an older version (no marker, results.json says demo) is recognised too.
    legacy = tmp_path / "legacy"
    _fake_report(legacy, marker=False)
    _prepare_out(legacy, overwrite=True)
    assert sorted(tree(legacy)) == [".noisevision-report.json"]


@pytest.mark.parametrize("intruder", ["thesis.md", "samples/notes.txt", "runs/fam/data.csv",
                                      "src/main.py"])
def test_demo_overwrite_refuses_a_folder_with_foreign_files(tmp_path, capsys, intruder):
    out = tmp_path / "report"
    _fake_report(out)
    (out / intruder).parent.mkdir(parents=True, exist_ok=True)
    (out / intruder).write_text("precious")
    before = tree(out)
    rc, err = cli(capsys, "demo", "--budget", "tiny", "--out", out, "--overwrite")
    assert rc == 2 and "did not write" in one_line_error(err)
    assert tree(out) == before  # nothing at all removed


def test_demo_overwrite_refuses_a_folder_that_is_no_report(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "src").mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    (out / "src" / "a.py").write_text("print()")
    before = tree(out)
    rc, err = cli(capsys, "demo", "--budget", "tiny", "--out", out, "--overwrite")
    assert rc == 2 and "not a report folder" in one_line_error(err)
    assert tree(out) == before


def test_overwrite_never_follows_links(tmp_path, capsys):
    from noisevision.probe.demo import _prepare_out

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("precious")
    out = tmp_path / "report"
    _fake_report(out)
    (out / "runs" / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match="symbolic link"):
        _prepare_out(out, overwrite=True)
    assert (elsewhere / "keep.txt").read_text() == "precious"
    assert (out / "report.md").exists()  # refused before anything was removed


def test_generate_overwrite_removes_only_dataset_files(tmp_path, capsys):
    out = tmp_path / "ds"
    base = ["generate", GEN, "--resolution", "32", "--n", "4", "--out", out, "--quiet"]
    assert cli(capsys, *base)[0] == 0
    assert cli(capsys, *base, "--seed", "5", "--overwrite")[0] == 0  # our own files: replaced
    (out / "00000000" / "notes.txt").write_text("precious")
    before = tree(out)
    rc, err = cli(capsys, *base, "--seed", "6", "--overwrite")
    assert rc == 2 and "did not write" in one_line_error(err)
    assert tree(out) == before
    # A non-empty folder without a manifest is never written into, --overwrite or not.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "paper.pdf").write_text("precious")
    rc, err = cli(capsys, "generate", GEN, "--resolution", "32", "--n", "2", "--out", foreign,
                  "--overwrite")
    assert rc == 2 and "holds no manifest.json" in one_line_error(err)
    assert tree(foreign) == {"paper.pdf": b"precious"}


def test_symlinked_chunk_folder_is_never_written_through(tmp_path, capsys):
    out = tmp_path / "ds"
    gen = create_generator(GEN, resolution=32)
    write_dataset(gen, out, 1004, shard=Shard(0, 251), progress=False)  # indices 0..3 of 1004
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    # The dataset spans two chunks; the second chunk folder is a link elsewhere.
    (out / "00001000").symlink_to(victim, target_is_directory=True)
    for extra in ([], ["--overwrite", "--seed", "3"]):
        rc, err = cli(capsys, "generate", GEN, "--resolution", "32", "--n", "1004", "--out",
                      out, "--quiet", *extra)
        assert rc == 2 and "symbolic link" in one_line_error(err)
        assert tree(victim) == {"keep.txt": b"precious"}
    rc, err = cli(capsys, "verify", out)
    assert rc == 2 and "symbolic link" in one_line_error(err)


def test_preview_and_results_never_replace_foreign_files(tmp_path, capsys):
    from noisevision.probe.evaluate import check_results_folder, write_results

    photo = tmp_path / "holiday.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    before = photo.read_bytes()
    rc, err = cli(capsys, "preview", GEN, "--n", "2", "--resolution", "32", "--out", photo)
    assert rc == 2 and "not a contact sheet" in one_line_error(err)
    assert photo.read_bytes() == before
    sheet = tmp_path / "sheet.png"
    for _ in range(2):  # our own sheet is replaced
        assert cli(capsys, "preview", GEN, "--n", "2", "--resolution", "32", "--out",
                   sheet)[0] == 0
    res = tmp_path / "res"
    res.mkdir()
    (res / "results.json").write_text('{"my": "data"}')
    with pytest.raises(UsageError, match="not a noisevision results file"):
        check_results_folder(res)
    (res / "results.json").unlink()
    write_results(res, [], {"command": "probe"}, "t")
    write_results(res, [], {"command": "probe"}, "t")  # ours: replaced


# ----------------------------------------------------------------------------- stuck states

def _cfg(data, out, **kw):
    base = dict(crop=32, width=0.125, epochs=2, batch_size=8, lr=0.01, log_every=1,
                quiet=True, workers=0)
    base.update(kw)
    return PretrainConfig(data=str(data), out=str(out), **base)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return small_images(tmp_path_factory.mktemp("imgs") / "a")


def test_run_killed_before_its_first_checkpoint_continues(images, tmp_path, capsys):
    ref = pretrain(_cfg(images, tmp_path / "ref"))
    run = tmp_path / "run"
    pretrain(_cfg(images, run), stop_after=1)  # killed inside epoch 0: no checkpoint yet
    assert not (run / "checkpoint.pt").exists() and (run / "config.json").exists()
    (run / ".checkpoint.pt.4242.tmp").write_bytes(b"half a checkpoint")  # killed while saving
    (run / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # (an earlier version's name)
    args = ["pretrain", "--data", images, "--out", run, "--crop", "32", "--width", "0.125",
            "--epochs", "2", "--batch-size", "8", "--lr", "0.01", "--workers", "0", "--quiet"]
    rc, err = cli(capsys, *args, "--resume")
    assert rc == 0, err
    a = torch.load(ref / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact: started again from step 0
    assert not (run / "checkpoint.pt.tmp").exists()
    assert not (run / ".checkpoint.pt.4242.tmp").exists()
    # --resume with only --out takes the stored config (a run that stopped before saving).
    run2 = tmp_path / "run2"
    pretrain(_cfg(images, run2), stop_after=1)
    rc, err = cli(capsys, "pretrain", "--out", run2, "--resume", "--quiet")
    assert rc == 0, err
    # A plain rerun of a folder holding only a started run also continues (from step 0).
    run3 = tmp_path / "run3"
    pretrain(_cfg(images, run3), stop_after=1)
    assert cli(capsys, *[a if a != run else run3 for a in args])[0] == 0



def _hold_folder_lock(folder: Path) -> subprocess.Popen:
    """Another process holding `folder` as a running pretrain or study does (FolderLock)."""
    code = ("import sys, time; from noisevision.locks import FolderLock; "
            f"FolderLock({str(folder)!r}, 'x', 'y').acquire(); print('held', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_one_process_at_a_time_in_a_run_or_study_folder(images, tmp_path, capsys):
    """A second pretrain / study in a folder that a running one holds is refused with one line
    (it would overwrite the other's checkpoints); a kill -9 of the holder frees the folder."""
    run = tmp_path / "run"
    pretrain(_cfg(images, run, epochs=1))
    before = tree(run)
    args = ["pretrain", "--out", run, "--resume", "--epochs", "2", "--quiet"]
    for command in (args, ["study", "--out", run, "--resume"]):
        holder = _hold_folder_lock(run)
        try:
            rc, err = cli(capsys, *command)
            assert rc == 2 and "is in use by another noisevision process" in one_line_error(err)
            assert tree(run) == before  # nothing read half, nothing written
        finally:
            holder.kill()
            holder.wait()
    rc, err = cli(capsys, *args)  # the killed holder's lock went with it
    assert rc == 0, err
    new = tmp_path / "new"  # a run the CLI creates holds its folder from then on
    from noisevision.locks import FolderLock

    seen = []
    real = FolderLock.acquire

    def spy(self):
        real(self)
        seen.append((self.folder, self.held))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FolderLock, "acquire", spy)
        pretrain(_cfg(images, new, epochs=1))
    assert seen[-1] == (new, True)
    with FolderLock(new, "run folder", "-"):  # released at the end: free for the next one
        pass


def test_resume_honours_epochs_and_refuses_other_changes(images, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(_cfg(images, run, epochs=1))
    base = ["pretrain", "--out", run, "--quiet", "--resume"]
    other = small_images(tmp_path / "other", 16)
    for flag, value, field in (("--data", other, "data"), ("--lr", "0.5", "lr"),
                               ("--seed", "3", "seed"), ("--batch-size", "16", "batch_size"),
                               ("--crop", "16", "crop")):
        rc, err = cli(capsys, *base, flag, value)
        msg = one_line_error(err)
        assert rc == 2 and f"--resume cannot change {field}" in msg
        assert "--epochs" in msg and "--compile" in msg  # every changeable flag is named
    # the same values are accepted; more epochs are honoured
    rc, err = cli(capsys, *base, "--data", images, "--lr", "0.01", "--epochs", "2")
    assert rc == 0, err
    log = [json.loads(line) for line in open(run / "log.jsonl")]
    assert log[-1]["finished"] and log[-1]["epochs"] == 2
    assert "epochs 1 -> 2" in err
    rc, err = cli(capsys, *base, "--epochs", "1")
    assert rc == 2 and "below the 2 epochs" in one_line_error(err)
    # a plain rerun is refused with the one command that continues
    rc, err = cli(capsys, "pretrain", "--data", images, "--out", run)
    assert rc == 2 and "pass --resume" in one_line_error(err)


def test_damaged_checkpoints_and_encoders_are_refused(images, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(_cfg(images, run, epochs=1))
    ckpt = run / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    # Flip 4 KiB inside the largest stored tensor (the zip still opens and unpickles).
    import zipfile

    with zipfile.ZipFile(ckpt) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 64
    data[start:start + 4096] = bytes(255 - b for b in data[start:start + 4096])
    ckpt.write_bytes(bytes(data))
    rc, err = cli(capsys, "pretrain", "--out", run, "--resume", "--epochs", "2", "--quiet")
    assert rc == 2 and "damaged" in one_line_error(err)
    ckpt.write_bytes(bytes(data[:len(data) // 2]))  # truncated
    rc, err = cli(capsys, "pretrain", "--out", run, "--resume", "--epochs", "2", "--quiet")
    msg = one_line_error(err)
    assert rc == 2 and "cannot read checkpoint" in msg and "corrupt" in msg, msg
    assert msg.endswith(")"), msg  # a whole sentence, never cut mid-word
    enc = run / "encoder.pt"
    data = bytearray(enc.read_bytes())
    with zipfile.ZipFile(enc) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 16
    data[start:start + 64] = bytes(64)
    enc.write_bytes(bytes(data))
    rc, err = cli(capsys, "probe", "--encoder", run, "--data", "fashion-mnist")
    assert rc == 2 and "damaged" in one_line_error(err)


def test_nan_message_names_no_missing_checkpoint(images, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(UsageError) as e:
        pretrain(_cfg(images, run, lr=1e30, epochs=3))
    msg = str(e.value)
    assert "nan/inf" in msg  # lr 1e30 diverges at the first step, before any checkpoint
    assert not (run / "checkpoint.pt").exists()
    assert "no checkpoint was written yet" in msg and "checkpoint.pt" not in msg
    # the one command that continues: the same command with a lower lr
    pretrain(_cfg(images, run, lr=0.01, epochs=1))


def test_damaged_and_missing_images_are_rendered_again_and_listed_by_verify(tmp_path, capsys):
    out = tmp_path / "ds"
    gen = create_generator(GEN, resolution=32)
    write_dataset(gen, out, 8, progress=False)
    good = {i: image_path(out, i, "png").read_bytes() for i in range(8)}
    image_path(out, 1, "png").write_bytes(b"")                     # 0 bytes
    image_path(out, 2, "png").write_bytes(good[2][:len(good[2]) // 2])  # truncated
    image_path(out, 5, "png").unlink()
    image_path(out, 6, "png").unlink()
    rc, err = cli(capsys, "verify", out, "--sample", "8")
    assert rc == 1
    assert "MISSING 2 of 8 indices: 5-6" in err and "DAMAGED" in err and "1-2" in err
    r = write_dataset(gen, out, 8, progress=False)
    assert (r.written, r.skipped, r.damaged) == (4, 4, 2)
    assert {i: image_path(out, i, "png").read_bytes() for i in range(8)} == good
    assert cli(capsys, "verify", out, "--sample", "8")[0] == 0


def _kill_trials():
    """scripts/kill_trials.py as a module (its process helpers: descendants, alive, reap)."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / "kill_trials.py"
    spec = importlib.util.spec_from_file_location("kill_trials", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_generation_workers_die_with_a_killed_parent(tmp_path):
    kt = _kill_trials()
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "noisevision", "generate",
                             "stat_spectrum_color_wmm", "--resolution", "64", "--n", "4000",
                             "--workers", "2", "--batch-size", "4", "--out", str(out),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("*/*.png")):
            time.sleep(0.2)
        kids = [k for k in kt.descendants(proc.pid) if kt.alive(k)]
        assert kids, "no worker processes found"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not kt.reap(kids, 15.0), "worker processes outlived their killed parent"
    count = len(list(out.glob("*/*.png")))
    time.sleep(1.0)
    assert len(list(out.glob("*/*.png"))) == count  # nothing writes any more
    # and the killed run resumes (the rest of its indices would follow; a few suffice here)
    assert main(["verify", str(out), "--sample", "3"]) == 1  # missing indices are reported


# ----------------------------------------------------------------------------- one clear line

def _bad_invocations(d: Path) -> list[list[str]]:
    """Bad invocations of every command; {d} is a scratch folder with fixtures in it."""
    gen = [GEN, "--resolution", "32"]
    g = ["generate", *gen, "--out", f"{d}/new"]
    pre = ["pretrain", "--out", f"{d}/run", "--data"]
    vis = ["visualize", "--encoder", f"{d}/enc.pt", "--steps", "1", "--out", f"{d}/fig5.png"]
    return [
        ["list", "nomatch*"], ["list", "--bogus"], [], ["nosuchcommand"],
        # preview
        ["preview", "dead_leaves_square"], ["preview", GEN, "--n", "0"],
        ["preview", GEN, "--n", "100000"], ["preview", GEN, "--n", "-3"],
        ["preview", GEN, "--seed", "-1"], ["preview", GEN, "--seed", str(2**64)],
        ["preview", GEN, "--indices", "5-2"], ["preview", GEN, "--indices", "0-99999999999999"],
        ["preview", GEN, "--indices", "x"], ["preview", GEN, "--indices", str(2**40)],
        ["preview", GEN, "--resolution", "8"], ["preview", GEN, "--resolution", "100000"],
        ["preview", GEN, "--resolution", "abc"], ["preview", GEN, "--set", "resolution=abc"],
        ["preview", GEN, "--set", "resolution=8"], ["preview", GEN, "--set", "sigma=abc"],
        ["preview", GEN, "--set", "sigma=NaN"], ["preview", GEN, "--set", "nosuch=1"],
        ["preview", GEN, "--set", "max_leaves=1000000000000"],
        ["preview", *gen, "--out", f"{d}/folder"], ["preview", *gen, "--out", f"{d}/x.txt"],
        ["preview", *gen, "--out", f"{d}/photo.png"], ["preview", *gen, "--out", "/proc/x.png"],
        ["preview", *gen, "--out", f"{d}/afile/x.png"], ["preview", *gen, "--device", "tpu"],
        ["preview", *gen, "--out", f"{d}/{'n' * 300}/x.png"],
        ["preview", GEN, "--n", "256", "--resolution", "4096"],
        # generate
        ["generate", *gen, "--out", f"{d}/new"], [*g, "--n", "0"], [*g, "--n", str(2**41)],
        [*g, "--n", "2", "--start", "-1"], [*g, "--n", "2", "--start", str(2**40)],
        [*g, "--n", "2", "--start", str(2**40 - 1)], [*g, "--n", "2", "--seed", str(2**64)],
        [*g, "--n", "2", "--jpeg-quality", "0"], [*g, "--n", "2", "--jpeg-quality", "101"],
        [*g, "--n", "2", "--workers", "0"], [*g, "--n", "2", "--workers", "-1"],
        [*g, "--n", "2", "--batch-size", "0"], [*g, "--n", "2", "--shard", "3/2"],
        [*g, "--n", "2", "--shard", "x"], [*g, "--n", "2", "--format", "gif"],
        [*g, "--n", "2", "--set", "max_leaves=1000000000000"], [*g, "--scale", "huge"],
        ["generate", "nosuch", "--n", "2", "--out", f"{d}/new"],
        ["generate", *gen, "--n", "2", "--out", f"{d}/afile"],
        ["generate", *gen, "--n", "2", "--out", "/proc/noisevision"],
        ["generate", *gen, "--n", "2", "--out", "/sys/noisevision"],
        ["generate", *gen, "--n", "2", "--out", f"{d}/afile/sub"],
        ["generate", *gen, "--n", "2", "--out", f"{d}/folder"],
        ["generate", *gen, "--n", "2", "--out", f"{d}/folder", "--overwrite"],
        ["generate", *gen, "--n", "2", "--out", f"{d}/ds"],  # another dataset there
        [*g, "--n", "2", "--batch-size", "65536", "--resolution", "4096"],
        # verify
        ["verify", f"{d}/none"], ["verify", f"{d}/folder"], ["verify", f"{d}/m_list"],
        ["verify", f"{d}/m_string"], ["verify", f"{d}/m_count"], ["verify", f"{d}/m_neg"],
        ["verify", f"{d}/m_gen"], ["verify", f"{d}/m_format"], ["verify", f"{d}/m_seed"],
        ["verify", f"{d}/m_extra"], ["verify", f"{d}/m_config"],
        ["verify", f"{d}/ds", "--indices", "100"], ["verify", f"{d}/ds", "--sample", "0"],
        ["verify", f"{d}/ds", "--indices", "0-99999999999999"],
        # pretrain
        ["pretrain", "--out", f"{d}/run"], [*pre, "nosuch_generator"], [*pre, f"{d}/empty"],
        [*pre, f"{d}/nonimages"], [*pre, f"{d}/bombs"], [*pre, f"{d}/imgs", "--lr", "-1"],
        [*pre, f"{d}/imgs", "--lr", "nan"], [*pre, f"{d}/imgs", "--lr", "0"],
        [*pre, f"{d}/imgs", "--crop", "200", "--batch-size", "4"],
        [*pre, GEN, "--resolution", "32", "--crop", "64"],
        [*pre, f"{d}/imgs", "--workers", "-1"], [*pre, f"{d}/imgs", "--batch-size", "0"],
        [*pre, f"{d}/imgs", "--images", "0"], [*pre, f"{d}/imgs", "--epochs", "0"],
        [*pre, f"{d}/imgs", "--width", "0"], [*pre, f"{d}/imgs", "--seed", "-1"],
        [*pre, f"{d}/imgs", "--recipe", "foo"], [*pre, f"{d}/imgs", "--batch-size", "4096"],
        [*pre, GEN, "--images", "1000000000", "--resolution", "256"],
        [*pre, f"{d}/imgs:0"], [*pre, ""],
        [*pre, f"{d}/imgs", "--pre-resize", "16", "--batch-size", "4"],
        [*pre, f"{d}/imgs", "--pre-resize", str(2**46)], [*pre, f"{d}/imgs", "--momentum", "1"],
        [*pre, f"{d}/imgs", "--recipe", "moco", "--moco-queue", "2", "--batch-size", "4"],
        [*pre, f"{d}/imgs", "--recipe", "moco", "--moco-momentum", "1.5"],
        [*pre, f"{d}/imgs", "--mix", "cutmix", "--mix-count", "9", "--batch-size", "8"],
        [*pre, f"{d}/imgs", "--recipe", "moco", "--moco-queue", "2000000000", "--batch-size",
         "4"], [*pre, f"{d}/imgs", "--recipe", "moco", "--moco-dim", str(2**46)],
        ["pretrain", "--out", f"{d}/afile", "--data", f"{d}/imgs"],
        ["pretrain", "--out", f"{d}/folder", "--data", f"{d}/imgs"],
        ["pretrain", "--out", f"{d}/run", "--resume"],
        ["pretrain", "--out", "/proc/run", "--data", f"{d}/imgs"],
        # probe
        ["probe", "--encoder", f"{d}/none", "--data", "fashion-mnist"],
        ["probe", "--encoder", f"{d}/evil.pth", "--data", "fashion-mnist"],
        ["probe", "--encoder", f"{d}/photo.png", "--data", "fashion-mnist"],
        ["probe", "--encoder", f"{d}/afile", "--data", "fashion-mnist"],
        ["probe", "--encoder", f"{d}/evil.pth", "--data", "fashion-mnist", "--out",
         f"{d}/afile"],
        ["probe", "--encoder", f"{d}/enc.pt", "--data", "nosuch"],
        ["probe", "--encoder", f"{d}/enc.pt", "--data", f"{d}/nonimages"],
        ["probe", "--encoder", f"{d}/enc.pt", "--data", "fashion-mnist", "--out",
         f"{d}/folder"],
        ["probe", "--encoder", f"{d}/evil.pth", "--data", "fashion-mnist", "--workers", "-1"],
        ["probe", "--encoder", f"{d}/evil.pth", "--data", "fashion-mnist", "--seed", "-1"],
        ["probe", "--encoder", f"{d}/evil.pth", "--data", "fashion-mnist", "--k", "0"],
        ["probe", "--encoder", f"{d}/evil.pth", "--data", "fashion-mnist", "--temperature",
         "-1"],
        # analyze
        ["analyze"], ["analyze", "nosuch_generator", "--metrics", "colour"],
        ["analyze", GEN, "--metrics", "colur"], ["analyze", GEN, "--metrics", ","],
        ["analyze", GEN, "--n", "0"], ["analyze", GEN, "--out", f"{d}/afile"],
        ["analyze", f"{d}/empty", "--metrics", "colour"],
        ["analyze", f"{d}/missing_folder", "--metrics", "colour"],
        ["analyze", GEN, "--metrics", "prc", "--n-inception", "2"],
        ["analyze", "--correlate", f"{d}/afile"],
        ["analyze", "--correlate", f"{d}/afile", "--properties", f"{d}/afile"],
        ["analyze", f"{d}/nonimages", "--metrics", "colour", "--reference", f"{d}/nonimages"],
        ["analyze", GEN, "--metrics", "colour", "--reference", f"{d}/imgs", "--n", "100"],
        # visualize
        ["visualize"], ["visualize", "--encoder", f"{d}/none"],
        ["visualize", "--encoder", f"{d}/evil.pth"], ["visualize", "--encoder", f"{d}/photo.png"],
        ["visualize", "--encoder", f"{d}/afile"], [*vis, "--layer", "conv9"],
        [*vis, "--layer", ","], [*vis, "--layer", "conv1", "--units", "500"],
        [*vis, "--units", "x"], [*vis, "--units", "5-2"], [*vis, "--steps", "0"],
        [*vis, "--resolution", "8"],
        [*vis, "--layer", "fc6", "--resolution", "64"], [*vis, "--seed", "-1"],
        [*vis, "--device", "tpu"], [*vis, "--out", f"{d}/x.txt"], [*vis, "--out", f"{d}/folder"],
        [*vis, "--out", "/proc/x.png"], [*vis, "--out", f"{d}/photo.png"],
        [*vis, "--out", f"{d}/afile/x.png"],
        # shards
        [*g, "--n", "2", "--layout", "zip"], [*g, "--n", "2", "--layout", "shards",
                                              "--shard-size", "0"],
        [*g, "--n", "2", "--shard-size", "5"], ["verify", f"{d}/tars"],
        [*pre, f"{d}/tars"], ["analyze", f"{d}/tars", "--metrics", "colour"],
        # study
        ["study", "--families", "nosuch", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--tasks", "nosuch", "--out", f"{d}/st"],
        ["study", "--families", ",", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--budget", "huge", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--out", f"{d}/afile"],
        ["study", "--families", GEN, "--out", f"{d}/folder"],
        ["study", "--families", GEN, "--epochs", "0", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--parallel", "0", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--metrics", "colur", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--batch-size", "99999", "--out", f"{d}/st"],
        ["study", "--families", f"{GEN}+", "--out", f"{d}/st"],
        ["study", "--families", f"{GEN}+{GEN}:2", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--gpus-per-family", "2", "--out", f"{d}/st"],
        ["study", "--families", GEN, "--recipe", "moco", "--images", "70000", "--batch-size",
         "70000", "--out", f"{d}/st"],
        # demo
        ["demo", "--out", f"{d}/afile"], ["demo", "--out", f"{d}/folder"],
        ["demo", "--out", f"{d}/folder", "--overwrite"], ["demo", "--families", "nosuch"],
        ["demo", "--families", ","], ["demo", "--budget", "foo"], ["demo", "--seed", "-1"],
        ["demo", "--out", "/proc/demo"],
    ]


def _fixtures(d: Path) -> None:
    (d / "afile").write_text("x")
    (d / "folder").mkdir()
    (d / "folder" / "thesis.tex").write_text("precious")
    (d / "empty").mkdir()
    (d / "nonimages").mkdir()
    (d / "nonimages" / "a.png").write_text("not an image")
    (d / "bombs").mkdir()
    bomb_png(d / "bombs" / "b.png")
    small_images(d / "imgs", 8)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "photo.png")
    torch.save({"x": _Evil()}, d / "evil.pth")
    write_dataset(create_generator(GEN, resolution=32), d / "ds", 4, progress=False)
    from noisevision.ssl.encoders import build_encoder, save_encoder

    save_encoder(d / "enc.pt", build_encoder("small_alexnet", width=0.125, input_size=32),
                 "small_alexnet")
    (d / "folder" / "results.json").write_text('{"mine": 1}')
    (d / "tars").mkdir()  # tar files that `generate` did not write (no manifest)
    with tarfile.open(d / "tars" / "shard-000000.tar", "w") as tf:
        info = tarfile.TarInfo("000000000.png")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"png"))
    good = json.loads((d / "ds" / "manifest.json").read_text())
    bad_manifests = {"m_list": [1, 2], "m_string": "manifest", "m_count": {**good, "count": "x"},
                     "m_neg": {**good, "count": -1}, "m_gen": {**good, "generator": "nosuch"},
                     "m_format": {**good, "format": "gif"}, "m_seed": {**good, "seed": 2**70},
                     "m_extra": {**good, "evil": 1}, "m_config": {**good, "config": [1]}}
    for name, m in bad_manifests.items():
        (d / name).mkdir()
        (d / name / "manifest.json").write_text(json.dumps(m))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_fuzz_bad_invocations_are_one_line_exit_2_and_leave_nothing(tmp_path, capsys,
                                                                    monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    _fixtures(d)
    monkeypatch.chdir(d)
    if torch.cuda.is_available():
        pytest.skip("the table assumes a machine without CUDA")
    failures = []
    cases = _bad_invocations(d)
    for argv in cases:
        before = tree(d)
        try:
            rc, err = cli(capsys, *argv)
        except Exception as exc:  # noqa: BLE001  (a traceback: the defect this test catches)
            failures.append(f"{argv}: raised {type(exc).__name__}: {exc}")
            continue
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        after = tree(d)
        problems = []
        if rc != 2:
            problems.append(f"exit {rc}")
        if len(lines) != 1 or "Traceback" in err or not lines[0].startswith("noisevision"):
            problems.append(f"stderr {err!r}")
        if after != before:
            changed = sorted(set(after) ^ set(before)) or sorted(
                k for k in after if after[k] != before.get(k))
            problems.append(f"files changed: {changed[:4]}")
        if problems:
            failures.append(f"{argv}: {'; '.join(problems)}")
    assert not (d / "pwned").exists()
    assert not failures, f"{len(failures)} of {len(cases)} bad invocations:\n" + "\n".join(
        failures)
    assert len(cases) >= 100


def test_console_errors_are_one_line_with_exit_2(tmp_path):
    """The real process: exit status 2 and one line on stderr, for the library's errors."""
    (tmp_path / "afile").write_text("x")
    for argv in (["generate", GEN, "--n", "2", "--out", str(tmp_path / "afile")],
                 ["verify", str(tmp_path)],
                 ["preview", GEN, "--set", "resolution=abc", "--out", str(tmp_path / "s.png")]):
        p = subprocess.run([sys.executable, "-m", "noisevision", *argv], capture_output=True,
                           text=True, check=False)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_an_allocator_failure_anywhere_is_one_line(capsys, monkeypatch):
    """torch's CPU allocator says "can't allocate memory" (not "out of memory"): one line with
    the size it tried, exit 2; other RuntimeErrors (bugs) keep their traceback."""
    import argparse

    from noisevision import cli

    def fail(message):
        def handler(args: argparse.Namespace) -> int:
            raise RuntimeError(message)
        return handler
    real = cli.build_parser

    def parser_with(handler):
        def build():
            parser = real()
            parser.set_defaults(handler=handler)
            for action in parser._subparsers._group_actions:
                for sub in action.choices.values():
                    sub.set_defaults(handler=handler)
            return parser
        return build
    monkeypatch.setattr(cli, "build_parser", parser_with(fail(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 819200000000 bytes. Error code 12")))
    assert cli.main(["list"]) == 2
    assert "out of memory (tried to allocate 762.9 GiB)" in one_line_error(
        capsys.readouterr().err)
    monkeypatch.setattr(cli, "build_parser", parser_with(fail("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["list"])
