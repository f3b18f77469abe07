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
step() {  # step SECONDS NAME command...
    local t=$1 name=$2
    shift 2
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$t" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n ${TAIL:-40} "$OUT/$name.log"
    echo "== $name rc $rc ($((SECONDS - t0)) s)" | tee -a "$OUT/$name.log"
}

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
# 10,000 images in < 10 s). Needs the analysis packages (scripts/setup.sh installs them; on a
# bare GPU machine carry their wheels). Run with: bash benchmarks/gpu.sh analysis12
want analysis12 && step 240 features12 python3 benchmarks/bench_features.py --device cuda \
    --n 4096 --batch 256 --fid-check 2000 --metrics-n 50000
want analysis12 && step 240 analyze12 bash -c 'NOISEVISION_CACHE=$OUT/cache /usr/bin/time -v \
    python3 -m noisevision analyze stylegan_oriented dead_leaves_shapes --n 10000 \
    --n-inception 10000 --device cuda --batch-size 500 --out $OUT/analyze12 --quiet'

echo "== summary"
for f in "$OUT"/*.log; do
    grep -H "img/s\|images/s\|FAIL\|all GPU checks\|Error\|^ok   dataset\|GiB\|TFLOP\|^== .* rc " "$f" \
        2>/dev/null | sed "s|^$OUT/||" | cut -c1-230
done
