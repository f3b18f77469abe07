"""The examples in module docstrings run as written."""

import doctest

import pytest

import noisevision.generators.base


@pytest.mark.parametrize("module", [noisevision.generators.base])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, extraglobs={"torch": __import__("torch")},
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
