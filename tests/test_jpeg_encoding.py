"""JPEG chroma subsampling: an option of `generate`, recorded in the manifest, used by verify,
and the `--scale` presets reproduce the released datasets' encoding (JPEG 4:2:0, quality 75 for
the statistical models, 95 otherwise)."""

from __future__ import annotations

import json

from PIL import Image, JpegImagePlugin

from noisevision.cli import main
from noisevision.data.layout import image_path


def _sampling(path) -> int:
    with Image.open(path) as im:
        return JpegImagePlugin.get_sampling(im)  # 0: 4:4:4, 2: 4:2:0


def test_subsampling_is_written_recorded_and_verified(tmp_path):
    for sub, code in (("4:2:0", 2), ("4:4:4", 0)):
        out = tmp_path / sub.replace(":", "")
        assert main(["generate", "dead_leaves_squares", "--n", "3", "--resolution", "32",
                     "--format", "jpg", "--jpeg-subsampling", sub, "--out", str(out),
                     "--quiet"]) == 0
        m = json.loads((out / "manifest.json").read_text())
        assert m["jpeg_subsampling"] == sub
        assert _sampling(image_path(out, 1, "jpg")) == code
        assert main(["verify", str(out), "--sample", "3"]) == 0
    # the other subsampling is another dataset: refused without --overwrite
    assert main(["generate", "dead_leaves_squares", "--n", "3", "--resolution", "32",
                 "--format", "jpg", "--out", str(tmp_path / "420"), "--quiet"]) == 2


def test_scale_presets_reproduce_the_released_encoding(tmp_path):
    for name, quality in (("stat_spectrum", 75), ("dead_leaves_squares", 95)):
        out = tmp_path / name
        assert main(["generate", name, "--scale", "small", "--n", "2", "--resolution", "32",
                     "--out", str(out), "--quiet"]) == 0
        m = json.loads((out / "manifest.json").read_text())
        assert (m["format"], m["jpeg_quality"], m["jpeg_subsampling"]) == ("jpg", quality,
                                                                            "4:2:0")
        assert _sampling(image_path(out, 0, "jpg")) == 2
    # explicit flags override the preset
    out = tmp_path / "png"
    assert main(["generate", "stat_spectrum", "--scale", "small", "--n", "2", "--resolution",
                 "32", "--format", "png", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["format"] == "png"
