"""The CLI and the dataset writer: layout, manifest, resume, shards, verify and bad input."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisevision.cli import main
from noisevision.data import encode as encode_mod
from noisevision.data.layout import existing_indices, image_path
from noisevision.data.manifest import Manifest
from noisevision.data.verify import verify_dataset
from noisevision.data.writer import Shard, write_dataset
from noisevision.errors import UsageError
from noisevision.generators.base import create_generator

GEN = "dead_leaves_squares"
RES = "32"


def run_cli(*args: str) -> int:
    return main(list(args))


def test_list_shows_every_generator_with_description(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    assert "dead_leaves_squares" in out and "dead_leaves_shapes" in out
    for line in out.strip().splitlines():
        assert len(line.split(None, 1)) == 2  # a name and a description
    assert run_cli("list", "dead_leaves*") == 0


def test_preview_writes_labelled_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    assert run_cli("preview", GEN, "--n", "6", "--resolution", RES, "--out", str(out)) == 0
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.width >= 3 * 128  # tiles upscaled to >= 128 px


def test_generate_layout_manifest_and_verify(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run_cli("generate", GEN, "--n", "12", "--resolution", RES, "--out", str(out),
                   "--seed", "3", "--quiet", "--sheet") == 0
    assert Image.open(out / "sheet.png").width > 128
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png"))
    assert files == [f"00000000/{i:08d}.png" for i in range(12)]
    m = json.loads((out / "manifest.json").read_text())
    assert m["generator"] == GEN and m["seed"] == 3 and m["count"] == 12
    assert m["resolution"] == 32 and m["format"] == "png" and m["config"]["resolution"] == 32
    assert "torch" in m["versions"] and "noisevision" in m["versions"]
    # files are the generator's images, exactly
    gen = create_generator(GEN, resolution=32)
    expected = encode_mod.to_uint8(gen.generate([5], seed=3))[0]
    assert np.array_equal(np.asarray(Image.open(image_path(out, 5, "png"))), expected)
    assert run_cli("verify", str(out), "--sample", "5") == 0
    # chunk folders act as classes for torchvision's ImageFolder
    from torchvision.datasets import ImageFolder

    assert len(ImageFolder(str(out))) == 12


def test_verify_detects_a_tampered_image(tmp_path, capsys):
    out = tmp_path / "ds"
    write_dataset(create_generator(GEN, resolution=32), out, 6, progress=False)
    path = image_path(out, 4, "png")
    arr = np.asarray(Image.open(path)).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(path)
    assert run_cli("verify", str(out), "--indices", "0-5") == 1
    assert "MISMATCH at indices 4" in capsys.readouterr().err


def test_jpeg_dataset_verifies_within_tolerance(tmp_path):
    out = tmp_path / "jpg"
    assert run_cli("generate", GEN, "--n", "4", "--resolution", RES, "--out", str(out),
                   "--format", "jpg", "--jpeg-quality", "90", "--quiet") == 0
    assert len(list(out.rglob("*.jpg"))) == 4
    assert run_cli("verify", str(out), "--sample", "4") == 0


def test_resume_skips_complete_files_and_removes_temporaries(tmp_path):
    gen = create_generator(GEN, resolution=32)
    out = tmp_path / "ds"
    first = write_dataset(gen, out, 10, progress=False, batch_size=4)
    mtimes = {i: image_path(out, i, "png").stat().st_mtime_ns for i in range(10)}
    # simulate a killed run: three files gone, one stale temporary left behind
    for i in (2, 7, 9):
        image_path(out, i, "png").unlink()
    stale = out / "00000000" / ".00000003.png.999.tmp"
    stale.write_bytes(b"partial")
    again = write_dataset(gen, out, 10, progress=False, batch_size=4)
    assert (first.written, again.written, again.skipped) == (10, 3, 7)
    assert not stale.exists()
    assert existing_indices(out, "png") == set(range(10))
    for i in (0, 1, 3, 8):
        assert image_path(out, i, "png").stat().st_mtime_ns == mtimes[i]


def test_interrupted_run_leaves_no_partial_file(tmp_path, monkeypatch):
    gen = create_generator(GEN, resolution=32)
    out = tmp_path / "ds"
    calls = {"n": 0}
    real = encode_mod.encode

    def failing_encode(arr, fmt, q=95, subsampling="4:4:4"):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(arr, fmt, q, subsampling)

    monkeypatch.setattr("noisevision.data.writer.encode", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(gen, out, 8, progress=False, workers=1, batch_size=2)
    monkeypatch.undo()
    for p in out.rglob("*"):
        if p.is_file() and p.suffix == ".png":
            Image.open(p).verify()  # every file present is complete
    assert not list(out.rglob(".*.tmp"))
    result = write_dataset(gen, out, 8, progress=False)
    assert result.written + result.skipped == 8
    assert existing_indices(out, "png") == set(range(8))


def test_batch_size_and_workers_do_not_change_bytes(tmp_path):
    gen = create_generator(GEN, resolution=32)
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(gen, a, 9, progress=False, batch_size=9, workers=1)
    write_dataset(gen, b, 9, progress=False, batch_size=2, workers=3)
    for i in range(9):
        assert image_path(a, i, "png").read_bytes() == image_path(b, i, "png").read_bytes()


def test_shards_fill_one_dataset_without_overlap(tmp_path):
    gen = create_generator(GEN, resolution=32)
    out = tmp_path / "ds"
    seen = []
    for k in range(3):
        r = write_dataset(gen, out, 10, shard=Shard(k, 3), progress=False)
        seen.append(set(range(*r.indices)))
        assert r.written == len(seen[-1])
    assert set().union(*seen) == set(range(10))
    assert sum(len(s) for s in seen) == 10
    assert Shard.parse("2/4") == Shard(2, 4)


def test_full_disk_gives_clear_error_and_no_partial_file(tmp_path, monkeypatch):
    real_open = open

    def full_open(path, mode="r", *a, **kw):
        fh = real_open(path, mode, *a, **kw)
        if "w" in mode and str(path).endswith(".tmp") and "00000003" in str(path):
            fh.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return fh

    monkeypatch.setattr("builtins.open", full_open)
    out = tmp_path / "ds"
    rc = run_cli("generate", GEN, "--n", "6", "--resolution", RES, "--out", str(out),
                 "--quiet", "--workers", "1")
    monkeypatch.undo()
    assert rc == 2
    assert not image_path(out, 3, "png").exists()
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("args, needle", [
    (["generate", "dead_leaves_squarez", "--n", "4", "--out", "{d}/x"],
     "did you mean dead_leaves_squares"),
    (["generate", GEN, "--n", "0", "--out", "{d}/x"], "positive integer"),
    (["generate", GEN, "--n", "4", "--resolution", "8", "--out", "{d}/x"], ">= 16"),
    (["generate", GEN, "--n", "4", "--resolution", "abc", "--out", "{d}/x"], ">= 16"),
    (["generate", GEN, "--n", "4", "--out", "{d}/afile"], "is a file"),
    (["generate", GEN, "--n", "4", "--out", "{d}/x", "--shard", "3/2"], "bad shard"),
    (["preview", "nonexistent_gen", "--out", "{d}/s.png"], "unknown generator"),
    (["verify", "{d}/nothing"], "does not exist"),
    (["generate", GEN, "--n", "4", "--out", "{d}/x", "--set", "sigma"], "expected KEY=VALUE"),
    (["generate", GEN, "--n", "4", "--out", "{d}/x", "--set", "sigmaa=3"], "has no option sigmaa"),
    (["preview", GEN, "--out", "{d}/s.png", "--set", "sigma=-1"], "sigma"),
    (["verify", "{d}"], "manifest.json"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle, capsys):
    (tmp_path / "afile").write_text("x")
    args = [a.replace("{d}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(run_cli(*args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err, err
    assert len([ln for ln in err.splitlines() if "error" in ln]) == 1
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.png"))


def test_existing_dataset_with_other_manifest_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    base = ["generate", GEN, "--resolution", RES, "--out", str(out), "--quiet"]
    assert run_cli(*base, "--n", "4") == 0
    assert run_cli(*base, "--n", "4", "--seed", "9") == 2
    assert "already holds a different dataset" in capsys.readouterr().err
    assert Manifest.read(out).seed == 0
    assert run_cli(*base, "--n", "4", "--seed", "9", "--overwrite") == 0
    assert Manifest.read(out).seed == 9
    assert run_cli("verify", str(out), "--sample", "4") == 0


def test_unwritable_output_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        # root ignores permission bits; a path below a regular file is unwritable for anyone
        target = tmp_path / "afile" / "sub"
        (tmp_path / "afile").write_text("x")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "sub"
    assert run_cli("generate", GEN, "--n", "2", "--resolution", RES, "--out", str(target)) == 2
    assert "not writable" in capsys.readouterr().err


def test_corrupt_manifest_is_reported(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{not json")
    assert run_cli("verify", str(tmp_path)) == 2
    assert "corrupt manifest" in capsys.readouterr().err


def test_console_script_and_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "noisevision", "list"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and GEN in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "noisevision", "generate", "nope", "--n", "1",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("noisevision: error: unknown generator 'nope'")
    # the README's `torchrun ... -m noisevision -- CMD`: a launcher may pass the -- on
    proc = subprocess.run([sys.executable, "-m", "noisevision", "--", "list"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and GEN in proc.stdout


def test_usage_error_for_missing_n(tmp_path):
    with pytest.raises(UsageError):
        from noisevision.cli import _cmd_generate, build_parser

        _cmd_generate(build_parser().parse_args(["generate", GEN, "--out", str(tmp_path)]))


def test_decode_reports_corrupt_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(UsageError, match="corrupt or unreadable image"):
        encode_mod.decode(Path(bad))


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB tmpfs (needs root, as on the CI machine); skipped where mounting is refused."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_real_full_disk_stops_cleanly(tiny_disk, capsys):
    out = tiny_disk / "ds"
    rc = run_cli("generate", "dead_leaves_shapes", "--n", "300", "--resolution", "48",
                 "--out", str(out), "--quiet")
    assert rc == 2
    err = capsys.readouterr().err
    assert "disk full" in err and len(err.strip().splitlines()) == 1
    assert not list(out.rglob(".*.tmp"))
    pngs = list(out.glob("*/*.png"))
    assert 0 < len(pngs) < 300
    for p in pngs:  # whatever was written is complete
        with Image.open(p) as im:
            im.load()


@pytest.mark.parametrize("name", ["stylegan_oriented", "stat_spectrum_color_wmm"])
def test_float_heavy_families_verify_bit_exactly(tmp_path, name):
    """FFT- and matmul-heavy generators written by 2 worker processes regenerate exactly."""
    from noisevision.generators.base import GENERATORS

    cls, _ = GENERATORS.get(name).factory
    gen = create_generator(name, **{"resolution": 64, **cls.cheap_settings})
    out = tmp_path / "ds"
    write_dataset(gen, out, 6, batch_size=2, workers=2, progress=False)
    result = verify_dataset(out, indices=list(range(6)))
    assert result.ok and result.checked == list(range(6))


def test_set_changes_generator_options_and_is_recorded(tmp_path, capsys):
    """--set KEY=VALUE (JSON values) reaches the generator config and the manifest; verify
    re-renders with it; `list --config` shows the options --set can change."""
    assert run_cli("list", "--config", GEN) == 0
    defaults = json.loads(capsys.readouterr().out)[GEN]
    assert "sigma" in defaults and "resolution" in defaults
    out = tmp_path / "ds"
    sigma = defaults["sigma"] + 1.0
    assert run_cli("generate", GEN, "--n", "3", "--resolution", RES, "--out", str(out),
                   "--quiet", "--set", f"sigma={sigma}") == 0
    assert Manifest.read(out).config["sigma"] == sigma
    assert run_cli("verify", str(out), "--sample", "3") == 0
    want = create_generator(GEN, resolution=int(RES), sigma=sigma).generate(range(3), seed=0)
    got = np.asarray(Image.open(image_path(out, 2, "png")), dtype=np.float32) / 255.0
    assert np.abs(got - want[2].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    # resuming with other options is refused, like any other difference
    assert run_cli("generate", GEN, "--n", "3", "--resolution", RES, "--out", str(out),
                   "--quiet") == 2


def test_manifest_records_the_cuda_batch_size_as_identity(tmp_path):
    """CPU datasets record no batch size (bytes never depend on it); a CUDA one's batch size is
    part of its identity (its bytes depend on it), and a manifest without the field still reads."""
    out = tmp_path / "ds"
    assert run_cli("generate", GEN, "--n", "2", "--resolution", RES, "--out", str(out),
                   "--quiet", "--batch-size", "1") == 0
    m = Manifest.read(out)
    assert m.batch_size is None
    cuda = Manifest(**{**m.__dict__, "device": "cuda", "batch_size": 256})
    assert cuda.differences(Manifest(**{**m.__dict__, "device": "cuda", "batch_size": 128})) \
        == ["batch_size"]
    data = json.loads((out / "manifest.json").read_text())
    del data["batch_size"]  # written before the field existed
    (out / "manifest.json").write_text(json.dumps(data))
    assert Manifest.read(out).batch_size is None
    assert run_cli("verify", str(out), "--sample", "2") == 0


def test_a_folder_dataset_grows_with_a_larger_n(tmp_path, capsys):
    """image i is a pure function of (config, seed, i): `--n` larger than the dataset's count
    keeps every image present (not rewritten) and writes the rest; fewer images, another
    start or a shards dataset (whose samples name the dataset's count) are still refused."""
    out, ref = tmp_path / "ds", tmp_path / "ref"
    args = ["generate", GEN, "--resolution", RES, "--quiet", "--workers", "1"]
    assert run_cli(*args, "--n", "6", "--out", str(out)) == 0
    kept = {i: os.stat(image_path(out, i, "png")).st_mtime_ns for i in range(6)}
    assert run_cli(*args, "--n", "14", "--out", str(out)) == 0
    assert {i: os.stat(image_path(out, i, "png")).st_mtime_ns for i in range(6)} == kept
    assert run_cli(*args, "--n", "14", "--out", str(ref)) == 0
    assert all(image_path(out, i, "png").read_bytes() == image_path(ref, i, "png").read_bytes()
               for i in range(14))
    assert Manifest.read(out).count == 14 and existing_indices(out, "png") == set(range(14))
    capsys.readouterr()
    for extra in (["--n", "10"], ["--n", "20", "--start", "1"]):
        assert run_cli(*args, *extra, "--out", str(out)) == 2
        assert "already holds a different dataset" in capsys.readouterr().err
    shards = ["--layout", "shards", "--shard-size", "4", "--out", str(tmp_path / "sh")]
    assert run_cli(*args, "--n", "8", *shards) == 0
    assert run_cli(*args, "--n", "12", *shards) == 2
    assert "count: 8 -> 12" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_disk_too_small_for_the_rest_stops_early_and_resumes(tmp_path, monkeypatch, capsys,
                                                               workers):
    """Once 32 images are written, their mean size times the images left is checked against
    the free space: a run that cannot finish stops then (not hours later, when the disk is
    full), naming what it needs; the images written stay and a rerun completes the dataset."""
    import shutil
    from collections import namedtuple

    out = tmp_path / "ds"
    real = shutil.disk_usage
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 20_000, 20_000))
    args = ["generate", "stat_spectrum", "--n", "200", "--resolution", RES, "--out", str(out),
            "--quiet", "--workers", workers]
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fills before the end: the " in err
    assert "are free; the images written stay" in err
    written = existing_indices(out, "png")
    assert 32 <= len(written) < 200
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert run_cli(*args) == 0
    assert existing_indices(out, "png") == set(range(200))
    assert verify_dataset(out, sample=8).ok
