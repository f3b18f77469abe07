"""Running families side by side: one worker process per slot, a slot being a set of GPUs (on
a machine with several) or nothing (CPU workers, `--parallel N`).

Each worker is `noisevision study --out DIR --resume --worker FAMILY` in a subprocess with
CUDA_VISIBLE_DEVICES set to its slot's GPUs: it reads the study's settings from the folder,
runs the family's missing steps and writes their step files, exactly as the sequential loop
does in-process, so the results do not depend on how the families were scheduled. With
`--gpus-per-family` K > 1 a slot holds K GPUs and the family's pretraining runs under
`torchrun --nproc_per_node K` (the pretraining loop's DDP); probing and the analysis then run
on the slot's first GPU. The parent relays every worker's lines, prefixed with the family.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from noisevision.errors import UsageError


def plan_slots(parallel: int, gpus: list[int] | None, gpus_per_family: int,
               families: int) -> list[list[int]]:
    """The worker slots: `parallel` CPU slots (no GPU), or the GPUs cut into groups of
    `gpus_per_family` (leftover GPUs stay idle); never more slots than `families`."""
    if not gpus:
        if gpus_per_family > 1:
            raise UsageError("--gpus-per-family > 1 needs CUDA GPUs (none visible)")
        return [[] for _ in range(max(1, min(parallel, families)))]
    if gpus_per_family > len(gpus):
        raise UsageError(f"--gpus-per-family {gpus_per_family} is more than the {len(gpus)} "
                         "GPUs visible")
    slots = [gpus[i:i + gpus_per_family]
             for i in range(0, len(gpus) - gpus_per_family + 1, gpus_per_family)]
    return slots[:min(parallel, families)] if parallel > 0 else slots[:families]


def worker_command(out: Path, family: str, slot: list[int], device: str,
                   gpus_per_family: int) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the worker that runs `family` on `slot`."""
    env = dict(os.environ)
    argv = [sys.executable, "-m", "noisevision", "study", "--out", str(out), "--resume",
            "--worker", family, "--quiet"]
    if slot:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, slot))
        argv += ["--device", "cuda:0", "--gpus-per-family", str(len(slot))]
    else:
        argv += ["--device", device]  # torch threads: the budget's, as in-process
    env["PYTHONUNBUFFERED"] = "1"
    return argv, env


def run_workers(out: Path, families: list[str], slots: list[list[int]], device: str,
                gpus_per_family: int, log) -> dict[str, int]:
    """Run every family in a worker, at most one per slot at a time; returns the exit status
    of each family's worker. Lines of the workers are relayed through `log`."""
    todo: queue.Queue[str] = queue.Queue()
    for f in families:
        todo.put(f)
    status: dict[str, int] = {}
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []

    def slot_loop(slot: list[int]) -> None:
        while True:
            try:
                fam = todo.get_nowait()
            except queue.Empty:
                return
            argv, env = worker_command(out, fam, slot, device, gpus_per_family)
            where = f"GPU {','.join(map(str, slot))}" if slot else "CPU worker"
            with lock:
                log(f"{fam}: started on {where}")
            p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1)
            procs.append(p)
            for line in p.stdout:
                line = line.rstrip()
                if line:
                    with lock:
                        log(f"[{fam}] {line}")
            status[fam] = p.wait()

    threads = [threading.Thread(target=slot_loop, args=(s,), daemon=True) for s in slots]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:  # interrupted: the workers end with the study (their steps resume later)
        for p in procs:
            if p.poll() is None:
                p.terminate()
    return status


def torchrun_argv(cfg, nproc: int) -> list[str]:
    """`torchrun ... -m noisevision pretrain` with the config's flags (every field that
    differs from PretrainConfig's default must have a flag)."""
    from noisevision.cli import pretrain_flags
    from noisevision.ssl.train import PretrainConfig

    flags = {name: flag for flag, name in pretrain_flags()}
    defaults = PretrainConfig()
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "noisevision", "pretrain", "--out", cfg.out,
            "--resume"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "out" or value == getattr(defaults, f.name):
            continue
        flag = flags.get(f.name)
        if not flag:
            raise UsageError(f"pretraining field {f.name}={value!r} has no `pretrain` flag, so "
                             "it cannot run under torchrun; use --gpus-per-family 1")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            continue
        argv += [flag, str(value)]
    return argv


def run_torchrun_pretrain(cfg, nproc: int) -> Path:
    """Pretrain under torchrun (DDP over `nproc` GPUs); a failure is a one-line error."""
    argv = torchrun_argv(cfg, nproc)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       check=False)
    if p.returncode != 0:
        tail = " | ".join(p.stdout.strip().splitlines()[-3:])
        raise UsageError(f"torchrun pretraining exited with status {p.returncode}: {tail}")
    return Path(cfg.out)
