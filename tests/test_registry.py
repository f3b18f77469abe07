import pytest

from noisevision.errors import UsageError
from noisevision.registry import Registry


def test_register_get_list_and_suggestions():
    reg = Registry("thing")
    reg.register("dead_leaves_squares", int, "squares")
    reg.register("dead_leaves_oriented", float, "oriented")
    reg.register("stat_spectrum", str, "spectrum")
    assert reg.get("stat_spectrum").factory is str
    assert reg.names("dead_leaves*") == ["dead_leaves_oriented", "dead_leaves_squares"]
    assert len(reg) == 3 and "stat_spectrum" in reg
    with pytest.raises(ValueError):
        reg.register("stat_spectrum", str, "again")
    with pytest.raises(UsageError) as err:
        reg.get("dead_leaves_square")
    msg = str(err.value)
    assert "did you mean dead_leaves_squares" in msg and "\n" not in msg
    assert "allowed:" in msg
