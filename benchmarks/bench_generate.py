"""Dataset writing speed and memory: `noisevision generate` end to end (render + PNG + write).

Each N runs in a fresh subprocess so that its peak RSS is its own. Prints images/s and peak RSS,
beside the reference's figures (one process, JPEG write: 1.25-1.66 images/s at 128 px).

    python benchmarks/bench_generate.py --name dead_leaves_shapes --n 1000 20000
    python benchmarks/bench_generate.py --name dead_leaves_shapes --n 105000   # the small scale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
from noisevision import create_generator
from noisevision.data.writer import write_dataset
name, n, res, out, fmt, device = sys.argv[1:7]
n, res = int(n), int(res)
gen = create_generator(name, resolution=res)
t0 = time.perf_counter()
r = write_dataset(gen, out, n, fmt=fmt, device=device, progress=False)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"n": n, "seconds": dt, "images_per_s": r.written / dt, "peak_rss_mib": rss,
                  "worker_peak_rss_mib": child}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="dead_leaves_shapes")
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--format", default="png")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"{args.name} at {args.resolution} px, {args.format}, device {args.device}")
    print(f"{'N':>9} {'seconds':>9} {'images/s':>9} {'main peak RSS MiB':>18} "
          f"{'worker peak RSS MiB':>20}")
    for n in args.n:
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run([sys.executable, "-c", CHILD, args.name, str(n),
                                   str(args.resolution), out, args.format, args.device],
                                  capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{n:>9} {r['seconds']:>9.1f} {r['images_per_s']:>9.1f} "
              f"{r['peak_rss_mib']:>18.0f} {r['worker_peak_rss_mib']:>20.0f}")
    print("reference (dead leaves, one process, JPEG): 1.25-1.66 images/s at 128 px")


if __name__ == "__main__":
    main()
