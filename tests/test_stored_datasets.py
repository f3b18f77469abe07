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
