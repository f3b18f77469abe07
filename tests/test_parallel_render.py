"""Rendering on several one-thread processes (analyze's generator sources): the images' bytes in
order whatever the lists of indices, and a worker that dies ends it with one line at once (it
used to leave the parent waiting an hour for the dead worker's batches)."""

import multiprocessing
import os
import signal

import pytest
import torch

from noisevision.errors import UsageError
from noisevision.generators.base import create_generator
from noisevision.generators.parallel import render_in_processes


def test_batches_come_back_in_order_with_the_bytes_of_images():
    gen = create_generator("stat_spectrum_color", resolution=32)  # thread-sensitive too
    batches = [[5, 1], [1000, 3, 2], [7], [0, 4, 6]]
    got = list(render_in_processes(gen, batches, 3, 2))
    for idx, x in zip(batches, got, strict=True):
        assert torch.equal(x, gen.images(idx, 3, dtype=torch.uint8))


def test_a_worker_killed_from_outside_is_one_line_not_a_wait():
    gen = create_generator("dead_leaves_squares", resolution=32)
    before = set(multiprocessing.active_children())  # other tests' processes, if any
    it = render_in_processes(gen, [list(range(i, i + 4)) for i in range(0, 64, 4)], 0, 2)
    next(it)
    workers = set(multiprocessing.active_children()) - before
    assert len(workers) == 2
    os.kill(next(iter(workers)).pid, signal.SIGKILL)
    with pytest.raises(UsageError, match="died .killed by signal 9"):
        list(it)  # the rest of the batches: the dead worker's never come
    assert not set(multiprocessing.active_children()) & workers  # the other one stopped too


def test_a_worker_that_cannot_start_is_one_line():
    gen = create_generator("dead_leaves_squares", resolution=32)
    gen.describe = lambda: {"generator": "no_such_generator", "config": {}}  # fails in the worker
    with pytest.raises(UsageError, match="died .exit status"):
        list(render_in_processes(gen, [[0], [1]], 0, 2))
