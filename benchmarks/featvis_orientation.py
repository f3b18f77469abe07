#!/usr/bin/env python3
"""Figure 5, measured: how axis-aligned the unit visualisations of trained encoders are.

For each encoder (a pretraining run folder or encoder file) and each layer, `visualize` draws
--units units (pre-ReLU objective, --steps Adam steps, the same noise and views for every
encoder) and `stats.gradients.axis_alignment` gives the share of their gradient energy within
15 degrees of the axes (isotropic structure: 1/3). The paper (section 5): the encoder trained
on Dead leaves - Squares "only reacts to axis-aligned images". With --sheets DIR the Figure 5
sheets are written too.

    python benchmarks/featvis_orientation.py RUN_SQUARES RUN_ORIENTED --layers conv1,conv3,conv5

One JSON line per (encoder, layer), then one per encoder for its training family's own images
when the run names a generator (never pass/fail). --gratings adds a second probe: each layer's
mean post-ReLU response to sinusoidal gratings (periods 4-12 px, 8 phases) at 12 orientations,
as a fraction of its largest (0 degrees = vertical bars), for the encoders and a random-init
SmallAlexNet of the first encoder's width.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch


def main() -> None:
    from noisevision.featvis import visualize
    from noisevision.stats.gradients import axis_alignment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoders", nargs="+")
    ap.add_argument("--layers", default="conv1,conv2,conv3,conv4,conv5")
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheets", default=None, help="folder for the Figure 5 sheets (PNG)")
    ap.add_argument("--sheet-units", type=int, default=8, help="units per sheet row")
    ap.add_argument("--gratings", action="store_true", help="also the grating-response probe")
    ap.add_argument("--device", default="cpu", help="where `visualize` runs (default cpu)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    layers = [x for x in args.layers.split(",") if x]
    for enc in args.encoders:
        t = time.perf_counter()
        images, labels, info = visualize(enc, layers, list(range(args.units)),
                                         steps=args.steps, seed=args.seed, device=args.device)
        per = images.float().view(len(layers), args.units, *images.shape[1:])
        for name, imgs in zip(layers, per, strict=True):
            units = [axis_alignment(x[None]) for x in imgs]
            print(json.dumps({"encoder": enc, "layer": name, "units": args.units,
                              "steps": args.steps, "pre_relu": info["pre_relu"],
                              "axis_alignment": round(axis_alignment(imgs), 4),
                              "units_above_isotropic": sum(u > 1 / 3 for u in units),
                              "per_unit": [round(u, 3) for u in units]}), flush=True)
        data = _training_family(enc)
        if data:
            from noisevision.generators.base import create_generator

            side = info["resolution"]
            x = create_generator(data, resolution=side).images(torch.arange(64), 0)
            print(json.dumps({"encoder": enc, "training_images": data, "resolution": side,
                              "axis_alignment": round(axis_alignment(x), 4)}), flush=True)
        if args.sheets:
            _sheet(Path(args.sheets), enc, images, labels, info, layers, args)
        print(json.dumps({"encoder": enc, "seconds": round(time.perf_counter() - t, 1)}),
              flush=True)
    if args.gratings:
        _grating_probe(args.encoders, layers)


def gratings(angle: float, side: int, periods=(4, 6, 8, 12), phases: int = 8) -> torch.Tensor:
    """Grey sinusoidal gratings in [0.1, 0.9], varying along `angle` degrees: (P * phases, 3,
    side, side)."""
    y, x = torch.meshgrid(torch.arange(side, dtype=torch.float32),
                          torch.arange(side, dtype=torch.float32), indexing="ij")
    t = math.radians(angle)
    out = [0.5 + 0.4 * torch.sin(2 * math.pi * (x * math.cos(t) + y * math.sin(t)) / p
                                 + 2 * math.pi * k / phases)
           for p in periods for k in range(phases)]
    return torch.stack(out)[:, None].expand(-1, 3, -1, -1)


def _grating_probe(encoders: list[str], layers: list[str]) -> None:
    from noisevision.featvis import normalise, prepare, resolve_layer
    from noisevision.generators.featvis import random_network
    from noisevision.probe.load import load_probe_encoder

    models = {}
    for enc in encoders:
        models[enc] = prepare(load_probe_encoder(enc)[0])
    first = next(iter(models.values()))
    kw = first.arch_kwargs
    models["random init"] = prepare(random_network("small_alexnet", 0, 0, torch.device("cpu"),
                                                   width=kw["width"],
                                                   input_size=kw["input_size"]))
    for name, model in models.items():
        side = model.arch_kwargs["input_size"]
        for layer in layers:
            _, module, _ = resolve_layer(model, layer)  # the block's output, after its ReLU
            r = {}
            for a in range(0, 180, 15):
                cap: list[torch.Tensor] = []
                h = module.register_forward_hook(lambda m, i, o, cap=cap: cap.append(o))
                with torch.no_grad():
                    model(normalise(gratings(a, side)))
                h.remove()
                r[a] = float(cap[0].mean())
            top = max(r.values())
            print(json.dumps({"encoder": name, "layer": layer, "gratings": True,
                              "min_over_max": round(min(r.values()) / top, 3),
                              "by_angle": {k: round(v / top, 3) for k, v in r.items()}}),
                  flush=True)


def _training_family(enc: str) -> str | None:
    cfg = Path(enc) / "config.json"
    if not cfg.is_file():
        return None
    data = json.loads(cfg.read_text()).get("config", {}).get("data", "")
    from noisevision.generators.base import list_generators

    return data if data in list_generators() else None


def _sheet(folder: Path, enc: str, images, labels, info, layers, args) -> None:
    from noisevision.data.sheet import contact_sheet, save_sheet

    folder.mkdir(parents=True, exist_ok=True)
    k = args.sheet_units
    keep = [i for i in range(len(images)) if i % args.units < k]
    title = (f"{Path(enc).name}  {info['arch']}  {info['resolution']}px  {info['steps']} steps"
             f"  pre-ReLU  seed {args.seed}")
    out = folder / f"featvis_fig5_{Path(enc).name}.png"
    save_sheet(contact_sheet(images[keep], [labels[i] for i in keep], title=title, ncols=k), out)
    print(json.dumps({"encoder": enc, "sheet": str(out), "layers": layers}), flush=True)


if __name__ == "__main__":
    main()
