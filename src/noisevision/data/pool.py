"""The worker-process pool of both dataset writers (image folders and shards).

Workers are spawned with `target(worker_arg, job, tasks, results, parent_pid)`; each pulls
tasks until it reads None and reports `("done", count)`, `("error", one-line message)`,
`("crash", description)` and finally `("exit", None)`. The parent keeps at most two tasks per
worker queued (tasks are drawn lazily from an iterator, so memory stays flat in the dataset's
size), stops on the first error or crash, notices a worker killed from outside, and terminates
what is left on the way out. `serve` is the worker side of that protocol.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator
from typing import Any

from noisevision.errors import UsageError


def serve(parent: int, tasks, results, setup: Callable[[], Any],
          work: Callable[[Any, Any], int]) -> None:
    """A worker's loop: end with the parent, one intra-op thread, `state = setup()`, then
    `work(state, task)` -> count per task until None; errors are reported, never raised."""
    import torch

    from noisevision.safety import die_with_parent

    die_with_parent(parent)
    torch.set_num_threads(1)
    try:
        state = setup()
        while (task := tasks.get()) is not None:
            results.put(("done", work(state, task)))
            del task  # a shared-memory tensor inside is freed before the next one arrives
    except UsageError as exc:
        results.put(("error", str(exc)))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # report, so the parent can stop with the cause
        results.put(("crash", f"{type(exc).__name__}: {exc}"))
    results.put(("exit", None))


def run_pool(target: Callable[..., None], worker_arg: Any, job: Any, tasks_iter: Iterator,
             workers: int, on_done: Callable[[int], None], what: str) -> None:
    """Run every task of `tasks_iter` on `workers` spawned processes; `on_done(count)` per
    finished task; `what` names a worker in errors ("generation worker", "shard writer")."""
    import torch.multiprocessing as tmp  # shares tensors of queued tasks through shared memory

    ctx = tmp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(worker_arg, job, tasks, results, os.getpid()),
                         daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    in_flight = exited = 0
    feeding = True

    def handle(kind: str, value: Any) -> None:
        nonlocal in_flight, exited
        if kind == "done":
            in_flight -= 1
            on_done(value)
        elif kind == "error":
            raise UsageError(value)
        elif kind == "crash":
            raise RuntimeError(f"{what} failed: {value}")
        else:
            exited += 1

    try:
        while exited < workers:
            while feeding and in_flight < 2 * workers:
                task = next(tasks_iter, None)  # may render (a GPU feeding shard writers)
                if task is None:
                    feeding = False
                    for _ in procs:
                        tasks.put(None)
                    break
                tasks.put(task)
                in_flight += 1
                while True:  # keep the progress moving and stop early on an error
                    try:
                        handle(*results.get_nowait())
                    except queue.Empty:
                        break
            try:
                handle(*results.get(timeout=1.0))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a {what} died (exit code {dead[0].exitcode}); rerun "
                                       "the same command to resume") from None
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
