"""Rendering on several single-threaded CPU processes, batches yielded in order.

A generator's image i is the same bytes whichever process renders it (the generator contract),
so a long render on the CPU (analyze's generator sources, pretrain's cached index set) can use
every core as `generate` does: spawned processes with one intra-op thread each, which on a
small or busy machine is also faster than intra-op threads (BENCHMARKS.md). Each worker
rebuilds the generator from its description and dies with its parent.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from noisevision.errors import UsageError


def _worker(desc: dict, seed: int, tasks, results, parent: int) -> None:
    from noisevision.generators.base import generator_from_description
    from noisevision.safety import die_with_parent

    die_with_parent(parent)
    torch.set_num_threads(1)
    gen = generator_from_description(desc)
    while (task := tasks.get()) is not None:
        k, indices = task
        try:
            x = gen.images(torch.as_tensor(indices), seed, batch_size=len(indices),
                           dtype=torch.uint8)
            results.put((k, x.numpy(), None))
        except Exception as exc:  # noqa: BLE001  (reported by the parent, one line)
            results.put((k, None, f"{type(exc).__name__}: {exc}"))


def _check_alive(procs, name: str) -> None:
    """A worker that died ends the render with one line, never a wait for its batches: killed
    (out of memory, or from outside), or unable to start (under spawn, a script that renders
    on several processes needs an `if __name__ == "__main__":` guard)."""
    for p in procs:
        if not p.is_alive() and p.exitcode not in (0, None):
            why = (f"killed by signal {-p.exitcode}: out of memory, or killed from outside"
                   if p.exitcode < 0 else
                   f"exit status {p.exitcode}: from a script, put its code under "
                   "`if __name__ == \"__main__\":`")
            raise UsageError(f"a process rendering {name} died ({why}); rerun the same "
                             "command")


def render_in_processes(gen, batches: Sequence[Sequence[int]], seed: int,
                        workers: int) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) CPU tensors of each list of indices in `batches`, in that order,
    rendered by `workers` spawned one-thread processes (at most two batches queued each)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(gen.describe(), int(seed), tasks, results,
                                               os.getpid()), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    finished = False
    try:
        queued = 0
        for k in range(min(len(batches), 2 * workers)):
            tasks.put((k, [int(i) for i in batches[k]]))
            queued += 1
        ready: dict[int, np.ndarray] = {}
        for k in range(len(batches)):
            while k not in ready:
                try:
                    j, arr, err = results.get(timeout=1.0)
                except queue.Empty:
                    _check_alive(procs, gen.name)
                    continue
                _check_alive(procs, gen.name)  # its queued batches would never come
                if err is not None:
                    raise UsageError(f"rendering {gen.name} failed: {err}")
                ready[j] = arr
                if queued < len(batches):
                    tasks.put((queued, [int(i) for i in batches[queued]]))
                    queued += 1
            yield torch.from_numpy(ready.pop(k))
        finished = True
    finally:  # every worker is gone on the way out: asked to end, else stopped
        for _ in procs:
            tasks.put(None)
        for p in procs:
            # a failure (a worker killed inside the task queue may hold its lock): no waiting
            p.join(timeout=5 if finished else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
