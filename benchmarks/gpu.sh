#!/usr/bin/env bash
# One prepared run on a lent CUDA GPU (H100/H200): correctness checks, then every family's
# benchmark, each step under its own time limit, logs under $OUT (default ./gpu_out).
#
#   bash benchmarks/gpu.sh            # everything (about 6-7 minutes on an H200)
#   bash benchmarks/gpu.sh stylegan   # only the named steps: check dataset stylegan profile
#                                     # deadleaves statistical pretrain
# StyleGAN-Random is timed at batch sizes dividing its 400 images per network (a CUDA batch
# spanning two networks renders each part at the full batch shape: see StyleGAN.render).
# The last lines summarise the figures (one line per configuration). Run from the repository
# root; the package is taken from ./src, so nothing is installed.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
STEPS=${*:-check dataset stylegan profile deadleaves statistical pretrain}

want() { [[ " $STEPS " == *" $1 "* ]]; }
TAIL=${TAIL:-40}
source "$(dirname "$0")/gpu_step.sh"  # step SECONDS NAME command...

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

want check && step 90 check python3 benchmarks/gpu_check.py
want dataset && step 300 dataset bash benchmarks/gpu_dataset_check.sh
want stylegan && step 150 stylegan python3 benchmarks/bench_stylegan.py --device cuda \
    --resolution 256 --n 8192 --batch-sizes 256,1024 --max-seconds 4 \
    --variants stylegan_highfreq,stylegan_sparse,stylegan_oriented
want stylegan && step 60 stylegan_random python3 benchmarks/bench_stylegan.py --device cuda \
    --resolution 256 --n 8192 --batch-sizes 200,400 --max-seconds 4 --variants stylegan_random
want stylegan && step 60 stylegan_random_fp32 python3 benchmarks/bench_stylegan.py \
    --device cuda --resolution 256 --n 8192 --batch-sizes 400 --max-seconds 4 \
    --dtype float32 --variants stylegan_random
want profile && step 45 profile_random python3 benchmarks/bench_stylegan.py --device cuda \
    --resolution 256 --n 400 --batch-sizes 400 --variants stylegan_random --profile
want profile && step 45 profile_deadleaves python3 benchmarks/profile_generator.py \
    dead_leaves_shapes --device cuda --resolution 128 --batch 512
want profile && step 45 profile_statistical python3 benchmarks/profile_generator.py \
    stat_spectrum_color_wmm --device cuda --resolution 128 --batch 512
want deadleaves && step 45 deadleaves python3 benchmarks/bench_dead_leaves.py --device cuda \
    --batch-size 512 --resolutions 128 256
want statistical && step 60 statistical python3 benchmarks/bench_statistical.py --device cuda \
    --batch 512 --images 4096 --resolution 128
want pretrain && step 60 pretrain python3 benchmarks/bench_pretrain.py --device cuda --moco \
    --steps 10

# Issue 17 (one call measures the baseline and this tree on the same warm machine): with a
# baseline package at $BASE (default .base/src, made here by
#   mkdir -p .base && git archive ba2bfe7 src | tar -x -C .base
# with /.base/ in .git/info/exclude and `.base` carried to the device), each "both" step runs
# first on the baseline (log NAME_base), then on ./src (log NAME_new).
#   bash benchmarks/gpu.sh deadleaves17 statistical17 stylegan17 overlap17 check17 profile17 \
#       pretrain17
BASE=${BASE:-.base/src}
both() {  # both SECONDS NAME command...
    local t=$1 name=$2
    shift 2
    if [ -d "$BASE" ]; then
        step "$t" "${name}_base" env PYTHONPATH="$PWD/$BASE" "$@"
    fi
    step "$t" "${name}_new" "$@"
}
want deadleaves17 && both 60 deadleaves17 python3 benchmarks/bench_dead_leaves.py --device cuda \
    --batch-size 512 --resolutions 128 --images 8192
want deadleaves17 && both 60 deadleaves17_256 python3 benchmarks/bench_dead_leaves.py \
    --device cuda --batch-size 256 --resolutions 256 --images 4096
want deadleaves17 && step 60 deadleaves17_nograph_new env NOISEVISION_CUDA_GRAPHS=0 python3 \
    benchmarks/bench_dead_leaves.py --device cuda --batch-size 512 --resolutions 128 \
    --images 8192
want statistical17 && both 60 statistical17 python3 benchmarks/bench_statistical.py \
    --device cuda --batch 512 --images 4096 --resolution 128 \
    --names stat_spectrum stat_wmm stat_spectrum_color_wmm
want stylegan17 && both 60 stylegan17 python3 benchmarks/bench_stylegan.py --device cuda \
    --resolution 256 --n 8192 --batch-sizes 400 --max-seconds 5 --variants stylegan_random
want overlap17 && both 90 overlap17_small python3 benchmarks/bench_overlap.py --recipe small \
    --data stylegan_oriented --steps 10 --warmup 2
want overlap17 && both 120 overlap17_moco python3 benchmarks/bench_overlap.py --recipe moco \
    --data dead_leaves_shapes --steps 8 --warmup 2
# squares first in a fresh process, after the Triton specialisation fix (rng_triton)
want squares17 && both 60 squares17 python3 benchmarks/bench_dead_leaves.py --device cuda \
    --batch-size 512 --resolutions 128 --images 8192 --variants dead_leaves_squares \
    dead_leaves_oriented dead_leaves_shapes
want check17 && step 120 check17 python3 benchmarks/gpu_check.py
want profile17 && step 45 profile17_deadleaves python3 benchmarks/profile_generator.py \
    dead_leaves_shapes --device cuda --resolution 128 --batch 512
want profile17 && step 45 profile17_statistical python3 benchmarks/profile_generator.py \
    stat_spectrum_color_wmm --device cuda --resolution 128 --batch 512 --rows 30
# the training loop itself with a generator on the fly (prefetched in ssl/train.py)
pt17() {  # pt17 PREFETCH: a short small-recipe run on stylegan_oriented, rendered on the fly
    rm -rf /tmp/pt17
    NOISEVISION_PREFETCH=$1 python3 -m noisevision pretrain --data stylegan_oriented \
        --continuous --images 15360 --epochs 1 --log-every 5 --out /tmp/pt17 --quiet
    local rc=$?
    grep -o '"step": [0-9]*\|"images_per_s": [0-9.]*' /tmp/pt17/log.jsonl | paste - - \
        | sed 's/^/pretrain img\/s /'
    return $rc
}
export -f pt17
want pretrain17 && step 60 pretrain17_noprefetch bash -c 'pt17 0'
want pretrain17 && step 60 pretrain17_prefetch bash -c 'pt17 1'

# issue 12: the analysis on a GPU (Inception >= 3,000 img/s end to end; LPIPS coherence of
# 10,000 images in < 10 s; memory flat in N). Needs torch-fidelity and lpips (pure-Python wheels)
# and the converted weights, which exceed the 64 MiB carry limit as float32: here,
#   python benchmarks/carry_weights.py pack .devcarry && (cd .devcarry && pip download --no-deps
#       --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64
#       torch-fidelity==0.4.0 lpips==0.1.4)
# with /.devcarry/ in .git/info/exclude and `.devcarry` carried; the step installs the wheels
# and unpacks the weights (float16-rounded Inception, see carry_weights.py) into a cache.
if want analysis12 && [ -d .devcarry ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site" NOISEVISION_CACHE=/tmp/nvcache
    python3 benchmarks/carry_weights.py unpack .devcarry
    python3 -m noisevision generate stat_spectrum --n 10000 --resolution 256 --format jpg \
        --device cuda --out /tmp/folder12 --quiet
fi
F12="python3 benchmarks/bench_features.py --device cuda --n 4096 --batch 250 --source-batch 500"
want analysis12 && step 150 features12 $F12 --no-channels-last --fid-check 2000 --metrics-n 10000 \
    --sources stat_spectrum,/tmp/folder12 --source-resolution 256 --source-n 10000,50000 \
    --coherence 10000
want analysis12 && step 120 features12_cl $F12 --fid-check 2000 \
    --sources dead_leaves_shapes,stylegan_oriented --source-resolution 256 --source-n 10000 \
    --coherence 10000
want analysis12 && step 150 analyze12 bash -c 'time python3 -m noisevision analyze \
    stylegan_oriented dead_leaves_shapes --reference /tmp/folder12 --n 10000 \
    --n-inception 10000 --device cuda --batch-size 500 --out $OUT/analyze12 --quiet; \
    cat $OUT/analyze12/*.md'

echo "== summary"
for f in "$OUT"/*.log; do
    grep -H "img/s\|images/s\|FAIL\|all GPU checks\|Error\|^ok   dataset\|GiB\|TFLOP\|^== .* rc " "$f" \
        2>/dev/null | sed "s|^$OUT/||" | cut -c1-230
done
