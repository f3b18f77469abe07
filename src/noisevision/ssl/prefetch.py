"""Overlap on-the-fly image generation with training: a prefetching producer on a side CUDA stream.

When a generator renders each training batch on the fly, the training step waits for it: the
host launches the generator's kernels (StyleGAN and dead leaves make hundreds per batch), then
the step's. `prefetch(batches, device)` moves the production of the next `depth` batches to a
background thread whose kernels run on a side CUDA stream, so the host work of both and the GPU
work of both interleave: the training loop takes a batch that is (usually) already there.

Nothing about the batches changes: the same iterator is consumed in the same order, by one
thread, and an image is a pure function of (config, seed, i) whichever stream renders it.
Ordering between the streams is kept with events: the consumer's stream waits for the event
recorded after a batch was made, and the batch's memory is marked as used on the consumer's
stream (`record_stream`), so the caching allocator never hands it back to the producer while
the step still reads it. On CPU (or with depth 0) the iterator is returned as it is.

    for images in prefetch(source.epoch_batches(epoch, batch), device):
        ...   # one training step

The producer thread ends when the iterator is exhausted, when it raises (the exception is
re-raised in the consumer at that batch), or when the consumer stops early (the generator
object is closed or garbage-collected). NOISEVISION_PREFETCH=0 turns it off.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator

import torch

_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(batches: Iterable, device: torch.device | str, depth: int = 2,
             threaded: bool | None = None) -> Iterator:
    """Yield the items of `batches` (tensors, or tuples/lists/dicts of them), produced ahead by
    a background thread on a side CUDA stream; on CPU or with depth < 1, `batches` unchanged.

    `threaded=True` forces the producer thread on CPU too (tests: the same queue, order and
    error handling as on CUDA, without streams)."""
    dev = torch.device(device)
    if threaded is None:  # NOISEVISION_PREFETCH=0 switches it off (for comparison)
        threaded = dev.type == "cuda" and os.environ.get("NOISEVISION_PREFETCH", "1") != "0"
    if not threaded or depth < 1:
        return iter(batches)
    streams = _CudaStreams(dev) if dev.type == "cuda" else _NoStreams()
    return _prefetch(iter(batches), streams, depth)


def _tensors(item) -> list[torch.Tensor]:
    if isinstance(item, torch.Tensor):
        return [item]
    if isinstance(item, (tuple, list)):
        return [t for x in item for t in _tensors(x)]
    if isinstance(item, dict):
        return [t for x in item.values() for t in _tensors(x)]
    return []


class _NoStreams:
    """Stream bookkeeping where there are no streams (CPU)."""

    def enter(self):
        return contextlib.nullcontext()

    def made(self):
        return None

    def take(self, item, mark) -> None:
        pass


class _CudaStreams:
    """The producer's side stream, an event per batch, and record_stream on the consumer's."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.side = torch.cuda.Stream(device=dev)
        self.consumer = torch.cuda.current_stream(dev)
        # the side stream starts after everything queued so far on the consumer's stream (the
        # generator may read tensors the caller just made there)
        self.start = torch.cuda.Event()
        self.start.record(self.consumer)

    @contextlib.contextmanager
    def enter(self):
        with torch.cuda.device(self.dev), torch.cuda.stream(self.side):
            self.side.wait_event(self.start)
            yield

    def made(self):
        done = torch.cuda.Event()
        done.record(self.side)
        return done

    def take(self, item, mark) -> None:
        self.consumer.wait_event(mark)
        for t in _tensors(item):
            if t.is_cuda:
                t.record_stream(self.consumer)


def _prefetch(it: Iterator, streams, depth: int) -> Iterator:
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    grad = torch.is_grad_enabled()

    def put(obj) -> bool:
        while not stop.is_set():
            try:
                ready.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        torch.set_grad_enabled(grad)  # grad mode is per thread
        try:
            with streams.enter():
                for item in it:
                    if not put((item, streams.made())):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))
            return
        put(_END)

    thread = threading.Thread(target=produce, name="noisevision-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            obj = ready.get()
            if obj is _END:
                return
            if isinstance(obj, _Failure):
                raise obj.exc
            item, mark = obj
            streams.take(item, mark)
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
