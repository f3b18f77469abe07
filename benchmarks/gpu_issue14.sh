#!/usr/bin/env bash
# Issue 14 on a GPU: feature-visualisation speed of featvis_random (random-init ResNet-50,
# 128 px, 64 Adam steps, bf16 autocast, batched), the objective against the steps, and whether
# an image is the same bytes twice and at another batch position. Run from the repo root:
#     bash benchmarks/gpu_issue14.sh
# Expected to finish in about a minute on an H200 (not run yet; each part has a timeout
# guard). Target: >= 200 img/s, 105,000 images in under 10 minutes. DEVICE=cpu IMAGES=2 RES=32 BS=2 runs a dry run on a CPU.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=${DEVICE:-cuda}
IMAGES=${IMAGES:-512}
RES=${RES:-128}
BS=${BS:-256}
python3 -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', '| torch', torch.__version__)"
timeout 60 python3 benchmarks/bench_featvis.py --device "$DEVICE" --images "$IMAGES" \
    --batch-size "$BS" --steps 64 --resolution "$RES" --curve --determinism \
    || echo "bench_featvis (batch $BS) failed or timed out (status $?)"
timeout 25 python3 benchmarks/bench_featvis.py --device "$DEVICE" --images "$IMAGES" \
    --batch-size $((BS * 2)) --steps 64 --resolution "$RES" \
    || echo "bench_featvis (batch $((BS * 2))) failed or timed out (status $?)"

# Figure 5 at the paper's small scale: full-width SmallAlexNets (105,000 images at 128 px, 96 px
# resize, 64 px crops, batch 768) on dead_leaves_squares and on stylegan_oriented for
# FIG5_EPOCHS epochs, then the axis alignment of their unit visualisations and their grating
# responses (benchmarks/featvis_orientation.py). About 4 minutes on an H200 at 10 epochs.
# Dry run on a CPU: DEVICE=cpu FIG5_IMAGES=64 FIG5_EPOCHS=1 FIG5_WIDTH=0.125 FIG5_BATCH=32 FIG5_UNITS=8
FIG5=${FIG5:-1}
if [ "$FIG5" = 1 ]; then
    F5=${F5_DIR:-/tmp/fig5}
    for fam in dead_leaves_squares stylegan_oriented; do
        timeout ${FIG5_TIMEOUT:-150} python3 -m noisevision pretrain --out "$F5/$fam" --data "$fam" \
            --recipe small --images "${FIG5_IMAGES:-105000}" --epochs "${FIG5_EPOCHS:-10}" \
            --width "${FIG5_WIDTH:-1.0}" --batch-size "${FIG5_BATCH:-768}" --device "$DEVICE" \
            --quiet || echo "pretrain $fam failed or timed out (status $?)"
        tail -n 2 "$F5/$fam/log.jsonl" | cut -c1-200
    done
    timeout 120 python3 benchmarks/featvis_orientation.py "$F5/dead_leaves_squares" \
        "$F5/stylegan_oriented" --units "${FIG5_UNITS:-16}" --steps 128 --gratings --device "$DEVICE" \
        --sheets "${OUT:-gpu_out}/fig5" | cut -c1-400 \
        || echo "featvis_orientation failed or timed out (status $?)"
fi
