"""`noisevision preview --cheap`: the family's cheap settings are applied (and named in the
sheet's title); explicit flags win over them."""

from PIL import Image

from noisevision.cli import main
from noisevision.generators import base


def test_preview_cheap_applies_the_cheap_settings(tmp_path, monkeypatch):
    made = []
    real = base.create_generator

    def spy(name, **opts):
        made.append((name, opts))
        return real(name, **opts)

    monkeypatch.setattr(base, "create_generator", spy)
    out = tmp_path / "tex.png"
    assert main(["preview", "dead_leaves_textured", "--n", "2", "--resolution", "32", "--cheap",
                 "--out", str(out)]) == 0
    assert made[-1] == ("dead_leaves_textured", {"texture_pool": 16, "resolution": 32})
    with Image.open(out) as im:
        assert im.info.get("Software") == "noisevision contact sheet"
    assert main(["preview", "dead_leaves_textured", "--n", "2", "--resolution", "32", "--cheap",
                 "--set", "texture_pool=4", "--out", str(out)]) == 0
    assert made[-1][1]["texture_pool"] == 4  # --set wins over the cheap settings
    assert main(["preview", "dead_leaves_textured", "--n", "2", "--resolution", "32",
                 "--set", "texture_pool=4", "--out", str(out)]) == 0
    assert made[-1][1] == {"texture_pool": 4, "resolution": 32}  # without --cheap: as given
