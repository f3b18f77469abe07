"""Tiny pretraining runs for the ssl tests: a folder of synthetic images, a small config, the
log (the `images` fixture that uses them is in conftest.py)."""

import json
import os

import numpy as np
from PIL import Image

from noisevision.ssl.train import PretrainConfig


def write_images(folder, n, seed=0, size=32):
    """n PNGs of coloured rectangles on a flat ground in `folder` (created)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        a = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
        for _ in range(6):
            x, y = rng.integers(0, size - 4, 2)
            w, h = rng.integers(3, size // 2, 2)
            a[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        Image.fromarray(a).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


def run_config(data, out, **kw):
    """A PretrainConfig of a run that takes seconds on the CPU."""
    base = dict(crop=32, width=0.125, epochs=2, batch_size=16, lr=0.01, log_every=1,
                quiet=True, workers=0)
    if kw.get("recipe") == "moco":
        del base["width"]  # SmallAlexNet's: the moco recipe refuses it
    base.update(kw)
    return PretrainConfig(data=str(data), out=str(out), **base)


def read_log(run):
    return [json.loads(line) for line in open(run / "log.jsonl")]
