"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster and avoids spinning on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """48 synthetic 32 px images in one class folder (tests/ssl_runs.py), once per module."""
    from ssl_runs import write_images

    return write_images(tmp_path_factory.mktemp("imgs") / "class_a", 48)
