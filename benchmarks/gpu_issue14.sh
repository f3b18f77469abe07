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
