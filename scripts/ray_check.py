"""Read a `generate --layout shards` dataset with Ray Data and compare every sample with its image
rendered again (the README's Ray Data recipe, checked for real; Ray is not a dependency).

    pip install "ray[data]"            # in a separate environment if you like
    python scripts/ray_check.py DIR    # DIR: a shards dataset written by noisevision generate

Prints how many samples Ray read and how many equal the generator's image of their index (PNG
datasets: every byte; JPEG: within the encoding, so only PNG is compared exactly); exit status 0
when every sample of the manifest was read once and (PNG) equals its image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    args = parser.parse_args()

    import ray

    from noisevision.data.manifest import Manifest
    from noisevision.device import one_cpu_thread
    from noisevision.generators.base import create_generator

    m = Manifest.read(args.dataset)
    if m.layout != "shards":
        print(f"{args.dataset} is not a shards dataset (layout {m.layout})", file=sys.stderr)
        return 2
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # file_extensions: the folder also holds manifest.json, which is not a tar file
    rows = ray.data.read_webdataset(str(args.dataset), file_extensions=["tar"]).take_all()
    gen = create_generator(m.generator, **m.config)
    image_key = "png" if m.format == "png" else "jpg"
    seen, equal = [], 0
    for row in rows:
        index = int(row["json"]["index"])
        seen.append(index)
        arr = np.asarray(row[image_key])
        with one_cpu_thread(torch.device("cpu")):
            want = gen.images([index], m.seed, dtype=torch.uint8)[0].permute(1, 2, 0).numpy()
        equal += int(arr.shape == want.shape and np.array_equal(arr, want))
    expected = list(range(m.start, m.stop))
    print(f"ray {ray.__version__}: read {len(rows)} samples of {len(expected)}; "
          f"{equal} equal to the generator's image of their index")
    ok = sorted(seen) == expected and (m.format != "png" or equal == len(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
