#!/usr/bin/env bash
# Issue 15 on a lent CUDA GPU: fractal_ifs (target >= 20,000 img/s at 128 px) and cg_scenes
# (target >= 5,000 img/s at 128 px), their GPU contract checks against the CPU, and a tiny
# `pretrain --mix cutmix` on a mixture of the two, killed and resumed. About 4 minutes.
#
#   bash benchmarks/gpu_issue15.sh          # logs under $OUT (default ./gpu_out)
#
# The package is taken from ./src; nothing is installed.
set -u
OUT=${OUT:-gpu_out}
SCRATCH=${SCRATCH:-/tmp/nv15}
mkdir -p "$OUT" "$SCRATCH"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

TAIL=${TAIL:-12}
source "$(dirname "$0")/gpu_step.sh"  # step SECONDS NAME command...

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# the GPU half of the contract: finite, deterministic, batch-invariant, close to the CPU
step 90 check python3 benchmarks/gpu_check.py cuda 'fractal_*' cg_scenes
# steady-state render rate (categories searched first), then the first 20,000 images with their
# searches; a batch of 1024 and the default 512
step 60 fractal python3 benchmarks/bench_fractal.py --device cuda --images 65536 \
    --batch-size 1024 --with-search 20000
step 40 fractal_512 python3 benchmarks/bench_fractal.py --device cuda --images 32768 \
    --presets fractal_ifs --with-search 4096
step 60 cg python3 benchmarks/bench_cg_scenes.py --device cuda --images 8192 --batch-size 512
step 40 cg_256 python3 benchmarks/bench_cg_scenes.py --device cuda --images 4096 \
    --batch-size 256
# a tiny mixed pretraining on the GPU: the full run, then a kill after 5 steps and a resume
FLAGS=(--data dead_leaves_squares:1,fractal_ifs:1 --resolution 64 --crop 64 --width 0.25
       --images 2048 --batch-size 256 --epochs 2 --checkpoint-every 4 --mix cutmix
       --device cuda --quiet)
step 120 mix bash -c "python3 -m noisevision pretrain --out $SCRATCH/full ${FLAGS[*]} && \
    python3 -c \"
from noisevision.ssl.train import PretrainConfig, pretrain
cfg = PretrainConfig(data='dead_leaves_squares:1,fractal_ifs:1', out='$SCRATCH/killed',
                     image_size=64, crop=64, width=0.25, images=2048, batch_size=256, epochs=2,
                     checkpoint_every=4, mix='cutmix', device='cuda', quiet=True)
pretrain(cfg, stop_after=5)\" && \
    python3 -m noisevision pretrain --out $SCRATCH/killed ${FLAGS[*]} --resume && \
    python3 -c \"
import torch
a = torch.load('$SCRATCH/full/encoder.pt', weights_only=True)['state_dict']
b = torch.load('$SCRATCH/killed/encoder.pt', weights_only=True)['state_dict']
same = all(torch.equal(a[k], b[k]) for k in a)
print('resume bitwise identical:', same)
close = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print('largest weight difference:', close)\""
rm -rf "$SCRATCH"
