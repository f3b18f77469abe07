"""Every family's measured properties beside those of the official sample images.

The official tiles (../shared/reference/reference-samples.png: 13 rows of five 128 px tiles, a
140 px label column; reference-samples-statistical-matlab.png: the MATLAB statistical models)
are cut into one folder per family and analysed like any image folder, beside the same number
of images rendered by our generator at 128 px (n per family, default 200), with the image
metrics (colour KL to the packaged photographs, spectrum alpha, coherence) and the border
statistic of the StyleGAN-Random fidelity gap (mean luminance of an 8 px border minus the
interior, on [0, 1] images) and its sign-free part, the border's flatness (std of the border
over the interior's).

    python benchmarks/compare_reference_samples.py [--n 200] [--out compare_out] [--families S]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisevision import analysis

SHEET = Path(__file__).resolve().parents[2] / "shared" / "reference" / "reference-samples.png"
ROWS = ("dead_leaves_squares", "dead_leaves_oriented", "dead_leaves_shapes",
        "dead_leaves_textured", "stat_spectrum", "stat_wmm", "stat_spectrum_color",
        "stat_spectrum_color_wmm", "stylegan_random", "stylegan_highfreq", "stylegan_sparse",
        "stylegan_sparse_new (unregistered)", "stylegan_oriented")
TILE, LABEL = 128, 140


def border_minus_interior(images: torch.Tensor, width: int = 8) -> torch.Tensor:
    """Per image: mean luminance (Rec. 601) of the `width`-px border minus the interior's."""
    lum = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])
    mask = torch.zeros(lum.shape[-2:], dtype=torch.bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    return lum[:, mask].mean(1) - lum[:, ~mask].mean(1)


def border_flatness(images: torch.Tensor, width: int = 8) -> torch.Tensor:
    """Per image: the std of the `width`-px border over the interior's, mean over channels (a
    flat frame, dark or light, is < 1; the sign-free part of the border statistic)."""
    mask = torch.zeros(images.shape[-2:], dtype=torch.bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    border, interior = images[:, :, mask], images[:, :, ~mask]
    return (border.std(2, unbiased=False) / interior.std(2, unbiased=False)).mean(1)


def cut_tiles(sheet: Path, out: Path) -> dict[str, Path]:
    im = np.asarray(Image.open(sheet).convert("RGB"))
    folders = {}
    for r, name in enumerate(ROWS):
        folder = out / name.split(" ")[0]
        folder.mkdir(parents=True, exist_ok=True)
        for c in range(5):
            tile = im[r * TILE:(r + 1) * TILE, LABEL + c * TILE:LABEL + (c + 1) * TILE]
            if tile.std() < 1.0:  # an empty (white) slot
                continue
            Image.fromarray(tile).save(folder / f"{c}.png")
        folders[name] = folder
    return folders


def measure(spec: str, n: int, metrics: list[str], ref_states: dict, cfg) -> dict:
    from noisevision.stats import get_metric

    src = analysis.open_source(spec, resolution=128 if "/" not in spec else None)
    count = min(n, src.available or n)
    cfg.n = count
    ms = [get_metric(m) for m in metrics]
    states = analysis.source_states(src, cfg, ms, torch.device("cpu"))
    row = {"source": spec, "images": count}
    for m in ms:
        row.update(m.compare(states[m.name], ref_states[m.name]))
    imgs = torch.cat([b.float() / 255 for b in src.batches(count, 64)])
    border = border_minus_interior(imgs)
    row["border_minus_interior"] = float(border.mean())
    row["border_minus_interior_std"] = float(border.std()) if count > 1 else 0.0
    flat = border_flatness(imgs)
    row["border_flatness"] = float(flat.mean())
    row["border_flatness_std"] = float(flat.std()) if count > 1 else 0.0
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--metrics", default="colour,spectrum,coherence")
    ap.add_argument("--out", default="compare_out")
    ap.add_argument("--families", default="", help="only rows whose name contains this")
    args = ap.parse_args()
    from noisevision.stats import get_metric

    metrics = args.metrics.split(",")
    cfg = analysis.AnalysisConfig(metrics=tuple(metrics), n=500, progress=False, workers=2)
    ref = analysis.open_source("photos")
    ref_states = analysis.source_states(ref, cfg, [get_metric(m) for m in metrics],
                                        torch.device("cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in cut_tiles(SHEET, Path(tmp)).items():
            if not any(folder.iterdir()) or args.families not in name:
                continue
            official = measure(str(folder), 5, metrics, ref_states, cfg)
            official["source"] = f"official {name}"
            rows.append(official)
            ours = name.split(" ")[0]
            if "unregistered" not in name:
                rows.append(measure(ours, args.n, metrics, ref_states, cfg))
            print(json.dumps(rows[-1] if "unregistered" in name else rows[-2:]), flush=True)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=2))
    cols = [c for c in rows[0] if c != "source"]
    lines = ["| source | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for r in rows:
        lines.append(f"| {r['source']} | " + " | ".join(
            f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
            for c in cols) + " |")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
