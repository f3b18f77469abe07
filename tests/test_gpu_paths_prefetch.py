"""noisevision.ssl.prefetch: the producer thread's queue, order, errors and early stop, on CPU.

On CUDA the same code runs the producer on a side stream with an event per batch; here it is
forced on with threaded=True (no streams), which exercises everything but the stream calls.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from noisevision import create_generator
from noisevision.ssl.prefetch import prefetch


def test_cpu_default_is_the_iterator_itself():
    it = iter([1, 2, 3])
    assert prefetch(it, "cpu") is it
    assert list(prefetch([torch.ones(2)], "cpu", depth=0, threaded=True))[0].sum() == 2


def test_threaded_batches_equal_the_direct_ones_in_order():
    gen = create_generator("dead_leaves_squares", resolution=16)

    def batches():
        for start in range(0, 12, 4):
            yield gen.render(torch.arange(start, start + 4), 0)

    direct = list(batches())
    fetched = list(prefetch(batches(), "cpu", depth=2, threaded=True))
    assert len(fetched) == 3
    assert all(torch.equal(a, b) for a, b in zip(direct, fetched, strict=True))


def test_producer_errors_reach_the_consumer_at_their_batch():
    def batches():
        yield torch.zeros(1)
        raise ValueError("boom")

    it = prefetch(batches(), "cpu", threaded=True)
    assert torch.equal(next(it), torch.zeros(1))
    with pytest.raises(ValueError, match="boom"):
        next(it)


def test_early_stop_ends_the_producer():
    made = []

    def batches():
        for i in range(1000):
            made.append(i)
            yield torch.full((1,), i)

    before = threading.active_count()
    it = prefetch(batches(), "cpu", depth=2, threaded=True)
    assert int(next(it)) == 0
    it.close()  # the consumer leaves its loop
    time.sleep(0.3)
    assert threading.active_count() == before
    assert len(made) <= 5  # the producer stayed at most depth (+ the one in hand) ahead
