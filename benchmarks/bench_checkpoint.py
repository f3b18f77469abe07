#!/usr/bin/env python3
"""How long a pretraining checkpoint holds the training thread: the MoCo v2 ResNet-50 state
(both encoders, heads, the 65,536-key queue, SGD momentum: what `pretrain --recipe moco` saves
at every epoch end) written as before (hash, serialise, fsync on the training thread) and as
`pretrain` writes it now (host copy on the training thread, the rest on BackgroundSaver's
thread beside the next steps).

    python benchmarks/bench_checkpoint.py [--device cuda] [--repeats 3] [--dir DIR]

One JSON line per measurement (never pass/fail on time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def build(device: torch.device):
    from noisevision.ssl.train import PretrainConfig, build_model

    cfg = PretrainConfig(recipe="moco", data="dead_leaves_shapes", out="unused")
    model = build_model(cfg).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    for p in model.parameters():  # momentum buffers, as after a first step
        if p.requires_grad:
            p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    return cfg, model, opt


def position(cfg) -> dict:
    return {"config": dataclasses.asdict(cfg), "epoch": 1, "step": 0,
            "schedule": {"recipe": "moco", "base_lr": 0.03, "lr_next": 0.03}}


def main() -> None:
    from noisevision.ssl.checkpoint import BackgroundSaver, save_checkpoint
    from noisevision.ssl.encoders import save_encoder, write_encoder
    from noisevision.ssl.train import save_payloads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary "
                                                "folder; the disk matters for fsync)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cfg, model, opt = build(dev)
    backbone = model.backbone
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-ckpt-"))
    root.mkdir(parents=True, exist_ok=True)
    base = {"device": str(dev), "cpus": os.cpu_count()}

    def report(**kw) -> None:
        print(json.dumps({**base, **kw}), flush=True)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for rep in range(args.repeats):
        sync()
        t = time.perf_counter()
        save_checkpoint(root / "checkpoint.pt", {**position(cfg), "model": model.state_dict(),
                                                 "optimizer": opt.state_dict()})
        save_encoder(root / "encoder.pt", backbone, "resnet50", {})
        blocked = time.perf_counter() - t
        report(way="synchronous (before)", rep=rep, training_thread_s=round(blocked, 3),
               mib=round((root / "checkpoint.pt").stat().st_size / 2**20, 1))

        saver = BackgroundSaver()
        sync()
        t = time.perf_counter()
        state, enc = save_payloads(model, opt, backbone, "resnet50", {}, position(cfg))

        def write(state=state, enc=enc) -> None:
            save_checkpoint(root / "checkpoint.pt", state)
            write_encoder(root / "encoder.pt", enc)

        saver.submit(write)
        blocked = time.perf_counter() - t
        saver.wait()
        report(way="background (now)", rep=rep, training_thread_s=round(blocked, 3),
               until_on_disk_s=round(time.perf_counter() - t, 3))


if __name__ == "__main__":
    main()
