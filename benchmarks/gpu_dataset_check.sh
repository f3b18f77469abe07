#!/usr/bin/env bash
# GPU datasets are written, resumed with holes (other batch compositions) and verified exactly.
# Used by benchmarks/gpu.sh on a lent CUDA device; needs PYTHONPATH=src (or an install).
set -u
D=${TMPDIR:-/tmp}/nv_gpu_ds
DEV=${DEV:-cuda}  # DEV=cpu SPECS="stat_wmm 32 20 8" dry-runs the script here
SPECS=${SPECS:-"stat_wmm 128 300 128;stat_spectrum_color_wmm 128 300 128;dead_leaves_textured 128 300 128;stylegan_oriented 256 600 256;stylegan_random 256 900 0"}
fail=0
IFS=';' read -r -a specs <<<"$SPECS"
for spec in "${specs[@]}"; do
    set -- $spec
    name=$1 res=$2 n=$3 bs=$4
    out=$D/$name
    rm -rf "$out"
    bsarg=()
    [ "$bs" != 0 ] && bsarg=(--batch-size "$bs")
    python3 -m noisevision generate "$name" --device "$DEV" --resolution "$res" --n "$n" \
        --out "$out" --quiet "${bsarg[@]}" >/dev/null || { echo "FAIL $name generate"; fail=1; }
    # delete every third image and resume: the missing ones render in other batch compositions
    find "$out" -name '*.png' | sort | awk 'NR % 3 == 0' | xargs rm -f
    python3 -m noisevision generate "$name" --device "$DEV" --resolution "$res" --n "$n" \
        --out "$out" --quiet "${bsarg[@]}" || { echo "FAIL $name resume"; fail=1; }
    if python3 -m noisevision verify "$out" --sample 60 >/dev/null; then
        echo "ok   dataset $name: written, resumed with holes, verify exact on 60 of $n"
    else
        echo "FAIL dataset $name: verify"; python3 -m noisevision verify "$out" --sample 60 | tail -3
        fail=1
    fi
done
exit $fail
