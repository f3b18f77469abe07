#!/usr/bin/env bash
# One call on a lent GPU for the figures of several issues at once (2026-11-27 session):
# the analysis from a JPEG folder (nvJPEG), the bit-identity checks after the StyleGAN skip-path
# change, StyleGAN-Random's rate, how long a MoCo checkpoint holds training, then each issue's own script (benchmarks/gpu_issueN.sh) where
# present. Every step has its own time limit; logs under $LOGS (default /tmp/gpu_final).
#   bash benchmarks/gpu_final.sh            # with .devcarry carried (see gpu.sh, analysis12)
set -u
LOGS=${LOGS:-/tmp/gpu_final}
mkdir -p "$LOGS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=$LOGS  # (not exported: each issue script keeps its own log folder)
TAIL=${TAIL:-14}
source "$(dirname "$0")/gpu_step.sh"  # step SECONDS NAME command...
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ -d .devcarry ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site" NOISEVISION_CACHE=/tmp/nvcache
    python3 benchmarks/carry_weights.py unpack .devcarry >/dev/null
    python3 -m noisevision generate stat_spectrum --n 10000 --resolution 256 --format jpg \
        --device cuda --out /tmp/folder12 --quiet
    step 60 folder_nvjpeg python3 benchmarks/bench_features.py --device cuda --n 1000 \
        --batch 250 --source-batch 500 --sources /tmp/folder12 --source-n 10000
fi
step 40 stylegan_random python3 benchmarks/bench_stylegan.py --device cuda --resolution 256 \
    --n 4000 --batch-sizes 400 --max-seconds 4 --variants stylegan_random
step ${CHECK_S:-90} check python3 benchmarks/gpu_check.py cuda 'stylegan*'
step 60 checkpoint python3 benchmarks/bench_checkpoint.py --device cuda --repeats 2 --dir /tmp/ck
export FIG5=0  # issue 14's Figure 5 training (about 4 minutes): its own call, `bash gpu_issue14.sh`
for n in 14 15 16; do
    [ -f "benchmarks/gpu_issue$n.sh" ] && step 95 "issue$n" bash "benchmarks/gpu_issue$n.sh"
done
echo "== done"
