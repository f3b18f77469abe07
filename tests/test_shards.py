"""WebDataset shards (issue 16): generate --layout shards, torchrun ranks, kill -9 and resume,
verify, pretrain and analyze reading shards, and the one-line errors for damaged or mixed shards.

Tiny everything: 32 px dead-leaves squares, shards of a few images.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from noisevision.cli import main
from noisevision.data.manifest import Manifest
from noisevision.data.shards import ShardPlan, open_shards, read_shard, shard_name
from noisevision.errors import UsageError

pytest.importorskip("webdataset")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GEN = ["generate", "dead_leaves_squares", "--resolution", "32", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _shards(out: Path, n: int = 48, size: int = 8, *extra: str) -> Path:
    assert main([*GEN, "--n", str(n), "--layout", "shards", "--shard-size", str(size),
                 "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """48 images in 6 shards of 8, written by 2 worker processes."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _shards(tmp_path_factory.mktemp("shards") / "ds", 48, 8, "--workers", "2")
    finally:
        torch.set_num_threads(n)


def _members(root: Path) -> dict[str, bytes]:
    """Every tar member of every shard: name -> bytes (a name twice is an error)."""
    out: dict[str, bytes] = {}
    for p in sorted(root.glob("shard-*.tar")):
        with tarfile.open(p) as tf:
            for info in tf.getmembers():
                assert info.name not in out, f"{info.name} twice"
                out[info.name] = tf.extractfile(info).read()
    return out


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("noisevision: error:"), err
    return err


# ------------------------------------------------------------------------------ the format

def test_shards_hold_the_folder_layouts_bytes_and_a_json_per_sample(ds, tmp_path):
    folder = tmp_path / "folder"
    assert main([*GEN, "--n", "48", "--out", str(folder), "--workers", "1"]) == 0
    members = _members(ds)
    assert sorted(p.name for p in ds.iterdir()) == ["manifest.json"] + [shard_name(k)
                                                                        for k in range(6)]
    assert len(members) == 96
    m = Manifest.read(ds)
    assert (m.layout, m.shard_size, m.count) == ("shards", 8, 48)
    for i in range(48):
        assert members[f"{i:09d}.png"] == (folder / "00000000" / f"{i:08d}.png").read_bytes()
        meta = json.loads(members[f"{i:09d}.json"])
        assert meta["index"] == i and meta["generator"] == "dead_leaves_squares"
        assert meta["seed"] == 0 and len(meta["config_hash"]) == 16
    with tarfile.open(ds / shard_name(2)) as tf:  # shard k = indices 8k..8k+7, in order
        assert [i.name for i in tf.getmembers()][:4] == ["000000016.json", "000000016.png",
                                                         "000000017.json", "000000017.png"]
    assert main(["verify", str(ds), "--sample", "6"]) == 0


def test_any_webdataset_reader_opens_them(ds):
    import webdataset as wds

    urls = [str(ds / shard_name(k)) for k in range(6)]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert [int(s["__key__"]) for s in samples] == list(range(48))
    assert samples[5]["png"].shape == (32, 32, 3) and samples[5]["json"]["index"] == 5


def test_manifests_old_and_new_load_and_folder_manifests_are_unchanged(ds, tmp_path):
    folder = tmp_path / "f"
    assert main([*GEN, "--n", "2", "--out", str(folder)]) == 0
    data = json.loads((folder / "manifest.json").read_text())
    assert "layout" not in data and "shard_size" not in data  # as earlier versions wrote it
    assert Manifest.read(folder).layout == "folder"
    data = json.loads((ds / "manifest.json").read_text())
    for bad in ({"shard_size": None}, {"layout": "folder"}, {"layout": "zip"},
                {"shard_size": 0}):
        with pytest.raises(UsageError, match="corrupt manifest"):
            Manifest.from_dict({**data, **bad})


def test_analyze_reads_shards_in_index_order(ds):
    from noisevision.analysis import open_source
    from noisevision.generators.base import create_generator

    src = open_source(str(ds), workers=2)
    assert (src.kind, src.available, src.resolution) == ("dataset", 48, 32)
    got = torch.cat(list(src.batches(20, batch=6)))
    ref = create_generator("dead_leaves_squares", resolution=32).images(
        torch.arange(20), 0, dtype=torch.uint8)
    assert torch.equal(got, ref)


# ------------------------------------------------------------------------------ resume, ranks

def test_resume_skips_complete_shards_and_rewrites_a_truncated_one(ds, tmp_path, capsys):
    out = tmp_path / "ds"
    shutil.copytree(ds, out)
    before = {p.name: p.read_bytes() for p in out.glob("shard-*.tar")}
    (out / shard_name(4)).unlink()
    data = (out / shard_name(1)).read_bytes()
    (out / shard_name(1)).write_bytes(data[:len(data) // 2])
    (out / ".shard-000003.tar.99999.tmp").write_bytes(b"half a shard")  # a killed run's
    capsys.readouterr()
    assert main([*GEN, "--n", "48", "--layout", "shards", "--shard-size", "8", "--out",
                 str(out), "--workers", "1"]) == 0
    assert "wrote 16 images, skipped 32" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.glob("shard-*.tar")} == before
    assert not list(out.glob(".*.tmp"))


def test_the_gpu_path_encoders_write_the_same_bytes(ds, tmp_path):
    """The GPU path: this process renders into shared memory, encoder processes write (here
    rendered on the CPU, so the bytes must equal the CPU workers' shards)."""
    from noisevision.data import shard_writer
    from noisevision.data.writer import prepare_folder
    from noisevision.generators.base import create_generator

    out = tmp_path / "gpu_path"
    m = Manifest.read(ds)
    prepare_folder(out, m, overwrite=False)
    gen = create_generator("dead_leaves_squares", resolution=32)
    job = shard_writer.ShardJob(out, m, 5)  # batches of 5 across shards of 8
    written = shard_writer._pool(job, shard_writer._rendered(gen, job, [0, 3, 5],
                                                             torch.device("cpu")),
                                 generator_desc=None, workers=2, progress=lambda n: None)
    assert written == 24
    for k in (0, 3, 5):
        assert (out / shard_name(k)).read_bytes() == (ds / shard_name(k)).read_bytes()


def test_torchrun_two_ranks_write_the_same_bytes(ds, tmp_path):
    out = tmp_path / "ranked"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "noisevision", "--", *GEN, "--n", "48", "--layout", "shards",
           "--shard-size", "8", "--out", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0 of 2" in proc.stdout and "rank 1 of 2" in proc.stdout
    assert "shards 0..2" in proc.stdout and "shards 3..5" in proc.stdout
    assert _members(out) == _members(ds)  # identical bytes per index
    # the shard files themselves too (fixed member times and owners)
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in ds.glob("shard-*.tar"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_while_writing_then_resume_loses_and_duplicates_nothing(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    try:
        import kill_trials as kt
    finally:
        sys.path.pop(0)
    args = ["generate", "dead_leaves_shapes", "--resolution", "48", "--n", "120", "--layout",
            "shards", "--shard-size", "4", "--workers", "2", "--quiet"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    kt.finish([*args, "--out", str(ref)])
    proc = subprocess.Popen(kt.cli([*args, "--out", str(out)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    kids: set[int] = set()
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("shard-*.tar"))) < 3:
        kids.update(kt.descendants(proc.pid))
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not kt.reap(kids, 15.0), "writer processes outlived their killed parent"
    written = len(list(out.glob("shard-*.tar")))
    assert 3 <= written < 30, "the kill came too late to test anything"
    kt.finish([*args, "--out", str(out)])
    assert _members(out) == _members(ref)  # every index once, the same bytes
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ reading

def _source(ds: Path, rank: int, world: int, workers: int):
    from noisevision.ssl.sources import DataSource

    src = DataSource(str(ds), image_size=32, images=None, seed=3, workers=workers)
    src.prepare(torch.device("cpu"), rank, world, progress=False)
    return src


def _index_of(ds: Path) -> dict[bytes, int]:
    from noisevision.generators.base import create_generator

    ref = create_generator("dead_leaves_squares", resolution=32).images(
        torch.arange(48), 0, dtype=torch.uint8)
    table = {ref[i].numpy().tobytes(): i for i in range(48)}
    assert len(table) == 48
    return table


def test_ranks_see_every_index_of_an_epoch_once_in_a_seeded_order(ds):
    table = _index_of(ds)
    seen: list[list[int]] = []
    for rank in (0, 1):
        src = _source(ds, rank, 2, workers=2)
        assert src.steps_per_epoch(6) == 4  # 24 images per rank, 6 per step
        batches = list(src.epoch_batches(1, 6))
        seen.append([table[x.numpy().tobytes()] for b in batches for x in b])
        # the order is a pure function of (seed, epoch, rank): any worker count, any start step
        again = [b for b in _source(ds, rank, 2, workers=0).epoch_batches(1, 6)]
        assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
        resumed = list(_source(ds, rank, 2, workers=3).epoch_batches(1, 6, start_step=3))
        assert len(resumed) == 1 and torch.equal(resumed[0], batches[3])
    assert sorted(seen[0] + seen[1]) == list(range(48))  # disjoint, all of them
    other = [table[x.numpy().tobytes()] for b in _source(ds, 0, 2, 0).epoch_batches(2, 6)
             for x in b]
    assert other != seen[0]  # another epoch, another order


def _pretrain_args(data: Path, run: Path, epochs: int) -> list[str]:
    return ["pretrain", "--data", str(data), "--out", str(run), "--crop", "32", "--width",
            "0.125", "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.01", "--workers",
            "2", "--quiet", "--device", "cpu", "--log-every", "1", "--checkpoint-every", "2"]


def test_pretrain_on_shards_resumes_exactly_after_a_kill(ds, tmp_path):
    from noisevision.ssl.train import PretrainConfig, pretrain

    def cfg(run):
        return PretrainConfig(data=str(ds), out=str(run), crop=32, width=0.125, epochs=2,
                              batch_size=8, lr=0.01, log_every=1, quiet=True, workers=2,
                              checkpoint_every=2)

    full = pretrain(cfg(tmp_path / "full"))
    killed = tmp_path / "killed"
    pretrain(cfg(killed), stop_after=3)  # inside epoch 0 (6 steps an epoch)
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == 2
    pretrain(cfg(killed), resume=True)
    a = torch.load(full / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_two_ranks_pretrain_on_shards_and_resume_exactly(ds, tmp_path):
    def torchrun(args: list[str]) -> None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--standalone", "-m", "noisevision", "--", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]

    full, cut = tmp_path / "full", tmp_path / "cut"
    torchrun(_pretrain_args(ds, full, 2))
    torchrun(_pretrain_args(ds, cut, 1))  # stops after epoch 0 ...
    torchrun([*_pretrain_args(ds, cut, 2), "--resume"])  # ... and goes on (same lr schedule)
    log = [json.loads(line) for line in open(full / "log.jsonl")]
    final = log[-1]
    assert final["finished"] and final["global_step"] == 12  # 48 images / 8 a step, 2 epochs
    assert len(set(final["param_checksums"])) == 1
    a = torch.load(full / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(cut / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    data = json.loads((full / "config.json").read_text())["data"][0]
    assert data["kind"] == "shards" and data["images"] == 48


# ------------------------------------------------------------------------------ bad input

def test_a_truncated_shard_is_one_line_naming_it_and_its_range(ds, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(ds, bad)
    data = (bad / shard_name(3)).read_bytes()
    (bad / shard_name(3)).write_bytes(data[:len(data) * 2 // 3])
    err = _one_line_error(capsys, _pretrain_args(bad, tmp_path / "run", 1))
    assert "shard-000003.tar (indices 24..31) is truncated or corrupt" in err
    assert not (tmp_path / "run").exists()
    assert main(["verify", str(bad)]) == 1
    assert "DAMAGED shard shard-000003.tar (indices 24..31)" in capsys.readouterr().err
    # damage inside a shard that the cheap end check misses: found when the shard is read
    (bad / shard_name(3)).write_bytes(data[:700] + b"\xff" * 600 + data[1300:])
    plan = ShardPlan.of(Manifest.read(bad))
    with pytest.raises(UsageError, match=r"indices 24\.\.31\) is truncated or corrupt") as exc:
        list(read_shard(bad / shard_name(3), plan, 3, "png"))
    assert "\n" not in str(exc.value)


def test_shards_of_two_datasets_in_one_folder(ds, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(ds, mixed)
    other = _shards(tmp_path / "other", 48, 8, "--seed", "5", "--workers", "1")
    shutil.copy(other / shard_name(2), mixed / shard_name(2))
    err = _one_line_error(capsys, _pretrain_args(mixed, tmp_path / "run", 1))
    assert "two different datasets" in err and shard_name(2) in err
    shutil.copy(ds / shard_name(2), mixed / shard_name(2))
    shutil.copy(other / shard_name(2), mixed / "imagenet-000002.tar")
    err = _one_line_error(capsys, ["analyze", str(mixed), "--metrics", "colour"])
    assert "two different datasets" in err and "imagenet-000002.tar" in err
    (mixed / "imagenet-000002.tar").unlink()
    (mixed / "manifest.json").unlink()
    assert "no manifest.json" in _one_line_error(capsys, _pretrain_args(mixed, tmp_path / "r",
                                                                         1))


def test_missing_shards_and_flag_conflicts(ds, tmp_path, capsys):
    part = tmp_path / "part"
    shutil.copytree(ds, part)
    (part / shard_name(5)).unlink()
    err = _one_line_error(capsys, _pretrain_args(part, tmp_path / "run", 1))
    assert "1 of 6 shards missing" in err and "indices 40..47" in err
    assert main(["verify", str(part)]) == 1
    assert "MISSING 8 of 48" in capsys.readouterr().err
    assert "--layout shards only" in _one_line_error(
        capsys, [*GEN, "--n", "4", "--shard-size", "2", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
    # a world size that does not divide the work is fine (contiguous blocks, none twice) ...
    assert [list(ShardPlan(0, 48, 8).block(r, 4)) for r in range(4)] == [[0], [1, 2], [3],
                                                                         [4, 5]]
    # ... but --shard and torchrun both splitting it is refused
    from noisevision.data.writer import Ranks, Shard, write_dataset
    from noisevision.generators.base import create_generator

    with pytest.raises(UsageError, match="--shard and torchrun"):
        write_dataset(create_generator("dead_leaves_squares", resolution=32), tmp_path / "y",
                      4, layout="shards", shard=Shard(0, 2), ranks=Ranks(0, 2, 0, 2))
    assert not (tmp_path / "y").exists()


def test_uneven_world_sizes_and_fewer_images_than_processes(ds):
    from noisevision.data.shard_stream import epoch_windows

    sh = open_shards(ds)
    with pytest.raises(UsageError, match="fewer than the 64 processes"):
        epoch_windows(sh, 0, 0, 0, 64, 1)

    def indices(rank: int, need: int) -> list[int]:
        return [sh.plan.bounds(w.k)[0] + int(p)
                for w in epoch_windows(sh, 0, 0, rank, 5, need) for p in w.members]

    ranks = [indices(r, 9) for r in range(5)]  # 48 // 5 = 9 each: none twice, 3 left out
    assert all(len(x) == 9 for x in ranks) and len(set(sum(ranks, []))) == 45
    more = indices(0, 20)  # a mixture's larger share: the next seeded slices follow
    assert len(more) == 20 and more[:9] == ranks[0]


def test_full_disk_while_writing_a_shard_is_one_line_and_leaves_no_temporary(tmp_path):
    """The real process (the tar stream's clean-up runs at exit): exactly one stderr line."""
    script = f"""
import errno, sys
import webdataset
from noisevision.cli import main
real = webdataset.TarWriter.write
def write(self, obj):
    if obj["__key__"] == "000000003":
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, obj)
webdataset.TarWriter.write = write
sys.exit(main({[*GEN, "--n", "8", "--layout", "shards", "--shard-size", "4", "--workers", "1",
               "--out", str(tmp_path / "sh")]!r}))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"noisevision: error: disk full while writing {tmp_path / 'sh' / shard_name(0)}: free "
        "some space and rerun the same command to resume"], p.stderr
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.tar"))
