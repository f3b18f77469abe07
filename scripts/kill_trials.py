#!/usr/bin/env python3
"""kill -9 trials of `generate` and `pretrain`: resumes must be bit-exact, nothing stuck or corrupt.

For each command an uninterrupted reference is made first. Each trial then starts the same
command, kills it with SIGKILL at a random moment (for pretrain often during a checkpoint write:
checkpoints are saved every 2 steps), checks that no process of it survives and that every file
left is complete, reruns the one documented continuing command (the same command for generate,
the same command with --resume for pretrain) until it finishes, and compares every byte (images)
or every tensor (encoder and checkpoint) with the reference.

    python3 scripts/kill_trials.py --trials 10            # both commands
    python3 scripts/kill_trials.py --only pretrain --trials 3
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

GEN_ARGS = ["generate", "dead_leaves_shapes", "--resolution", "64", "--n", "600",
            "--workers", "2", "--batch-size", "16", "--quiet"]
PRE_ARGS = ["pretrain", "--data", "dead_leaves_squares", "--images", "256", "--resolution", "32",
            "--crop", "32", "--width", "0.125", "--batch-size", "32", "--epochs", "3",
            "--lr", "0.05", "--checkpoint-every", "2", "--device", "cpu", "--quiet"]


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "noisevision", *args]


def descendants(pid: int) -> list[int]:
    out, frontier = [], [pid]
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                text = Path(f"/proc/{d}/stat").read_text()
                stats[int(d)] = int(text.rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in stats.items() if pp == p]
        out += kids
        frontier += kids
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# One intra-op thread everywhere: CPU training is bit-exact for a fixed thread count only.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_and_kill(args: list[str], after: float) -> tuple[bool, int]:
    """Start, SIGKILL after `after` s (unless it ended); (killed?, surviving descendants)."""
    p = subprocess.Popen(cli(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=ENV)
    t0 = time.time()
    kids: set[int] = set()
    while time.time() - t0 < after and p.poll() is None:
        kids.update(descendants(p.pid))
        time.sleep(0.05)
    if p.poll() is not None:
        return False, 0
    kids.update(descendants(p.pid))
    p.send_signal(signal.SIGKILL)
    p.wait()
    return True, len(reap(kids, 10.0))


def reap(pids, timeout: float) -> list[int]:
    """Wait up to `timeout` s for `pids` to end; kill and return those still alive then."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(k) for k in pids):
        time.sleep(0.1)
    survivors = [k for k in pids if alive(k)]
    for k in survivors:
        os.kill(k, signal.SIGKILL)
    return survivors


def finish(args: list[str]) -> None:
    p = subprocess.run(cli(args), capture_output=True, text=True, check=False, env=ENV)
    if p.returncode != 0:
        raise SystemExit(f"continuing command failed ({p.returncode}): {' '.join(args)}\n"
                         f"{p.stderr.strip()[-800:]}")


def corrupt_images(out: Path) -> list[str]:
    from noisevision.data.encode import read_rgb
    from noisevision.errors import UsageError

    bad = []
    for f in sorted(out.glob("*/*.png")):
        try:
            read_rgb(f)
        except UsageError:
            bad.append(str(f))
    return bad


def tensors_equal(a: Path, b: Path, key: str | None) -> bool:
    x = torch.load(a, weights_only=True)
    y = torch.load(b, weights_only=True)
    if key:
        x, y = x[key], y[key]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x
                                        if isinstance(x[k], torch.Tensor))


def generate_trials(work: Path, trials: int, rng: random.Random) -> dict:
    ref = work / "gen_ref"
    t0 = time.time()
    finish([*GEN_ARGS, "--out", str(ref)])
    full = time.time() - t0
    ref_bytes = {p.relative_to(ref): p.read_bytes() for p in ref.glob("*/*.png")}
    stats = {"trials": 0, "kills": 0, "survivors": 0, "corrupt": 0, "stuck": 0, "mismatch": 0}
    for t in range(trials):
        out = work / f"gen_{t}"
        for _ in range(rng.choice((1, 2))):
            killed, surv = run_and_kill([*GEN_ARGS, "--out", str(out)], rng.uniform(0.5, full))
            stats["kills"] += killed
            stats["survivors"] += surv
            stats["corrupt"] += len(corrupt_images(out)) if out.exists() else 0
        try:
            finish([*GEN_ARGS, "--out", str(out)])
        except SystemExit as exc:
            stats["stuck"] += 1
            print(exc)
            continue
        got = {p.relative_to(out): p.read_bytes() for p in out.glob("*/*.png")}
        stats["mismatch"] += got != ref_bytes
        stats["trials"] += 1
        shutil.rmtree(out)
    return stats


def pretrain_trials(work: Path, trials: int, rng: random.Random) -> dict:
    ref = work / "pre_ref"
    t0 = time.time()
    finish([*PRE_ARGS, "--out", str(ref)])
    full = time.time() - t0
    stats = {"trials": 0, "kills": 0, "survivors": 0, "corrupt": 0, "stuck": 0, "mismatch": 0}
    for t in range(trials):
        out = work / f"pre_{t}"
        for _ in range(rng.choice((1, 2))):
            resume = ["--resume"] if out.exists() else []
            killed, surv = run_and_kill([*PRE_ARGS, "--out", str(out), *resume],
                                        rng.uniform(1.0, full))
            stats["kills"] += killed
            stats["survivors"] += surv
            for name in ("checkpoint.pt", "encoder.pt"):
                if (out / name).exists():
                    try:
                        from noisevision.ssl.checkpoint import load_torch_file
                        load_torch_file(out / name, name)
                    except Exception:  # noqa: BLE001
                        stats["corrupt"] += 1
        try:
            finish([*PRE_ARGS, "--out", str(out), "--resume"])
        except SystemExit as exc:
            stats["stuck"] += 1
            print(exc)
            continue
        same = (tensors_equal(ref / "encoder.pt", out / "encoder.pt", "state_dict")
                and tensors_equal(ref / "checkpoint.pt", out / "checkpoint.pt", "model"))
        stats["mismatch"] += not same
        stats["trials"] += 1
        shutil.rmtree(out)
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--only", choices=("generate", "pretrain"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="noisevision-kill-"))
    ok = True
    try:
        for name, fn in (("generate", generate_trials), ("pretrain", pretrain_trials)):
            if args.only and args.only != name:
                continue
            t0 = time.time()
            s = fn(work, args.trials, rng)
            print(f"{name}: {s['trials']} trials, {s['kills']} kill -9, surviving processes "
                  f"{s['survivors']}, corrupt files {s['corrupt']}, stuck folders {s['stuck']}, "
                  f"resumes not bit-exact {s['mismatch']} ({time.time() - t0:.0f} s)")
            ok &= not (s["survivors"] or s["corrupt"] or s["stuck"] or s["mismatch"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("all kill trials passed" if ok else "KILL TRIALS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
