"""Datasets written by an earlier version still verify: the bytes of every family are stable.

tests/data/datasets/<generator>/ holds two images (indices 1005 and 1006, seed 7, 64 px or the
family's cheap settings; stat_spectrum as JPEG quality 75) and the manifest, written by the code
at commit ba2bfe7 (before the reliability and architecture changes). Regenerating them from the
manifest with today's code must give the same bytes (PNG) or the same pixels within the JPEG
tolerance.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from noisevision.data.verify import verify_dataset

DATA = Path(__file__).parent / "data" / "datasets"
NAMES = sorted(p.name for p in DATA.iterdir() if p.is_dir())


def test_every_family_has_a_stored_dataset():
    from noisevision.generators.base import list_generators

    assert set(list_generators()) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_dataset_still_verifies(name, tmp_path):
    root = tmp_path / name
    shutil.copytree(DATA / name, root)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = verify_dataset(root, sample=2, device="cpu")
    finally:
        torch.set_num_threads(n)
    assert r.checked == [1005, 1006] and r.expected == 2
    assert r.ok, (r.mismatched, r.missing, r.damaged)


def test_a_changed_default_is_named_on_resume_and_the_old_value_resumes(tmp_path, capsys):
    """StyleGAN's skip_padding default changed after these datasets were written: rerunning the
    same command names the option that changed (nothing written); setting the old value
    resumes the dataset."""
    from noisevision.cli import main

    root = tmp_path / "stylegan_random"
    shutil.copytree(DATA / "stylegan_random", root)
    before = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    cmd = ["generate", "stylegan_random", "--out", str(root), "--n", "2", "--start", "1005",
           "--seed", "7", "--resolution", "64", "--set", "width=0.125", "--quiet"]
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip()
    assert "config.skip_padding: 'replicate' -> 'zero'" in err and "\n" not in err
    assert {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert main(cmd + ["--set", "skip_padding=replicate"]) == 0
    assert verify_dataset(root, sample=2, device="cpu").ok


def test_machine_dependent_auto_dtype_is_pinned_and_kept_on_other_machines(tmp_path,
                                                                             monkeypatch):
    """StyleGAN-Random's compute_dtype "auto" is bfloat16 on a CPU with native bfloat16 and
    float32 on one without: a dataset's manifest records what its first machine chose, and a
    machine that chooses otherwise continues and verifies it with that arithmetic (not with
    its own, which would give other images under the same manifest)."""
    import json

    import noisevision.generators.stylegan.plan as plan
    from noisevision.data.writer import write_dataset
    from noisevision.generators.base import cheap_generator, generator_from_description

    gen = cheap_generator("stylegan_random", resolution=64)
    assert gen.config.compute_dtype == "auto"

    def machine(native_bf16: bool) -> None:
        monkeypatch.setattr(plan, "cpu_has_bf16", lambda: native_bf16)

    def config(out: Path) -> dict:
        return json.loads((out / "manifest.json").read_text())["config"]

    for native, want in ((True, "bfloat16"), (False, "float32")):
        machine(native)
        write_dataset(gen, tmp_path / want, 2, workers=1, progress=False)
        assert config(tmp_path / want)["compute_dtype"] == want
    # machine A (native bfloat16) writes 4 images; a kill loses two of them
    machine(True)
    a = tmp_path / "a"
    write_dataset(gen, a, 4, workers=1, progress=False)
    files = sorted(a.rglob("*.png"))
    kept = {p: p.read_bytes() for p in files}
    for p in files[2:]:
        p.unlink()
    # machine B (no native bfloat16) reruns the same command: the lost images come back equal
    machine(False)
    result = write_dataset(gen, a, 4, workers=1, progress=False)
    assert (result.written, result.skipped) == (2, 2)
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert config(a)["compute_dtype"] == "bfloat16"
    assert not verify_dataset(a, sample=4).mismatched
    # the test has teeth: float32 (B's own choice) gives other bytes for these images
    fp32 = generator_from_description({**gen.describe(), "config": {
        **gen.describe()["config"], "compute_dtype": "float32"}})
    bf16 = generator_from_description({**gen.describe(), "config": config(a)})
    idx = torch.arange(4)
    assert not torch.equal(fp32.images(idx, 0, dtype=torch.uint8),
                           bf16.images(idx, 0, dtype=torch.uint8))
    # a dataset begun before the pinning (manifest "auto") continues as it was made
    legacy = tmp_path / "legacy"
    monkeypatch.setattr(type(gen), "pinned", lambda self, device: self)
    write_dataset(gen, legacy, 2, workers=1, progress=False)
    monkeypatch.undo()
    machine(True)
    assert config(legacy)["compute_dtype"] == "auto"
    result = write_dataset(gen, legacy, 2, workers=1, progress=False)
    assert result.skipped == 2 and config(legacy)["compute_dtype"] == "auto"
