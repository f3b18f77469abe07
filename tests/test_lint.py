"""The tree stays ruff-clean (ruff comes with the `dev` extra that scripts/setup.sh installs)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    try:
        proc = subprocess.run([*cmd, "check", "src", "tests", "benchmarks"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        pytest.fail("ruff is not installed: run `bash scripts/setup.sh` (dev extra)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
